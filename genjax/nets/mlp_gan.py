"""MLP generator and discriminator for low-dimensional data (the 2-D mixtures).

The shape of the VEEGAN / PacGAN toy experiments: a ReLU generator with a
linear output (the data are unbounded points, not images) and a LeakyReLU
discriminator that maps each point, or each pack of points, to one logit.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax

from genjax.nets.dcgan import BN_MOMENTUM, batch_norm


class MLPGenerator(nn.Module):
  """z_BxZ -> x_BxD, D = out_dim; ReLU hidden layers, linear output.

  Attributes:
    out_dim: size of one generated example.
    hidden: widths of the hidden layers.
    batchnorm: BatchNorm after every hidden layer (PacGAN's generator has it).
    axis_name: pmap's device axis, over which BatchNorm averages; None under jit.
    bn_momentum: Flax's decay of the running statistics in training mode; 0 makes them the batch's own.
  """

  out_dim: int
  hidden: Sequence[int] = (256, 256, 256)
  batchnorm: bool = False
  axis_name: str | None = None
  bn_momentum: float = BN_MOMENTUM

  @nn.compact
  def __call__(self, z_BxZ: jax.Array, train: bool = True) -> jax.Array:
    h = z_BxZ
    for width in self.hidden:
      h = nn.Dense(width, use_bias=not self.batchnorm)(h)
      if self.batchnorm:
        h = batch_norm(train, self.axis_name, scale_init=nn.initializers.ones, momentum=self.bn_momentum)(h)
      h = nn.relu(h)
    return nn.Dense(self.out_dim)(h)


class MLPDiscriminator(nn.Module):
  """x_BxD -> logits_B; LeakyReLU(0.2) hidden layers, no normalisation.

  Without BatchNorm every example is scored independently, so the gradient
  penalties (WGAN-GP, R1, R2) are exact. `train` is accepted for the GAN
  family's uniform calls and changes nothing.
  """

  hidden: Sequence[int] = (256, 256, 256)

  @nn.compact
  def __call__(self, x_BxD: jax.Array, train: bool = True) -> jax.Array:
    del train
    h = x_BxD.reshape(x_BxD.shape[0], -1)
    for width in self.hidden:
      h = nn.leaky_relu(nn.Dense(width)(h), 0.2)
    return nn.Dense(1)(h).reshape(x_BxD.shape[0])
