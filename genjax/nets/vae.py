"""Encoders and decoders for VAEs on 28, 32 and 64 pixel images.

Encoders map images to the mean and log-variance of a diagonal Gaussian
q(z|x); decoders map latents to per-pixel parameters of p(x|z) (Bernoulli
logits or Gaussian means). Neither knows which likelihood it feeds.

Class-conditional nets (`num_classes` > 0) are the CVAE's (Sohn et al. 2015,
Sec. 3): the recognition net q(z|x, y) and the generation net p(x|z, y) both
read the class y as its one-hot row y_BxK, appended to their flattened input
(the encoder's features, the decoder's z). A one-hot row entering a dense
layer adds row y of that layer's class kernel V to its pre-activation
(W [h; y] + b = W h + (b + V[y])): it is a learned class embedding as wide as
the layer, with no width of its own to choose; and a row between two one-hots
is an input too, which lets an interpolation go from one class to another.
"""

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.nets import layers


def downsampled_size(size: int, num_layers: int) -> int:
  """Side of the feature map after `num_layers` stride-2 layers.

  The decoder mirrors the encoder with stride-2 transposed convolutions, so
  it can produce only sizes divisible by 2**num_layers.
  """
  factor = 2**num_layers
  if size % factor:
    raise ValueError(
        f"{num_layers} stride-2 layers need an image size divisible by"
        f" {factor}, got {size}; use at most {max_conv_layers(size)} layers")
  return size // factor


def with_class(h_BxF: jax.Array, y_BxK: jax.Array | None, num_classes: int) -> jax.Array:
  """[h; y]: a net's flattened input with the class row y_BxK appended (Sohn et al. 2015's conditioning), or
  h itself for an unconditional net (num_classes 0), which refuses a class rather than silently ignore it."""
  if not num_classes:
    if y_BxK is not None:
      raise ValueError("y_BxK: an unconditional net (num_classes=0) takes no class")
    return h_BxF
  if y_BxK is None or y_BxK.shape != (h_BxF.shape[0], num_classes):
    raise ValueError(f"y_BxK: a class-conditional net ({num_classes} classes) needs the one-hot class of every"
                     f" example, [{h_BxF.shape[0]}, {num_classes}]; got {None if y_BxK is None else y_BxK.shape}")
  return jnp.concatenate([h_BxF, y_BxK.astype(h_BxF.dtype)], axis=-1)


def max_conv_layers(size: int) -> int:
  """How many stride-2 layers an image of side `size` allows."""
  n = 0
  while size % 2 == 0 and size > 1:
    size //= 2
    n += 1
  return n


class ConvEncoder(nn.Module):
  """Stride-2 4x4 convolutions, then dense layers, then (mean, logvar).

  Attributes:
    latent_dim: Z, the size of the latent code.
    widths: channels of each stride-2 convolution; each halves the image.
    hidden: widths of the dense layers between the flattened features and
      the latent heads.
    conv_impl: how the strided convolutions run (genjax.nets.layers.IMPLS);
      the parameters and the numbers are the same either way.
    num_classes: 0, or the classes of q(z|x, y): the class's one-hot row joins
      the flattened conv features, before the dense layers. Not as extra input
      channels: constant channels into the first convolution add a per-class
      bias there (which only the zero padding at the borders breaks), at
      (C + K) / C times that layer's cost, where the dense layer's class rows
      cost K x width. 0 leaves the unconditional net's parameters.
  """

  latent_dim: int
  widths: Sequence[int] = (32, 64)
  hidden: Sequence[int] = (256,)
  conv_impl: str = "auto"
  num_classes: int = 0

  @nn.compact
  def __call__(self, x_BxHxWxC: jax.Array, y_BxK: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    h = x_BxHxWxC
    for width in self.widths:
      h = nn.relu(layers.Conv(width, (4, 4), strides=(2, 2), padding="SAME", impl=self.conv_impl)(h))
    h = with_class(h.reshape(h.shape[0], -1), y_BxK, self.num_classes)
    for width in self.hidden:
      h = nn.relu(nn.Dense(width)(h))
    mean_BxZ = nn.Dense(self.latent_dim, name="mean")(h)
    logvar_BxZ = nn.Dense(self.latent_dim, name="logvar")(h)
    return mean_BxZ, logvar_BxZ


class ConvDecoder(nn.Module):
  """Mirror of `ConvEncoder`: dense layers, then stride-2 4x4 transposed convs.

  Attributes:
    image_shape: (H, W, C) of the output.
    widths: the encoder's widths, in encoder order; the decoder walks them
      backwards and ends with a transposed convolution to C channels.
    hidden: the encoder's dense widths, in encoder order.
    conv_impl: how the transposed convolutions run (genjax.nets.layers.IMPLS).
    num_classes: 0, or the classes of p(x|z, y): the class's one-hot row is
      appended to z. 0 leaves the unconditional net's parameters.
  """

  image_shape: Sequence[int]
  widths: Sequence[int] = (32, 64)
  hidden: Sequence[int] = (256,)
  conv_impl: str = "auto"
  num_classes: int = 0

  @nn.compact
  def __call__(self, z_BxZ: jax.Array, y_BxK: jax.Array | None = None) -> jax.Array:
    height, width, channels = self.image_shape
    n = len(self.widths)
    h0, w0 = downsampled_size(height, n), downsampled_size(width, n)
    h = with_class(z_BxZ, y_BxK, self.num_classes)
    for units in reversed(self.hidden):
      h = nn.relu(nn.Dense(units)(h))
    h = nn.relu(nn.Dense(h0 * w0 * self.widths[-1])(h))
    h = h.reshape(h.shape[0], h0, w0, self.widths[-1])
    for units in reversed(self.widths[:-1]):
      h = nn.relu(layers.ConvTranspose(units, (4, 4), strides=(2, 2), padding="SAME", impl=self.conv_impl)(h))
    out_BxHxWxC = layers.ConvTranspose(channels, (4, 4), strides=(2, 2), padding="SAME", impl=self.conv_impl)(h)
    return out_BxHxWxC


class MLPEncoder(nn.Module):
  """The Flax VAE example's encoder: flatten, Dense(500), ReLU, two heads.

  `num_classes` > 0: q(z|x, y), the class's one-hot row appended to the flattened pixels, as Sohn et al.'s
  recognition net reads [x; y]. 0 leaves the unconditional net's parameters.
  """

  latent_dim: int = 20
  hidden: Sequence[int] = (500,)
  num_classes: int = 0

  @nn.compact
  def __call__(self, x_BxHxWxC: jax.Array, y_BxK: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    h = with_class(x_BxHxWxC.reshape(x_BxHxWxC.shape[0], -1), y_BxK, self.num_classes)
    for units in self.hidden:
      h = nn.relu(nn.Dense(units)(h))
    return nn.Dense(self.latent_dim, name="mean")(h), nn.Dense(self.latent_dim, name="logvar")(h)


class MLPDecoder(nn.Module):
  """The Flax VAE example's decoder: Dense(500), ReLU, Dense(H*W*C).

  `num_classes` > 0: p(x|z, y), the class's one-hot row appended to z. 0 leaves the unconditional net's
  parameters.
  """

  image_shape: Sequence[int]
  hidden: Sequence[int] = (500,)
  num_classes: int = 0

  @nn.compact
  def __call__(self, z_BxZ: jax.Array, y_BxK: jax.Array | None = None) -> jax.Array:
    h = with_class(z_BxZ, y_BxK, self.num_classes)
    for units in reversed(self.hidden):
      h = nn.relu(nn.Dense(units)(h))
    return nn.Dense(math.prod(self.image_shape))(h).reshape(z_BxZ.shape[0], *self.image_shape)
