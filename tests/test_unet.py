"""The diffusion U-Net: DDPM's CIFAR-10 model to the parameter, the sinusoidal embedding in closed form, and
sizes 28, 32 and 64 with time conditioning and dropout that act."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.nets.unet import UNet, timestep_embedding


def _count(module, shape) -> int:
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros(shape), jnp.zeros((shape[0],))))
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(shapes)))


def test_ddpm_cifar10_unet_has_the_papers_35_7m_parameters():
  # ch 128, ch_mult (1, 2, 2, 2), 2 blocks, attention at 16x16, dropout 0.1 (Ho et al. 2020, appendix B)
  assert _count(UNet(), (1, 32, 32, 3)) == 35_746_307


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
