"""DCGAN generator and discriminator (Radford et al. 2016), as in the PyTorch DCGAN example.

4x4 transposed convolutions of stride 2 in G, 4x4 convolutions of stride 2
in D; BatchNorm on every G layer but the output and every D layer but the
input; ReLU in G, LeakyReLU(0.2) in D, tanh output; weights N(0, 0.02),
BatchNorm scales N(1, 0.02), no convolution biases.

Padding ((2, 2), (2, 2)) of the transposed convolutions is PyTorch's
`ConvTranspose2d(k=4, s=2, p=1)`: exactly twice the input size, with the
same alignment (Flax's 'SAME' pads asymmetrically for this kernel).

BatchNorm momentum is Flax's: the DECAY of the running averages, 0.9, which
is PyTorch's momentum=0.1. `train` chooses batch or running statistics; which
network's statistics change in which update is the GAN family's business.
`axis_name` (pmap only) averages the batch statistics over the devices of
that axis, so they are those of the global batch, as under jit.

`conv_impl` says how the stride-2 layers run (genjax.nets.layers: 'auto',
'fast' or 'xla'); the parameters and the numbers are the same either way.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.nets import layers

BN_MOMENTUM = 0.9  # Flax decay; = PyTorch momentum 0.1
BN_EPSILON = 1e-5  # PyTorch's default
D_NORMS = ("batch", "layer", "none")  # discriminator normalisations
_TCONV_PAD = ((2, 2), (2, 2))  # PyTorch ConvTranspose2d(kernel 4, stride 2, padding 1)
_CONV_PAD = ((1, 1), (1, 1))  # PyTorch Conv2d(kernel 4, stride 2, padding 1)

conv_init = nn.initializers.normal(0.02)


def bn_scale_init(key, shape, dtype=jnp.float32):
  """N(1, 0.02), the DCGAN example's BatchNorm weight init."""
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def num_stride2_layers(size: int) -> int:
  """Stride-2 layers between a `size` image and the 4x4 (or 7x7) base: 28 -> 2, 32 -> 3, 64 -> 4."""
  n = 0
  while size % 2 == 0 and size // 2 >= 4:
    size //= 2
    n += 1
  if n == 0:
    raise ValueError(f"DCGAN needs an image size that halves to a base of at least 4 pixels, got {size}")
  return n


def batch_norm(train: bool, axis_name: str | None = None, scale_init=bn_scale_init,
               momentum: float = BN_MOMENTUM) -> nn.BatchNorm:
  """BatchNorm with the DCGAN settings; statistics over the devices of `axis_name` too (pmap)."""
  return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=BN_EPSILON,
                      scale_init=scale_init, axis_name=axis_name)


def check_labels(num_classes: int, labels_B) -> None:
  """A conditional net (num_classes > 0) is called with every example's class."""
  if num_classes and labels_B is None:
    raise ValueError(f"labels_B: a class-conditional net ({num_classes} classes) needs the class of every example")


def apply_layer(layer: nn.Module, x: jax.Array, train: bool, spectral_norm: bool) -> jax.Array:
  """layer(x); with `spectral_norm`, with every weight matrix of the layer divided by its largest singular value
  (Miyato et al. 2018; flax's SpectralNorm: one power iteration per call, a conv kernel as a matrix of
  [kh * kw * in, out], its vector u and estimate sigma in 'batch_stats', updated when `train`). Called from a
  net's compact method. The parameters it initialises are the initializer's weights, as Miyato et al.'s and
  PyTorch's: flax's SpectralNorm would store them divided by their first estimate of sigma, which changes the
  scale Adam's steps are relative to, layer by layer."""
  if not spectral_norm:
    return layer(x)
  # The power iteration runs on the float32 vector u; the normalised weight is cast to x's dtype (genjax.precision).
  dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else None
  initializing = layer.parent.is_initializing()
  if initializing:
    layer(x)  # creates the weights
    drawn = dict(layer.variables["params"])  # a copy: the scope's view would show what SpectralNorm writes
  y = nn.SpectralNorm(layer, dtype=dtype)(x, update_stats=train)
  if initializing:
    for name, value in drawn.items():
      layer.put_variable("params", name, value)
  return y


CLASS_EMBEDDING = 128  # BigGAN's shared class embedding's size


class ClassBatchNorm(nn.Module):
  """BatchNorm whose scale and offset are linear in each example's class embedding (BigGAN's class-conditional
  BatchNorm): statistics shared by every class, then x_hat * (1 + W_s e) + W_b e, with e_BxE the generator's
  shared class embedding and W_s, W_b of this layer, initialised N(0, 0.02)."""

  axis_name: str | None = None
  momentum: float = BN_MOMENTUM

  @nn.compact
  def __call__(self, h: jax.Array, embedding_BxE: jax.Array, train: bool = True) -> jax.Array:
    features = h.shape[-1]
    x_hat = nn.BatchNorm(use_running_average=not train, momentum=self.momentum, epsilon=BN_EPSILON,
                         use_scale=False, use_bias=False, axis_name=self.axis_name)(h)
    scale = 1.0 + nn.Dense(features, use_bias=False, kernel_init=conv_init, name="scale")(embedding_BxE)
    bias = nn.Dense(features, use_bias=False, kernel_init=conv_init, name="bias")(embedding_BxE)
    return x_hat * scale[:, None, None] + bias[:, None, None]


class DCGANGenerator(nn.Module):
  """z_BxZ -> images in [-1, 1] of `image_shape` (28, 32 or 64 pixels square).

  Attributes:
    image_shape: (H, W, C), H == W.
    width: ngf, the channels of the last hidden layer; earlier layers double it.
    axis_name: pmap's device axis, over which BatchNorm averages; None under jit.
    conv_impl: how the transposed convolutions run (genjax.nets.layers.IMPLS).
    bn_momentum: Flax's decay of the running statistics in training mode; 0 makes them the batch's own
      (the EMA generator's statistics, genjax.models.gan).
    num_classes: 0, or the classes of a class-conditional generator, as BigGAN's: a class embedding shared by
      every layer (128 numbers, N(0, 1)) gives each BatchNorm its scale and offset through a linear map of its
      own (`ClassBatchNorm`; the statistics stay shared), and the class's one-hot code sits beside z at the
      input; `labels_B` is required. 0 leaves the parameters of an unconditional generator. Per-class rows of
      scale and offset alone (one number a class and channel, moved at Adam's step size) learned the class so
      slowly that 16% of the samples were of the class asked for after 5 CPU minutes (docs/results.md).
  """

  image_shape: Sequence[int]
  width: int = 64
  axis_name: str | None = None
  conv_impl: str = "auto"
  bn_momentum: float = BN_MOMENTUM
  num_classes: int = 0

  def _norm(self, h, train, embedding_BxE):
    if not self.num_classes:
      return batch_norm(train, self.axis_name, momentum=self.bn_momentum)(h)
    return ClassBatchNorm(self.axis_name, self.bn_momentum)(h, embedding_BxE, train)

  @nn.compact
  def __call__(self, z_BxZ: jax.Array, train: bool = True, labels_B: jax.Array | None = None) -> jax.Array:
    check_labels(self.num_classes, labels_B)
    size, _, channels = self.image_shape
    n = num_stride2_layers(size)
    base = size // 2**n
    embedding = None
    if self.num_classes:
      embedding = nn.Embed(self.num_classes, CLASS_EMBEDDING, embedding_init=nn.initializers.normal(1.0),
                           name="class_embedding")(labels_B)
      z_BxZ = jnp.concatenate([z_BxZ, jax.nn.one_hot(labels_B, self.num_classes, dtype=z_BxZ.dtype)], axis=-1)
    h = z_BxZ.reshape(z_BxZ.shape[0], 1, 1, z_BxZ.shape[-1])
    # Project to base x base with a VALID transposed conv, as the example's first layer.
    h = layers.ConvTranspose(self.width * 2**(n - 1), (base, base), padding="VALID", use_bias=False,
                             kernel_init=conv_init, impl=self.conv_impl)(h)
    h = nn.relu(self._norm(h, train, embedding))
    for i in range(n - 1):
      h = layers.ConvTranspose(self.width * 2**(n - 2 - i), (4, 4), strides=(2, 2), padding=_TCONV_PAD,
                               use_bias=False, kernel_init=conv_init, impl=self.conv_impl)(h)
      h = nn.relu(self._norm(h, train, embedding))
    h = layers.ConvTranspose(channels, (4, 4), strides=(2, 2), padding=_TCONV_PAD, use_bias=False,
                             kernel_init=conv_init, impl=self.conv_impl)(h)
    return jnp.tanh(h)


class DCGANDiscriminator(nn.Module):
  """Images x_BxHxWxC in [-1, 1] -> logits_B (pre-sigmoid).

  Attributes:
    width: ndf, the channels of the first layer; later layers double it.
    norm: 'batch' (the DCGAN's), 'layer' (the WGAN-GP critic's: each example
      normalised over its own features, so gradient penalties are exact) or
      'none'.
    axis_name: pmap's device axis, over which BatchNorm averages; None under jit.
    conv_impl: how the strided convolutions run (genjax.nets.layers.IMPLS).
    num_classes: 0, or the classes of a projection discriminator (Miyato & Koyama 2018): with h(x, y) the last
      feature map and psi the final convolution (a linear map of the whole map), the logit is
      psi(h) + <embed(y), phi>, phi = h summed over its positions (the paper's global sum pooling: the class's
      row is the same at every position), and `labels_B` is required. The class's one-hot code also enters at
      the input, as maps beside the image's channels (as the conditional GAN of Mirza & Osindero 2014), so that
      every layer of D sees it: with the projection alone, D told the classes apart so late that after 5 CPU
      minutes 16% of G's samples were of the class asked for (docs/results.md). 0 leaves an unconditional
      D's parameters. A row per position and channel instead of phi (the flattened map, 6,272 numbers a class
      on the digits) let D separate the classes so fast that G's output collapsed to grey within 200 steps.
    spectral_norm: every weight of D (the convolutions, the projection) divided by its largest singular value
      (Miyato et al. 2018), estimated by one power iteration per call; the iteration's vector u and the estimate
      sigma are D's 'batch_stats', updated in training mode only.
  """

  width: int = 64
  norm: str = "batch"
  axis_name: str | None = None
  conv_impl: str = "auto"
  num_classes: int = 0
  spectral_norm: bool = False

  def _layer(self, layer: nn.Module, x, train: bool):
    return apply_layer(layer, x, train, self.spectral_norm)

  @nn.compact
  def __call__(self, x_BxHxWxC: jax.Array, train: bool = True, labels_B: jax.Array | None = None) -> jax.Array:
    check_labels(self.num_classes, labels_B)
    if self.norm not in D_NORMS:
      raise ValueError(f"norm: unknown {self.norm!r}; allowed: {', '.join(D_NORMS)}")
    n = num_stride2_layers(x_BxHxWxC.shape[1])
    h = x_BxHxWxC
    if self.num_classes:  # the class's one-hot code as maps beside the image's channels
      maps = jax.nn.one_hot(labels_B, self.num_classes, dtype=h.dtype)[:, None, None, :]
      h = jnp.concatenate([h, jnp.broadcast_to(maps, (*h.shape[:3], self.num_classes))], axis=-1)
    for i in range(n):
      h = self._layer(layers.Conv(self.width * 2**i, (4, 4), strides=(2, 2), padding=_CONV_PAD, use_bias=False,
                                  kernel_init=conv_init, impl=self.conv_impl), h, train)
      if i > 0 and self.norm == "batch":  # no normalisation on the input layer
        h = batch_norm(train, self.axis_name)(h)
      elif i > 0 and self.norm == "layer":
        h = nn.LayerNorm(epsilon=BN_EPSILON, reduction_axes=(-3, -2, -1))(h)
      h = nn.leaky_relu(h, 0.2)
    base = h.shape[1]
    logits = self._layer(layers.Conv(1, (base, base), padding="VALID", use_bias=False, kernel_init=conv_init,
                                     impl=self.conv_impl), h, train).reshape(x_BxHxWxC.shape[0])
    if self.num_classes:
      phi_BxC = jnp.sum(h, axis=(1, 2))  # global sum pooling, as the paper's phi
      embed_BxC = self._layer(nn.Embed(self.num_classes, phi_BxC.shape[-1], embedding_init=conv_init,
                                       name="projection"), labels_B, train)
      logits = logits + jnp.sum(embed_BxC * phi_BxC, axis=-1)
    return logits
