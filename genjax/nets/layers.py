"""Convolutions that hold Flax's parameters and compute them another way, where that is faster.

`Conv` and `ConvTranspose` create exactly the parameters of `flax.linen.Conv`
and `flax.linen.ConvTranspose` (same names, shapes, layout and init, and the
same auto-names `Conv_0`, `ConvTranspose_0` in a parent), so a checkpoint does
not care which `impl` ran. They differ only in how a stride-2 layer is
computed:

- 'xla': what Flax does, `lax.conv_general_dilated` / `lax.conv_transpose`.
- 'products': matrix products over patches (im2col), whose gradients are matrix
  products too. XLA:CPU's own gradients of these layers are several times
  slower than its forward pass (jax#23783): the kernel gradient runs as a
  convolution whose window is the whole image. The products' kernel
  gradient is arranged for XLA:CPU's library kernels (`im2col.matmul`).
  * transposed convolution (sub-pixel): output o = s*q + r (phase r) sees
    the kernel taps t = r0, r0+s, ... at consecutive inputs, so every phase
    is a stride-1 convolution with ceil(k/s) taps; all phases share one
    product over the union of their windows (s*s times the output
    channels). The phases are then interleaved (depth to space). No
    multiply is by an inserted zero. Layers to fewer than 16 channels (a
    generator's image), where those products would be thin, and layers
    from small images (4x4), where the union of the windows is much larger
    than each phase's, are computed as what they are, the transpose of a
    strided convolution (its 'fast' form's vector-Jacobian product): their
    gradients are that convolution's forward pass and its kernel gradient,
    products over patches of the cotangent.
  * strided convolution: one product over the patches, read from the padded
    input with its width folded into blocks of s pixels (a reshape: no copy),
    so each kernel row's window is ceil(k/s) whole blocks (rows: strided
    slices); the kernel, padded with zero taps to whole blocks, is reshaped.
  Stride-1 layers are computed the 'xla' way in both, but for a window over
  the whole input (a DCGAN's first and last layers), which is a product.
- 'fast': 'products' where XLA's convolutions lose, XLA's where they win once
  the entry points compile them with XLA's own emitter (genjax.cli): a
  strided convolution from 16 channels or more is XLA's forward pass, XLA's
  kernel gradient, and for the input gradient the sub-pixel transposed
  convolution, whose shared product is one XLA stride-1 convolution
  (`convolution.strided_conv`: no patches built, no zeros multiplied); a
  transposed convolution to 16 channels or more computes its shared product
  the same way, and its gradients are those of the strided convolution it
  transposes: XLA's forward pass and kernel gradient
  (`convolution.adjoint_conv`). On small images, where the union of the
  phases' windows is much larger than each phase's (5x5 for 4x4), both take
  instead the polyphase form: s*s exact XLA stride-1 convolutions, one per
  phase (`convolution.polyphase_transpose`). The
  gradients are in the layout XLA:CPU's kernels take, inside loops too
  (`genjax.nets.convolution`), but second derivatives are not, so a GAN's D
  under an input-gradient penalty takes 'products' (genjax.models.gan_config).
- 'auto': 'fast' on CPU, 'xla' elsewhere (`resolve_impl`): on a GPU, XLA's
  own ops (cuDNN) ran the DCGAN step faster than 'fast' and compiled sooner,
  while 'fast' still helped the small conv VAE. benchmarks/layer_speed.py,
  dcgan_speed.py and vae_speed.py (--device=gpu) measure this; the figures,
  with their machine and date, are in docs/speed.md.

`dense` is a 1x1 convolution (a product over the channels) with the same two
forms; 'fast' gives it `im2col.matmul`'s kernel gradient.

Every other convolution is `genjax.nets.convolution`'s, whose gradients
XLA:CPU runs in its convolution kernels also inside a loop.

The functions `conv` and `conv_transpose` are the pure parts: NHWC inputs, HWIO
kernels, paddings as Flax and `lax` take them ('SAME', 'VALID' or explicit
(low, high) pairs per spatial dimension, with `lax.conv_transpose`'s meaning
for the transposed one). They equal the `lax` ops to float rounding, values
and gradients (tests/test_layers.py); benchmarks/dcgan_speed.py and
benchmarks/vae_speed.py time them in whole training steps.
"""

from collections.abc import Sequence
import functools
import math

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

from genjax.nets import convolution
from genjax.nets import im2col
from genjax.nets.convolution import nhwc_conv as _conv

IMPLS = ("auto", "xla", "fast", "products")
_MIN_FAST_FEATURES = 16  # transposed convolutions to fewer channels: `_strided_adjoint`
_MAX_WASTE = 1.4  # sub-pixel: one shared product while it computes under this many times the needed windows
_DIMENSIONS = ("NHWC", "HWIO", "NHWC")

Padding = str | Sequence[tuple[int, int]]


def resolve_impl(impl: str, backend: str | None = None) -> str:
  """'xla' or 'fast': `impl` itself, or for 'auto' the faster one measured on `backend` (default: JAX's)."""
  if impl not in IMPLS:
    raise ValueError(f"conv impl: unknown {impl!r}; allowed: {', '.join(IMPLS)}")
  if impl != "auto":
    return impl
  return "fast" if (backend or jax.default_backend()) == "cpu" else "xla"


def _pairs(padding: Padding, ndim: int) -> list[tuple[int, int]] | str:
  if isinstance(padding, str):
    if padding not in ("SAME", "VALID"):
      raise ValueError(f"padding: {padding!r} is not supported; use 'SAME', 'VALID' or (low, high) pairs")
    return padding
  if isinstance(padding, int):
    return [(padding, padding)] * ndim
  pairs = [(p, p) if isinstance(p, int) else tuple(p) for p in padding]
  if len(pairs) != ndim:
    raise ValueError(f"padding: {ndim} spatial dimensions need {ndim} (low, high) pairs, got {padding!r}")
  return pairs


def conv_pads(sizes: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
              padding: Padding) -> list[tuple[int, int]]:
  """Explicit (low, high) padding of a forward convolution, as `lax.conv_general_dilated` reads `padding`."""
  pairs = _pairs(padding, len(sizes))
  if isinstance(pairs, str):
    return list(lax.padtype_to_pads(sizes, kernel, strides, pairs))
  return pairs


def conv_transpose_pads(kernel: Sequence[int], strides: Sequence[int],
                        padding: Padding) -> list[tuple[int, int]]:
  """Explicit padding of the stride-dilated input, as `lax.conv_transpose` reads `padding`.

  A string means the padding of the forward convolution this one transposes
  (jax's `_conv_transpose_padding`); explicit pairs pad the dilated input as given.
  """
  pairs = _pairs(padding, len(kernel))
  if not isinstance(pairs, str):
    return pairs
  pads = []
  for k, s in zip(kernel, strides):
    if pairs == "SAME":
      total = k + s - 2
      low = k - 1 if s > k - 1 else math.ceil(total / 2)
    else:  # VALID
      total = k + s - 2 + max(k - s, 0)
      low = k - 1
    pads.append((low, total - low))
  return pads


def dense(x: jax.Array, kernel_KxO: jax.Array, *, impl: str = "fast", precision=None) -> jax.Array:
  """x [B, H, W, K] @ kernel [K, O] (a 1x1 convolution, `flax.linen.Dense` on NHWC features), as `impl` says.

  'xla' is the plain product. 'fast' is `im2col.matmul`: the same values, with the kernel gradient arranged for
  XLA:CPU's library kernels instead of a transposing copy of the input (the U-Net's 1x1 shortcuts:
  genjax.nets.unet). Nothing else in genjax calls it, so the DCGAN and VAE compute what they did.
  """
  if x.ndim != 4:
    raise ValueError(f"dense: needs NHWC inputs, got shape {x.shape}")
  if resolve_impl(impl) == "xla":
    return jnp.einsum("bhwk,ko->bhwo", x, kernel_KxO, precision=precision)
  return im2col.matmul(x, kernel_KxO, precision)


def _compiled(function):
  """`function` as one compiled call per shape and setting, also where it is called eagerly.

  Under an outer `jit` this is inlined; outside one it keeps Flax's eager
  `init`/`apply` from dispatching the patch slices one op at a time (a
  64x64 DCGAN's eager `init` took a minute that way).
  """
  jitted = jax.jit(function, static_argnames=("strides", "padding", "impl", "precision"))

  @functools.wraps(function)
  def wrapper(x, kernel, strides, padding, *, impl="fast", precision=None):
    if not isinstance(padding, (str, int)):
      padding = tuple(p if isinstance(p, int) else tuple(p) for p in padding)
    return jitted(x, kernel, strides=tuple(strides), padding=padding, impl=impl, precision=precision)

  return wrapper


@_compiled
def conv(x: jax.Array, kernel: jax.Array, strides: Sequence[int], padding: Padding, *,
         impl: str = "fast", precision=None) -> jax.Array:
  """`lax.conv_general_dilated(x, kernel, strides, padding)` in NHWC/HWIO, computed as `impl` says.

  'products' (and 'fast' under 16 input channels; from 16, XLA's convolution with
  `convolution.strided_conv`'s gradients) is one matrix product over the patches (im2col), which are read
  from the padded input with its width folded into blocks of s_w pixels: a
  kernel row's window is then ceil(k_w/s_w) whole blocks, contiguous in
  memory, and the rows are strided slices. No transpose of the input or the
  kernel (an earlier space-to-depth form had both, and built its patches
  slower; benchmarks/layer_speed.py, docs/speed.md).
  """
  if x.ndim != 4:
    raise ValueError(f"conv: needs NHWC inputs (2 spatial dimensions), got shape {x.shape}")
  strides = tuple(strides)
  k_h, k_w, c_in, c_out = kernel.shape
  pads = conv_pads(x.shape[1:3], (k_h, k_w), strides, padding)
  for n, k, (lo, hi) in zip(x.shape[1:3], (k_h, k_w), pads):
    if n + lo + hi < k:
      raise ValueError(f"conv: input size {n} with padding {(lo, hi)} is smaller than the kernel {k}")
  impl, pads = resolve_impl(impl), tuple(map(tuple, pads))
  if impl != "xla" and x.shape[1:3] == (k_h, k_w) and all(p == (0, 0) for p in pads):
    # The window is the whole input (a DCGAN D's last layer): a product, whose second derivatives (R1) stay
    # products too, where a convolution's would leave the layout XLA:CPU's kernels take (`_conv`).
    return im2col.matmul(x.reshape(x.shape[0], 1, 1, -1), kernel.reshape(-1, c_out), precision)
  if impl == "xla" or strides == (1, 1):
    return _conv(x, kernel, strides, pads, precision)
  if impl == "fast" and c_in >= _MIN_FAST_FEATURES:
    return convolution.strided_conv(x, kernel, strides, pads, precision)
  (s_h, s_w), ((lo_h, hi_h), (lo_w, hi_w)) = strides, pads
  (n_h, n_w), b = x.shape[1:3], x.shape[0]
  out_h, out_w = (n_h + lo_h + hi_h - k_h) // s_h + 1, (n_w + lo_w + hi_w - k_w) // s_w + 1
  c_w = -(-k_w // s_w)  # blocks of s_w pixels in a kernel row's window
  # The rows the windows read, and a whole number of blocks covering every window's columns.
  len_h, len_w = s_h * (out_h - 1) + k_h, s_w * (out_w - 1 + c_w)
  x = im2col.pad_or_crop(x, [(lo_h, len_h - n_h - lo_h), (lo_w, len_w - n_w - lo_w)])
  blocks = x.reshape(b, len_h, len_w // s_w, s_w * c_in)
  windows = [lax.slice(blocks, (0, i, m, 0), (b, i + s_h * (out_h - 1) + 1, m + out_w, s_w * c_in), (1, s_h, 1, 1))
             for i in range(k_h) for m in range(c_w)]
  # Stacked on a new axis, as in `im2col.patches`: one fusion.
  patches = jnp.stack(windows, axis=3).reshape(b, out_h, out_w, k_h * c_w * s_w * c_in)
  # Kernel tap (i, s_w*m + a) meets window (i, m)'s pixel a: the kernel in its own order, padded to whole blocks.
  k2 = jnp.pad(kernel, ((0, 0), (0, c_w * s_w - k_w), (0, 0), (0, 0)))
  return im2col.matmul(patches, k2.reshape(k_h * c_w * s_w * c_in, c_out), precision)


def _phases(n: int, k: int, s: int, lo: int, hi: int):
  """For one spatial dimension of a transposed convolution: what each output phase reads.

  Output o = s*q + r reads input q + offset[r] + j through kernel tap
  first[r] + s*j (j < ceil(k/s); a tap past the kernel's end is a zero).
  """
  out = (n - 1) * s + 1 + lo + hi - k + 1
  if out < 1:
    raise ValueError(f"conv_transpose: input size {n} with padding {(lo, hi)} gives no output for kernel {k}")
  # The first tap that lands on an input (not an inserted zero) for each phase r: a permutation of range(s).
  first = [(lo - r) % s for r in range(s)]
  offsets = [(r + first[r] - lo) // s for r in range(s)]
  return out, -(-k // s), first, offsets


def _permute(x: jax.Array, order: Sequence[int], axis: int) -> jax.Array:
  """x's entries along `axis` in `order` (a permutation), as slices whose gradient is the inverse permutation."""
  if list(order) == sorted(order):
    return x
  parts = lax.split(x, [1] * len(order), axis=axis)
  return jnp.concatenate([parts[i] for i in order], axis=axis)


def _strided_adjoint(x: jax.Array, kernel: jax.Array, strides: Sequence[int], pads, out: Sequence[int],
                     precision) -> jax.Array:
  """`lax.conv_transpose(x, kernel, strides, pads)` as the transpose of the strided convolution it inverts.

  `lax.conv_transpose` puts x[i] * kernel[a] at output s*i + low - a, so it is the vector-Jacobian product of
  a convolution with stride s of the `out`-sized output, by the kernel flipped (taps) and transposed
  (channels), padded low by k - 1 - low and high to give x's size. Its gradients are then that convolution's
  forward pass (in x) and kernel gradient, both products over patches ('fast'). The vjp is taken at zeros:
  the convolution is linear, and its forward pass is not used (XLA drops it).
  """
  fwd_pads, flipped = _adjoint_pads(x.shape[1:3], strides, pads, kernel.shape[:2], out), _flip(kernel)
  _, pullback = jax.vjp(lambda y: conv(y, flipped, strides, fwd_pads, impl="products", precision=precision),
                        jnp.zeros((x.shape[0], *out, kernel.shape[3]), x.dtype))
  return pullback(x)[0]


def _adjoint_pads(sizes, strides, pads, kernel_sizes, out):
  """The padding of the strided convolution whose transpose is the transposed convolution of `pads`."""
  return tuple((k - 1 - lo, s * (n - 1) - (k - 1 - lo) + k - o)
               for n, s, (lo, _), k, o in zip(sizes, strides, pads, kernel_sizes, out))


def _flip(kernel):
  """The kernel of that strided convolution (or back): taps flipped, channels transposed."""
  return jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)


def _phase_windows(sizes: Sequence[int], strides: Sequence[int], dims):
  """Phase r at q reads inputs q + offset[r] + j: one convolution over the union of the phases' windows. Per
  spatial dimension: the phases' output length q, the input's padding to that union, each phase's shift in it."""
  qs, conv_pad, shifts = [], [], []
  for n, s, (out, c, _, off) in zip(sizes, strides, dims):
    q = -(-out // s)
    lo = -min(off)
    qs.append(q)
    conv_pad.append((lo, q + max(off) - min(off) + c - 1 - n - lo))
    shifts.append([o - min(off) for o in off])
  return qs, conv_pad, shifts


def _subpixel(x: jax.Array, kernel: jax.Array, strides: Sequence[int], pads, *, xla_product: bool,
              precision) -> jax.Array:
  """`lax.conv_transpose(x, kernel, strides, pads)` as the s*s phases of its output: one product over the
  union of their windows, as an XLA stride-1 convolution (`xla_product`, which builds no patches) or over
  im2col's patches, each phase's windows sliced after and interleaved (depth to space)."""
  k_h, k_w, c_in, c_out = kernel.shape
  dims = [_phases(n, k, s, lo, hi) for n, k, s, (lo, hi) in zip(x.shape[1:3], (k_h, k_w), strides, pads)]
  (out_h, c_h, first_h, _), (out_w, c_w, first_w, _) = dims
  (s_h, s_w), b = strides, x.shape[0]
  (q_h, q_w), conv_pad, (shift_h, shift_w) = _phase_windows(x.shape[1:3], strides, dims)
  # One kernel for all phases: (c_h, c_w, C_in, s_h*s_w*C_out), zero where a phase has fewer taps.
  # Padded with zeros to c*s taps, tap s*j + a is k2[j, a], and phase r takes a = first[r]: a
  # permutation, not a gather (whose gradient would be a scatter-add into zeros).
  k2 = jnp.pad(kernel, ((0, c_h * s_h - k_h), (0, c_w * s_w - k_w), (0, 0), (0, 0)))
  k2 = k2.reshape(c_h, s_h, c_w, s_w, c_in, c_out)
  k2 = _permute(_permute(k2, first_h, axis=1), first_w, axis=3)
  k2 = k2.transpose(0, 2, 4, 1, 3, 5).reshape(c_h, c_w, c_in, s_h * s_w * c_out)
  if xla_product:
    y = _conv(im2col.pad_or_crop(x, conv_pad), k2, (1, 1), ((0, 0), (0, 0)), precision)
  else:
    y = im2col.matmul(im2col.patches(x, c_h, c_w, conv_pad), k2.reshape(c_h * c_w * c_in, -1), precision)
  # Split, not indexed: the gradient is then one concatenation of the phases (each padded back to
  # the union), not s*s zero-padded copies of the whole product summed (a faster VAE step on CPU:
  # benchmarks/vae_speed.py; docs/speed.md).
  phase = lax.split(y, [c_out] * (s_h * s_w), axis=3)
  y = jnp.stack([jnp.stack([phase[r * s_w + t][:, a:a + q_h, d:d + q_w] for t, d in enumerate(shift_w)], axis=3)
                 for r, a in enumerate(shift_h)], axis=3)
  # (B, Q_h, Q_w, s_h, s_w, C) -> (B, Q_h*s_h, Q_w*s_w, C), cropped to the output size.
  y = y.transpose(0, 1, 3, 2, 4, 5).reshape(b, q_h * s_h, q_w * s_w, c_out)
  return y[:, :out_h, :out_w]


def _flipped_subpixel(c, flipped, strides, pads, precision):
  """`adjoint_conv`'s form: the sub-pixel transposed convolution by the kernel `flipped` came from."""
  return _subpixel(c, _flip(flipped), strides, pads, xla_product=True, precision=precision)


@_compiled
def conv_transpose(x: jax.Array, kernel: jax.Array, strides: Sequence[int], padding: Padding, *,
                   impl: str = "fast", precision=None) -> jax.Array:
  """`lax.conv_transpose(x, kernel, strides, padding)` in NHWC/HWIO, computed as `impl` says.

  'products' is the sub-pixel form: the s*s phases of the output as matrix
  products over the input's patches, interleaved (depth to space); 'fast'
  computes those products as one XLA stride-1 convolution, with the
  gradients of the strided convolution it transposes (`convolution.adjoint_conv`).
  """
  if x.ndim != 4:
    raise ValueError(f"conv_transpose: needs NHWC inputs (2 spatial dimensions), got shape {x.shape}")
  strides, impl = tuple(strides), resolve_impl(impl)
  k_h, k_w, c_in, c_out = kernel.shape
  pads = tuple(map(tuple, conv_transpose_pads((k_h, k_w), strides, padding)))
  dims = [_phases(n, k, s, lo, hi) for n, k, s, (lo, hi) in zip(x.shape[1:3], (k_h, k_w), strides, pads)]
  out = [d[0] for d in dims]
  if impl == "fast" and x.shape[1:3] == (1, 1) and strides == (1, 1) and pads == ((k_h - 1, k_h - 1),
                                                                                   (k_w - 1, k_w - 1)):
    # From one pixel to the kernel's size (a DCGAN G's projection): a product by the flipped kernel, as `conv`'s.
    k2 = jnp.flip(kernel, (0, 1)).transpose(2, 0, 1, 3).reshape(c_in, k_h * k_w * c_out)
    return im2col.matmul(x, k2, precision).reshape(x.shape[0], k_h, k_w, c_out)
  if strides == (1, 1):  # lax.conv_transpose of stride 1 (transpose_kernel=False): a convolution by the same kernel
    return _conv(x, kernel, strides, pads, precision)
  if impl == "xla":
    return lax.conv_transpose(x, kernel, strides, pads, dimension_numbers=_DIMENSIONS, precision=precision)
  if impl == "fast" and c_out >= _MIN_FAST_FEATURES:
    # XLA's convolutions: the sub-pixel form's shared product, or on small images the polyphase form's s*s exact
    # ones, chosen as the input gradient of the strided convolution it transposes, whose gradients it takes.
    fwd_pads, y_shape = _adjoint_pads(x.shape[1:3], strides, pads, (k_h, k_w), out), (x.shape[0], *out, c_out)
    form = (functools.partial(_flipped_subpixel, strides=strides, pads=pads, precision=precision)
            if convolution.union_waste(out, (k_h, k_w), strides, fwd_pads) < convolution.POLYPHASE_WASTE else
            functools.partial(convolution.polyphase_transpose, strides=strides, pads=fwd_pads, in_shape=y_shape,
                              precision=precision))
    return convolution.adjoint_conv(x, _flip(kernel), strides, fwd_pads, y_shape, precision, form)
  qs, _, shifts = _phase_windows(x.shape[1:3], strides, dims)
  waste = math.prod(q + max(shift) for q, shift in zip(qs, shifts)) / math.prod(qs)
  if c_out < _MIN_FAST_FEATURES or waste >= _MAX_WASTE:
    # Few output channels make thin phase products, slower than XLA's own forward pass (64 -> 3 channels at
    # 64x64), whose kernel gradient is in turn many times slower than a strided convolution's. On small
    # images the union of the phases' windows is much larger than each phase's, and one product a phase
    # builds s*s times the input's patches (a 4x4 input) for products as slow to differentiate.
    return _strided_adjoint(x, kernel, strides, pads, out, precision)
  return _subpixel(x, kernel, strides, pads, xla_product=False, precision=precision)


class _Convolution(nn.Module):
  """Flax's parameters of a 2-D convolution (kernel HWIO, bias), computed by the subclass's `_function`."""

  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int] = (1, 1)
  padding: Padding = "SAME"
  use_bias: bool = True
  kernel_init: nn.initializers.Initializer = nn.linear.default_kernel_init
  bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()
  impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", self.kernel_init, (*self.kernel_size, x.shape[-1], self.features), jnp.float32)
    y = self._function(x, kernel.astype(x.dtype), self.strides, self.padding, impl=self.impl)
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,), jnp.float32).astype(y.dtype)
    return y


class Conv(_Convolution):
  """`flax.linen.Conv` (NHWC, 2-D) with its parameters, computed by `conv` as `impl` says."""

  _function = staticmethod(conv)


class ConvTranspose(_Convolution):
  """`flax.linen.ConvTranspose` (NHWC, 2-D, transpose_kernel=False) with its parameters, computed by
  `conv_transpose`."""

  _function = staticmethod(conv_transpose)
