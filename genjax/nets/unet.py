"""The U-Net of DDPM (Ho et al. 2020, their `diffusion_tf/models/unet.py`) as a Flax module.

A PixelCNN++-style U-Net: a 3x3 input convolution; at each resolution
`num_res_blocks` residual blocks (GroupNorm(32), SiLU, 3x3 conv, the time
embedding added through a dense layer, GroupNorm, SiLU, dropout, 3x3 conv,
a 1x1 projection of the input where the width changes), self-attention after
each block at the resolutions in `attn_resolutions`, and a stride-2 3x3
convolution down; a middle of block, attention, block; the way up with
`num_res_blocks + 1` blocks per resolution on the features concatenated from
the way down, and nearest-neighbour upsampling followed by a 3x3 conv; then
GroupNorm, SiLU and a 3x3 conv to the output. The time embedding is the
Transformer's sinusoidal one of width `ch` (`timestep_embedding`), then dense
4 ch, SiLU, dense 4 ch.

With ch = 128, ch_mult = (1, 2, 2, 2), 2 blocks, attention at 16x16 and 32x32x3
images this is the paper's CIFAR-10 model, 35.7M parameters (tested). 28x28
images take ch_mult of length 3 (28, 14, 7). Two differences from DDPM's code:
every layer starts from Flax's default initialisation (DDPM's starts each
block's second conv, attention's output projection and the last conv at zero,
so that every block starts as the identity), and the stride-2 conv pads 1 on
each side (PyTorch's padding=1, as improved-diffusion; TF's 'SAME' of DDPM
pads 0 before and 1 after), so DDPM's weights do not port as they are.

`impl` says how three parts are computed; the function, the parameters (names,
shapes, initial values) and so the checkpoints are the same either way, and
the outputs and gradients agree to float rounding (tests/test_unet.py):

- 'reference': DDPM's code as written: Flax's GroupNorm, the skip features
  concatenated before each block of the way up, `jax.image.resize` then the
  3x3 convolution at the doubled size.
- 'fast':
  * GroupNorm takes its sums per channel over the positions (channels stay
    the fast axis), groups only the [B, C] sums, and applies one multiply-add
    with per-image, per-channel coefficients (`GroupNorm`). Flax's version
    reduces over a [B, H*W, G, C/G] view, and its gradient is several times
    slower on XLA:CPU.
  * The concatenation [h, skip] is never formed: the block's GroupNorm, its
    first conv and its 1x1 shortcut take the parts, each with its slice of
    the one kernel, and sum (`_PartsConv`, `_PartsDense`). The shortcut's
    products are genjax.nets.layers.dense, whose 'auto' form on CPU has a
    kernel gradient without XLA:CPU's transposing copy of the input.
  * Nearest 2x upsampling then a 3x3 conv is computed at the low resolution
    (`upsample_conv`): each of the four output phases sees a 2x2 window of
    the input through sums of kernel taps, 16 taps per input pixel instead
    of 36 (2.25 times fewer FLOPs), then the phases are interleaved.
- 'auto': 'fast'. Not yet timed on a GPU (benchmarks/diffusion_speed.py times
  both side by side there too).

Each part of 'fast' made the training step and the sampler faster on a CPU,
and the convolutions themselves stay XLA's (`lax.conv_general_dilated`): im2col
products (as genjax.nets.layers computes its strided layers), a Winograd F(2x2, 3x3) form, kernel
gradients as shifted products and layers' strided 'fast' form for the
downsampling all lost to XLA's own 3x3 convolutions. benchmarks/diffusion_speed.py
measures both impls side by side against the same U-Net in PyTorch; the
figures, with their machine and date, are in docs/speed.md ("The diffusion
U-Net").
"""

import math
from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

from genjax.nets import convolution
from genjax.nets import layers

IMPLS = ("auto", "fast", "reference")


def resolve_impl(impl: str) -> str:
  """'fast' or 'reference': `impl` itself, or 'fast' for 'auto'."""
  if impl not in IMPLS:
    raise ValueError(f"UNet impl: unknown {impl!r}; allowed: {', '.join(IMPLS)}")
  return "fast" if impl == "auto" else impl


def timestep_embedding(t_B: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
  """[B, dim]: sin(t w_k) for the first half, cos(t w_k) for the second, w_k = max_period^(-k / (dim/2 - 1)).

  The embedding of DDPM's code (`get_timestep_embedding`), taking t as a float (a step index or any
  continuous time scaled to it).
  """
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - 1))
  args = jnp.asarray(t_B, jnp.float32)[:, None] * freqs[None]
  emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
  return jnp.pad(emb, ((0, 0), (0, dim % 2)))


# ------------------------------------------------------------------------------------- the fast pieces


class GroupNorm(nn.Module):
  """`flax.linen.GroupNorm` over the channels of `parts` taken together, returned as parts of the same widths.

  The same parameters ('scale', 'bias') and the same normalisation, with var = E[x^2] - E[x]^2 as Flax's
  default computes it; see the module docstring for how it is computed.
  """

  num_groups: int = 32
  epsilon: float = 1e-6

  @nn.compact
  def __call__(self, parts: Sequence[jax.Array]) -> list[jax.Array]:
    widths = [p.shape[-1] for p in parts]
    b, c = parts[0].shape[0], sum(widths)
    if c % self.num_groups:
      raise ValueError(f"GroupNorm: {c} channels do not split into {self.num_groups} groups")
    scale = self.param("scale", nn.initializers.ones_init(), (c,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (c,), jnp.float32)
    per_group = c // self.num_groups
    rows = [p.reshape(b, -1, p.shape[-1]) for p in parts]
    count = rows[0].shape[1] * per_group
    rows = [r.astype(jnp.float32) for r in rows]  # the statistics in float32 under any precision policy
    sum_BxC = jnp.concatenate([jnp.sum(r, axis=1) for r in rows], axis=-1)
    sq_BxC = jnp.concatenate([jnp.sum(jnp.square(r), axis=1) for r in rows], axis=-1)
    mean_BxG = sum_BxC.reshape(b, self.num_groups, per_group).sum(-1) / count
    var_BxG = jnp.maximum(sq_BxC.reshape(b, self.num_groups, per_group).sum(-1) / count - jnp.square(mean_BxG), 0.0)
    inv_BxC = jnp.repeat(lax.rsqrt(var_BxG + self.epsilon), per_group, axis=1) * scale
    shift_BxC = bias - jnp.repeat(mean_BxG, per_group, axis=1) * inv_BxC
    out, start = [], 0
    for p, w in zip(parts, widths):
      # In float32 and cast back, as Flax's: p * inv + shift cancels (shift ~ -mean * inv) far from zero.
      y = p.astype(jnp.float32) * inv_BxC[:, None, None, start:start + w] + shift_BxC[:, None, None, start:start + w]
      out.append(y.astype(p.dtype))
      start += w
    return out


def _conv(x, kernel, padding=((1, 1), (1, 1))):
  return convolution.nhwc_conv(x, kernel, (1, 1), padding)


class _PartsConv(nn.Module):
  """`nn.Conv(features, (3, 3))`'s parameters over the channels of `parts` together; conv of each part, summed."""

  features: int

  @nn.compact
  def __call__(self, parts: Sequence[jax.Array]) -> jax.Array:
    c = sum(p.shape[-1] for p in parts)
    kernel = self.param("kernel", nn.linear.default_kernel_init, (3, 3, c, self.features), jnp.float32)
    y, start = None, 0
    for p in parts:
      term = _conv(p, kernel[:, :, start:start + p.shape[-1]])
      y = term if y is None else y + term
      start += p.shape[-1]
    return y + self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)


class _PartsDense(nn.Module):
  """`nn.Dense(features)`'s parameters over the channels of `parts` together; product of each part, summed."""

  features: int

  @nn.compact
  def __call__(self, parts: Sequence[jax.Array]) -> jax.Array:
    c = sum(p.shape[-1] for p in parts)
    kernel = self.param("kernel", nn.linear.default_kernel_init, (c, self.features), jnp.float32)
    y, start = None, 0
    for p in parts:
      term = layers.dense(p, kernel[start:start + p.shape[-1]], impl="auto")
      y = term if y is None else y + term
      start += p.shape[-1]
    return y + self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)


def _fold_taps(kernel: jax.Array, axis: int) -> tuple[jax.Array, jax.Array]:
  """The 2-tap kernels along `axis` of the two output phases of nearest 2x upsampling then a 3-tap conv.

  Output 2i reads the upsampled inputs 2i-1, 2i, 2i+1 = x[i-1], x[i], x[i]: taps (k0, k1 + k2) at x[i-1..i];
  output 2i+1 reads 2i, 2i+1, 2i+2 = x[i], x[i], x[i+1]: taps (k0 + k1, k2) at x[i..i+1].
  """
  k0, k1, k2 = (lax.index_in_dim(kernel, i, axis) for i in range(3))
  return jnp.concatenate([k0, k1 + k2], axis), jnp.concatenate([k0 + k1, k2], axis)


def upsample_conv(x_BxHxWxC: jax.Array, kernel: jax.Array) -> jax.Array:
  """[B, 2H, 2W, O]: nearest 2x upsampling, then the 3x3 'SAME' convolution with `kernel` (HWIO), computed
  as four 2x2 convolutions of `x` (one per output phase) interleaved."""
  b, h, w, _ = x_BxHxWxC.shape
  pads = ((1, 0), (0, 1))  # phase 0 reads offsets -1, 0; phase 1 reads 0, +1
  rows = _fold_taps(kernel, 0)
  phases = [[_conv(x_BxHxWxC, _fold_taps(rows[p], 1)[q], (pads[p], pads[q])) for q in range(2)] for p in range(2)]
  y = jnp.stack([jnp.stack(row, axis=3) for row in phases], axis=2)  # [B, H, 2, W, 2, O]
  return y.reshape(b, 2 * h, 2 * w, kernel.shape[-1])


class _UpsampleConv(nn.Module):
  """`nn.Conv(features, (3, 3))`'s parameters, applied to the nearest 2x upsampled input (`upsample_conv`)."""

  features: int

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.linear.default_kernel_init, (3, 3, x.shape[-1], self.features), jnp.float32)
    return upsample_conv(x, kernel) + self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)


# ------------------------------------------------------------------------------------------- the blocks


def _reference_norm(name: str | None = None) -> nn.GroupNorm:
  return nn.GroupNorm(num_groups=32, epsilon=1e-6, name=name)


class ResBlock(nn.Module):
  """A residual block on the channels of `parts` taken together ('fast'; 'reference' concatenates them first)."""

  out_ch: int
  dropout: float
  impl: str = "reference"

  @nn.compact
  def __call__(self, parts: Sequence[jax.Array], temb, train: bool):
    if self.impl == "reference":
      x = jnp.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]
      h = convolution.flax_conv(self.out_ch, (3, 3), name="conv1")(nn.silu(_reference_norm("norm1")(x)))
    else:
      x = None
      h = _PartsConv(self.out_ch, name="conv1")([nn.silu(p) for p in GroupNorm(name="norm1")(parts)])
    h = h + nn.Dense(self.out_ch, name="temb_proj")(nn.silu(temb))[:, None, None, :]
    norm2 = _reference_norm("norm2") if self.impl == "reference" else (lambda h: GroupNorm(name="norm2")([h])[0])
    h = nn.silu(norm2(h))
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    h = convolution.flax_conv(self.out_ch, (3, 3), name="conv2")(h)
    if sum(p.shape[-1] for p in parts) != self.out_ch:
      if x is None:
        x = _PartsDense(self.out_ch, name="nin_shortcut")(parts)
      else:
        x = nn.Dense(self.out_ch, name="nin_shortcut")(x)
    elif x is None:
      x = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)
    return x + h


class AttnBlock(nn.Module):
  """Single-head self-attention over the H x W positions, with a residual connection."""

  impl: str = "reference"

  @nn.compact
  def __call__(self, x):
    b, hh, ww, c = x.shape
    h = _reference_norm("norm")(x) if self.impl == "reference" else GroupNorm(name="norm")([x])[0]
    # No bias on k: q.(k_j + b) adds q.b to every key j of a query, which the softmax ignores, so that bias
    # would have a gradient of exactly zero, and Adam turns the float noise around zero into +-lr steps.
    q, k, v = (nn.Dense(c, use_bias=n != "k", name=n)(h).reshape(b, hh * ww, c) for n in ("q", "k", "v"))
    logits = jnp.einsum("bic,bjc->bij", q, k).astype(jnp.float32) / math.sqrt(c)  # softmax in float32 always
    out = jnp.einsum("bij,bjc->bic", jax.nn.softmax(logits, axis=-1).astype(v.dtype), v).reshape(b, hh, ww, c)
    return x + nn.Dense(c, name="proj_out")(out)


def label_embedding(num_classes: int, width: int, labels_B: jax.Array | None) -> jax.Array | float:
  """The embedding [B, width] of each label in 0..num_classes (num_classes: the null label), added to a
  conditional net's noise embedding; 0 for an unconditional net (num_classes 0), which takes no labels."""
  if not num_classes:
    if labels_B is not None:
      raise ValueError("labels_B: an unconditional net (num_classes = 0) takes no labels")
    return 0.0
  if labels_B is None:
    raise ValueError(f"labels_B: a net conditioned on {num_classes} classes needs a label (or {num_classes}, the"
                     " null label) per example")
  return nn.Embed(num_classes + 1, width, name="label_emb")(jnp.asarray(labels_B, jnp.int32))


class UNet(nn.Module):
  """(x_BxHxWxC, t_B, train, labels_B) -> [B, H, W, out_ch]; `train` switches dropout (its key: the 'dropout' rng).

  `impl` ('auto', 'fast', 'reference'): how GroupNorm, the skip concatenations and the upsampling are
  computed (module docstring); the parameters and the function are the same.

  `num_classes` > 0: class-conditional as ADM's U-Net (Dhariwal & Nichol 2021): a learned embedding of the
  label, added to the noise level's embedding that every residual block reads; row `num_classes` is the null
  label of classifier-free guidance (Ho & Salimans 2022), which the model learns where training drops the
  label. 0: no embedding and the parameter tree of an unconditional U-Net.
  """

  ch: int = 128
  out_ch: int = 3
  ch_mult: Sequence[int] = (1, 2, 2, 2)
  num_res_blocks: int = 2
  attn_resolutions: Sequence[int] = (16,)
  dropout: float = 0.1
  impl: str = "auto"
  num_classes: int = 0
  float32_inputs: ClassVar[tuple[str, ...]] = ("t_B",)  # precision.Cast passes the noise level uncast

  @nn.compact
  def __call__(self, x, t_B, train: bool = False, labels_B: jax.Array | None = None):
    impl = resolve_impl(self.impl)
    temb = timestep_embedding(t_B, self.ch).astype(x.dtype)  # computed in float32, used in the policy's dtype
    temb = nn.Dense(4 * self.ch, name="temb_dense0")(temb)
    temb = nn.Dense(4 * self.ch, name="temb_dense1")(nn.silu(temb))
    temb = temb + label_embedding(self.num_classes, temb.shape[-1], labels_B)
    hs = [convolution.flax_conv(self.ch, (3, 3), name="conv_in")(x)]
    levels = len(self.ch_mult)
    for level, mult in enumerate(self.ch_mult):
      for block in range(self.num_res_blocks):
        h = ResBlock(self.ch * mult, self.dropout, impl, name=f"down_{level}_block_{block}")([hs[-1]], temb, train)
        if h.shape[1] in self.attn_resolutions:
          h = AttnBlock(impl, name=f"down_{level}_attn_{block}")(h)
        hs.append(h)
      if level != levels - 1:
        hs.append(convolution.flax_conv(hs[-1].shape[-1], (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)),
                          name=f"down_{level}_downsample")(hs[-1]))
    h = ResBlock(hs[-1].shape[-1], self.dropout, impl, name="mid_block_1")([hs[-1]], temb, train)
    h = AttnBlock(impl, name="mid_attn")(h)
    h = ResBlock(h.shape[-1], self.dropout, impl, name="mid_block_2")([h], temb, train)
    for level in reversed(range(levels)):
      for block in range(self.num_res_blocks + 1):
        h = ResBlock(self.ch * self.ch_mult[level], self.dropout, impl, name=f"up_{level}_block_{block}")(
            [h, hs.pop()], temb, train)
        if h.shape[1] in self.attn_resolutions:
          h = AttnBlock(impl, name=f"up_{level}_attn_{block}")(h)
      if level != 0:
        b, hh, ww, c = h.shape
        if impl == "reference":
          h = jax.image.resize(h, (b, 2 * hh, 2 * ww, c), method="nearest")
          h = convolution.flax_conv(c, (3, 3), name=f"up_{level}_upsample")(h)
        else:
          h = _UpsampleConv(c, name=f"up_{level}_upsample")(h)
    assert not hs
    norm_out = _reference_norm("norm_out")(h) if impl == "reference" else GroupNorm(name="norm_out")([h])[0]
    return convolution.flax_conv(self.out_ch, (3, 3), name="conv_out")(nn.silu(norm_out))
