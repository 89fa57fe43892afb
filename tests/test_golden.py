"""Golden steps: a few training steps of each family, from its config, pinned to the numbers genjax gave.

Refactoring the families (configs, registry, shared math) must not change
what they compute: these pin the path config -> family -> jit(train_step)
on real batches and keys, for the conv VAE, a DCGAN and the MLP GAN on a 2-D
mixture. `GENJAX_WRITE_GOLDEN=1 pytest tests/test_golden.py` rewrites the
fixture, only when a change of numbers is intended (say so in the commit).
"""

import json
import os

import jax
import numpy as np
import pytest

from genjax import build, data, parallel
from genjax.errors import UserError
from genjax import random as grandom
from genjax.models import family as family_lib
from tests.helpers import tiny_config

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "steps.json")
STEPS = 3

RUNS = {
    "vae_conv": ("vae_mnist5k", {}),
    # The classic recipe (configs/dcgan_mnist5k.py's classic(): BatchNorm D, the non-saturating loss), which the
    # DCGAN configs of the TFDS datasets keep, and configs/dcgan_mnist5k.py's own (SNGAN's D, the hinge loss).
    "dcgan": ("dcgan_mnist5k", {"model.g_width": 4, "model.d_width": 4, "model.latent_dim": 8,
                                "gan.loss": "non_saturating", "model.d_norm": "batch", "model.d_spectral_norm": False,
                                "optim.learning_rate": 2e-4}),
    "dcgan_sn": ("dcgan_mnist5k", {"model.g_width": 4, "model.d_width": 4, "model.latent_dim": 8}),
    "gan_ring8": ("gan_ring8", {"model.g_hidden": (16, 16), "model.d_hidden": (16, 16), "model.latent_dim": 4}),
}


def _leaf_name(path) -> str:
  return jax.tree_util.keystr(path)


def _run(name: str) -> dict:
  config_name, overrides = RUNS[name]
  config = tiny_config(config_name, **overrides)
  build.validate(config)
  family = build.family(config)
  keys = grandom.streams(config.seed)
  par = parallel.DataParallel("jit", 1)
  state = par.init(family.init, keys.init)
  step_fn = jax.jit(family.train_step)
  batches = data.train_iterator(config.dataset.name, batch_size=config.batch_size,
                                seed=grandom.integer_seed(keys.data))
  losses = []
  for s in range(STEPS):
    state, metrics = step_fn(state, next(batches), grandom.step_key(keys.train, s))
    losses.append(float(metrics["loss"]))
  params = family.eval_params(state, grandom.eval_params_key(keys.eval), family_lib.get(config.family).weights[0])
  leaves = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    x = np.asarray(leaf, np.float64)
    leaves[_leaf_name(path)] = [float(np.abs(x).sum()), float((x * x).sum()), float(x.ravel()[0])]
  return {"losses": losses, "eval_params": leaves}


@pytest.fixture(scope="module")
def golden() -> dict:
  if os.environ.get("GENJAX_WRITE_GOLDEN"):
    os.makedirs(os.path.dirname(FIXTURE), exist_ok=True)
    with open(FIXTURE, "w", encoding="utf-8") as f:
      json.dump({name: _run(name) for name in RUNS}, f, indent=1, sort_keys=True)
  with open(FIXTURE, encoding="utf-8") as f:
    return json.load(f)


@pytest.mark.parametrize("name", list(RUNS))
def test_steps_match_the_golden_numbers(golden, name):
  want, got = golden[name], _run(name)
  np.testing.assert_allclose(got["losses"], want["losses"], rtol=1e-5)
  assert sorted(got["eval_params"]) == sorted(want["eval_params"])
  for leaf, numbers in want["eval_params"].items():
    np.testing.assert_allclose(got["eval_params"][leaf], numbers, rtol=1e-5, atol=1e-7, err_msg=leaf)


# config.json files as train.py wrote them on 2026-11-29 (before per-family config blocks): workdirs trained then
# must still resume and sample, whatever shape the configs take later.
WORKDIRS = os.path.join(os.path.dirname(FIXTURE), "workdirs")


@pytest.mark.parametrize("name", sorted(os.listdir(WORKDIRS)))
def test_a_config_json_written_before_still_loads_resumes_and_builds_the_same_model(name):
  import importlib  # pylint: disable=g-import-not-at-top
  from genjax import workdir  # pylint: disable=g-import-not-at-top
  saved = workdir.load_config(os.path.join(WORKDIRS, name))
  module = importlib.import_module(f"configs.{name}")
  today = module.get_config()
  if name == "dcgan_mnist5k":
    # Its recipe changed (issue 28: SNGAN's D, the hinge loss, a larger step, smaller batches); the weights of a
    # run of the classic recipe are not those of today's config, so its resume is refused, naming a field, and
    # the classic recipe lives on as classic(), which resumes it as below.
    with pytest.raises(UserError, match=r"^[a-z_.]+: this workdir was trained with "):
      workdir.check_resumable(os.path.join(WORKDIRS, name), today)
    today = module.classic()
  # Today's config resumes it where it trains the same weights. The GANs then had no EMA warm-up (issue 18):
  # with today's GAN configs a resume is refused, naming the first field of what the weights were trained with
  # that differs; with that run's values it goes on.
  if saved.family == "gan":
    with pytest.raises(UserError, match=r"^gan\.ema_(rampup|warmup): this workdir was trained with "):
      workdir.check_resumable(os.path.join(WORKDIRS, name), today)
    today.gan.ema_warmup, today.gan.ema_rampup = "none", saved.gan.ema_rampup
  workdir.check_resumable(os.path.join(WORKDIRS, name), today)
  key = jax.random.key(0)
  shapes_then = jax.eval_shape(build.family(saved).init, key)
  shapes_now = jax.eval_shape(build.family(today).init, key)
  assert jax.tree_util.tree_structure(shapes_then) == jax.tree_util.tree_structure(shapes_now)
  assert jax.tree.leaves(shapes_then) == jax.tree.leaves(shapes_now)
  if saved.family == "gan":  # trained before the EMA's warm-up (issue 18): loads with the constant decay it had
    assert saved.gan.ema_warmup == "none"
    assert module.get_config().gan.ema_warmup != "none"
