"""Gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN Decoders") as a Flax module.

The network of an autoregressive image model: logits at (i, j, c) that depend on the input only through the
values before (i, j, c) in raster order, with the channels of a pixel ordered R, G, B (c = 0, 1, 2).

Each layer has two stacks (the paper's figure 2), features F each, gated as tanh(a) * sigmoid(b) over the
two halves of 2F pre-activations:

- The vertical stack: a (k//2 + 1) x k convolution, padded so that output row i reads rows i - k//2 .. i and
  columns j - k//2 .. j + k//2; no mask, every channel. It sees the current row, so the horizontal stack reads
  it only shifted down one row (a 1x1 convolution of the vertical pre-activations at (i - 1, j)): rows < i.
- The horizontal stack: a 1 x (k//2 + 1) convolution over columns j - k//2 .. j of row i. Only its tap at
  column j (the current pixel) carries a channel mask. Residual connections through a 1x1 convolution, from
  the second layer on (the first changes the width from C to F, and its mask is A).

Original PixelCNN's masked k x k kernels leave a blind spot above and to the right that grows with depth;
here each stack's field is a full rectangle, and the two together leave none.

Channel masks. The input's C channels and every F-wide (or 2F-wide) feature map are split into G groups in
order (channel n of N in group n * G // N); G = C, so feature group c is the one that predicts channel c. At
the current pixel, an output of group g reads inputs of groups < g (mask A: the first layer, so channel c of a
pixel never sees itself) or <= g (mask B: the later horizontal convolutions, every 1x1 convolution of the
horizontal stack and the two of the head). Earlier pixels are read in full. Masked kernel entries stay
parameters, multiplied by 0 (nn.Conv's `mask`): their gradient is exactly zero.

Receptive field. With r1 = first_kernel_size // 2, r = kernel_size // 2 and R = r1 + (L - 1) r for L layers,
the output at (i, j) reads rows i - R - 1 .. i - 1 at columns j - R .. j + R (the vertical stack; one row
more than R because of the shift), row i at columns j - R .. j - 1, and the pixel's channels before c.
tests/test_pixelcnn_nets.py checks this set exactly, by the Jacobian.

The head: ReLU, 1x1 convolution (mask B), ReLU, 1x1 convolution (mask B) to C * out_features channels, each
channel's block in group c, returned as [B, H, W, C, out_features]: one logit for a Bernoulli (binary
digits), 256 for a per-channel softmax over intensities.

`per_pixel_features=True` takes G = 1: the whole pixel is one group, so mask A removes the current pixel from
the first layer and mask B is no mask. The output, [B, H, W, out_features], depends on every channel of the
earlier pixels and on nothing of the current one: what a head that models a pixel's channels together needs,
such as PixelCNN++'s discretized logistic mixture (Salimans et al. 2017), whose within-pixel dependence is
its own (linear in the earlier channels' values).

Conditioning (the paper's h, eq. 4): an optional embedding `cond_BxE` enters every layer of both stacks as a
bias-free linear map to the 2F pre-activations, so it shifts both halves of each gate. With no bias, a cond of
zeros is exactly no cond. Its projections are created when the module is initialised with a cond; a net
initialised without one has none, and cannot take one.
"""

import flax.linen as nn
from flax import struct
import jax
import jax.numpy as jnp
import numpy as np

from genjax.nets import convolution


def channel_groups(n: int, groups: int) -> np.ndarray:
  """[n]: the group of each of n channels split into `groups` contiguous equal groups, in order."""
  return np.arange(n) * groups // n


def group_mask(in_groups: np.ndarray, out_groups: np.ndarray, include_own: bool) -> np.ndarray:
  """[in, out] of 0 and 1: an output of group g reads inputs of groups < g (mask A) or <= g (`include_own`,
  mask B)."""
  i, o = np.asarray(in_groups)[:, None], np.asarray(out_groups)[None, :]
  return (i <= o if include_own else i < o).astype(np.float32)


def _gate(y: jax.Array) -> jax.Array:
  a, b = jnp.split(y, 2, axis=-1)
  return jnp.tanh(a) * nn.sigmoid(b)


def _down_shift(x_BxHxWxC: jax.Array) -> jax.Array:
  """Row i holds row i - 1 of the input (zeros in row 0)."""
  return jnp.pad(x_BxHxWxC, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :-1]


class GatedPixelCNN(nn.Module):
  """(x_BxHxWxC, cond_BxE=None) -> logits [B, H, W, C, out_features] ([B, H, W, out_features] with
  `per_pixel_features`). x is a float image (the caller scales it); see the module docstring.

  Attributes: features, F, each stack's width (a multiple of C unless per_pixel_features); num_layers, L;
  first_kernel_size, kernel_size: the (odd) k of the first layer and of the others (the paper's PixelCNN: 7
  and 3); out_features, per channel (per pixel with per_pixel_features); head_features, the head's hidden
  width (default: features; a multiple of C too).
  """

  features: int = 64
  num_layers: int = 8
  first_kernel_size: int = 7
  kernel_size: int = 3
  out_features: int = 256
  head_features: int | None = None
  per_pixel_features: bool = False

  def masks(self, channels: int) -> dict[str, np.ndarray]:
    """The kernel masks of a net on `channels`-channel images, by parameter name (the convolutions without one
    read every input): each layer's h_conv (mask A in the first, B later, at the current pixel's tap only), the
    residual h_out and the head's two (mask B). Shared by __call__ and the cached sampler."""
    groups = 1 if self.per_pixel_features else channels
    f, hf = self.features, self.head_features or self.features
    feature_groups = channel_groups(f, groups)
    gate_groups = np.tile(feature_groups, 2)  # the a and b halves of a gate in the same group
    masks = {}
    h_groups, width = channel_groups(channels, groups), channels
    for layer, k in enumerate(self.kernel_sizes()):
      r = k // 2
      h_mask = np.ones((1, r + 1, width, 2 * f), np.float32)
      h_mask[0, r] = group_mask(h_groups, gate_groups, include_own=layer > 0)  # the current pixel's tap
      masks[f"h_conv_{layer}"] = h_mask
      masks[f"h_out_{layer}"] = group_mask(feature_groups, feature_groups, include_own=True)[None, None]
      h_groups, width = feature_groups, f
    head_groups = channel_groups(hf, groups)
    masks["head_0"] = group_mask(feature_groups, head_groups, True)[None, None]
    out_groups = channel_groups(self.num_outputs(channels), groups)  # channel c's out_features in group c
    masks["head_1"] = group_mask(head_groups, out_groups, True)[None, None]
    return masks

  def kernel_sizes(self) -> list[int]:
    """k of each layer's convolutions."""
    return [self.first_kernel_size] + [self.kernel_size] * (self.num_layers - 1)

  def num_outputs(self, channels: int) -> int:
    """The head's output width on `channels`-channel images."""
    return self.out_features * (1 if self.per_pixel_features else channels)

  def check(self, channels: int) -> None:
    """Refuses hyper-parameters the net cannot be built with, in one line."""
    groups = 1 if self.per_pixel_features else channels
    f, hf = self.features, self.head_features or self.features
    for name, k in (("first_kernel_size", self.first_kernel_size), ("kernel_size", self.kernel_size)):
      if k < 1 or k % 2 == 0:
        raise ValueError(f"GatedPixelCNN: {name} must be odd and positive, got {k}")
    if self.num_layers < 1 or self.out_features < 1:
      raise ValueError(f"GatedPixelCNN: num_layers ({self.num_layers}) and out_features ({self.out_features}) "
                       "must be positive")
    if f % groups or hf % groups:
      raise ValueError(f"GatedPixelCNN: features ({f}) and head_features ({hf}) must be multiples of the "
                       f"{groups} channel groups of a {channels}-channel image")

  @nn.compact
  def __call__(self, x_BxHxWxC: jax.Array, cond_BxE: jax.Array | None = None) -> jax.Array:
    b, height, width, c = x_BxHxWxC.shape
    self.check(c)
    f, hf = self.features, self.head_features or self.features
    masks = {name: m.astype(x_BxHxWxC.dtype) for name, m in self.masks(c).items()}  # no float32 into bfloat16 products
    v = h = x_BxHxWxC
    for layer, k in enumerate(self.kernel_sizes()):
      r = k // 2
      v_pre = convolution.flax_conv(2 * f, (r + 1, k), padding=((r, 0), (r, r)), name=f"v_conv_{layer}")(v)
      h_pre = convolution.flax_conv(2 * f, (1, r + 1), padding=((0, 0), (r, 0)), mask=masks[f"h_conv_{layer}"],
                      name=f"h_conv_{layer}")(h)
      h_pre = h_pre + convolution.flax_conv(2 * f, (1, 1), name=f"v_to_h_{layer}")(_down_shift(v_pre))
      if cond_BxE is not None:
        v_pre = v_pre + nn.Dense(2 * f, use_bias=False, name=f"cond_v_{layer}")(cond_BxE)[:, None, None]
        h_pre = h_pre + nn.Dense(2 * f, use_bias=False, name=f"cond_h_{layer}")(cond_BxE)[:, None, None]
      v = _gate(v_pre)
      h_new = convolution.flax_conv(f, (1, 1), mask=masks[f"h_out_{layer}"], name=f"h_out_{layer}")(_gate(h_pre))
      h = h_new if layer == 0 else h + h_new

    y = convolution.flax_conv(hf, (1, 1), mask=masks["head_0"], name="head_0")(nn.relu(h))
    y = convolution.flax_conv(self.num_outputs(c), (1, 1), mask=masks["head_1"], name="head_1")(nn.relu(y))
    if self.per_pixel_features:
      return y
    return y.reshape(b, height, width, c, self.out_features)


# ------------------------------------------------------------------ sampling: the naive loop and the cached one
#
# Both fill a canvas position by position from `start` on, in raster order; a position is one (i, j, c) or, with
# per_pixel_features, one pixel (all of its channels drawn together). `draw(p, out)` gets the net's output at
# position p ([N, out_features]: the channel's outputs, or the whole pixel's with per_pixel_features) and
# returns its values ([N], or [N, C] for a pixel). Each is one jax.lax.fori_loop over the positions: n and
# `start` change the traced shapes and bounds only, never one compilation per pixel.
#
# Inpainting (`known`, bool broadcastable to the canvas [N, H, W, C], True = given): from `start` on, a known
# value is kept as it is and an unknown one is drawn from p(x_i | x_<i), the net's output on the canvas so far,
# whose earlier positions hold the given values where they are known and the drawn ones elsewhere. The order
# limits what this can condition on: a position reads only what comes before it in raster order, so a known
# value later in the order (the lower rim of a centre box, the right of a random pixel) shapes nothing drawn
# before it. It is exact for a mask that knows a raster prefix (the upper half: p(lower | upper), what `start`
# alone does, the same numbers) and conditions only on the earlier part of any other mask (a centre box, random
# pixels). With whole pixels (per_pixel_features) a pixel's channels are drawn together, so a pixel known in
# some channels keeps those and draws the others from the pixel's joint, not given the known ones: give such
# nets masks that are the same across a pixel's channels. `draw` is called at every position, known or not
# (its value discarded where known), so a position's draw depends on its key and position alone, whatever the
# mask. known=None is exactly the sampler without a mask.


def _conv(x, param, mask=None, padding="VALID"):
  """nn.Conv's arithmetic on a parameter dict: the kernel times its mask, the convolution, then the bias."""
  kernel = param["kernel"] if mask is None else param["kernel"] * mask.astype(param["kernel"].dtype)
  y = jax.lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return y + param["bias"]


def _position(p, width: int, per_pixel: int):
  """(i, j, c) of raster position p, with `per_pixel` positions per pixel (C, or 1 for whole pixels)."""
  return p // (width * per_pixel), (p // per_pixel) % width, p % per_pixel


def _write(canvas, i, j, c, value, whole_pixel: bool, known=None):
  """The canvas with position (i, j, c) (the whole pixel (i, j)) set to `value`, except where `known` (the
  canvas's shape) keeps the canvas's own value."""
  if known is not None:
    given, keep = (canvas[:, i, j], known[:, i, j]) if whole_pixel else (canvas[:, i, j, c], known[:, i, j, c])
    value = jnp.where(keep, given, value)
  return canvas.at[:, i, j].set(value) if whole_pixel else canvas.at[:, i, j, c].set(value)


def _known_mask(known, canvas):
  """`known` as bool of the canvas's shape (None stays None)."""
  return None if known is None else jnp.broadcast_to(jnp.asarray(known, bool), canvas.shape)


def _positions_per_pixel(net: GatedPixelCNN, channels: int) -> int:
  return 1 if net.per_pixel_features else channels


def complete_naive(net: GatedPixelCNN, params, canvas_NxHxWxC: jax.Array, draw, start=0,
                   cond_NxE: jax.Array | None = None, known=None) -> jax.Array:
  """The reference sampler: the whole net on the whole canvas for every position (`known`: the values kept, see
  the comment above)."""
  _, height, width, channels = canvas_NxHxWxC.shape
  per = _positions_per_pixel(net, channels)
  variables = {"params": params}
  known = _known_mask(known, canvas_NxHxWxC)

  def body(p, canvas):
    i, j, c = _position(p, width, per)
    out = net.apply(variables, canvas, cond_NxE)[:, i, j]
    if not net.per_pixel_features:
      out = out[:, c]
    return _write(canvas, i, j, c, draw(p, out).astype(canvas.dtype), net.per_pixel_features, known)

  return jax.lax.fori_loop(start, height * width * per, body, canvas_NxHxWxC)


class _Cache(struct.PyTreeNode):
  """What the cached sampler keeps between positions. Per layer l (r_l = k_l // 2):

  v_in[l]: [N, r_l + H, W, F] (l >= 1; layer 0 reads the canvas): the vertical stack's input rows, r_l rows of
    zero padding on top, the rows above the current one filled in;
  v_to_h[l]: [N, 1, W, 2F]: the vertical pre-activations of the row above the current one, through v_to_h;
  h_in[l]: [N, r_l + W, F] (l >= 1): the horizontal stack's input along the current row, r_l columns of zero
    padding on the left, the columns up to the current one filled in;
  cond_v[l], cond_h[l]: [N, 2F]: the conditioning biases (empty without a cond).
  """

  v_in: tuple
  v_to_h: tuple
  h_in: tuple
  cond_v: tuple
  cond_h: tuple


def _cache_init(net: GatedPixelCNN, params, canvas, cond, dtype) -> _Cache:
  n, height, width, _ = canvas.shape
  f, sizes = net.features, net.kernel_sizes()
  zeros = lambda *shape: jnp.zeros(shape, dtype)
  cond_v = cond_h = ()
  if cond is not None:  # nn.Dense(use_bias=False)'s product, as the net computes it
    cond_v = tuple(cond @ params[f"cond_v_{l}"]["kernel"] for l in range(net.num_layers))
    cond_h = tuple(cond @ params[f"cond_h_{l}"]["kernel"] for l in range(net.num_layers))
  return _Cache(v_in=(None,) + tuple(zeros(n, k // 2 + height, width, f) for k in sizes[1:]),
                v_to_h=tuple(zeros(n, 1, width, 2 * f) for _ in sizes),
                h_in=(None,) + tuple(zeros(n, k // 2 + width, f) for k in sizes[1:]),
                cond_v=cond_v, cond_h=cond_h)


def _cache_row(net: GatedPixelCNN, params, cache: _Cache, canvas, i) -> _Cache:
  """Row i begins: the vertical stack of row i - 1 (every row above i is final), once per row. Row 0 has none
  (the net's down shift reads zeros there); its v_in row is written from the empty canvas and overwritten when
  row 1 begins, before anything reads it."""
  above = jnp.maximum(i - 1, 0)
  v_in, v_to_h = list(cache.v_in), list(cache.v_to_h)
  canvas = canvas.astype(cache.v_to_h[0].dtype)  # what the net computes in
  for layer, k in enumerate(net.kernel_sizes()):
    r = k // 2
    source = jnp.pad(canvas, ((0, 0), (r, 0), (0, 0), (0, 0))) if layer == 0 else v_in[layer]
    rows = jax.lax.dynamic_slice_in_dim(source, above, r + 1, axis=1)  # rows above - r .. above
    v_pre = _conv(rows, params[f"v_conv_{layer}"], padding=((0, 0), (r, r)))  # [N, 1, W, 2F]
    v_to_h[layer] = _conv(jnp.where(i > 0, v_pre, 0.0), params[f"v_to_h_{layer}"])
    if cache.cond_v:
      v_pre = v_pre + cache.cond_v[layer][:, None, None]
    if layer + 1 < net.num_layers:
      r_next = net.kernel_size // 2
      v_in[layer + 1] = jax.lax.dynamic_update_slice_in_dim(v_in[layer + 1], _gate(v_pre), r_next + above, axis=1)
  return cache.replace(v_in=tuple(v_in), v_to_h=tuple(v_to_h))


def _cache_pixel(net: GatedPixelCNN, params, masks, cache: _Cache, canvas, i, j):
  """The horizontal stack and the head at pixel (i, j) of the current row, from the canvas as it is (the pixel's
  channels drawn so far): (cache, out [N, C, out_features] or [N, out_features])."""
  n, _, width, channels = canvas.shape
  h_in = list(cache.h_in)
  h = None
  for layer, k in enumerate(net.kernel_sizes()):
    r = k // 2
    if layer == 0:
      row = jax.lax.dynamic_index_in_dim(canvas, i, axis=1, keepdims=False).astype(cache.v_to_h[0].dtype)  # [N, W, C]
      source = jnp.pad(row, ((0, 0), (r, 0), (0, 0)))
    else:
      source = h_in[layer]
    columns = jax.lax.dynamic_slice_in_dim(source, j, r + 1, axis=1)[:, None]  # [N, 1, r + 1, F]: j - r .. j
    h_pre = _conv(columns, params[f"h_conv_{layer}"], masks[f"h_conv_{layer}"])
    h_pre = h_pre + jax.lax.dynamic_slice_in_dim(cache.v_to_h[layer], j, 1, axis=2)
    if cache.cond_h:
      h_pre = h_pre + cache.cond_h[layer][:, None, None]
    h_new = _conv(_gate(h_pre), params[f"h_out_{layer}"], masks[f"h_out_{layer}"])  # [N, 1, 1, F]
    h = h_new if layer == 0 else h + h_new
    if layer + 1 < net.num_layers:
      h_in[layer + 1] = jax.lax.dynamic_update_slice_in_dim(h_in[layer + 1], h[:, 0], net.kernel_size // 2 + j,
                                                             axis=1)
  y = _conv(nn.relu(h), params["head_0"], masks["head_0"])
  y = _conv(nn.relu(y), params["head_1"], masks["head_1"])[:, 0, 0]
  out = y if net.per_pixel_features else y.reshape(n, channels, net.out_features)
  return cache.replace(h_in=tuple(h_in)), out.astype(jnp.float32)


def complete_cached(net: GatedPixelCNN, params, canvas_NxHxWxC: jax.Array, draw, start=0,
                    cond_NxE: jax.Array | None = None, known=None, dtype=jnp.float32) -> jax.Array:
  """The sampler that computes only what a new position changes (Ramachandran et al. 2017's caching): the
  vertical stack once per row (its row above is final by then), the horizontal stack and the head once per
  position, over the kernel's columns of the current row. The same positions, outputs (to float rounding) and
  draws as complete_naive: the same key gives the same samples.

  A `start` inside the canvas first replays the rows above it and the columns before it, without drawing.
  `known`: the values kept, as complete_naive keeps them (the comment above). `dtype`: what the net computes in
  (`genjax.precision.compute_dtype`: a bfloat16 net's parameters and inputs are cast as its apply casts them;
  the canvas and the draws stay float32)."""
  _, height, width, channels = canvas_NxHxWxC.shape
  net.check(channels)
  known = _known_mask(known, canvas_NxHxWxC)
  per = _positions_per_pixel(net, channels)
  masks = net.masks(channels)
  canvas = canvas_NxHxWxC
  start = jnp.asarray(start)
  first_row, first_column, _ = _position(start, width, per)
  params = jax.tree.map(lambda a: a.astype(dtype), params)
  cache = _cache_init(net, params, canvas, None if cond_NxE is None else cond_NxE.astype(dtype), dtype)
  cache = jax.lax.fori_loop(0, first_row + 1, lambda i, c: _cache_row(net, params, c, canvas, i), cache)
  cache = jax.lax.fori_loop(0, first_column,
                            lambda j, c: _cache_pixel(net, params, masks, c, canvas, first_row, j)[0], cache)

  def body(p, carry):
    canvas, cache = carry
    i, j, c = _position(p, width, per)
    cache = jax.lax.cond((j == 0) & (c == 0) & (p > start), lambda: _cache_row(net, params, cache, canvas, i),
                         lambda: cache)
    cache, out = _cache_pixel(net, params, masks, cache, canvas, i, j)
    if not net.per_pixel_features:
      out = out[:, c]
    return _write(canvas, i, j, c, draw(p, out).astype(canvas.dtype), net.per_pixel_features, known), cache

  return jax.lax.fori_loop(start, height * width * per, body, (canvas, cache))[0]
