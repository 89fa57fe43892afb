"""The diffusion U-Net: DDPM's CIFAR-10 model to the parameter, the sinusoidal embedding in closed form,
sizes 28, 32 and 64 with time conditioning and dropout that act, and its 'fast' computation against DDPM's
as written ('reference') and its pieces against their definitions."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.nets.unet import GroupNorm, UNet, timestep_embedding, upsample_conv


def _count(module, shape) -> int:
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros(shape), jnp.zeros((shape[0],))))
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(shapes)))


def test_ddpm_cifar10_unet_has_the_papers_35_7m_parameters():
  # ch 128, ch_mult (1, 2, 2, 2), 2 blocks, attention at 16x16, dropout 0.1 (Ho et al. 2020, appendix B):
  # DDPM's code has 35,746,307, of which the 6 attention blocks' key biases (256 each) have a gradient of
  # exactly zero (the softmax ignores them) and genjax leaves them out.
  assert _count(UNet(), (1, 32, 32, 3)) == 35_746_307 - 6 * 256


def test_timestep_embedding_is_sin_then_cos_of_geometric_frequencies():
  emb = np.asarray(timestep_embedding(jnp.asarray([0.0, 3.0]), 8))
  w = [10_000 ** (-k / 3) for k in range(4)]
  np.testing.assert_allclose(emb[0], [0, 0, 0, 0, 1, 1, 1, 1], atol=1e-7)
  np.testing.assert_allclose(emb[1], [math.sin(3 * x) for x in w] + [math.cos(3 * x) for x in w], rtol=1e-5,
                             atol=1e-6)
  assert timestep_embedding(jnp.zeros((2,)), 7).shape == (2, 7)  # odd widths padded with a zero


@pytest.mark.parametrize("shape,mult,attn", [((2, 28, 28, 1), (1, 2, 2), (14,)), ((2, 32, 32, 3), (1, 2, 2), (16,)),
                                             ((1, 64, 64, 3), (1, 1, 2, 2), (16,))], ids=["28", "32", "64"])
def test_sizes_time_conditioning_and_dropout(shape, mult, attn):
  net = UNet(ch=32, out_ch=shape[-1], ch_mult=mult, num_res_blocks=1, attn_resolutions=attn, dropout=0.2)
  x = jax.random.normal(jax.random.key(1), shape)
  t = jnp.full((shape[0],), 10.0)
  variables = net.init(jax.random.key(0), x, t)
  apply = jax.jit(net.apply, static_argnames="train")
  y = apply(variables, x, t)
  assert y.shape == shape and np.isfinite(np.asarray(y)).all()
  assert not np.allclose(y, apply(variables, x, t + 500.0), atol=1e-5)  # the output depends on t
  np.testing.assert_array_equal(y, apply(variables, x, t))  # inference is deterministic
  dropped = apply(variables, x, t, train=True, rngs={"dropout": jax.random.key(2)})
  assert not np.allclose(y, dropped, atol=1e-5)


def _relative_error(a, b, floor: float = 0.0) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), floor, 1e-30))


@pytest.mark.parametrize("shape,mult,attn", [((2, 28, 28, 1), (1, 2, 2), (7,)), ((2, 16, 16, 3), (1, 2), (8,))],
                         ids=["mnist5k", "16"])
def test_fast_impl_equals_reference_in_parameters_outputs_and_gradients(shape, mult, attn):
  """'fast' (per-channel GroupNorm sums, skip concatenations kept in parts, sub-pixel upsampling) computes
  DDPM's U-Net as written ('reference'): the same parameters from the same key, bit for bit; outputs with and
  without dropout, and the gradients of a loss in every parameter and the input, to float rounding."""
  kw = dict(ch=32, out_ch=shape[-1], ch_mult=mult, num_res_blocks=2, attn_resolutions=attn, dropout=0.3)
  fast, reference = UNet(**kw, impl="fast"), UNet(**kw, impl="reference")
  x = jax.random.normal(jax.random.key(1), shape)
  t = jnp.asarray([3.0, 700.0])
  w = jax.random.normal(jax.random.key(2), shape)
  got, want = (jax.jit(net.init)(jax.random.key(0), x, t) for net in (fast, reference))
  assert jax.tree.structure(got) == jax.tree.structure(want)
  assert all(jax.tree.leaves(jax.tree.map(np.array_equal, got, want)))
  # A non-trivial point: the initial conv_out is not zero, but scale it up so every layer's gradient counts.
  params = jax.tree.map(lambda p: p * 1.5, want)

  @jax.jit
  def outputs_and_gradients(params, x):
    results = []
    for net in (fast, reference):
      for train in (False, True):
        def loss(params, x, net=net, train=train):
          y = net.apply(params, x, t, train=train, rngs={"dropout": jax.random.key(3)})
          return jnp.vdot(y, w), y
        (_, y), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, x)
        results.append((y, grads))
    return results

  (y_fast, g_fast), (yd_fast, _), (y_ref, g_ref), (yd_ref, _) = outputs_and_gradients(params, x)
  assert _relative_error(y_fast, y_ref) < 1e-5
  assert _relative_error(yd_fast, yd_ref) < 1e-5
  assert not np.allclose(yd_ref, y_ref, atol=1e-3)  # dropout acted, with the same mask in both
  leaves_fast, leaves_ref = jax.tree.leaves(g_fast), jax.tree.leaves(g_ref)
  # Some gradients are zero in exact arithmetic (a conv bias, and the time embedding's projection, before a
  # GroupNorm of one-channel groups), so float noise: each leaf is compared against at least a hundredth of
  # the largest gradient.
  floor = 1e-2 * max(float(np.abs(leaf).max()) for leaf in leaves_ref)
  errors = [_relative_error(a, b, floor) for a, b in zip(leaves_fast, leaves_ref, strict=True)]
  assert max(errors) < 1e-4, max(errors)


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (6, 4)])
def test_upsample_conv_equals_nearest_resize_then_conv(size):
  """The sub-pixel form against the definition: jax.image.resize (nearest, 2x) then lax's 3x3 'SAME' conv."""
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, *size, 5), np.float32)
  kernel = rng.standard_normal((3, 3, 5, 7), np.float32)
  cotangent = rng.standard_normal((2, 2 * size[0], 2 * size[1], 7), np.float32)

  def reference(x, kernel):
    up = jax.image.resize(x, (x.shape[0], 2 * x.shape[1], 2 * x.shape[2], x.shape[3]), method="nearest")
    return jax.lax.conv_general_dilated(up, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

  @jax.jit
  def values_and_pullbacks(x, kernel):
    results = []
    for f in (reference, upsample_conv):
      y, vjp = jax.vjp(f, x, kernel)
      results.append((y, *vjp(cotangent)))
    return results

  want, got = values_and_pullbacks(x, kernel)
  for name, a, b in zip(("value", "d/dx", "d/dkernel"), got, want, strict=True):
    assert _relative_error(a, b) < 1e-5, name


def test_group_norm_over_parts_equals_flax_on_the_concatenation():
  """Parts of 64 and 32 channels in 32 groups of 3: one group takes channels from both parts."""
  rng = np.random.default_rng(1)
  a = 3.0 + rng.standard_normal((2, 5, 4, 64), np.float32)
  b = rng.standard_normal((2, 5, 4, 32), np.float32) * 2.0
  params = {"params": {"scale": rng.standard_normal(96, np.float32), "bias": rng.standard_normal(96, np.float32)}}
  w = rng.standard_normal((2, 5, 4, 96), np.float32)

  @jax.jit
  def both(params, a, b):
    def ours(p, a, b):
      return jnp.concatenate(GroupNorm().apply(p, [a, b]), axis=-1)

    def flax_(p, a, b):
      return nn.GroupNorm(num_groups=32, epsilon=1e-6).apply(p, jnp.concatenate([a, b], -1))

    return [(f(params, a, b), jax.grad(lambda *args, f=f: jnp.vdot(jnp.tanh(f(*args)), w), argnums=(0, 1, 2))(
        params, a, b)) for f in (ours, flax_)]

  (got, got_grads), (want, want_grads) = both(params, a, b)
  assert _relative_error(got, want) < 1e-5
  for g, h in zip(jax.tree.leaves(got_grads), jax.tree.leaves(want_grads), strict=True):
    assert _relative_error(g, h) < 1e-4


def test_unknown_impl_is_refused_with_the_allowed_names():
  with pytest.raises(ValueError, match="unknown 'pallas'; allowed: auto, fast, reference"):
    UNet(impl="pallas").init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), jnp.zeros((1,)))
