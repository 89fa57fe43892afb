"""From a config to typed objects: validation, the family, the optimizer.

This is the only library module that reads a whole config; everything it
builds receives typed fields. `validate` runs before any compilation or data
loading, so a bad field costs the user a second, not a compile.
"""

import ml_collections
import optax

from genjax import data
from genjax.errors import UserError
from genjax.models import vae as vae_lib
from genjax.nets import vae as vae_nets

FAMILIES = ("vae",)
VAE_ARCHS = ("conv", "mlp")


def _require(ok: bool, message: str) -> None:
  if not ok:
    raise UserError(message)


def _positive_int(config, field: str) -> None:
  value = _get(config, field)
  _require(isinstance(value, int) and not isinstance(value, bool) and value > 0,
           f"{field}: must be a positive integer, got {value!r}")


def _get(config, field: str):
  node = config
  for part in field.split("."):
    node = node[part]
  return node


def _one_of(config, field: str, allowed: tuple) -> None:
  value = _get(config, field)
  _require(value in allowed, f"{field}: unknown {value!r}; allowed: {', '.join(map(str, allowed))}")


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises UserError naming the first bad field and its allowed values."""
  _one_of(config, "family", FAMILIES)
  _one_of(config, "dataset.name", data.DATASETS)
  for field in ("batch_size", "num_steps", "log_every", "eval_every", "checkpoint_every",
                "keep_checkpoints", "eval.num_examples", "eval.batch_size", "eval.iwae_k"):
    _positive_int(config, field)
  _require(isinstance(config.seed, int), f"seed: must be an integer, got {config.seed!r}")

  optim = config.optim
  _require(optim.learning_rate > 0, f"optim.learning_rate: must be > 0, got {optim.learning_rate!r}")
  for name in ("b1", "b2"):
    value = optim[name]
    _require(0 <= value < 1, f"optim.{name}: must be in [0, 1), got {value!r}")
  clip = optim.grad_clip_norm
  _require(clip is None or clip > 0, f"optim.grad_clip_norm: must be > 0 or None, got {clip!r}")

  if config.family == "vae":
    _validate_vae(config)


def _validate_vae(config) -> None:
  model = config.model
  _one_of(config, "model.arch", VAE_ARCHS)
  _one_of(config, "model.likelihood", vae_lib.LIKELIHOODS)
  _positive_int(config, "model.latent_dim")
  _require(model.beta >= 0, f"model.beta: must be >= 0, got {model.beta!r}")
  _require(all(isinstance(w, int) and w > 0 for w in model.hidden),
           f"model.hidden: must be positive integers, got {tuple(model.hidden)!r}")
  _require(not (model.binarize and model.likelihood != "bernoulli"),
           f"model.binarize: True needs model.likelihood='bernoulli', got {model.likelihood!r}")
  if model.arch == "conv":
    widths = tuple(model.conv_widths)
    _require(len(widths) > 0 and all(isinstance(w, int) and w > 0 for w in widths),
             f"model.conv_widths: must be one or more positive integers, got {widths!r}")
    height, width, _ = data.image_shape(config.dataset.name)
    most = min(vae_nets.max_conv_layers(height), vae_nets.max_conv_layers(width))
    _require(len(widths) <= most,
             f"model.conv_widths: {len(widths)} stride-2 layers cannot produce the"
             f" {height}x{width} images of dataset {config.dataset.name!r}; allowed: 1 to {most} layers")


def optimizer(learning_rate: float, b1: float, b2: float, grad_clip_norm: float | None) -> optax.GradientTransformation:
  """Adam, after global-norm clipping when `grad_clip_norm` is set."""
  adam = optax.adam(learning_rate, b1=b1, b2=b2)
  if grad_clip_norm is None:
    return adam
  return optax.chain(optax.clip_by_global_norm(grad_clip_norm), adam)


def family(config: ml_collections.ConfigDict):
  """The model family described by a validated config."""
  image_shape = data.image_shape(config.dataset.name)
  opt = optimizer(config.optim.learning_rate, config.optim.b1, config.optim.b2, config.optim.grad_clip_norm)
  model = config.model
  hidden = tuple(model.hidden)
  if model.arch == "conv":
    widths = tuple(model.conv_widths)
    encoder = vae_nets.ConvEncoder(model.latent_dim, widths, hidden)
    decoder = vae_nets.ConvDecoder(image_shape, widths, hidden)
  else:
    encoder = vae_nets.MLPEncoder(model.latent_dim, hidden)
    decoder = vae_nets.MLPDecoder(image_shape, hidden)
  return vae_lib.VAE(
      encoder=encoder, decoder=decoder, optimizer=opt, image_shape=image_shape,
      latent_dim=model.latent_dim, likelihood=model.likelihood, binarize=model.binarize,
      beta=model.beta, obs_logvar=model.obs_logvar)
