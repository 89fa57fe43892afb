"""MLP generator and discriminator for low-dimensional data (the 2-D mixtures).

The shape of the VEEGAN / PacGAN toy experiments: a ReLU generator with a
linear output (the data are unbounded points, not images) and a LeakyReLU
discriminator that maps each point, or each pack of points, to one logit.

Class-conditional (`num_classes` > 0, labels_B int32 [B] required): G reads
a learned embedding of the label concatenated to z (Mirza & Osindero 2014's
conditional GAN, with an embedding for the one-hot code), D is a projection
discriminator (Miyato & Koyama 2018, eq. 3): psi(phi(x)) + <embed(y), phi(x)>
with phi(x) the last hidden layer. num_classes = 0 keeps the unconditional
nets' parameters.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.nets.dcgan import BN_MOMENTUM, apply_layer, batch_norm, check_labels, conv_init


class MLPGenerator(nn.Module):
  """z_BxZ -> x_BxD, D = out_dim; ReLU hidden layers, linear output.

  Attributes:
    out_dim: size of one generated example.
    hidden: widths of the hidden layers.
    batchnorm: BatchNorm after every hidden layer (PacGAN's generator has it).
    axis_name: pmap's device axis, over which BatchNorm averages; None under jit.
    bn_momentum: Flax's decay of the running statistics in training mode; 0 makes them the batch's own.
    num_classes: 0, or the classes of a conditional generator, which reads [z, embed(y)]; `labels_B` required.
    label_dim: width of the label's embedding (a conditional generator's).
  """

  out_dim: int
  hidden: Sequence[int] = (256, 256, 256)
  batchnorm: bool = False
  axis_name: str | None = None
  bn_momentum: float = BN_MOMENTUM
  num_classes: int = 0
  label_dim: int = 16

  @nn.compact
  def __call__(self, z_BxZ: jax.Array, train: bool = True, labels_B: jax.Array | None = None) -> jax.Array:
    check_labels(self.num_classes, labels_B)
    h = z_BxZ
    if self.num_classes:
      h = jnp.concatenate([h, nn.Embed(self.num_classes, self.label_dim, name="label_embed")(labels_B)], axis=-1)
    for width in self.hidden:
      h = nn.Dense(width, use_bias=not self.batchnorm)(h)
      if self.batchnorm:
        h = batch_norm(train, self.axis_name, scale_init=nn.initializers.ones, momentum=self.bn_momentum)(h)
      h = nn.relu(h)
    return nn.Dense(self.out_dim)(h)


class MLPDiscriminator(nn.Module):
  """x_BxD -> logits_B; LeakyReLU(0.2) hidden layers, no normalisation.

  Without BatchNorm every example is scored independently, so the gradient
  penalties (WGAN-GP, R1, R2) are exact. `train` changes nothing but the
  spectral norm's power iteration state, where there is one.

  Attributes:
    hidden: widths of the hidden layers.
    num_classes: 0, or the classes of a projection discriminator (Miyato & Koyama 2018): with phi(x) the last
      hidden layer and psi the output layer, the logit is psi(phi(x)) + <embed(y), phi(x)>; `labels_B` required.
    spectral_norm: every weight matrix divided by its largest singular value (genjax.nets.dcgan.apply_layer);
      `train` then updates the power iteration's state.
  """

  hidden: Sequence[int] = (256, 256, 256)
  num_classes: int = 0
  spectral_norm: bool = False

  @nn.compact
  def __call__(self, x_BxD: jax.Array, train: bool = True, labels_B: jax.Array | None = None) -> jax.Array:
    check_labels(self.num_classes, labels_B)
    h = x_BxD.reshape(x_BxD.shape[0], -1)
    for width in self.hidden:
      h = nn.leaky_relu(apply_layer(nn.Dense(width), h, train, self.spectral_norm), 0.2)
    logits_B = apply_layer(nn.Dense(1), h, train, self.spectral_norm).reshape(x_BxD.shape[0])
    if self.num_classes:
      # N(0, 0.02) as the DCGAN's projection: the class term starts small beside psi's.
      embed_BxH = apply_layer(nn.Embed(self.num_classes, h.shape[-1], embedding_init=conv_init, name="projection"),
                              labels_B, train, self.spectral_norm)
      logits_B = logits_B + jnp.sum(embed_BxH * h, axis=-1)
    return logits_B
