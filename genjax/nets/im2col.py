"""Products over patches (im2col) whose gradients are products too, arranged for XLA:CPU's library kernels.

`patches` reads every window of a padded NHWC input; `matmul` multiplies
them (or any NHWC features) by a kernel with a custom tangent in the kernel
(`_kernel_tangent`), so that its transpose, the kernel gradient, is a plain
product XLA:CPU gives its fast kernels (YNNPACK) rather than Eigen's
transposing contraction. `genjax.nets.layers` builds its 'fast' convolutions
and `dense` from them; tests/test_layers.py checks them against `lax`'s ops.
"""

from collections.abc import Sequence
import functools

import jax
from jax import lax
from jax.custom_derivatives import SymbolicZero
import jax.numpy as jnp

# Patches narrower than this (a net's first layer) take their kernel gradient one image at a time.
# XLA:CPU gives a product with so small an output (48 x 64 for the DCGAN's D) to Eigen, which read
# the whole batch's cotangent transposed, fused into a slow gather; one image at a time over one
# flattened axis of pixels (`_kernel_tangent`), it reads the cotangent as it is. Measured in whole
# DCGAN steps by benchmarks/dcgan_speed.py (figures, with machine and date, in docs/speed.md).
_PER_IMAGE_WIDTH = 128
# Patches with at most this many rows per output channel take XLA's own kernel gradient (_kernel_tangent).
_FEW_ROWS = 4


def pad_or_crop(x: jax.Array, pads: Sequence[tuple[int, int]]) -> jax.Array:
  """Pads the spatial axes of NHWC `x` with zeros; a negative amount crops."""
  config = [(0, 0, 0)] + [(lo, hi, 0) for lo, hi in pads] + [(0, 0, 0)]
  return lax.pad(x, jnp.zeros((), x.dtype), config)


def patches(x: jax.Array, k_h: int, k_w: int, pads) -> jax.Array:
  """[B, H', W', k_h * k_w * C]: every k_h x k_w window of the padded `x`, in (i, j, c) order (im2col)."""
  x = pad_or_crop(x, pads)
  out_h, out_w = x.shape[1] - k_h + 1, x.shape[2] - k_w + 1
  if (k_h, k_w) == (1, 1):
    return x
  windows = [x[:, i:i + out_h, j:j + out_w] for i in range(k_h) for j in range(k_w)]
  # Stacked on a new axis, not concatenated on the channels: XLA:CPU then makes the slices and the
  # copy one fusion instead of one per window (fewer kernels, a shorter compile, the same speed;
  # benchmarks/dcgan_speed.py reports the compile time; docs/speed.md).
  return jnp.stack(windows, axis=3).reshape(x.shape[0], out_h, out_w, -1)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def matmul(patches: jax.Array, kernel_KxO: jax.Array, precision) -> jax.Array:
  """patches [B, H, W, K] @ kernel [K, O], with a tangent whose transpose XLA:CPU computes fast.

  The kernel gradient of a plain product is patches^T @ cotangent, a product
  over the first axis of both, which XLA:CPU leaves to Eigen instead of its
  faster library kernels (YNNPACK). The tangent in the kernel is written as
  (d_kernel^T @ patches^T)^T with the transposes kept, so its transpose is
  (cotangent^T @ patches)^T: one copy of the cotangent, then a plain product.
  The values are the same products (tests/test_layers.py); forward mode and
  higher orders (R1, gradient penalty) still work. It makes a whole DCGAN
  step faster on a CPU, and narrow patches' gradient taken per image
  (`_PER_IMAGE_WIDTH`) more so: benchmarks/dcgan_speed.py measures it, the
  two forms alternating in one process; the figures, with their machine and
  date, are in docs/speed.md.
  """
  return jnp.einsum("bhwk,ko->bhwo", patches, kernel_KxO, precision=precision)


@functools.partial(matmul.defjvp, symbolic_zeros=True)
def _matmul_jvp(precision, primals, tangents):
  patches, kernel = primals
  d_patches, d_kernel = tangents
  y = matmul(patches, kernel, precision)
  terms = []
  if not isinstance(d_patches, SymbolicZero):
    terms.append(jnp.einsum("bhwk,ko->bhwo", d_patches, kernel, precision=precision))
  if not isinstance(d_kernel, SymbolicZero):
    terms.append(_kernel_tangent(patches, d_kernel, precision))
  return y, functools.reduce(jnp.add, terms) if terms else jnp.zeros_like(y)


def _kernel_tangent(patches: jax.Array, d_kernel: jax.Array, precision) -> jax.Array:
  """patches @ d_kernel, written for the form its transpose (the kernel gradient) should take."""
  b, k, o = patches.shape[0], patches.shape[-1], d_kernel.shape[-1]
  # One contracted axis of pixels, not H and W apart: with two, XLA:CPU copies the cotangent
  # channels-first before the product, an extra pass over it (benchmarks/layer_speed.py; docs/speed.md).
  rows = patches.reshape(b, -1, k)
  if rows.size // k <= _FEW_ROWS * o and k >= _PER_IMAGE_WIDTH:
    # Few rows (a deep layer: 4x4 maps) and a big kernel: XLA's own transpose, whose gradient comes
    # out in the kernel's layout. The form below would leave it transposed, and XLA fuses that
    # transpose into each of the optimizer's reads (4 strided gathers of the whole kernel; measured
    # by benchmarks/dcgan_speed.py, figures in docs/speed.md).
    t = jnp.einsum("...k,ko->...o", rows, d_kernel, precision=precision)
  elif k < _PER_IMAGE_WIDTH:
    # Transpose: one product per image, summed over the images.
    per_image = jnp.broadcast_to(d_kernel, (b, k, o))
    t = jnp.einsum("b...k,bko->b...o", rows, per_image, precision=precision)
  else:
    # Transpose: (cotangent^T @ patches)^T; the barriers keep XLA from folding the transposes back.
    barrier = lax.optimization_barrier
    t = jnp.einsum("ok,...k->o...", barrier(d_kernel.T), rows, precision=precision)
    t = barrier(jnp.moveaxis(barrier(t), 0, -1))
  return t.reshape(*patches.shape[:-1], o)
