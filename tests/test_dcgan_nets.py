import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.nets import dcgan


@pytest.mark.parametrize("size,layers", [(28, 2), (32, 3), (64, 4)])
def test_stride2_layers_per_size(size, layers):
  assert dcgan.num_stride2_layers(size) == layers


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
def test_generator_and_discriminator_shapes_ranges_and_parameter_counts(shape):
  size, _, c = shape
  g, d = dcgan.DCGANGenerator(shape, width=8), dcgan.DCGANDiscriminator(width=8)
  z = jax.random.normal(jax.random.key(0), (4, 16))
  g_vars = g.init(jax.random.key(1), z)
  x, _ = g.apply(g_vars, z, mutable=["batch_stats"])
  assert x.shape == (4, *shape) and float(jnp.max(jnp.abs(x))) <= 1.0
  d_vars = d.init(jax.random.key(2), x)
  logits, _ = d.apply(d_vars, x, mutable=["batch_stats"])
  assert logits.shape == (4,)
  n = dcgan.num_stride2_layers(size)
  base = size // 2**n
  # G: a base x base projection, n-1 upsamplings, the output layer; BN (scale, bias) on all but the output.
  widths = [8 * 2**(n - 1 - i) for i in range(n)]
  g_count = 16 * base * base * widths[0] + sum(16 * a * b for a, b in zip(widths[:-1], widths[1:]))
  g_count += 16 * widths[-1] * c + sum(2 * w for w in widths)
  assert sum(math.prod(p.shape) for p in jax.tree.leaves(g_vars["params"])) == g_count
  # D: n stride-2 convs (BN on all but the first), then a base x base conv to one logit.
  dw = [8 * 2**i for i in range(n)]
  d_count = 16 * c * dw[0] + sum(16 * a * b for a, b in zip(dw[:-1], dw[1:])) + sum(2 * w for w in dw[1:])
  d_count += base * base * dw[-1]
  assert sum(math.prod(p.shape) for p in jax.tree.leaves(d_vars["params"])) == d_count


def test_initialisation_follows_the_dcgan_example():
  g = dcgan.DCGANGenerator((64, 64, 3), width=16)
  params = g.init(jax.random.key(0), jnp.zeros((2, 100)))["params"]
  kernels = np.concatenate([np.ravel(v["kernel"]) for k, v in params.items() if k.startswith("ConvTranspose")])
  scales = np.concatenate([np.ravel(v["scale"]) for k, v in params.items() if k.startswith("BatchNorm")])
  assert abs(kernels.std() - 0.02) < 0.001 and abs(kernels.mean()) < 0.001
  assert abs(scales.mean() - 1.0) < 0.01 and 0.01 < scales.std() < 0.03
  assert not any("bias" in v for k, v in params.items() if k.startswith("ConvTranspose"))


def test_batchnorm_uses_flax_decay_momentum_and_train_flag():
  d = dcgan.DCGANDiscriminator(width=4)
  x = jax.random.normal(jax.random.key(0), (8, 28, 28, 1)) * 3 + 1
  variables = d.init(jax.random.key(1), x)
  _, updated = d.apply(variables, x, mutable=["batch_stats"])
  # One training call moves the running mean 10% of the way (decay 0.9) from 0 to the batch mean.
  mean0 = variables["batch_stats"]["BatchNorm_0"]["mean"]
  mean1 = updated["batch_stats"]["BatchNorm_0"]["mean"]
  _, state = d.apply(variables, x, capture_intermediates=lambda mdl, _: mdl.name == "Conv_1",
                     mutable=["batch_stats", "intermediates"])
  conv1 = state["intermediates"]["Conv_1"]["__call__"][0]
  np.testing.assert_allclose(mean1, 0.9 * mean0 + 0.1 * conv1.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
  # Evaluation mode uses running statistics and leaves them alone.
  logits_eval = d.apply(variables, x, train=False)
  logits_train, _ = d.apply(variables, x, mutable=["batch_stats"])
  assert float(jnp.max(jnp.abs(logits_eval - logits_train))) > 1e-3
