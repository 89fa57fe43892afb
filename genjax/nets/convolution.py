"""`lax.conv_general_dilated` whose gradients XLA:CPU runs in its convolution kernels, also inside a loop.

XLA:CPU computes a convolution in its fast kernels (Eigen's) only in one
layout: NHWC inputs and outputs, HWIO kernels. It rewrites other layouts into
that one in a program's top level only (its convolution canonicalization), so
lax's own gradients, whose kernel gradient treats the channels as the batch,
ran as naive loops inside a `lax.scan`: the diffusion U-Net's two training
steps in one call (`steps_per_call`) took 20 times as long as two calls of
one step. On a CPU, `conv_general_dilated` writes its tangents so that
their transposes, the two gradients, are convolutions in that layout, with
lax's values, tangents and gradients (tests/test_layers.py); elsewhere it is
lax's own. Second derivatives (R1, a gradient penalty) differentiate
those convolutions with lax's rules again: the nets that take them compute
their convolutions as products (`genjax.nets.layers`). Flax's `nn.Conv`
takes it as its `conv_general_dilated` (`flax_conv`).

`strided_conv` and `adjoint_conv` are the strided layers of `genjax.nets.layers`'
'fast' form, with the same property: a strided convolution whose input
gradient is the sub-pixel transposed convolution, and a transposed
convolution whose gradients are the strided convolution it transposes. The
sub-pixel form computes its s*s phases as one product over the union of
their windows; on small images, where that union is much larger than each
phase's, both take the polyphase form instead, s*s exact convolutions.
"""

import functools

import flax.linen as nn
import jax
from jax import lax
from jax.custom_derivatives import SymbolicZero
import jax.numpy as jnp

# A strided layer's input gradient and a transposed layer ('fast') are the sub-pixel form's one shared product
# while it computes under this many times the positions needed, beyond it the polyphase form's s*s exact ones.
POLYPHASE_WASTE = 1.2
_NHWC = lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2))
# The input tangent reads the kernel transposed as HWOI, so that its transpose (the input gradient) reads it HWIO;
# the kernel tangent reads the input as [C, H, W, B] and the kernel as [C_in, kh, kw, C_out] and writes
# [H', W', B, C_out], so that its transpose (the kernel gradient) is a convolution of [C, H, W, B] by
# [H', W', B, C_out] into [C_in, kh, kw, C_out], batch first and channels last everywhere (lax's own rule
# transposes the input and the output's cotangent the same way, ConvDimensionNumbers'
# (batch/out, feature/in, spatial...) order).
_INPUT_TANGENT = lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(2, 3, 0, 1), out_spec=(0, 3, 1, 2))
_KERNEL_TANGENT = lax.ConvDimensionNumbers(lhs_spec=(3, 0, 1, 2), rhs_spec=(3, 0, 1, 2), out_spec=(2, 3, 0, 1))


def nhwc_conv(x, kernel, strides, pads, precision=None):
  """lax.conv_general_dilated(x, kernel, strides, pads) in NHWC/HWIO; on a CPU with the tangent rule below.

  GPU and TPU compilers choose their convolutions' layouts themselves, so there it is lax's."""
  if jax.default_backend() == "cpu":
    return _cpu_conv(x, kernel, strides, pads, precision)
  return lax.conv_general_dilated(x, kernel, strides, pads, dimension_numbers=_NHWC, precision=precision)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def _cpu_conv(x, kernel, strides, pads, precision):
  return lax.conv_general_dilated(x, kernel, strides, pads, dimension_numbers=_NHWC, precision=precision)


def input_tangent(d_x, kernel, strides, pads, precision=None):
  """The convolution of the tangent `d_x` by `kernel`, written so that its transpose (the input gradient) is a
  convolution in NHWC/HWIO."""
  return lax.conv_general_dilated(d_x, kernel.transpose(0, 1, 3, 2), strides, pads,
                                  dimension_numbers=_INPUT_TANGENT, precision=precision)


def kernel_tangent(x, d_kernel, strides, pads, precision=None):
  """The convolution of `x` by the tangent `d_kernel`, written so that its transpose (the kernel gradient) is a
  convolution in NHWC/HWIO."""
  t = lax.conv_general_dilated(x.transpose(3, 1, 2, 0), d_kernel.transpose(2, 0, 1, 3), strides, pads,
                               dimension_numbers=_KERNEL_TANGENT, precision=precision)
  return t.transpose(2, 0, 1, 3)


@functools.partial(_cpu_conv.defjvp, symbolic_zeros=True)
def _conv_jvp(strides, pads, precision, primals, tangents):
  x, kernel = primals
  d_x, d_kernel = tangents
  terms = []
  if not isinstance(d_x, SymbolicZero):
    terms.append(input_tangent(d_x, kernel, strides, pads, precision))
  if not isinstance(d_kernel, SymbolicZero):
    terms.append(kernel_tangent(x, d_kernel, strides, pads, precision))
  y = _cpu_conv(x, kernel, strides, pads, precision)
  return y, functools.reduce(jnp.add, terms) if terms else jnp.zeros_like(y)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1, precision=None,
                         preferred_element_type=None):
  """`lax.conv_general_dilated`, with gradients XLA:CPU runs in its convolution kernels also inside loops.

  A 2-D convolution in NHWC/HWIO without dilation or groups is `nhwc_conv` (the same values,
  tangents and gradients); anything else is lax's. Flax's `nn.Conv(..., conv_general_dilated=...)` takes it.
  """
  plain = (lhs.ndim == 4 and all(d in (None, 1) for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
           and feature_group_count == 1 and batch_group_count == 1 and preferred_element_type is None
           and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) == _NHWC)
  if not plain:
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                    dimension_numbers, feature_group_count, batch_group_count, precision,
                                    preferred_element_type)
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
  return nhwc_conv(lhs, rhs, tuple(window_strides), tuple(tuple(p) for p in padding), precision)


def flax_conv(*args, **kwargs) -> nn.Conv:
  """`nn.Conv(*args, **kwargs)` (the same module, names and parameters) computed by `conv_general_dilated`."""
  return nn.Conv(*args, conv_general_dilated=conv_general_dilated, **kwargs)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def strided_conv(x, kernel, strides, pads, precision):
  """XLA's strided convolution, with the sub-pixel transposed convolution as its input gradient.

  The input tangent is the same convolution in space-to-depth form, so its transpose is one stride-1
  convolution of the cotangent into s*s phases, interleaved: no zeros multiplied, as in lax's (a convolution
  of the cotangent dilated by s). Both gradients are XLA convolutions in the layout its CPU kernels take, in
  loops too (`genjax.nets.convolution`)."""
  return nhwc_conv(x, kernel, strides, pads, precision)


@functools.partial(strided_conv.defjvp, symbolic_zeros=True)
def _strided_jvp(strides, pads, precision, primals, tangents):
  x, kernel = primals
  d_x, d_kernel = tangents
  form = _polyphase_conv if union_waste(x.shape[1:3], kernel.shape[:2], strides, pads) >= POLYPHASE_WASTE else (
      _space_to_depth_conv)
  terms = [] if isinstance(d_x, SymbolicZero) else [form(d_x, kernel, strides, pads, precision)]
  if not isinstance(d_kernel, SymbolicZero):
    terms.append(kernel_tangent(x, d_kernel, strides, pads, precision))
  y = strided_conv(x, kernel, strides, pads, precision)
  return y, functools.reduce(jnp.add, terms) if terms else jnp.zeros_like(y)


def union_waste(sizes, kernel_sizes, strides, pads) -> float:
  """How many times the positions it needs the sub-pixel form computes: its phases share one product over the
  union of their windows, which on a small image is much larger than each phase's (5 x 5 for 4 x 4)."""
  waste = 1.0
  for n, k, s, (lo, hi) in zip(sizes, kernel_sizes, strides, pads):
    waste *= ((n + lo + hi - k) // s + 1 + -(-k // s) - 1) / -(-n // s)
  return waste


def _polyphase_conv(x, kernel, strides, pads, precision=None):
  """The strided convolution as the sum over the input's s*s phases (rows s*i + r) of stride-1 convolutions,
  each by the kernel taps that meet that phase: no position computed that the output does not need. Its
  transpose (`polyphase_transpose`) is s*s exact convolutions into the phases, interleaved."""
  (s_h, s_w), (k_h, k_w, c_in, c_out) = strides, kernel.shape
  b, sizes = x.shape[0], x.shape[1:3]
  outs = [(n + lo + hi - k) // s + 1 for n, k, s, (lo, hi) in zip(sizes, (k_h, k_w), strides, pads)]
  (m_h, m_w) = [-(-n // s) for n, s in zip(sizes, strides)]
  x = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (0, s_h * m_h - sizes[0], 0), (0, s_w * m_w - sizes[1], 0),
                                          (0, 0, 0)])
  # Split, not indexed: the transpose is then one concatenation of the phases' gradients, not s*s padded sums.
  phases = lax.split(x.reshape(b, m_h, s_h, m_w, s_w, c_in).transpose(2, 4, 0, 1, 3, 5).reshape(-1, b, m_h, m_w, c_in),
                     [1] * (s_h * s_w), axis=0)
  terms = []
  for index, (r_h, r_w) in enumerate((r_h, r_w) for r_h in range(s_h) for r_w in range(s_w)):
    # Input row s*i + r meets the taps a + s*j, a = (r + lo) mod s.
    firsts = [(r + lo) % s for r, s, (lo, _) in zip((r_h, r_w), strides, pads)]
    taps = kernel[firsts[0]::s_h, firsts[1]::s_w]
    if 0 in taps.shape[:2]:
      continue
    phase, phase_pads, zeros = phases[index][0], [], [(0, 0, 0)] * 4
    for axis, r, s, (lo, _), a, m, out, c in zip((1, 2), (r_h, r_w), strides, pads, firsts, (m_h, m_w), outs,
                                                 taps.shape[:2]):
      low = -((a - r - lo) // s)  # the phase's row i meets tap a + s*j at output i - j + low
      high = out + c - 1 - m - low
      # Paddings kept within the window (0..c-1), whose transposes are too: rows past the last window are
      # sliced off, and outputs that read only padding are zeros padded on after. JAX transposes a padding
      # outside the window into a negative one, which XLA:CPU computed from memory outside its operands
      # (garbage and NaN, in some gradients of stride 2 with paddings from 3).
      phase = lax.slice_in_dim(phase, 0, m + min(high, 0), axis=axis)
      phase_pads.append((min(low, c - 1), min(max(high, 0), c - 1)))
      zeros[axis] = (low - phase_pads[-1][0], max(high, 0) - phase_pads[-1][1], 0)
    if 0 in phase.shape:
      continue
    term = input_tangent(phase, taps, (1, 1), phase_pads, precision)
    terms.append(lax.pad(term, jnp.zeros((), term.dtype), zeros))
  return functools.reduce(jnp.add, terms) if terms else jnp.zeros((b, *outs, c_out), x.dtype)


def polyphase_transpose(c, kernel, strides, pads, in_shape, precision=None):
  """The transpose of `nhwc_conv(., kernel, strides, pads)` (whose input has `in_shape`) applied to `c`, as s*s
  exact stride-1 convolutions in NHWC/HWIO (the transpose of `_polyphase_conv`): a transposed convolution
  with no position computed twice, where the sub-pixel form's union of windows wastes more (`union_waste`)."""
  forward = functools.partial(_polyphase_conv, kernel=kernel, strides=strides, pads=pads, precision=precision)
  return jax.linear_transpose(forward, jax.ShapeDtypeStruct(in_shape, c.dtype))(c)[0]


def _space_to_depth_conv(x, kernel, strides, pads, precision):
  """The strided convolution as a stride-1 one: the padded input folded s x s into its channels, by the kernel
  padded to whole s x s blocks of taps and folded the same way (tap s*j + a meets block j's pixel a)."""
  (s_h, s_w), (k_h, k_w, c_in, c_out) = strides, kernel.shape
  sizes = []
  for n, k, s, (lo, hi) in zip(x.shape[1:3], (k_h, k_w), strides, pads):
    out, c = (n + lo + hi - k) // s + 1, -(-k // s)
    sizes.append((out + c - 1, c, (lo, s * (out + c - 1) - n - lo)))
  (q_h, c_h, pad_h), (q_w, c_w, pad_w) = sizes
  x = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (*pad_h, 0), (*pad_w, 0), (0, 0, 0)])
  x = x.reshape(x.shape[0], q_h, s_h, q_w, s_w, c_in).transpose(0, 1, 3, 2, 4, 5)
  x = x.reshape(x.shape[0], q_h, q_w, s_h * s_w * c_in)
  k2 = jnp.pad(kernel, ((0, c_h * s_h - k_h), (0, c_w * s_w - k_w), (0, 0), (0, 0)))
  k2 = k2.reshape(c_h, s_h, c_w, s_w, c_in, c_out).transpose(0, 2, 1, 3, 4, 5).reshape(c_h, c_w, -1, c_out)
  return input_tangent(x, k2, (1, 1), ((0, 0), (0, 0)), precision)


def kernel_gradient(x, cotangent, kernel_shape, strides, pads, precision=None):
  """The kernel gradient of `nhwc_conv(x, ., strides, pads)` at `cotangent`, as one convolution in NHWC/HWIO:
  x as [C, H, W, B] by the cotangent as [H', W', B, C_out], dilated by the strides, into [C, kh, kw, C_out]."""
  kernel_pads = [(lo, k + s * (o - 1) - n - lo)
                 for (lo, _), k, s, o, n in zip(pads, kernel_shape[:2], strides, cotangent.shape[1:3], x.shape[1:3])]
  g = lax.conv_general_dilated(x.transpose(3, 1, 2, 0), cotangent.transpose(1, 2, 0, 3), (1, 1), kernel_pads,
                               rhs_dilation=strides, dimension_numbers=_NHWC, precision=precision)
  return g.transpose(1, 2, 0, 3)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5, 6))
def adjoint_conv(c, kernel, strides, pads, out_shape, precision, form):
  """The transpose of `nhwc_conv(., kernel, strides, pads)` (whose input has `out_shape`) applied to `c`, computed
  by `form(c, kernel)`, such as a sub-pixel transposed convolution. Its gradients are written as that
  convolution and its kernel gradient, XLA's and in NHWC/HWIO: the tangents are their transposes
  (`jax.linear_transpose`), which JAX transposes back."""
  return form(c, kernel)


@functools.partial(adjoint_conv.defjvp, symbolic_zeros=True)
def _adjoint_conv_jvp(strides, pads, out_shape, precision, form, primals, tangents):
  c, kernel = primals
  d_c, d_kernel = tangents
  y = adjoint_conv(c, kernel, strides, pads, out_shape, precision, form)
  out = jax.ShapeDtypeStruct(out_shape, c.dtype)
  terms = []
  if not isinstance(d_c, SymbolicZero):
    forward = functools.partial(lax.conv_general_dilated, rhs=kernel, window_strides=strides, padding=pads,
                                dimension_numbers=_NHWC, precision=precision)
    terms.append(jax.linear_transpose(forward, out)(d_c)[0])
  if not isinstance(d_kernel, SymbolicZero):
    gradient = functools.partial(kernel_gradient, cotangent=c, kernel_shape=kernel.shape, strides=strides,
                                 pads=pads, precision=precision)
    terms.append(jax.linear_transpose(gradient, out)(d_kernel)[0])
  return y, functools.reduce(jnp.add, terms) if terms else jnp.zeros_like(y)
