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
images take ch_mult of length 3 (28, 14, 7).
"""

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


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


def _norm(name: str | None = None) -> nn.GroupNorm:
  return nn.GroupNorm(num_groups=32, epsilon=1e-6, name=name)


class ResBlock(nn.Module):
  out_ch: int
  dropout: float

  @nn.compact
  def __call__(self, x, temb, train: bool):
    h = nn.Conv(self.out_ch, (3, 3), name="conv1")(nn.silu(_norm("norm1")(x)))
    h = h + nn.Dense(self.out_ch, name="temb_proj")(nn.silu(temb))[:, None, None, :]
    h = nn.silu(_norm("norm2")(h))
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    h = nn.Conv(self.out_ch, (3, 3), name="conv2")(h)
    if x.shape[-1] != self.out_ch:
      x = nn.Dense(self.out_ch, name="nin_shortcut")(x)
    return x + h


class AttnBlock(nn.Module):
  """Single-head self-attention over the H x W positions, with a residual connection."""

  @nn.compact
  def __call__(self, x):
    b, hh, ww, c = x.shape
    h = _norm("norm")(x)
    q, k, v = (nn.Dense(c, name=n)(h).reshape(b, hh * ww, c) for n in ("q", "k", "v"))
    weights = jax.nn.softmax(jnp.einsum("bic,bjc->bij", q, k) / math.sqrt(c), axis=-1)
    out = jnp.einsum("bij,bjc->bic", weights, v).reshape(b, hh, ww, c)
    return x + nn.Dense(c, name="proj_out")(out)


class UNet(nn.Module):
  """(x_BxHxWxC, t_B, train) -> [B, H, W, out_ch]; `train` switches dropout (its key: the 'dropout' rng)."""

  ch: int = 128
  out_ch: int = 3
  ch_mult: Sequence[int] = (1, 2, 2, 2)
  num_res_blocks: int = 2
  attn_resolutions: Sequence[int] = (16,)
  dropout: float = 0.1

  @nn.compact
  def __call__(self, x, t_B, train: bool = False):
    temb = timestep_embedding(t_B, self.ch)
    temb = nn.Dense(4 * self.ch, name="temb_dense0")(temb)
    temb = nn.Dense(4 * self.ch, name="temb_dense1")(nn.silu(temb))
    hs = [nn.Conv(self.ch, (3, 3), name="conv_in")(x)]
    levels = len(self.ch_mult)
    for level, mult in enumerate(self.ch_mult):
      for block in range(self.num_res_blocks):
        h = ResBlock(self.ch * mult, self.dropout, name=f"down_{level}_block_{block}")(hs[-1], temb, train)
        if h.shape[1] in self.attn_resolutions:
          h = AttnBlock(name=f"down_{level}_attn_{block}")(h)
        hs.append(h)
      if level != levels - 1:
        hs.append(nn.Conv(hs[-1].shape[-1], (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)),
                          name=f"down_{level}_downsample")(hs[-1]))
    h = ResBlock(hs[-1].shape[-1], self.dropout, name="mid_block_1")(hs[-1], temb, train)
    h = AttnBlock(name="mid_attn")(h)
    h = ResBlock(h.shape[-1], self.dropout, name="mid_block_2")(h, temb, train)
    for level in reversed(range(levels)):
      for block in range(self.num_res_blocks + 1):
        h = ResBlock(self.ch * self.ch_mult[level], self.dropout, name=f"up_{level}_block_{block}")(
            jnp.concatenate([h, hs.pop()], axis=-1), temb, train)
        if h.shape[1] in self.attn_resolutions:
          h = AttnBlock(name=f"up_{level}_attn_{block}")(h)
      if level != 0:
        b, hh, ww, c = h.shape
        h = jax.image.resize(h, (b, 2 * hh, 2 * ww, c), method="nearest")
        h = nn.Conv(c, (3, 3), name=f"up_{level}_upsample")(h)
    assert not hs
    return nn.Conv(self.out_ch, (3, 3), name="conv_out")(nn.silu(_norm("norm_out")(h)))
