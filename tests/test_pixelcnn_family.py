"""The pixelcnn family: its exact NLL is the sum of per-position conditionals, its naive sampler draws from them,
and its held-out digits are the VAE's."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax.models import pixelcnn as pixelcnn_lib
from genjax import random as grandom
from genjax.losses import pixelcnn
from genjax.models import vae as vae_lib
from genjax.nets import pixelcnn as pixelcnn_nets

SHAPE = (6, 5, 1)


def _family(temperature=1.0, shape=SHAPE):
  net = pixelcnn_nets.GatedPixelCNN(features=4, num_layers=2, first_kernel_size=3, kernel_size=3, out_features=1)
  return pixelcnn_lib.PixelCNN(net=net, optimizer=optax.adam(1e-3), image_shape=shape, temperature=temperature)


def _params(model, seed=0):
  """Random weights of scale 1 and zero biases: the past moves each logit by about 2.5 while the draws stay
  mixed (about 2/3 ones), so a sampler or an NLL that read the wrong past would show it."""
  params = model.init(jax.random.PRNGKey(seed)).params
  leaves, tree = jax.tree_util.tree_flatten_with_path(params)
  keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
  scale = lambda path: 0.0 if "bias" in jax.tree_util.keystr(path) else 1.0
  return jax.tree_util.tree_unflatten(tree, [scale(p) * jax.random.normal(k, x.shape)
                                             for k, (p, x) in zip(keys, leaves)])


def _constant_params(model, logit):
  """Zero weights and a head bias of `logit`: every position ~ Bernoulli(sigmoid(logit)) whatever came before."""
  params = jax.tree_util.tree_map(jnp.zeros_like, model.init(jax.random.PRNGKey(0)).params)
  params["head_1"]["bias"] = jnp.full_like(params["head_1"]["bias"], logit)
  return params


def _digits(n, shape=SHAPE, seed=3):
  return jax.random.randint(jax.random.PRNGKey(seed), (n, *shape), 0, 256).astype(jnp.uint8)


def _nll_one_position_at_a_time(model, params, x):
  """-sum_p log p(x_p | x_<p): position p's conditional from the net run on x with every position >= p zeroed
  (what the net has seen when it draws p), in float64."""
  height, width, channels = model.image_shape
  flat = np.asarray(x).reshape(x.shape[0], -1)
  total = np.zeros(x.shape[0])
  for p in range(flat.shape[1]):
    seen = flat.copy()
    seen[:, p:] = 0.0
    logits = np.asarray(model.logits(params, jnp.asarray(seen.reshape(x.shape))), np.float64)
    logit = logits.reshape(x.shape[0], -1)[:, p]
    value = flat[:, p]
    total -= value * logit - np.logaddexp(0.0, logit)
  return total


def test_the_exact_nll_of_evaluate_is_the_sum_of_conditionals_computed_one_position_at_a_time():
  model = _family()
  params = _params(model)
  images = _digits(4)
  key = jax.random.PRNGKey(7)
  got = np.asarray(model.evaluate(params, images, key)["nll"])
  want = _nll_one_position_at_a_time(model, params, model.held_out(images, key))
  np.testing.assert_allclose(got, want, rtol=1e-5)
  assert np.all(got > 0)


def test_the_nll_of_an_image_is_its_positions_summed_with_several_channels():
  model = _family(shape=(4, 3, 2))
  params = _params(model, seed=5)
  x = model.held_out(_digits(3, shape=(4, 3, 2)), jax.random.PRNGKey(2))
  np.testing.assert_allclose(np.asarray(model.nll(params, x)), _nll_one_position_at_a_time(model, params, x),
                             rtol=1e-5)


def test_evaluate_binarises_the_held_out_digits_as_the_vae_does():
  model = _family()
  images = _digits(5)
  key, offset = jax.random.PRNGKey(11), 40
  vae_keys = jax.vmap(jax.random.split)(jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, offset + jnp.arange(5)))
  vae = vae_lib.VAE(encoder=None, decoder=None, optimizer=None, image_shape=SHAPE)
  want = vae.observe(vae.scale(images), vae_keys[:, 0])  # the VAE's own helper and key derivation
  got = model.held_out(images, key, offset)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  assert set(np.unique(np.asarray(got))) <= {0.0, 1.0}


def test_the_sampler_draws_every_position_from_its_conditional():
  p = 0.3
  model = _family()
  params = _constant_params(model, np.log(p / (1 - p)))
  n = 400
  x = np.asarray(jax.jit(model.sample, static_argnums=2)(params, jax.random.PRNGKey(0), n))
  assert set(np.unique(x)) <= {0.0, 1.0}
  count = x.size
  assert abs(x.mean() - p) < 4 * np.sqrt(p * (1 - p) / count)
  per_position = x.mean(axis=0)  # each position too, not only on average
  assert np.all(np.abs(per_position - p) < 5 * np.sqrt(p * (1 - p) / n))


def test_the_temperature_sharpens_the_conditionals():
  p, temperature = 0.3, 0.5
  model = _family(temperature=temperature)
  logit = np.log(p / (1 - p))
  x = np.asarray(model.sample(_constant_params(model, logit), jax.random.PRNGKey(1), 400))
  q = 1 / (1 + np.exp(-logit / temperature))
  assert abs(x.mean() - q) < 4 * np.sqrt(q * (1 - q) / x.size)


def test_the_sampler_follows_the_conditionals_of_a_net_that_reads_the_past():
  """A net of random weights: each sampled position's conditional is the net's on the sample so far, so the
  sampled images' positions agree with a draw by hand, position by position, from the same uniforms."""
  model = _family()
  params = _params(model, seed=9)
  key, n = jax.random.PRNGKey(4), 8
  got = np.asarray(model.sample(params, key, n))
  np.testing.assert_array_equal(np.asarray(model.sample_naive(params, key, n)), got)
  canvas = np.zeros((n, *SHAPE), np.float32)
  flat = canvas.reshape(n, -1)
  for p in range(flat.shape[1]):
    logit = np.asarray(model.logits(params, jnp.asarray(flat.reshape(canvas.shape)))).reshape(n, -1)[:, p]
    u = np.array([jax.random.uniform(jax.random.fold_in(jax.random.fold_in(key, b), p), ()) for b in range(n)])
    flat[:, p] = (u < np.asarray(jax.nn.sigmoid(jnp.asarray(logit)))).astype(np.float32)
  np.testing.assert_array_equal(got, flat.reshape(canvas.shape))


def test_the_same_key_gives_the_same_samples_and_the_loop_is_traced_once_per_n():
  model = _family()
  params = _params(model)
  traces = []

  def sample(params, key, n):
    traces.append(n)
    return model.sample(params, key, n)

  compiled = jax.jit(sample, static_argnums=2)
  first = np.asarray(compiled(params, jax.random.PRNGKey(0), 8))
  for seed in (0, 1, 2):
    again = np.asarray(compiled(params, jax.random.PRNGKey(seed), 8))
  np.testing.assert_array_equal(first, np.asarray(compiled(params, jax.random.PRNGKey(0), 8)))
  assert not np.array_equal(first, again)
  assert traces == [8]
  # One fori_loop, not a loop unrolled per position: the net's convolutions appear once in the program.
  text = jax.jit(model.sample, static_argnums=2).lower(params, jax.random.PRNGKey(0), 8).as_text()
  assert text.count("convolution") < 40


def test_visuals_give_a_sample_grid_and_completions_that_keep_the_top_half():
  model = _family()
  params = _params(model)
  images = _digits(8)
  grids = model.visuals(params, jax.random.PRNGKey(0), images)
  assert grids["samples"].shape == (8, 8, *SHAPE) and grids["samples"].dtype == jnp.uint8
  completions = np.asarray(grids["completions"])
  assert completions.shape == (4, 8, *SHAPE)
  top = SHAPE[0] // 2
  for row in completions[1:]:
    np.testing.assert_array_equal(row[:, :top], completions[0][:, :top])


# ------------------------------------------------------------------ 8-bit likelihoods


def _eight_bit_family(likelihood, shape=(3, 3, 3)):
  out = pixelcnn_lib.out_features(likelihood, 2, shape[-1])
  net = pixelcnn_nets.GatedPixelCNN(features=6, num_layers=2, first_kernel_size=3, kernel_size=3, out_features=out,
                                    per_pixel_features=likelihood == "logistic_mixture")
  return pixelcnn_lib.PixelCNN(net=net, optimizer=optax.adam(1e-3), image_shape=shape, likelihood=likelihood,
                               num_mixtures=2)


def _log_prob_one_position_at_a_time(model, params, x):
  """sum_p log p(x_p | x_<p) in float64, position p's distribution from the net run on x with p and every later
  position zeroed; a position is a channel (softmax) or a whole pixel (mixture)."""
  b, height, width, channels = x.shape
  x = np.asarray(x)
  total = np.zeros(b)
  per_pixel = model.likelihood == "logistic_mixture"
  for i, j in np.ndindex(height, width):
    for c in range(1 if per_pixel else channels):
      seen = x.copy().reshape(b, height * width, channels)
      seen[:, i * width + j, c:] = 0.0
      seen[:, i * width + j + 1:] = 0.0
      out = model.outputs(params, jnp.asarray(seen.reshape(x.shape)))[:, i, j]
      if per_pixel:
        total += np.asarray(pixelcnn.discretized_mix_logistic_log_prob(jnp.asarray(x[:, i, j]), out), np.float64)
      else:
        v = np.round((x[:, i, j, c] + 1) * 127.5).astype(np.int32)
        total += np.asarray(pixelcnn.categorical_log_prob(jnp.asarray(v), out[:, c]), np.float64)
  return total


@pytest.mark.parametrize("likelihood", ["softmax", "logistic_mixture"])
def test_the_exact_nll_of_8_bit_images_is_the_sum_of_their_conditionals_and_bits_per_dim_its_scaling(likelihood):
  model = _eight_bit_family(likelihood)
  params = _params(model, seed=2)
  images = _digits(3, shape=model.image_shape)
  numbers = model.evaluate(params, images, jax.random.PRNGKey(0))
  want = -_log_prob_one_position_at_a_time(model, params, model.scale(images))
  np.testing.assert_allclose(np.asarray(numbers["nll"]), want, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(numbers["bits_per_dim"]), want / (27 * np.log(2)), rtol=1e-5)
  np.testing.assert_array_equal(np.asarray(model.unscale(model.scale(images))), np.asarray(images))


@pytest.mark.parametrize("likelihood", ["softmax", "logistic_mixture"])
def test_8_bit_samples_are_levels_and_the_cached_sampler_draws_the_naive_ones(likelihood):
  model = _eight_bit_family(likelihood)
  params = _params(model, seed=4)
  key = jax.random.PRNGKey(1)
  cached = np.asarray(model.sample(params, key, 4))
  np.testing.assert_array_equal(cached, np.asarray(model.sample_naive(params, key, 4)))
  levels = (cached + 1) * 127.5
  np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)
  assert len(np.unique(levels.round())) > 10  # spread over the levels, not one value


def test_a_net_that_does_not_fit_the_likelihood_is_refused_in_one_line():
  net = pixelcnn_nets.GatedPixelCNN(features=4, num_layers=1, out_features=1)
  with pytest.raises(ValueError, match="likelihood 'softmax' needs out_features=256"):
    pixelcnn_lib.PixelCNN(net=net, optimizer=optax.adam(1e-3), image_shape=SHAPE, likelihood="softmax")


# ------------------------------------------------------------------ completion


def test_completions_keep_the_upper_half_of_the_held_out_digits_and_draw_the_lower_from_their_own_keys():
  model = _family(shape=(8, 5, 1))
  params = _params(model, seed=1)
  images = _digits(6, shape=(8, 5, 1))
  key = jax.random.PRNGKey(2)
  x, completed = model.completions(params, images, key, offset=3)
  np.testing.assert_array_equal(np.asarray(x), np.asarray(model.held_out(images, key, offset=3)))
  np.testing.assert_array_equal(np.asarray(completed[:, :4]), np.asarray(x[:, :4]))  # the given half kept
  assert not np.array_equal(np.asarray(completed[:, 4:]), np.asarray(x[:, 4:]))  # the other drawn
  own = model.complete_lower_half(params, grandom.held_out_keys(key, 6, 3)[:, 1], x)
  np.testing.assert_array_equal(np.asarray(completed), np.asarray(own))
  # Example i's completion is its own: the same in a batch of 2 at offset 7 as in the batch of 6 at offset 3.
  _, pair = model.completions(params, images[4:], key, offset=7)
  np.testing.assert_array_equal(np.asarray(pair), np.asarray(completed[4:]))


@pytest.mark.parametrize("name", ["pixelcnn_mnist5k", "pixelcnn_mnist", "pixelcnn_cifar10"])
def test_the_configs_validate_and_build_the_net_they_describe(name):
  import importlib
  from genjax import build
  config = importlib.import_module(f"configs.{name}").get_config()
  build.validate(config)
  model = build.family(config)
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0)).params
  channels = model.image_shape[-1]
  last = params["head_1"]["kernel"].shape[-1]
  if config.model.likelihood == "logistic_mixture":
    assert last == pixelcnn.mixture_num_params(config.model.num_mixtures, channels) and model.net.per_pixel_features
  else:
    assert last == channels * pixelcnn_lib.out_features(config.model.likelihood, 0, channels)
  assert len([k for k in params if k.startswith("v_conv_")]) == config.model.num_layers


def test_the_loop_and_sample_py_report_the_completions_kept_label(tmp_path):
  import json
  from genjax import sample_lib, train_lib
  from tests.helpers import tiny_config
  config = tiny_config("pixelcnn_mnist5k", num_steps=2, eval_every=2, **{
      "eval.quality_samples": 0, "model.features": 4, "model.num_layers": 2, "model.first_kernel_size": 3})
  workdir = str(tmp_path / "run")
  train_lib.train_and_evaluate(config, workdir)
  with open(f"{workdir}/metrics.jsonl", encoding="utf-8") as f:
    rows = [json.loads(line) for line in f if '"eval"' in line]
  assert 0.0 <= rows[-1]["completion_kept"] <= 1.0
  result = sample_lib.sample_and_evaluate(workdir, quality_samples=0, num_examples=32)
  assert ("completion keeps label", "", result["completion_kept"]) in result["report"]["held_out"]
  assert result["completion_kept"] * 32 == round(result["completion_kept"] * 32)  # a share of the 32 digits
