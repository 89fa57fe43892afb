"""The fast convolutions equal Flax's, values and gradients, and hold the same parameters."""

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.nets import convolution
from genjax.nets import layers

# (kernel, stride, padding): the nets' layers and the cases around them.
CASES = [
    (4, 2, ((2, 2), (2, 2))),  # DCGAN G (PyTorch p=1) / D uses ((1, 1), (1, 1))
    (4, 2, ((1, 1), (1, 1))),
    (4, 2, "SAME"),
    (4, 2, "VALID"),
    (3, 2, "SAME"),
    (3, 2, "VALID"),
    (3, 2, ((1, 2), (0, 1))),
    (4, 1, "SAME"),
    (3, 1, "VALID"),
    (4, 1, "VALID"),  # the DCGAN G's projection, from 1x1
]
SIZES = [(1, 1), (4, 4), (7, 7), (8, 5)]
# (in, out): a transposed convolution to fewer than 16 channels is a strided convolution's transpose
# (genjax.nets.layers), so the first pair runs the sub-pixel products and the second that form. The first
# pair takes that form too where the phases' windows overlap little (1x1 and 4x4 inputs with most paddings).
# 'fast' computes a strided convolution from 16 channels or more as XLA's (`_strided`): the third pair.
CHANNELS = [(1, 16), (3, 1), (16, 16)]


def _relative_error(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _output_shape(flax_layer, x):
  """Flax's output shape, or None where lax refuses the shapes or gives an empty output."""
  try:
    shape = jax.eval_shape(flax_layer.init_with_output, jax.random.key(1), x)[0].shape
  except Exception:  # pylint: disable=broad-except
    return None
  return None if 0 in shape else shape


def _layers(kind, c_out, kernel, stride, padding, impl):
  common = dict(kernel_size=(kernel, kernel), strides=(stride, stride), padding=padding)
  if kind == "transpose":
    return nn.ConvTranspose(c_out, **common), layers.ConvTranspose(c_out, **common, impl=impl)
  return nn.Conv(c_out, **common), layers.Conv(c_out, **common, impl=impl)


def _id(case):
  kernel, stride, padding = case
  pad = padding if isinstance(padding, str) else "x".join(f"{lo}{hi}" for lo, hi in padding)
  return f"k{kernel}s{stride}-{pad}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
@pytest.mark.parametrize("kind", ["transpose", "strided"])
@pytest.mark.parametrize("impl", ["fast", "products"])
def test_fast_layer_equals_flax_values_and_gradients(impl, kind, case):
  """Outputs and the gradients with respect to inputs, kernel and bias agree to 1e-5 relative."""
  kernel, stride, padding = case
  problems, refused = [], []
  rng = np.random.default_rng(0)  # numpy draws: no eager JAX op to compile per shape
  for size in SIZES:
    for c_in, c_out in CHANNELS:
      flax_layer, ours = _layers(kind, c_out, kernel, stride, padding, impl)
      x = rng.standard_normal((2, *size, c_in), np.float32)
      shape = _output_shape(flax_layer, x)
      if shape is None:
        refused.append((ours, x))
        continue
      # A non-zero bias, and a cotangent that is not all ones, so every path of the gradient counts.
      params = {"params": {"kernel": 0.2 * rng.standard_normal((kernel, kernel, c_in, c_out), np.float32),
                           "bias": rng.standard_normal((c_out,), np.float32)}}
      problems.append((flax_layer, ours, params, x, rng.standard_normal(shape, np.float32)))

  @jax.jit
  def outputs_and_pullbacks(arrays):
    results = []
    for (flax_layer, ours, *_), (params, x, cotangent) in zip(problems, arrays, strict=True):
      for layer in (flax_layer, ours):
        y, vjp = jax.vjp(layer.apply, params, x)
        results.append((y, *vjp(cotangent)))
    return results

  results = outputs_and_pullbacks([p[2:] for p in problems])
  for i, (want, got) in enumerate(zip(results[::2], results[1::2], strict=True)):
    (want_y, want_dp, want_dx), (got_y, got_dp, got_dx) = want, got
    where = f"input {problems[i][3].shape}"
    assert got_y.shape == want_y.shape, where
    assert _relative_error(got_y, want_y) < 1e-5, where
    assert _relative_error(got_dx, want_dx) < 1e-5, where
    for name in ("kernel", "bias"):
      assert _relative_error(got_dp["params"][name], want_dp["params"][name]) < 1e-5, (where, name)
  # Where lax gives no output, ours says why in one line.
  for ours, x in refused:
    with pytest.raises(ValueError, match="no output|smaller than the kernel"):
      ours.init(jax.random.key(1), x)


def test_fast_layers_create_flax_parameters():
  """Same names, shapes, initial values and module names: a checkpoint does not care which ran."""
  x = jnp.zeros((1, 8, 8, 3))

  class Net(nn.Module):
    impl: str | None

    @nn.compact
    def __call__(self, x):
      if self.impl is None:
        x = nn.Conv(16, (4, 4), (2, 2), "SAME")(x)
        return nn.ConvTranspose(17, (4, 4), (2, 2), "SAME")(x)
      x = layers.Conv(16, (4, 4), (2, 2), "SAME", impl=self.impl)(x)
      return layers.ConvTranspose(17, (4, 4), (2, 2), "SAME", impl=self.impl)(x)

  want = jax.jit(Net(None).init)(jax.random.key(3), x)
  assert set(want["params"]) == {"Conv_0", "ConvTranspose_0"}
  for impl in ("fast", "products", "xla"):
    got = jax.jit(Net(impl).init)(jax.random.key(3), x)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    assert jax.tree.all(jax.tree.map(np.array_equal, got, want))


def test_impl_names_and_the_automatic_choice():
  assert layers.resolve_impl("auto", "cpu") == "fast"
  assert layers.resolve_impl("auto", "gpu") == "xla"
  assert layers.resolve_impl("auto", "tpu") == "xla"
  assert layers.resolve_impl("xla", "cpu") == "xla"
  with pytest.raises(ValueError, match="unknown 'pallas'; allowed: auto, xla, fast, products"):
    layers.resolve_impl("pallas")
  with pytest.raises(ValueError, match="'CIRCULAR' is not supported"):
    layers.conv(jnp.zeros((1, 4, 4, 1)), jnp.zeros((3, 3, 1, 1)), (2, 2), "CIRCULAR")
  with pytest.raises(ValueError, match="NHWC"):
    layers.conv_transpose(jnp.zeros((4, 4, 1)), jnp.zeros((3, 3, 1, 1)), (2, 2), "SAME")


def test_the_pure_functions_take_lists_and_ints_as_lax_does():
  """Strides and paddings as lists (or one int) work like tuples: the compiled call keys on hashable copies."""
  rng = np.random.default_rng(1)
  x = rng.standard_normal((2, 8, 8, 3), np.float32)
  k = rng.standard_normal((4, 4, 3, 16), np.float32)
  want = lax.conv_general_dilated(x, k, (2, 2), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
  for padding in ([[1, 1], [1, 1]], 1):
    np.testing.assert_allclose(layers.conv(x, k, [2, 2], padding), want, rtol=1e-5, atol=1e-5)
  want = lax.conv_transpose(x, k, (2, 2), ((2, 2), (2, 2)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(layers.conv_transpose(x, k, [2, 2], [[2, 2], [2, 2]]), want, rtol=1e-5, atol=1e-5)


# The three forms of the kernel tangent (im2col._kernel_tangent), in both layers: wide patches
# (the transposed product), narrow ones (per image) and few rows per output channel (XLA's own); and
# the transposed convolution to few channels (a strided convolution's transpose).
@pytest.mark.parametrize("size,c_in,c_out",
                         [((16, 12), 32, 16), ((8, 6), 3, 32), ((4, 4), 32, 64), ((8, 8), 64, 3)],
                         ids=["wide", "narrow", "few_rows", "few_out"])
@pytest.mark.parametrize("function", [layers.conv, layers.conv_transpose], ids=["strided", "transpose"])
def test_forward_mode_and_second_order_equal_lax(function, size, c_in, c_out):
  """The fast layers' own tangent rule: jvp in input and kernel together, and the gradient of a gradient
  penalty (what R1 and WGAN-GP differentiate), equal lax's to 1e-5."""
  rng = np.random.default_rng(2)
  x = rng.standard_normal((2, *size, c_in), np.float32)
  k = 0.2 * rng.standard_normal((4, 4, c_in, c_out), np.float32)
  dx, dk = rng.standard_normal(x.shape, np.float32), rng.standard_normal(k.shape, np.float32)
  w = rng.standard_normal(function(x, k, (2, 2), "SAME", impl="xla").shape, np.float32)

  @jax.jit
  def both(x, k, dx, dk, w):
    results = []
    for impl in ("xla", "fast", "products"):
      f = lambda x, k, impl=impl: function(x, k, (2, 2), "SAME", impl=impl)  # noqa: E731
      y, dy = jax.jvp(f, (x, k), (dx, dk))
      # Penalty on the input gradient of a scalar score, differentiated in the kernel and the input.
      penalty = lambda x, k, f=f: jnp.sum(jax.grad(lambda x: jnp.vdot(jnp.tanh(f(x, k)), w))(x) ** 2)  # noqa: E731
      results.append((y, dy, *jax.grad(penalty, argnums=(0, 1))(x, k)))
    return results

  want, *gots = both(x, k, dx, dk, w)
  for got in gots:
    for name, a, b in zip(("value", "jvp", "d penalty/dx", "d penalty/dkernel"), got, want, strict=True):
      assert _relative_error(a, b) < 1e-5, name


# `dense`'s 'fast' form is `im2col.matmul`, whose kernel tangent has three forms (im2col._kernel_tangent): narrow
# inputs (per image), wide ones (the transposed product) and few rows per output channel (XLA's own).
@pytest.mark.parametrize("size,k,o", [((6, 5), 32, 16), ((6, 5), 160, 24), ((2, 2), 160, 64)],
                         ids=["narrow", "wide", "few_rows"])
def test_dense_equals_the_plain_product_values_gradients_and_tangents(size, k, o):
  rng = np.random.default_rng(3)
  x = rng.standard_normal((2, *size, k), np.float32)
  kernel = rng.standard_normal((k, o), np.float32)
  cotangent = rng.standard_normal((2, *size, o), np.float32)
  dx, dk = rng.standard_normal(x.shape, np.float32), rng.standard_normal(kernel.shape, np.float32)

  @jax.jit
  def both(x, kernel):
    results = []
    for impl in ("xla", "fast"):
      f = lambda x, k, impl=impl: layers.dense(x, k, impl=impl)  # noqa: E731
      y, vjp = jax.vjp(f, x, kernel)
      results.append((y, *vjp(cotangent), jax.jvp(f, (x, kernel), (dx, dk))[1]))
    return results

  want, got = both(x, kernel)
  want_plain = np.einsum("bhwk,ko->bhwo", x.astype(np.float64), kernel.astype(np.float64))
  assert _relative_error(want[0], want_plain) < 1e-5  # 'xla' is the product itself
  for name, a, b in zip(("value", "d/dx", "d/dkernel", "jvp"), got, want, strict=True):
    assert _relative_error(a, b) < 1e-5, name


def _conv_cases():
  # (input, kernel, strides, padding): the U-Net's 3x3s, a strided one, a 1x1, odd sizes and paddings.
  return [((2, 7, 6, 3), (3, 3, 3, 5), (1, 1), "SAME"), ((2, 8, 8, 4), (3, 3, 4, 2), (2, 2), ((1, 1), (1, 1))),
          ((2, 5, 7, 3), (1, 1, 3, 4), (1, 1), "VALID"), ((1, 9, 6, 2), (4, 2, 2, 3), (2, 1), ((2, 1), (0, 1)))]


@pytest.mark.parametrize("case", range(4))
def test_conv_general_dilated_equals_lax_values_tangents_and_second_order(case):
  """Its own tangent rule (kernel and input tangents in the layout whose transposes XLA:CPU's kernels take) gives
  lax's values, jvp, both gradients and the gradient of a gradient penalty, to 1e-5."""
  x_shape, k_shape, strides, padding = _conv_cases()[case]
  rng = np.random.default_rng(case)
  x, dx = (rng.standard_normal(x_shape, np.float32) for _ in range(2))
  k, dk = (0.3 * rng.standard_normal(k_shape, np.float32) for _ in range(2))
  spec = ("NHWC", "HWIO", "NHWC")
  w = rng.standard_normal(lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=spec).shape, np.float32)

  @jax.jit
  def both(x, k, dx, dk, w):
    results = []
    for conv in (lax.conv_general_dilated, convolution.conv_general_dilated):
      f = lambda x, k, conv=conv: conv(x, k, strides, padding, dimension_numbers=spec)  # noqa: E731
      y, dy = jax.jvp(f, (x, k), (dx, dk))
      grads = jax.vjp(f, x, k)[1](w)
      penalty = lambda x, k, f=f: jnp.sum(jax.grad(lambda x: jnp.vdot(jnp.tanh(f(x, k)), w))(x) ** 2)  # noqa: E731
      results.append((y, dy, *grads, *jax.grad(penalty, argnums=(0, 1))(x, k)))
    return results

  want, got = both(x, k, dx, dk, w)
  for name, a, b in zip(("value", "jvp", "d/dx", "d/dkernel", "d penalty/dx", "d penalty/dkernel"), got, want,
                        strict=True):
    assert _relative_error(a, b) < 1e-5, name


@pytest.mark.parametrize("case", range(4))
def test_kernel_gradient_is_the_transpose_of_the_kernel_tangent_and_lax_s_gradient(case):
  """`kernel_gradient` (which `adjoint_conv` transposes back into a tangent) writes out the convolution that
  `kernel_tangent`'s transpose is: both equal lax's kernel gradient, to 1e-5."""
  x_shape, k_shape, strides, padding = _conv_cases()[case]
  rng = np.random.default_rng(case)
  x, k = rng.standard_normal(x_shape, np.float32), rng.standard_normal(k_shape, np.float32)
  pads = tuple(map(tuple, layers.conv_pads(x_shape[1:3], k_shape[:2], strides, padding)))
  spec = ("NHWC", "HWIO", "NHWC")
  c = rng.standard_normal(lax.conv_general_dilated(x, k, strides, pads, dimension_numbers=spec).shape, np.float32)
  want = jax.vjp(lambda k: lax.conv_general_dilated(x, k, strides, pads, dimension_numbers=spec), k)[1](c)[0]
  transposed = jax.linear_transpose(lambda d: convolution.kernel_tangent(x, d, strides, pads), k)(c)[0]
  written = convolution.kernel_gradient(x, c, k_shape, strides, pads)
  assert _relative_error(transposed, want) < 1e-5
  assert _relative_error(written, want) < 1e-5


def _convolution_layouts(compiled_text: str) -> list[str]:
  return [line.split("dim_labels=")[1].split(",")[0] for line in compiled_text.splitlines()
          if " convolution(" in line]


@pytest.mark.parametrize("stride", [1, 2])
def test_gradients_inside_a_scan_are_convolutions_in_the_layout_xla_cpu_runs_fast(stride):
  """XLA:CPU gives only its top level's convolutions the NHWC/HWIO layout of its fast kernels: in a loop's body
  lax's own kernel gradient (batch and channels swapped) ran as a naive loop, many times slower. Inside a
  scan, every convolution of the gradient of `conv_general_dilated` is b01f_01io->b01f."""
  def steps(xk, conv):
    def loss(xk):
      return jnp.sum(conv(*xk, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) ** 2)
    step = lambda xk, _: (jax.tree.map(lambda a, g: a - g, xk, jax.grad(loss)(xk)), None)  # noqa: E731
    return lax.scan(step, xk, None, length=2)[0]

  xk = (jnp.ones((4, 8, 8, 3)), jnp.ones((3, 3, 3, 5)))
  compiled = lambda conv: jax.jit(lambda xk: steps(xk, conv)).lower(xk).compile().as_text()  # noqa: E731
  theirs, ours = _convolution_layouts(compiled(lax.conv_general_dilated)), _convolution_layouts(compiled(
      convolution.conv_general_dilated))
  assert any(labels != "b01f_01io->b01f" for labels in theirs), theirs  # what the test guards against
  assert ours and all(labels == "b01f_01io->b01f" for labels in ours), ours


@pytest.mark.parametrize("size,form", [((8, 8), "polyphase"), ((24, 24), "sub-pixel")])
def test_polyphase_and_sub_pixel_forms_equal_lax(size, form):
  """'fast' strided and transposed layers take the sub-pixel form's one shared product over the union of the
  phases' windows, or on small images, where that union is much larger (8x8: 1.27 times the positions needed),
  the polyphase form's s*s exact convolutions: the strided layer's input gradient and the transposed layer's
  values and gradients equal lax's to 1e-5 in both, and every convolution is NHWC/HWIO."""
  pads = ((1, 1), (1, 1))  # PyTorch's Conv2d(4, 2, 1); the transposed layer below is its adjoint
  waste = convolution.union_waste(size, (4, 4), (2, 2), pads)
  assert (waste >= convolution.POLYPHASE_WASTE) == (form == "polyphase"), waste
  rng = np.random.default_rng(3)
  x = rng.standard_normal((2, *size, 16), np.float32)
  k = 0.2 * rng.standard_normal((4, 4, 16, 16), np.float32)
  y = rng.standard_normal((2, size[0] // 2, size[1] // 2, 16), np.float32)
  cases = {"strided": (x, lambda x, k, impl: layers.conv(x, k, (2, 2), pads, impl=impl)),
           "transposed": (y, lambda y, k, impl: layers.conv_transpose(y, k, (2, 2), ((2, 2), (2, 2)), impl=impl))}
  for name, (a, f) in cases.items():
    def both(a, k, f=f):
      out = []
      for impl in ("xla", "fast"):
        value, pullback = jax.vjp(lambda a, k, impl=impl: f(a, k, impl), a, k)
        out.append((value, *pullback(jnp.tanh(value))))
      return out
    want, got = jax.jit(both)(a, k)
    for label, p, q in zip(("value", "d/dinput", "d/dkernel"), got, want, strict=True):
      assert _relative_error(p, q) < 1e-5, (name, label)
    fast = jax.jit(lambda a, k, f=f: jax.vjp(lambda a, k: f(a, k, "fast"), a, k)[1](f(a, k, "fast")))
    labels = _convolution_layouts(fast.lower(a, k).compile().as_text())
    assert labels and all(label == "b01f_01io->b01f" for label in labels), (name, labels)


@pytest.mark.parametrize("size,k,pads", [((6, 4), 2, ((1, 0), (1, 1))), ((6, 3), 5, ((4, 1), (4, 4))),
                                         ((3, 8), 4, ((3, 0), (3, 1)))])
def test_polyphase_gradients_with_paddings_beyond_a_phases_window(size, k, pads):
  """A phase whose taps start past a large padding: its convolution's padding is kept within the window and the
  outputs that read only padding are padded on after, so no negative padding reaches XLA:CPU, which computed
  these three gradients from memory outside its operands (values near 1e38, NaN) before."""
  rng = np.random.default_rng(4)
  x = rng.standard_normal((2, *size, 16), np.float32)
  k = 0.2 * rng.standard_normal((k, k, 16, 16), np.float32)
  want = jax.vjp(lambda x: lax.conv_general_dilated(x, k, (2, 2), pads, dimension_numbers=("NHWC", "HWIO", "NHWC")),
                 x)
  c = rng.standard_normal(want[0].shape, np.float32)
  got = jax.jit(lambda x, c: jax.linear_transpose(
      lambda x: convolution._polyphase_conv(x, k, (2, 2), pads), x)(c)[0])(x, c)  # pylint: disable=protected-access
  assert _relative_error(got, want[1](c)[0]) < 1e-5
