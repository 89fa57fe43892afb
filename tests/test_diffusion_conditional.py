"""The class-conditional diffusion model: the label embedding with its null label, labels dropped in training,
classifier-free guidance through the family's batched denoiser, and a small model that generates the class it
is asked for. The guidance math itself (the convention, the interval, the mean it moves on Gaussian data) is
proven in tests/test_diffusion_samplers.py; here, that the family computes it."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genjax import build
from genjax.nets import mlp_denoiser
from tests import conformance

NUM_CLASSES = 2


def _conditional(hidden=(16, 16), emb_dim=8, **fields):
  """The smoke 'mlp' diffusion model on 2-D points, conditioned on NUM_CLASSES classes (the points datasets
  have no labels, so the tests make their own)."""
  config = conformance.config_of("diffusion", "mlp")
  build.validate(config)
  fam = build.family(config)
  return dataclasses.replace(fam, net=mlp_denoiser.MLPDenoiser(hidden, emb_dim, num_classes=NUM_CLASSES),
                             num_classes=NUM_CLASSES, **fields)


def test_the_guided_denoiser_is_the_null_label_at_0_the_label_at_1_and_their_mix_elsewhere():
  fam = _conditional()
  params = fam.init(jax.random.key(0)).params
  z = jax.random.normal(jax.random.key(1), (6, 2))
  labels = jnp.asarray([0, 1, 0, 1, 1, 0], jnp.int32)
  alpha, sigma = jnp.float32(0.6), jnp.float32(0.8)
  cond = fam.denoise(params, z, alpha, sigma, labels)
  uncond = fam.denoise(params, z, alpha, sigma, jnp.full_like(labels, NUM_CLASSES))
  assert float(jnp.max(jnp.abs(cond - uncond))) > 1e-3  # the label matters, so the checks below can fail

  def guided(scale, interval=(0.0, jnp.inf)):
    return fam.guided_denoiser(params, labels, scale, interval)(z, alpha, sigma)

  np.testing.assert_allclose(guided(0.0), uncond, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(guided(1.0), cond, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(guided(2.5), uncond + 2.5 * (cond - uncond), rtol=1e-5, atol=1e-5)
  level = float(sigma / alpha)  # 1.333: guided inside (lo, hi], conditional outside
  np.testing.assert_allclose(guided(2.5, (level, 9.0)), cond, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(guided(2.5, (0.5, level)), uncond + 2.5 * (cond - uncond), rtol=1e-5, atol=1e-5)


def test_guidance_scale_and_interval_are_arrays_of_one_compiled_sampler():
  fam = _conditional(sample_steps=4)
  params = fam.init(jax.random.key(0)).params
  labels = jnp.arange(8, dtype=jnp.int32) % NUM_CLASSES
  traces = []

  @jax.jit
  def sample(scale, lo, hi):
    traces.append(1)
    return fam.sample(params, jax.random.key(2), 8, labels, guidance=scale, interval=(lo, hi))

  runs = [sample(jnp.float32(s), jnp.float32(lo), jnp.float32(hi))
          for s, lo, hi in ((1.0, 0.0, 80.0), (3.0, 0.0, 80.0), (3.0, 0.5, 2.0))]
  assert len(traces) == 1
  assert not np.allclose(runs[0], runs[1]) and not np.allclose(runs[1], runs[2])
  # The model's own scale of 1 skips the unconditional pass and gives the same samples as the guided path at 1.
  np.testing.assert_allclose(fam.sample(params, jax.random.key(2), 8, labels), runs[0],
                             rtol=1e-5, atol=1e-5)


def test_training_drops_each_label_with_its_probability_from_its_own_key():
  fam = _conditional()
  n = 20_000
  keys = jax.random.split(jax.random.key(3), n)
  labels = jnp.asarray(np.arange(n) % NUM_CLASSES, jnp.int32)
  got = np.asarray(fam.training_labels(labels, keys))
  dropped = got == NUM_CLASSES
  assert abs(dropped.mean() - 0.1) < 0.0065  # 3 standard deviations of a binomial share of 20,000
  np.testing.assert_array_equal(got[~dropped], np.asarray(labels)[~dropped])
  # An example's draw is its key's: the first 100 alone are dropped as within the 20,000.
  np.testing.assert_array_equal(np.asarray(fam.training_labels(labels[:100], keys[:100])), got[:100])
  none = dataclasses.replace(fam, label_dropout=0.0)
  np.testing.assert_array_equal(np.asarray(none.training_labels(labels, keys)), np.asarray(labels))


def test_a_model_trained_briefly_on_two_classes_generates_the_class_it_is_asked_for():
  """Class 0 at (-3, 0), class 1 at (3, 0) (standard deviation 0.3): the conditional samples of each class land
  on its side; the unconditional ones (guidance 0: the null label, learned from the dropped labels) on both."""
  fam = _conditional(hidden=(64, 64), emb_dim=16, optimizer=optax.adam(3e-3), sample_steps=20)
  state = fam.init(jax.random.key(0))
  step = jax.jit(fam.train_step)
  rng = np.random.default_rng(0)
  for i in range(600):
    labels = rng.integers(0, NUM_CLASSES, 128).astype(np.int32)
    points = np.stack([6.0 * labels - 3.0, np.zeros(128)], -1) + 0.3 * rng.standard_normal((128, 2))
    state, _ = step(state, {"image": points.astype(np.float32), "label": labels}, jax.random.key(i))
  params = fam.eval_params(state, jax.random.key(0), "raw")
  sample = jax.jit(fam.sample, static_argnums=2)
  for c, side in ((0, -1.0), (1, 1.0)):
    x = np.asarray(sample(params, jax.random.key(10 + c), 400, jnp.full((400,), c, jnp.int32)))
    assert np.mean(np.sign(x[:, 0]) == side) > 0.95, (c, np.mean(np.sign(x[:, 0]) == side))
  x = np.asarray(jax.jit(lambda p, k: fam.sample(p, k, 400, jnp.zeros((400,), jnp.int32), guidance=0.0))(
      params, jax.random.key(12)))
  assert 0.25 < np.mean(x[:, 0] > 0) < 0.75


def test_inpainting_keeps_the_known_pixels_and_draws_the_others_by_the_method_asked():
  """Through the family: the known coordinate is the given one bit for bit, the unknown one is drawn (given
  the label), and the two methods are the two samplers (RePaint at one pass is the replacement method)."""
  fam = _conditional(inpaint_steps=6, jump_length=2, jump_count=3)
  params = fam.init(jax.random.key(0)).params
  x = jax.random.normal(jax.random.key(1), (16, 2)) * 3.0
  known = jnp.broadcast_to(jnp.asarray([True, False]), x.shape)
  labels = jnp.arange(16, dtype=jnp.int32) % NUM_CLASSES
  key = jax.random.key(4)
  repaint = fam.inpaint(params, x, known, key, labels)
  replacement = fam.inpaint(params, x, known, key, labels, method="replacement")
  for out in (repaint, replacement):
    np.testing.assert_array_equal(np.asarray(out[:, 0]), np.asarray(x[:, 0]))
    assert np.all(np.asarray(out[:, 1]) != np.asarray(x[:, 1]))
  assert not np.allclose(repaint, replacement)
  one_pass = dataclasses.replace(fam, jump_count=1).inpaint(params, x, known, key, labels)
  np.testing.assert_array_equal(np.asarray(one_pass), np.asarray(replacement))
  assert not np.allclose(fam.inpaint(params, x, known, key, 1 - labels), repaint)
