"""Recipes of the DCGAN on mnist5k: configs/dcgan_mnist5k.py with overrides, named, shared by
benchmarks/gan_recipe.py (which recipe is best at equal time) and benchmarks/small_data_gan.py (augmentation on
little data, from any recipe)."""

import ast

from configs import dcgan_mnist5k

# The candidates, each a change of the DCGAN example's recipe (configs/dcgan_mnist5k.py's classic(), 'base')
# that the literature credits with better FID; configs/dcgan_mnist5k.py is now 'sn_lr4_b64'.
RECIPES = {
    "base": {},
    # SNGAN (Miyato et al. 2018): hinge loss, spectral normalisation of D instead of its BatchNorm.
    "hinge_sn": {"gan.loss": "hinge", "model.d_spectral_norm": True, "model.d_norm": "none"},
    # TTUR (Heusel et al. 2017): D learns faster than G.
    "ttur": {"optim.d_learning_rate": 4e-4, "optim.learning_rate": 1e-4},
    "translation": {"gan.diffaugment": "translation"},
    "lr4": {"optim.learning_rate": 4e-4},
    "batch64": {"batch_size": 64},
    "r1_layer": {"model.d_norm": "layer", "gan.r1_gamma": 1.0},
    "wide": {"model.g_width": 64, "model.d_width": 64},
    "sn_bn": {"model.d_spectral_norm": True},
}
_SN = RECIPES["hinge_sn"]
# The second round: the first round's leaders (a larger step, smaller batches, SNGAN's D) combined.
RECIPES.update({
    "lr4_b64": {"optim.learning_rate": 4e-4, "batch_size": 64},
    "sn_lr4": {**_SN, "optim.learning_rate": 4e-4},
    "sn_lr4_b64": {**_SN, "optim.learning_rate": 4e-4, "batch_size": 64},
    "sn_b64": {**_SN, "batch_size": 64},
})


def parse(spec: str) -> tuple[str, dict]:
  if "=" not in spec:
    return spec, RECIPES[spec]
  name, fields = spec.split("=", 1)
  overrides = {}
  for item in filter(None, fields.split(";")):
    field, value = item.split(":", 1)
    try:
      overrides[field] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      overrides[field] = value  # a bare string
  return name, overrides


def config_of(overrides: dict, train_examples: int):
  c = dcgan_mnist5k.classic()
  if train_examples:
    c.dataset.train_examples = train_examples
  for field, value in overrides.items():
    *blocks, leaf = field.split(".")
    node = c
    for block in blocks:
      node = node[block]
    node[leaf] = value
  return c
