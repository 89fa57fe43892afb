import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.nets import vae as nets


def _count(params) -> int:
  return sum(math.prod(p.shape) for p in jax.tree.leaves(params))


def test_mlp_matches_the_flax_vae_example_784_500_20():
  x = jnp.zeros((3, 28, 28, 1))
  enc, dec = nets.MLPEncoder(20, (500,)), nets.MLPDecoder((28, 28, 1), (500,))
  enc_params = enc.init(jax.random.key(0), x)["params"]
  dec_params = dec.init(jax.random.key(1), jnp.zeros((3, 20)))["params"]
  # 784*500+500 then two heads 500*20+20; decoder 20*500+500 then 500*784+784.
  assert _count(enc_params) == 784 * 500 + 500 + 2 * (500 * 20 + 20)
  assert _count(dec_params) == 20 * 500 + 500 + 500 * 784 + 784
  assert dec.apply({"params": dec_params}, jnp.zeros((3, 20))).shape == (3, 28, 28, 1)


@pytest.mark.parametrize("shape,widths", [((28, 28, 1), (32, 64)), ((32, 32, 3), (16, 32, 64)),
                                          ((64, 64, 3), (16, 32, 64, 128))])
def test_conv_encoder_decoder_shapes_and_parameter_counts(shape, widths):
  h, w, c = shape
  enc = nets.ConvEncoder(8, widths, (32,))
  dec = nets.ConvDecoder(shape, widths, (32,))
  x = jnp.ones((2, *shape))
  enc_params = enc.init(jax.random.key(0), x)["params"]
  mean, logvar = enc.apply({"params": enc_params}, x)
  assert mean.shape == logvar.shape == (2, 8)
  dec_params = dec.init(jax.random.key(1), mean)["params"]
  assert dec.apply({"params": dec_params}, mean).shape == (2, *shape)
  # Encoder: 4x4 convs, a dense layer of 32, two heads of 8.
  chans = (c, *widths)
  conv = sum(16 * a * b + b for a, b in zip(chans[:-1], chans[1:]))
  flat = (h // 2**len(widths)) * (w // 2**len(widths)) * widths[-1]
  assert _count(enc_params) == conv + flat * 32 + 32 + 2 * (32 * 8 + 8)
  # Decoder mirrors it: 8 -> 32 -> flat, then transposed convs back to c channels.
  back = (widths[-1], *reversed(widths[:-1]), c)
  tconv = sum(16 * a * b + b for a, b in zip(back[:-1], back[1:]))
  assert _count(dec_params) == 8 * 32 + 32 + 32 * flat + flat + tconv


def test_encoder_depends_on_the_input_and_heads_differ():
  enc = nets.ConvEncoder(4, (8, 16), ())
  x = jax.random.uniform(jax.random.key(0), (2, 28, 28, 1))
  params = enc.init(jax.random.key(1), x)
  mean, logvar = enc.apply(params, x)
  assert not np.allclose(mean[0], mean[1])
  assert not np.allclose(mean, logvar)


def test_sizes_the_decoder_cannot_produce_are_refused():
  assert nets.max_conv_layers(28) == 2 and nets.max_conv_layers(64) == 6 and nets.max_conv_layers(32) == 5
  dec = nets.ConvDecoder((28, 28, 1), (8, 16, 32), ())
  with pytest.raises(ValueError, match="divisible by 8, got 28; use at most 2 layers"):
    dec.init(jax.random.key(0), jnp.zeros((1, 4)))
