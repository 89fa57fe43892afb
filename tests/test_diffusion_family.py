"""The diffusion family beyond the conformance suite: its noise input, its EMA, dropout per example, the
path its pictures show, and a tiny model that learns (held-out bound falls)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import build, data
from genjax import random as grandom
from genjax.models import diffusion as diffusion_lib
from genjax.models import family as family_lib
from tests import conformance


def _family(arch, **overrides):
  config = conformance.config_of("diffusion", arch, **overrides)
  build.validate(config)
  return config, build.family(config)


@pytest.mark.parametrize("schedule", diffusion_lib.SCHEDULES)
def test_the_noise_input_at_a_schedule_step_is_its_index(schedule):
  _, fam = _family("mlp", **{"diffusion.schedule": schedule})
  alphas, sigmas = diffusion_lib.vp_schedule(schedule, 1000)
  t = np.asarray([0, 1, 10, 250, 500, 998, 999])
  c = fam.noise_input(jnp.asarray(alphas[t], jnp.float32), jnp.asarray(sigmas[t], jnp.float32))
  np.testing.assert_allclose(c, t, atol=0.02)
  # Between two steps, in between.
  mid = fam.noise_input(jnp.float32(np.sqrt(0.5 * (alphas[400]**2 + alphas[401]**2))),
                        jnp.float32(np.sqrt(0.5 * (sigmas[400]**2 + sigmas[401]**2))))
  assert 400.0 < float(mid) < 401.0


@pytest.mark.parametrize("objective", diffusion_lib.OBJECTIVES)
def test_the_denoiser_inverts_the_parametrisation_the_net_was_trained_on(objective):
  # With the net's output replaced by the true eps / v / F of a known (x, eps), denoise gives back x.
  _, fam = _family("mlp", **{"diffusion.objective": objective})
  x = jax.random.normal(jax.random.key(0), (5, 2))
  eps = jax.random.normal(jax.random.key(1), (5, 2))
  alpha, sigma = jnp.float32(0.6), jnp.float32(0.8)
  z = alpha * x + sigma * eps
  if objective == "eps":
    out = eps
  elif objective == "v":
    out = alpha * eps - sigma * x
  else:  # D = c_skip y + c_out F = x with y = z / alpha, s = sigma / alpha
    s = sigma / alpha
    total = s**2 + fam.sigma_data**2
    c_skip, c_out = fam.sigma_data**2 / total, s * fam.sigma_data / jnp.sqrt(total)
    out = (x - c_skip * z / alpha) / c_out

  class Oracle:
    dropout = 0.0

    def apply(self, variables, x_in, c, train):
      del variables, x_in, c, train
      return out

  oracle = dataclasses.replace(fam, net=Oracle())
  np.testing.assert_allclose(oracle.denoise(None, z, alpha, sigma), x, atol=1e-5)


def test_edm_trains_on_the_levels_of_p_mean_and_p_std():
  # EDM's training levels are ln(sigma) ~ N(p_mean, p_std^2); the net sees them as c = 250 ln(sigma).
  _, fam = _family("mlp", **{"diffusion.objective": "edm", "diffusion.p_mean": 1.5, "diffusion.p_std": 0.5})
  seen = []

  class Recorder:
    dropout = 0.0

    def apply(self, variables, x_in, c, train):
      del variables, train
      seen.append(c)
      return jnp.zeros_like(x_in)

  dataclasses.replace(fam, net=Recorder()).loss(None, jnp.zeros((8192, 2)), jax.random.key(0))
  ln_sigma = np.asarray(seen[0]) / 250.0
  assert abs(ln_sigma.mean() - 1.5) < 0.02 and abs(ln_sigma.std() - 0.5) < 0.02, (ln_sigma.mean(), ln_sigma.std())


def test_sampling_and_evaluation_use_the_ema_weights_and_raw_the_trained_ones():
  config, fam = _family("mlp")
  assert family_lib.get("diffusion").weights[0] == "ema"  # the loop's and sample.py's default
  state = jax.jit(fam.init)(jax.random.key(0))
  state = state.replace(ema_params=jax.tree.map(lambda p: p + 0.3, state.params))  # set them apart
  key = jax.random.key(1)
  ema_params = fam.eval_params(state, key, "ema")
  raw_params = fam.eval_params(state, key, "raw")
  for got, want in ((ema_params, state.ema_params), (raw_params, state.params)):
    jax.tree.map(np.testing.assert_array_equal, got, want)
  ema_x, raw_x = fam.sample(ema_params, key, 16), fam.sample(raw_params, key, 16)
  assert not np.allclose(ema_x, raw_x)


def test_the_ema_follows_its_rule():
  config, fam = _family("mlp", **{"diffusion.ema_decay": 0.9, "diffusion.ema_warmup": "none"})
  state = jax.jit(fam.init)(jax.random.key(0))
  batch = conformance.batches(config, 1)[0]
  new, _ = jax.jit(fam.train_step)(state, batch, jax.random.key(2))
  jax.tree.map(lambda e, p0, p1: np.testing.assert_allclose(e, 0.9 * p0 + 0.1 * p1, rtol=1e-5, atol=1e-7),
               new.ema_params, state.params, new.params)


def test_dropout_is_drawn_per_example_so_a_sharded_batch_gives_the_whole_batchs_loss():
  # Two shards of 4 with the pmap axis emulated by vmap: each example's dropout, level and noise come from
  # its global index, so the mean of the shards' losses is the whole batch's.
  _, fam = _family("unet", **{"model.dropout": 0.5, "model.ch_mult": (1,), "model.attn_resolutions": ()})
  x = fam.scale(jnp.asarray(data.eval_images("mnist5k", 8)))
  state = jax.jit(fam.init)(jax.random.key(0))
  key = jax.random.key(3)
  whole, _ = jax.jit(fam.loss)(state.params, x, key)
  sharded = dataclasses.replace(fam, axis_name="devices")
  parts = jax.jit(jax.vmap(lambda xs: sharded.loss(state.params, xs, key)[0], axis_name="devices"))(
      x.reshape(2, 4, *x.shape[1:]))
  np.testing.assert_allclose(jnp.mean(parts), whole, rtol=1e-5)
  # and dropout is on: another key for the same levels and noise changes the loss
  no_dropout = dataclasses.replace(fam, net=fam.net.clone(dropout=0.0))
  assert abs(float(jax.jit(no_dropout.loss)(state.params, x, key)[0]) - float(whole)) > 1e-4


@pytest.mark.parametrize("sampler", diffusion_lib.SAMPLERS)
def test_the_path_ends_at_the_sample_and_its_last_prediction(sampler):
  _, fam = _family("mlp", **{"diffusion.sampler": sampler, "diffusion.sample_steps": 6})
  params = jax.jit(fam.init)(jax.random.key(0)).params
  key = jax.random.key(4)
  x = fam.sample(params, key, 256)
  final, (states, predictions) = fam.sample(params, key, 256, path=True)
  assert states.shape == predictions.shape == (6, 256, 2)
  np.testing.assert_allclose(final, x, atol=1e-6)
  np.testing.assert_allclose(states[-1], x, atol=1e-6)
  # The last step lands on the denoiser's prediction (Heun's last step is an Euler step to sigma = 0).
  np.testing.assert_allclose(predictions[-1], x, atol=1e-5)
  assert not np.allclose(predictions[0], x, atol=1e-2)


def test_a_tiny_model_learns_its_held_out_bound_falls():
  config, fam = _family("mlp", **{"model.hidden": (64, 64), "model.emb_dim": 16, "diffusion.eval_steps": 20,
                                  "optim.learning_rate": 3e-3})
  keys = grandom.streams(0)
  held_out = jnp.asarray(data.eval_images("ring8", 256))
  evaluate = jax.jit(fam.evaluate)
  step = jax.jit(fam.train_step)
  state = jax.jit(fam.init)(keys.init)
  before = float(jnp.mean(evaluate(state.params, held_out, keys.eval)["bpd"]))
  for s, batch in enumerate(conformance.batches(config.copy_and_resolve_references(), 300)):
    state, _ = step(state, batch, grandom.step_key(keys.train, s))
  after = float(jnp.mean(evaluate(state.params, held_out, keys.eval)["bpd"]))
  assert after < before - 1.0, (before, after)


@pytest.mark.parametrize("name", ["diffusion_ring8", "diffusion_grid25", "diffusion_mnist5k", "diffusion_cifar10"])
def test_every_diffusion_config_validates_and_builds(name):
  import importlib  # pylint: disable=g-import-not-at-top
  config = importlib.import_module(f"configs.{name}").get_config()
  build.validate(config)
  fam = build.family(config)
  assert isinstance(fam, diffusion_lib.Diffusion) and fam.objective == config.diffusion.objective
