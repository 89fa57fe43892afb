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
import jax
import jax.numpy as jnp
import numpy as np


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

  @nn.compact
  def __call__(self, x_BxHxWxC: jax.Array, cond_BxE: jax.Array | None = None) -> jax.Array:
    b, height, width, c = x_BxHxWxC.shape
    groups = 1 if self.per_pixel_features else c
    f, hf = self.features, self.head_features or self.features
    for name, k in (("first_kernel_size", self.first_kernel_size), ("kernel_size", self.kernel_size)):
      if k < 1 or k % 2 == 0:
        raise ValueError(f"GatedPixelCNN: {name} must be odd and positive, got {k}")
    if self.num_layers < 1 or self.out_features < 1:
      raise ValueError(f"GatedPixelCNN: num_layers ({self.num_layers}) and out_features ({self.out_features}) "
                       "must be positive")
    if f % groups or hf % groups:
      raise ValueError(f"GatedPixelCNN: features ({f}) and head_features ({hf}) must be multiples of the "
                       f"{groups} channel groups of a {c}-channel image")
    feature_groups = channel_groups(f, groups)
    gate_groups = np.tile(feature_groups, 2)  # the a and b halves of a gate in the same group
    residual_mask = group_mask(feature_groups, feature_groups, include_own=True)[None, None]

    v = h = x_BxHxWxC
    h_groups = channel_groups(c, groups)
    for layer in range(self.num_layers):
      k = self.first_kernel_size if layer == 0 else self.kernel_size
      r = k // 2
      v_pre = nn.Conv(2 * f, (r + 1, k), padding=((r, 0), (r, r)), name=f"v_conv_{layer}")(v)
      h_mask = np.ones((1, r + 1, h.shape[-1], 2 * f), np.float32)
      h_mask[0, r] = group_mask(h_groups, gate_groups, include_own=layer > 0)  # the current pixel's tap
      h_pre = nn.Conv(2 * f, (1, r + 1), padding=((0, 0), (r, 0)), mask=h_mask, name=f"h_conv_{layer}")(h)
      h_pre = h_pre + nn.Conv(2 * f, (1, 1), name=f"v_to_h_{layer}")(_down_shift(v_pre))
      if cond_BxE is not None:
        v_pre = v_pre + nn.Dense(2 * f, use_bias=False, name=f"cond_v_{layer}")(cond_BxE)[:, None, None]
        h_pre = h_pre + nn.Dense(2 * f, use_bias=False, name=f"cond_h_{layer}")(cond_BxE)[:, None, None]
      v = _gate(v_pre)
      h_new = nn.Conv(f, (1, 1), mask=residual_mask, name=f"h_out_{layer}")(_gate(h_pre))
      h = h_new if layer == 0 else h + h_new
      h_groups = feature_groups

    head_groups = channel_groups(hf, groups)
    n_out = self.out_features * (1 if self.per_pixel_features else c)
    y = nn.Conv(hf, (1, 1), mask=group_mask(feature_groups, head_groups, True)[None, None], name="head_0")(nn.relu(h))
    out_groups = channel_groups(n_out, groups)  # channel c's out_features logits in group c
    y = nn.Conv(n_out, (1, 1), mask=group_mask(head_groups, out_groups, True)[None, None], name="head_1")(nn.relu(y))
    if self.per_pixel_features:
      return y
    return y.reshape(b, height, width, c, self.out_features)
