"""An MLP denoiser for low-dimensional data (the 2-D mixtures): (x_BxD, c_B, train) -> [B, D].

The shape of the toy diffusion models of the score-matching literature: the
noise level's sinusoidal embedding (`genjax.nets.unet.timestep_embedding`,
then dense and SiLU) is added to every hidden layer, so each layer sees the
level, not only the first; SiLU hidden layers, a linear output of the data's
width. `train` is accepted for the diffusion family's uniform calls and
changes nothing (no dropout). With `num_classes` > 0 the label's embedding
(`genjax.nets.unet.label_embedding`, null label included) is added to the
level's, as in the U-Net.
"""

from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import jax

from genjax.nets.unet import label_embedding, timestep_embedding


class MLPDenoiser(nn.Module):
  """Attributes: hidden, the widths of the hidden layers; emb_dim, the width of the sinusoidal embedding."""

  hidden: Sequence[int] = (256, 256, 256)
  emb_dim: int = 64
  num_classes: int = 0
  float32_inputs: ClassVar[tuple[str, ...]] = ("c_B",)  # precision.Cast passes the noise level uncast

  @nn.compact
  def __call__(self, x_BxD: jax.Array, c_B: jax.Array, train: bool = False,
               labels_B: jax.Array | None = None) -> jax.Array:
    del train
    temb = nn.silu(nn.Dense(self.emb_dim, name="temb_dense")(timestep_embedding(c_B, self.emb_dim).astype(x_BxD.dtype)))
    temb = temb + label_embedding(self.num_classes, self.emb_dim, labels_B)
    h = x_BxD
    for i, width in enumerate(self.hidden):
      h = nn.Dense(width, name=f"dense_{i}")(h) + nn.Dense(width, name=f"temb_proj_{i}")(temb)
      h = nn.silu(h)
    return nn.Dense(x_BxD.shape[-1], name="out")(h)
