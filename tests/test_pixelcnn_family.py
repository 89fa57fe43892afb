"""The pixelcnn family: its exact NLL is the sum of per-position conditionals, its naive sampler draws from them,
and its held-out digits are the VAE's."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax.models import pixelcnn as pixelcnn_lib
from genjax import masks
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


def test_held_out_inpainting_keeps_the_upper_half_of_the_digits_and_draws_the_lower_from_their_own_keys():
  model = _family(shape=(8, 5, 1))
  params = _params(model, seed=1)
  images = _digits(6, shape=(8, 5, 1))
  key = jax.random.PRNGKey(2)
  lower = masks.known("lower_half", images.shape)
  x, completed = model.inpaint_held_out(params, images, lower, key, offset=3)
  np.testing.assert_array_equal(np.asarray(x), np.asarray(model.held_out(images, key, offset=3)))
  np.testing.assert_array_equal(np.asarray(completed[:, :4]), np.asarray(x[:, :4]))  # the given half kept
  assert not np.array_equal(np.asarray(completed[:, 4:]), np.asarray(x[:, 4:]))  # the other drawn
  own = model.complete_lower_half(params, grandom.held_out_keys(key, 6, 3)[:, 1], x)
  np.testing.assert_array_equal(np.asarray(completed), np.asarray(own))
  # Example i's completion is its own: the same in a batch of 2 at offset 7 as in the batch of 6 at offset 3.
  _, pair = model.inpaint_held_out(params, images[4:], lower[4:], key, offset=7)
  np.testing.assert_array_equal(np.asarray(pair), np.asarray(completed[4:]))


@pytest.mark.parametrize("name", ["pixelcnn_mnist5k", "pixelcnn_mnist5k_class", "pixelcnn_mnist",
                                  "pixelcnn_cifar10"])
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
  # The class projections (a row per class, in both stacks of every layer) exactly where the config conditions.
  cond = sorted(k for k in params if k.startswith("cond_"))
  assert model.num_classes == config.model.num_classes
  if model.num_classes:
    assert cond == sorted(f"cond_{s}_{l}" for s in "vh" for l in range(config.model.num_layers))
    assert params["cond_h_0"]["kernel"].shape == (model.num_classes, 2 * config.model.features)
  else:
    assert not cond


def test_the_loop_and_sample_py_report_the_inpaintings_kept_labels(tmp_path):
  import json
  from genjax import sample_lib, train_lib
  from tests.helpers import tiny_config
  config = tiny_config("pixelcnn_mnist5k", num_steps=2, eval_every=2, **{
      "eval.quality_samples": 0, "model.features": 4, "model.num_layers": 2, "model.first_kernel_size": 3})
  workdir = str(tmp_path / "run")
  train_lib.train_and_evaluate(config, workdir)
  with open(f"{workdir}/metrics.jsonl", encoding="utf-8") as f:
    rows = [json.loads(line) for line in f if '"eval"' in line]
  assert 0.0 <= rows[-1]["inpaint_kept_lower_half"] <= 1.0 and rows[-1]["inpaint_fid_centre_box"] > 0
  result = sample_lib.sample_and_evaluate(workdir, quality_samples=0, num_examples=32)
  for mask in masks.EVAL_MASKS:
    kept = result[f"inpaint_kept_{mask}"]
    assert (f"inpainted {mask.replace('_', ' ')}: label kept", "", kept) in result["report"]["held_out"]
    assert kept * 32 == round(kept * 32)  # a share of the 32 digits


# ------------------------------------------------------------------ class conditioning (van den Oord et al., eq. 4)


def _class_family(num_classes=3, shape=SHAPE, features=4, num_layers=2, **kw):
  net = pixelcnn_nets.GatedPixelCNN(features=features, num_layers=num_layers, first_kernel_size=3, kernel_size=3,
                                    out_features=1)
  return pixelcnn_lib.PixelCNN(net=net, optimizer=optax.adam(1e-3), image_shape=shape, num_classes=num_classes,
                               **kw)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def test_the_class_enters_both_halves_of_each_gate_as_its_row_of_v():
  """Eq. 4 by value: tanh(W_f x + V_f^T h) * sigmoid(W_g x + V_g^T h) with h = one_hot(c), so V^T h is row c of
  V. A one-layer net whose convolutions read nothing (kernels 0, biases random) but the residual 1x1 and the
  head: every logit is head(relu(h_out(gate(b + V[c])))), b = the h_conv and v_to_h biases, the same at every
  position, worked out here in float64 for each example's class."""
  f, k = 4, 3
  model = _class_family(num_classes=k, features=f, num_layers=1)
  params = jax.tree_util.tree_map(np.asarray, model.init(jax.random.PRNGKey(0)).params)
  rng = np.random.default_rng(0)
  for name, leaf in params.items():
    for field in leaf:
      keep = name in ("h_out_0", "head_0", "head_1", "cond_h_0", "cond_v_0") or field == "bias"
      leaf[field] = rng.normal(size=leaf[field].shape).astype(np.float32) if keep else 0 * leaf[field]
  labels = np.array([2, 0, 1, 2])
  x = np.asarray(_digits(4)) / 255.0
  got = np.asarray(model.logits(params, jnp.asarray(x, jnp.float32), jnp.asarray(labels)), np.float64)
  p64 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
  pre = p64["h_conv_0"]["bias"] + p64["v_to_h_0"]["bias"] + p64["cond_h_0"]["kernel"][labels]  # [B, 2F]
  gate = np.tanh(pre[:, :f]) * _sigmoid(pre[:, f:])
  h = gate @ p64["h_out_0"]["kernel"][0, 0] + p64["h_out_0"]["bias"]
  y = np.maximum(h, 0) @ p64["head_0"]["kernel"][0, 0] + p64["head_0"]["bias"]
  want = np.maximum(y, 0) @ p64["head_1"]["kernel"][0, 0] + p64["head_1"]["bias"]  # [B, 1]
  np.testing.assert_allclose(got, np.broadcast_to(want[:, None, None, :], got.shape), rtol=1e-5, atol=1e-6)
  assert np.ptp(want) > 0.1  # the classes' logits differ: the check sees the row chosen


def test_the_conditional_model_reads_each_examples_own_label_and_with_no_class_rows_is_the_unconditional_one():
  model = _class_family()
  uncond = _family()
  params = _params(model, seed=3)
  x = model.held_out(_digits(4), jax.random.PRNGKey(1))
  labels = jnp.array([0, 1, 2, 1])
  nll = np.asarray(model.nll(params, x, labels))
  other = np.asarray(model.nll(params, x, labels.at[2].set(0)))
  assert other[2] != nll[2] and np.array_equal(np.delete(other, 2), np.delete(nll, 2))
  # The class rows V at 0: every class is the unconditional net of the other weights, bit for bit (both jitted
  # alike, so XLA sums in one order).
  zero_rows = {n: ({"kernel": jnp.zeros_like(v["kernel"])} if n.startswith("cond_") else v) for n, v in params.items()}
  plain = {n: v for n, v in params.items() if not n.startswith("cond_")}
  assert set(plain) == set(uncond.init(jax.random.PRNGKey(0)).params)  # the unconditional tree, plus the rows
  want = np.asarray(jax.jit(uncond.nll)(plain, x))
  for c in range(3):
    np.testing.assert_array_equal(np.asarray(jax.jit(model.nll)(zero_rows, x, jnp.full((4,), c))), want)
  with pytest.raises(ValueError, match="needs the class of every example"):
    model.nll(params, x)


def test_a_conditional_models_sample_draws_uniform_classes_without_labels_and_the_naive_sampler_agrees():
  model = _class_family()
  params = _params(model, seed=4)
  key = jax.random.PRNGKey(5)
  labels = jnp.array([2, 0, 1, 1, 0])
  cached = np.asarray(model.sample(params, key, 5, labels))
  np.testing.assert_array_equal(np.asarray(model.sample_naive(params, key, 5, labels)), cached)
  assert not np.array_equal(np.asarray(model.sample(params, key, 5, jnp.zeros(5, jnp.int32))), cached)
  # No labels: classes from family.labels_or_uniform on a key split off, the images from the rest.
  label_key, image_key = jax.random.split(key)
  drawn = pixelcnn_lib.family.labels_or_uniform(label_key, 5, 3, None)
  np.testing.assert_array_equal(np.asarray(model.sample(params, key, 5)),
                                np.asarray(model.sample(params, image_key, 5, drawn)))


def test_the_class_posterior_of_the_whole_image_is_the_softmax_of_its_log_likelihoods():
  """log p(c | x) = log p(x | c) - logsumexp_c' log p(x | c') under a uniform prior; of the first rows (a raster
  prefix), the same with the log-probabilities of those rows alone (the one-position-at-a-time sum)."""
  model = _class_family(num_classes=3)
  params = _params(model, seed=6)
  x = model.held_out(_digits(4), jax.random.PRNGKey(2))
  log_lik = np.stack([-np.asarray(model.nll(params, x, jnp.full((4,), c)), np.float64) for c in range(3)], -1)
  want = log_lik - np.logaddexp.reduce(log_lik, axis=-1, keepdims=True)
  np.testing.assert_allclose(np.asarray(model.class_log_posterior(params, x, SHAPE[0])), want, rtol=1e-5, atol=1e-5)
  rows = 2
  prefix = np.stack([np.asarray(model.log_probs(params, x, jnp.full((4,), c)), np.float64)[:, :rows].sum((1, 2, 3))
                     for c in range(3)], -1)
  want = prefix - np.logaddexp.reduce(prefix, axis=-1, keepdims=True)
  np.testing.assert_allclose(np.asarray(model.class_log_posterior(params, x, rows)), want, rtol=1e-5, atol=1e-5)
  assert np.ptp(want) > 0.1


# Two classes far apart, on 6 x 6 binary images: the upper half on (0) or the lower half on (1), each pixel
# flipped with probability 0.05. A sample is of the class whose pattern it is nearer to.
TWO = np.stack([np.repeat([1, 0], 3), np.repeat([0, 1], 3)])[:, :, None, None] * np.ones((2, 6, 6, 1), np.uint8)


def _two_class_batch(key, n):
  label_key, flip_key = jax.random.split(key)
  labels = jax.random.randint(label_key, (n,), 0, 2)
  flip = jax.random.bernoulli(flip_key, 0.05, (n, 6, 6, 1))
  images = jnp.where(flip, 1 - jnp.asarray(TWO)[labels], jnp.asarray(TWO)[labels]) * 255
  return {"image": images.astype(jnp.uint8), "label": labels.astype(jnp.int32)}


def _nearest_class(x):
  distance = np.abs(np.asarray(x)[:, None] - TWO[None]).reshape(x.shape[0], 2, -1).sum(-1)
  return np.argmin(distance, axis=-1)


@pytest.fixture(scope="module")
def two_class_model():
  """A conditional PixelCNN trained 150 steps (batch 32, Adam 1e-2) on the two classes: about 3 s."""
  net = pixelcnn_nets.GatedPixelCNN(features=8, num_layers=2, first_kernel_size=3, kernel_size=3, out_features=1)
  model = pixelcnn_lib.PixelCNN(net=net, optimizer=optax.adam(1e-2), image_shape=(6, 6, 1), num_classes=2)
  state = model.init(jax.random.PRNGKey(0))
  data_key, train_key = jax.random.split(jax.random.PRNGKey(100))
  step = jax.jit(lambda state, s: model.train_step(state, _two_class_batch(jax.random.fold_in(data_key, s), 32),
                                                   jax.random.fold_in(train_key, s)))
  losses = []
  for s in range(150):
    state, metrics = step(state, s)
    losses.append(metrics["loss"])
  return model, state.params, float(np.mean(losses[-20:]))


def test_a_model_trained_briefly_on_two_classes_draws_each_class_when_asked(two_class_model):
  model, params, loss = two_class_model
  # The data's entropy is 36 H(0.05) = 7.1 nats per image; a model blind to the class pays log 2 more at least.
  assert loss < 12.0
  for c in (0, 1):
    x = model.sample(params, jax.random.PRNGKey(10 + c), 64, jnp.full((64,), c, jnp.int32))
    share = np.mean(_nearest_class(x) == c)
    assert share >= 0.95, f"class {c}: {share:.2f} of the samples (chance: 0.5)"
  # The held-out NLL given the true class beats the one given the other class by far.
  batch = _two_class_batch(jax.random.PRNGKey(7), 64)
  right = model.evaluate(params, batch["image"], jax.random.PRNGKey(8), labels=batch["label"])["nll"]
  wrong = model.evaluate(params, batch["image"], jax.random.PRNGKey(8), labels=1 - batch["label"])["nll"]
  assert float(jnp.mean(wrong - right)) > 5.0


def test_completions_without_labels_draw_the_class_the_upper_half_shows(two_class_model):
  """Completions given no labels draw the class from p(c | upper half), which on these classes is all but
  certain, so the lower half drawn is the class's."""
  model, params, _ = two_class_model
  batch = _two_class_batch(jax.random.PRNGKey(9), 64)
  keys = grandom.held_out_keys(jax.random.PRNGKey(3), 64, 0)
  x = model.held_out(batch["image"], jax.random.PRNGKey(3))
  completed = model.complete_lower_half(params, keys[:, 1], x)
  posterior = np.exp(np.asarray(model.class_log_posterior(params, x, 3)))
  assert np.mean(posterior[np.arange(64), np.asarray(batch["label"])] > 0.99) > 0.9
  np.testing.assert_array_equal(np.asarray(completed[:, :3]), np.asarray(x[:, :3]))
  assert np.mean(_nearest_class(completed) == np.asarray(batch["label"])) >= 0.9
  # Given the other class instead, the lower halves move far towards it (class 1's lower half is on, class 0's
  # off), though their first rows still read the upper half: the labels given reach the completion.
  wrong = 1 - np.asarray(batch["label"])
  _, misled = model.inpaint_held_out(params, batch["image"], masks.known("lower_half", batch["image"].shape),
                                     jax.random.PRNGKey(3), labels=jnp.asarray(wrong))
  towards = lambda images: np.mean(np.abs(np.asarray(images[:, 3:]).reshape(64, -1).mean(-1) - wrong))
  assert towards(misled) < towards(completed) - 0.4


def test_visuals_of_a_conditional_model_add_a_row_of_samples_per_class(two_class_model):
  model, params, _ = two_class_model
  batch = _two_class_batch(jax.random.PRNGKey(11), 8)
  grids = model.visuals(params, jax.random.PRNGKey(0), batch["image"], batch["label"])
  assert set(grids) == {"samples", "completions", "samples_by_class"}
  by_class = np.asarray(grids["samples_by_class"])
  assert by_class.shape == (2, 8, 6, 6, 1) and by_class.dtype == np.uint8
  for c in (0, 1):
    assert np.mean(_nearest_class(by_class[c] / 255) == c) >= 7 / 8
  # The 8x8 samples: column j of class labels[j]; the completions given the pictured examples' classes.
  columns = _nearest_class(np.asarray(grids["samples"]).reshape(64, 6, 6, 1) / 255).reshape(8, 8)
  assert np.mean(columns == np.asarray(batch["label"])[None]) >= 0.9
  completions = np.asarray(grids["completions"])
  assert np.mean(_nearest_class(completions[1:].reshape(24, 6, 6, 1) / 255) == np.tile(batch["label"], 3)) >= 0.9
  # The completions are drawn given the labels passed (the model's posterior would pick the upper half's class):
  # given the other class, their lower halves move far towards it.
  wrong = np.tile(1 - np.asarray(batch["label"]), 3)
  misled = np.asarray(model.visuals(params, jax.random.PRNGKey(0), batch["image"], 1 - batch["label"])["completions"])
  towards = lambda grid: np.mean(np.abs(grid[1:, :, 3:].reshape(24, -1).mean(-1) / 255 - wrong))
  assert towards(misled) < towards(completions) - 0.4


# ------------------------------------------------------------------ inpainting any mask


def _masks(shape):
  """The issue's masks, bool [H, W, C] (random pixels: [4, H, W, C], one per example), True = known."""
  height, width, channels = shape
  rows, cols = np.arange(height)[:, None, None], np.arange(width)[None, :, None]
  box = ~((height // 4 <= rows) & (rows < height - height // 4) & (width // 4 <= cols) & (cols < width - width // 4))
  return {"centre_box": np.broadcast_to(box, shape), "lower_half": np.broadcast_to(rows < height // 2, shape),
          "random_pixels": np.asarray(jax.random.bernoulli(jax.random.PRNGKey(4), 0.5, (4, height, width, 1))
                                      ).repeat(channels, -1)}


@pytest.mark.parametrize("likelihood", ["bernoulli", "softmax", "logistic_mixture"])
def test_inpainting_keeps_every_known_value_bit_for_bit_and_draws_the_rest_cached_as_naive(likelihood):
  model = _family(shape=(8, 6, 1)) if likelihood == "bernoulli" else _eight_bit_family(likelihood, (4, 4, 3))
  params = _params(model, seed=7)
  x = model.held_out(_digits(4, shape=model.image_shape), jax.random.PRNGKey(1))
  key = jax.random.PRNGKey(2)
  for name, known in _masks(model.image_shape).items():
    out = np.asarray(model.inpaint(params, x, known, key))
    np.testing.assert_array_equal(out, np.asarray(model.inpaint(params, x, known, key, cached=False)), err_msg=name)
    mask = np.broadcast_to(known, x.shape)
    assert out[mask].tobytes() == np.asarray(x)[mask].tobytes(), name
    assert not np.array_equal(out[~mask], np.asarray(x)[~mask]), name


def test_inpainting_the_lower_half_is_the_completion_and_a_mask_only_conditions_on_what_comes_before():
  model = _family(shape=(8, 6, 1))
  params = _params(model, seed=8)
  x = model.held_out(_digits(5, shape=(8, 6, 1)), jax.random.PRNGKey(1))
  key = jax.random.PRNGKey(3)
  masks = _masks(model.image_shape)
  want = model.complete_lower_half(params, grandom.example_keys(key, 5), x)
  np.testing.assert_array_equal(np.asarray(model.inpaint(params, x, masks["lower_half"], key)), np.asarray(want))
  # The order's limit: what is known after the box (its lower rim) never reaches the box's interior, and an
  # unknown position reads only the known ones before it.
  box = masks["centre_box"]
  later = np.asarray(x).copy()
  later[:, 6:] = 1 - later[:, 6:]  # rows after the box's last row (rows 2..5)
  a, b = (np.asarray(model.inpaint(params, jnp.asarray(v), box, key)) for v in (np.asarray(x), later))
  np.testing.assert_array_equal(a[:, :6], b[:, :6])
  np.testing.assert_array_equal(b[:, 6:], later[:, 6:])


def test_a_conditional_models_inpainting_draws_each_example_given_its_label(two_class_model):
  """The upper half of class 0's pattern is known; asked for class 1, the model fills the lower half as class 1
  would (on), class 0's off: the label reaches `inpaint`, and the known half stays."""
  model, params, _ = two_class_model
  x = jnp.asarray(np.repeat(TWO[:1], 8, 0), jnp.float32)
  known = np.arange(6)[:, None, None] < 3
  labels = jnp.array([0, 1] * 4)
  out = np.asarray(model.inpaint(params, x, np.broadcast_to(known, (6, 6, 1)), jax.random.PRNGKey(0), labels))
  np.testing.assert_array_equal(out[:, :3], np.asarray(x)[:, :3])
  lower = out[:, 3:].reshape(8, -1).mean(-1)
  assert (lower[1::2] > 0.7).all() and (lower[0::2] < 0.3).all()


def test_under_bfloat16_the_cached_sampler_draws_what_the_bfloat16_net_does():
  """The cached sampler runs the net's parameters itself; under precision bfloat16 it casts them and its inputs as
  the net's own apply does (genjax.precision.Cast), so it draws from the conditionals the model was trained and
  scored on: the naive sampler's samples, bit for bit (with float32 conditionals 19 of these 384 values differed)."""
  from genjax import precision  # pylint: disable=g-import-not-at-top
  net = pixelcnn_nets.GatedPixelCNN(features=6, num_layers=2, first_kernel_size=3, kernel_size=3, out_features=256)
  model = pixelcnn_lib.PixelCNN(net=precision.wrap(net, "bfloat16"), optimizer=optax.adam(1e-3),
                                image_shape=(4, 4, 3), likelihood="softmax")
  params = jax.tree.map(lambda p: jax.random.normal(jax.random.key(p.size), p.shape),
                        model.init(jax.random.key(0)).params)
  cached = model.sample(params, jax.random.key(3), 8, cached=True)
  naive = model.sample(params, jax.random.key(3), 8, cached=False)
  np.testing.assert_array_equal(np.asarray(cached), np.asarray(naive))
  assert len(np.unique(np.asarray(cached))) > 50  # the draws are spread, not a constant that would match anyway
