"""Inception-v3 in the form FID uses: the TTUR network (TensorFlow's 2015-12-05 graph), as pytorch-fid ports it.

FID compares the 2,048 activations of the final average pool. The FID network
is not torchvision's ImageNet Inception-v3; it differs in four places, each
kept here exactly as pytorch-fid (`pytorch_fid/inception.py`) writes it:

  * the average pools inside the Mixed_5*, Mixed_6b-e and Mixed_7b blocks do
    not count the zero padding (TensorFlow's AVG pool, `count_include_pad=False`);
  * the pool branch of the last block, Mixed_7c, takes a 3x3 max pool, not an
    average (a quirk of the TensorFlow graph that every FID number carries);
  * its classifier has 1,008 classes (unused by FID; not built here);
  * its weights are TensorFlow's, converted (`python -m genjax.convert_inception`).

Every convolution is followed by BatchNorm (eps 1e-3) and ReLU in the
published network; in inference BatchNorm is an affine map, so the converter
folds it into the convolution's kernel and bias and this module holds plain
biased convolutions.

Input rule (`fid_input`): images as uint8, the way pytorch-fid reads PNG files,
scaled to [0, 1], grey images repeated to three channels, resized to 299x299
by bilinear interpolation with half-pixel centres and no antialiasing
(`torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`,
upsampling and downsampling alike), then mapped to [-1, 1].

Convolutions run at `Precision.HIGHEST`: an accelerator's default bfloat16
passes would move the features, and FID with them.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

SIZE = 299  # the resolution the network was trained at; fid_input resizes every image to it
FEATURES = 2048  # the final average pool's width: the features of FID
BLOCK_WIDTHS = (64, 192, 768, 2048)  # channels at the end of pytorch-fid's output blocks 0..3


class _BiasedConv(nn.Module):
  """Flax Conv's parameters (kernel [kh, kw, in, out], bias); a 1x1 kernel runs as a matrix product over channels.

  The same numbers either way; XLA:CPU runs its 1x1 convolutions several times
  slower than the equal matrix product, and about half of Inception's layers
  are 1x1. benchmarks/inception_speed.py measures the network against
  pytorch-fid's; the figures, with their machine and date, are in docs/speed.md.
  """

  features: int
  kernel: tuple[int, int]
  stride: int
  padding: tuple[int, int]

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (*self.kernel, x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    highest = jax.lax.Precision.HIGHEST
    if self.kernel == (1, 1) and self.stride == 1 and self.padding == (0, 0):
      y = jnp.einsum("bhwi,io->bhwo", x, kernel[0, 0], precision=highest)
    else:
      (ph, pw) = self.padding
      y = jax.lax.conv_general_dilated(x, kernel, (self.stride, self.stride), ((ph, ph), (pw, pw)),
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=highest)
    return y + bias


class Conv(nn.Module):
  """A convolution with BatchNorm folded into its kernel and bias, then ReLU (TF's conv + BN + ReLU)."""

  features: int
  kernel: tuple[int, int]
  stride: int = 1
  padding: tuple[int, int] = (0, 0)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return nn.relu(_BiasedConv(self.features, self.kernel, self.stride, self.padding, name="conv")(x))


def _avg_pool_3x3(x: jax.Array) -> jax.Array:
  return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_s2(x: jax.Array) -> jax.Array:
  return nn.max_pool(x, (3, 3), (2, 2))


class InceptionA(nn.Module):  # Mixed_5b..5d (FIDInceptionA)
  pool_features: int

  @nn.compact
  def __call__(self, x):
    b1 = Conv(64, (1, 1), name="branch1x1")(x)
    b5 = Conv(64, (5, 5), padding=(2, 2), name="branch5x5_2")(Conv(48, (1, 1), name="branch5x5_1")(x))
    b3 = Conv(64, (1, 1), name="branch3x3dbl_1")(x)
    b3 = Conv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
    b3 = Conv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
    bp = Conv(self.pool_features, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):  # Mixed_6a (torchvision's InceptionB)
  @nn.compact
  def __call__(self, x):
    b3 = Conv(384, (3, 3), stride=2, name="branch3x3")(x)
    bd = Conv(64, (1, 1), name="branch3x3dbl_1")(x)
    bd = Conv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = Conv(96, (3, 3), stride=2, name="branch3x3dbl_3")(bd)
    return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class InceptionC(nn.Module):  # Mixed_6b..6e (FIDInceptionC)
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c7 = self.channels_7x7
    b1 = Conv(192, (1, 1), name="branch1x1")(x)
    b7 = Conv(c7, (1, 1), name="branch7x7_1")(x)
    b7 = Conv(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
    b7 = Conv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
    bd = Conv(c7, (1, 1), name="branch7x7dbl_1")(x)
    bd = Conv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
    bd = Conv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
    bd = Conv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
    bd = Conv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
    bp = Conv(192, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):  # Mixed_7a (torchvision's InceptionD)
  @nn.compact
  def __call__(self, x):
    b3 = Conv(320, (3, 3), stride=2, name="branch3x3_2")(Conv(192, (1, 1), name="branch3x3_1")(x))
    b7 = Conv(192, (1, 1), name="branch7x7x3_1")(x)
    b7 = Conv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
    b7 = Conv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
    b7 = Conv(192, (3, 3), stride=2, name="branch7x7x3_4")(b7)
    return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class InceptionE(nn.Module):  # Mixed_7b (FIDInceptionE_1, average pool) and Mixed_7c (FIDInceptionE_2, max pool)
  max_pool: bool

  @nn.compact
  def __call__(self, x):
    b1 = Conv(320, (1, 1), name="branch1x1")(x)
    b3 = Conv(384, (1, 1), name="branch3x3_1")(x)
    b3 = jnp.concatenate([Conv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                          Conv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], axis=-1)
    bd = Conv(448, (1, 1), name="branch3x3dbl_1")(x)
    bd = Conv(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = jnp.concatenate([Conv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                          Conv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)], axis=-1)
    if self.max_pool:  # the TF graph's quirk in Mixed_7c
      pooled = nn.max_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)))
    else:
      pooled = _avg_pool_3x3(x)
    bp = Conv(192, (1, 1), name="branch_pool")(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
  """Takes [B, H, W, 3] in [-1, 1] (299x299 for FID: `fid_input`); returns pytorch-fid's blocks 0..`last_block`.

  Block 0 ends at the first max pool (64 channels), 1 at the second (192),
  2 before the auxiliary classifier (768), 3 at the final average pool
  ([B, 2048], the FID features). Parameter names follow torchvision's module
  names, so that converted weights map one to one.
  """

  last_block: int = 3

  @nn.compact
  def __call__(self, x_BxHxWx3: jax.Array) -> tuple[jax.Array, ...]:
    outputs = []
    x = Conv(32, (3, 3), stride=2, name="Conv2d_1a_3x3")(x_BxHxWx3)
    x = Conv(32, (3, 3), name="Conv2d_2a_3x3")(x)
    x = Conv(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
    outputs.append(x := _max_pool_3x3_s2(x))
    if self.last_block >= 1:
      x = Conv(80, (1, 1), name="Conv2d_3b_1x1")(x)
      x = Conv(192, (3, 3), name="Conv2d_4a_3x3")(x)
      outputs.append(x := _max_pool_3x3_s2(x))
    if self.last_block >= 2:
      x = InceptionA(32, name="Mixed_5b")(x)
      x = InceptionA(64, name="Mixed_5c")(x)
      x = InceptionA(64, name="Mixed_5d")(x)
      x = InceptionB(name="Mixed_6a")(x)
      for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        x = InceptionC(c7, name=name)(x)
      outputs.append(x)
    if self.last_block >= 3:
      x = InceptionD(name="Mixed_7a")(x)
      x = InceptionE(max_pool=False, name="Mixed_7b")(x)
      x = InceptionE(max_pool=True, name="Mixed_7c")(x)
      outputs.append(jnp.mean(x, axis=(1, 2)))
    return tuple(outputs)


def fid_input(image_BxHxWxC: jax.Array, size: int = SIZE) -> jax.Array:
  """uint8 images (1 or 3 channels, any size) -> float32 [B, size, size, 3] in [-1, 1], by the rule above."""
  x = image_BxHxWxC.astype(jnp.float32) / 255.0
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  if x.shape[1:3] != (size, size):
    x = jax.image.resize(x, (x.shape[0], size, size, 3), method="linear", antialias=False)
  return 2.0 * x - 1.0
