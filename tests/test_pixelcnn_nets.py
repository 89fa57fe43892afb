"""The Gated PixelCNN: causality read from exact Jacobians (what each output depends on is exactly the values
before it within the documented receptive field, with no blind spot, and nothing of other examples), masks A
and B read from the kernels' gradients, the conditioning bias, and the heads' shapes, dtypes and parameter counts.

The Jacobians are float32: a masked dependence is a product with a weight of exactly 0, so its entry is
exactly 0 (on the CPU, whose convolutions sum the products directly), and any other entry is generically not."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.nets import pixelcnn
from genjax.nets.pixelcnn import GatedPixelCNN


def _expected(shape, radius: int, per_pixel: bool) -> np.ndarray:
  """[B, H, W, C_out, B, H, W, C] bool: which inputs an output should read (module docstring's receptive field)."""
  b, h, w, c = shape
  out = np.zeros((b, h, w, 1 if per_pixel else c, b, h, w, c), bool)
  for n, i, j, co, i2, j2, ci in np.ndindex(b, h, w, out.shape[3], h, w, c):
    above = i - radius - 1 <= i2 < i and abs(j2 - j) <= radius
    left = i2 == i and j - radius <= j2 < j
    own = i2 == i and j2 == j and not per_pixel and ci < co
    out[n, i, j, co, n, i2, j2, ci] = above or left or own
  return out


def _net_and_jacobian(net, shape, cond_dim: int | None = None):
  x = jax.random.normal(jax.random.key(1), shape)
  cond = None if cond_dim is None else jax.random.normal(jax.random.key(2), (shape[0], cond_dim))
  variables = net.init(jax.random.key(0), x, cond)
  return np.asarray(jax.jacrev(lambda x: net.apply(variables, x, cond))(x))


# (shape, layers, first kernel, kernel, conditioned): R = first // 2 + (layers - 1) * (kernel // 2) stays below
# the image, so that both the zeros beyond the field and the non-zeros at its edges are checked.
CASES = [((2, 7, 7, 1), 2, 5, 3, None), ((2, 5, 5, 3), 2, 3, 3, 4), ((1, 7, 6, 3), 3, 3, 1, None)]


@pytest.mark.parametrize("shape,layers,first,kernel,cond_dim", CASES, ids=["7x7x1", "5x5x3-cond", "7x6x3-k1"])
def test_each_output_reads_exactly_the_values_before_it_within_the_receptive_field(shape, layers, first, kernel,
                                                                                     cond_dim):
  net = GatedPixelCNN(features=48, num_layers=layers, first_kernel_size=first, kernel_size=kernel, out_features=2)
  jac = _net_and_jacobian(net, shape, cond_dim)  # [B, H, W, C, K, B, H, W, C]
  radius = first // 2 + (layers - 1) * (kernel // 2)
  expected = _expected(shape, radius, per_pixel=False)
  for k in range(2):
    reads = jac[:, :, :, :, k] != 0
    assert np.array_equal(reads, expected), (
        f"logit {k}: {int(np.sum(reads & ~expected))} dependences that must not be there, "
        f"{int(np.sum(~reads & expected))} missing")
  # Named, though the comparison above covers them: channel c never reads itself, nor a later channel of its
  # pixel, nor the pixel to its right; and the up-right corner of the field (where stacked masked k x k
  # convolutions leave a blind spot, van den Oord et al. 2016, figure 1) is read.
  b, i, j = 0, shape[1] - 1, 1
  for c in range(shape[3]):
    assert not jac[b, i, j, c, :, b, i, j, c:].any() and not jac[b, i, j, c, :, b, i, j + 1].any()
    assert jac[b, i, j, c, :, b, i - 1, j + radius].all() and jac[b, i, j, c, :, b, i - radius - 1, j + radius].all()
  if shape[0] > 1:
    assert not jac[0, ..., 1, :, :, :].any() and not jac[1, ..., 0, :, :, :].any()  # examples are independent


def test_per_pixel_features_read_every_channel_of_earlier_pixels_and_nothing_of_the_current_one():
  shape = (1, 5, 5, 3)
  net = GatedPixelCNN(features=16, num_layers=2, first_kernel_size=3, kernel_size=3, out_features=5,
                      per_pixel_features=True)
  jac = _net_and_jacobian(net, shape)  # [B, H, W, F, B, H, W, C]
  assert jac.shape == (1, 5, 5, 5, 1, 5, 5, 3)
  expected = _expected(shape, 2, per_pixel=True)[:, :, :, 0]
  for k in range(5):
    assert np.array_equal(jac[:, :, :, k] != 0, expected)


def test_the_current_pixels_tap_reads_earlier_groups_in_the_first_layer_and_its_own_group_too_later():
  # The Jacobians cannot tell mask B from mask A after the first layer: the residual path carries a group's own
  # channel past a layer that drops it. The kernels' gradients can: a masked entry's is exactly 0, a live one's
  # generically not. Groups of F = 6 features (and of 2F gate inputs) over C = 3 channels: f * 3 // 6.
  shape = (2, 5, 5, 3)
  net = GatedPixelCNN(features=6, num_layers=3, first_kernel_size=3, kernel_size=3, out_features=2)
  x = jax.random.normal(jax.random.key(1), shape)
  variables = net.init(jax.random.key(0), x)
  weights = jax.random.normal(jax.random.key(2), (*shape, 2))
  grads = jax.grad(lambda p: jnp.sum(net.apply({"params": p}, x) * weights))(variables["params"])
  gate_groups = np.tile(np.arange(6) // 2, 2)
  for layer, in_groups in ((0, np.arange(3)), (1, np.arange(6) // 2), (2, np.arange(6) // 2)):
    live = np.asarray(grads[f"h_conv_{layer}"]["kernel"]) != 0  # [1, 2, in, 2F]: taps j - 1, j
    assert live[0, 0].all()  # the pixel to the left: every channel
    own = in_groups[:, None] <= gate_groups[None, :] if layer else in_groups[:, None] < gate_groups[None, :]
    assert np.array_equal(live[0, 1], own), f"layer {layer}"


def test_conditioning_biases_both_stacks_per_example_and_zeros_are_no_cond():
  # What is tested: with the net initialised with a cond, (1) a different cond changes every logit, the first
  # pixel's included (it reads no input, so only the cond can reach it); (2) it changes only the examples whose
  # cond changed; (3) a cond of zeros gives exactly the outputs of cond=None (bias-free projections); (4) a net
  # initialised without a cond has no cond parameters.
  shape = (2, 5, 5, 3)
  net = GatedPixelCNN(features=12, num_layers=2, first_kernel_size=3, kernel_size=3, out_features=4)
  x = jax.random.normal(jax.random.key(1), shape)
  cond = jax.random.normal(jax.random.key(2), (2, 6))
  variables = net.init(jax.random.key(0), x, cond)
  apply = jax.jit(net.apply)
  y = np.asarray(apply(variables, x, cond))
  other = cond.at[1].set(jax.random.normal(jax.random.key(3), (6,)))
  y_other = np.asarray(apply(variables, x, other))
  np.testing.assert_array_equal(y_other[0], y[0])
  assert (y_other[1] != y[1]).all()
  assert np.abs(y_other[1, 0, 0] - y[1, 0, 0]).min() > 1e-6
  # Both compiled the same way: XLA may fuse an eager and a jitted program's sums in different orders.
  y_none = np.asarray(apply(variables, x, None))
  np.testing.assert_array_equal(y_none, np.asarray(apply(variables, x, jnp.zeros_like(cond))))
  assert not (y_none == y).any()
  names = set(net.init(jax.random.key(0), x)["params"])
  assert {n for n in variables["params"] if n.startswith("cond_")} == {f"cond_{s}_{l}" for s in "vh" for l in (0, 1)}
  assert not any(n.startswith("cond_") for n in names)


def _count(variables) -> int:
  return sum(math.prod(p.shape) for p in jax.tree.leaves(variables["params"]))


@pytest.mark.parametrize("channels,k", [(1, 1), (1, 256), (3, 1), (3, 256)])
def test_shapes_dtypes_and_parameter_counts(channels, k):
  f, layers, first, kernel = 6, 3, 7, 3
  net = GatedPixelCNN(features=f, num_layers=layers, first_kernel_size=first, kernel_size=kernel, out_features=k)
  x = jax.random.uniform(jax.random.key(1), (2, 8, 6, channels))
  variables = net.init(jax.random.key(0), x)
  y = net.apply(variables, x)
  assert y.shape == (2, 8, 6, channels, k) and y.dtype == jnp.float32 and np.isfinite(np.asarray(y)).all()
  # Per layer: the vertical (k//2 + 1) x k and horizontal 1 x (k//2 + 1) convolutions to 2F, the 1x1 link
  # 2F -> 2F, the 1x1 residual F -> F (each with biases); then the head F -> F -> C * K.
  count = 0
  for layer in range(layers):
    size, width = (first, channels) if layer == 0 else (kernel, f)
    r = size // 2
    count += (r + 1) * size * width * 2 * f + (r + 1) * width * 2 * f + 4 * f * f + f * f + 7 * f
  count += f * f + f + f * channels * k + channels * k
  assert _count(variables) == count


def test_per_pixel_output_shape():
  net = GatedPixelCNN(features=4, num_layers=2, first_kernel_size=3, kernel_size=3, out_features=30,
                      per_pixel_features=True)
  x = jnp.zeros((2, 4, 4, 3))
  assert net.apply(net.init(jax.random.key(0), x), x).shape == (2, 4, 4, 30)


@pytest.mark.parametrize("fields,message", [({"kernel_size": 4}, "kernel_size must be odd"),
                                            ({"first_kernel_size": 0}, "first_kernel_size must be odd"),
                                            ({"features": 8}, "multiples of the 3 channel groups"),
                                            ({"head_features": 4}, "multiples of the 3 channel groups"),
                                            ({"num_layers": 0}, "must be positive")])
def test_bad_hyper_parameters_are_refused(fields, message):
  net = GatedPixelCNN(**{"features": 6, **fields})
  with pytest.raises(ValueError, match=message):
    net.init(jax.random.key(0), jnp.zeros((1, 4, 4, 3)))


# ------------------------------------------------------------------ the cached sampler against the naive one


def _random_params(net, x, cond, seed):
  """Weights of scale 0.7 and biases of 0.3: every output moves with the past, and draws stay mixed."""
  params = net.init(jax.random.key(seed), x, cond)["params"]
  leaves, tree = jax.tree_util.tree_flatten_with_path(params)
  keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
  scale = lambda path: 0.3 if "bias" in jax.tree_util.keystr(path) else 0.7
  return jax.tree_util.tree_unflatten(tree, [scale(p) * jax.random.normal(k, x.shape)
                                             for k, (p, x) in zip(keys, leaves)])


# (shape, net options, cond dim, starts): one channel, three channels drawn one by one, whole pixels, a cond; the
# starts include one mid-row and, with channels, one mid-pixel.
SAMPLER_CASES = [((5, 6, 1), {}, None, (0, 9)), ((4, 5, 3), {}, None, (0, 22)),
                 ((4, 5, 3), {"per_pixel_features": True, "out_features": 3}, None, (0, 7)),
                 ((5, 4, 1), {}, 3, (0, 6))]


@pytest.mark.parametrize("shape,extra,cond_dim,starts", SAMPLER_CASES, ids=["x1", "x3", "per-pixel", "cond"])
def test_the_cached_sampler_draws_what_the_naive_one_draws_bit_for_bit_and_keeps_the_given_positions(
    shape, extra, cond_dim, starts):
  options = {"features": 6 if shape[-1] == 3 else 4, "num_layers": 3, "first_kernel_size": 5, "kernel_size": 3,
             "out_features": 1, **extra}
  net = pixelcnn.GatedPixelCNN(**options)
  n, channels = 4, shape[-1]
  given = jax.random.bernoulli(jax.random.key(5), 0.5, (n, *shape)).astype(jnp.float32)
  cond = None if cond_dim is None else jax.random.normal(jax.random.key(6), (n, cond_dim))
  per_pixel = net.per_pixel_features
  for seed in (0, 1):
    params = _random_params(net, given, cond, seed)
    key = jax.random.key(10 + seed)

    def draw(p, out):  # Bernoulli of the first output (of each channel's for a whole pixel)
      u = jax.random.uniform(jax.random.fold_in(key, p), (n, channels) if per_pixel else (n,))
      return (u < jax.nn.sigmoid(out[:, :channels] if per_pixel else out[:, 0])).astype(jnp.float32)

    for start in starts:
      naive = jax.jit(lambda g: pixelcnn.complete_naive(net, params, g, draw, start, cond))(given)
      cached = jax.jit(lambda g: pixelcnn.complete_cached(net, params, g, draw, start, cond))(given)
      np.testing.assert_array_equal(np.asarray(cached), np.asarray(naive))
      flat_given, flat = np.asarray(given).reshape(n, -1), np.asarray(cached).reshape(n, -1)
      before = start * (channels if per_pixel else 1)  # the positions before `start`, as flat values
      np.testing.assert_array_equal(flat[:, :before], flat_given[:, :before])
      assert 0.1 < flat[:, before:].mean() < 0.9 and not np.array_equal(flat[:, before:], flat_given[:, before:])


def test_the_cached_sampler_reads_no_value_at_or_after_the_position_it_draws():
  """The values of the canvas from `start` on are never read before they are drawn: two canvases that differ
  only there complete identically."""
  net = pixelcnn.GatedPixelCNN(features=4, num_layers=2, first_kernel_size=3, kernel_size=3, out_features=1)
  shape, start = (2, 4, 5, 1), 8
  a = jax.random.bernoulli(jax.random.key(0), 0.5, shape).astype(jnp.float32)
  b = a.reshape(2, -1).at[:, start:].set(1.0 - a.reshape(2, -1)[:, start:]).reshape(shape)
  params = _random_params(net, a, None, 3)
  key = jax.random.key(4)
  draw = lambda p, out: (jax.random.uniform(jax.random.fold_in(key, p), (2,)) < jax.nn.sigmoid(out[:, 0])).astype(
      jnp.float32)
  np.testing.assert_array_equal(np.asarray(pixelcnn.complete_cached(net, params, a, draw, start)),
                                np.asarray(pixelcnn.complete_cached(net, params, b, draw, start)))


# ------------------------------------------------------------------ inpainting: a `known` mask


def _bernoulli_draw(key, n, channels, per_pixel):
  def draw(p, out):  # Bernoulli of the first output (of each channel's for a whole pixel)
    u = jax.random.uniform(jax.random.fold_in(key, p), (n, channels) if per_pixel else (n,))
    return (u < jax.nn.sigmoid(out[:, :channels] if per_pixel else out[:, 0])).astype(jnp.float32)
  return draw


@pytest.mark.parametrize("shape,extra,cond_dim,starts", SAMPLER_CASES, ids=["x1", "x3", "per-pixel", "cond"])
def test_with_a_random_mask_the_cached_sampler_draws_what_the_naive_one_draws_and_keeps_every_known_value(
    shape, extra, cond_dim, starts):
  """A mask of its own per example (random pixels; whole pixels for a net that draws whole pixels, per channel
  otherwise): the known values come back bit for bit, the unknown ones are drawn, and the two samplers agree bit
  for bit, from 0 and from a `start` inside the canvas (known then only counts from `start` on)."""
  options = {"features": 6 if shape[-1] == 3 else 4, "num_layers": 3, "first_kernel_size": 5, "kernel_size": 3,
             "out_features": 1, **extra}
  net = pixelcnn.GatedPixelCNN(**options)
  n, channels = 4, shape[-1]
  per_pixel = net.per_pixel_features
  given = jax.random.bernoulli(jax.random.key(5), 0.5, (n, *shape)).astype(jnp.float32)
  cond = None if cond_dim is None else jax.random.normal(jax.random.key(6), (n, cond_dim))
  mask_shape = (n, *shape[:2], 1) if per_pixel else (n, *shape)
  known = jax.random.bernoulli(jax.random.key(7), 0.5, mask_shape)
  params = _random_params(net, given, cond, 2)
  draw = _bernoulli_draw(jax.random.key(12), n, channels, per_pixel)
  for start in starts:
    naive = jax.jit(lambda g: pixelcnn.complete_naive(net, params, g, draw, start, cond, known))(given)
    cached = jax.jit(lambda g: pixelcnn.complete_cached(net, params, g, draw, start, cond, known))(given)
    np.testing.assert_array_equal(np.asarray(cached), np.asarray(naive))
    out, mask = np.asarray(cached), np.broadcast_to(np.asarray(known), given.shape)
    before = np.arange(given[0].size).reshape(shape) < start * (channels if per_pixel else 1)
    kept = mask | before  # the positions before `start` are kept too
    np.testing.assert_array_equal(out[kept], np.asarray(given)[kept])
    free = out[~kept]
    assert free.size > 20 and 0.1 < free.mean() < 0.9 and not np.array_equal(free, np.asarray(given)[~kept])
    # Without the mask the same keys draw other values at the known positions: the mask is what kept them.
    plain = np.asarray(pixelcnn.complete_cached(net, params, given, draw, start, cond))
    assert not np.array_equal(plain[kept], np.asarray(given)[kept])


@pytest.mark.parametrize("shape,extra,cond_dim,starts", SAMPLER_CASES, ids=["x1", "x3", "per-pixel", "cond"])
def test_a_mask_that_knows_everything_before_p_completes_as_start_p_does(shape, extra, cond_dim, starts):
  """known = the positions before p, drawn from 0, gives exactly `start=p` (the lower-half completion's way):
  the mask's numbers and the start's are one, in both samplers; an all-known mask returns the canvas."""
  options = {"features": 6 if shape[-1] == 3 else 4, "num_layers": 3, "first_kernel_size": 5, "kernel_size": 3,
             "out_features": 1, **extra}
  net = pixelcnn.GatedPixelCNN(**options)
  n, channels = 3, shape[-1]
  per_pixel = net.per_pixel_features
  given = jax.random.bernoulli(jax.random.key(8), 0.5, (n, *shape)).astype(jnp.float32)
  cond = None if cond_dim is None else jax.random.normal(jax.random.key(6), (n, cond_dim))
  params = _random_params(net, given, cond, 4)
  draw = _bernoulli_draw(jax.random.key(13), n, channels, per_pixel)
  p = starts[1]
  prefix = (np.arange(given[0].size).reshape(shape) // (channels if per_pixel else 1)) < p
  for complete in (pixelcnn.complete_cached, pixelcnn.complete_naive):
    by_start = np.asarray(complete(net, params, given, draw, p, cond))
    by_mask = np.asarray(complete(net, params, given, draw, 0, cond, prefix))
    np.testing.assert_array_equal(by_mask, by_start)
    assert not np.array_equal(by_mask, np.asarray(given))
    everything = np.asarray(complete(net, params, given, draw, 0, cond, np.ones(shape, bool)))
    np.testing.assert_array_equal(everything, np.asarray(given))
