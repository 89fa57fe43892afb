"""PRNG streams: the one place where keys are derived.

A run has one root key (from `config.seed`), split once into named streams.
The key of training step `s` is `fold_in(train, s)`, so a resumed run draws
the same numbers as an uninterrupted one; the key of example `i` of a global
batch is `fold_in(step_key, i)`, so the numbers do not depend on how many
devices share the batch.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Streams(NamedTuple):
  """Independent key streams of one run; each is used for one purpose only."""

  init: jax.Array  # parameter initialisation
  data: jax.Array  # input-pipeline shuffling (turned into an integer seed)
  train: jax.Array  # folded with the step number: the step keys
  sample: jax.Array  # fixed: sample grids comparable across checkpoints
  eval: jax.Array  # fixed: held-out binarisation and importance samples


def streams(seed: int) -> Streams:
  """Splits the root key of `seed` into the named streams."""
  return Streams(*jax.random.split(jax.random.key(seed), len(Streams._fields)))


def step_key(train_key: jax.Array, step: int | jax.Array) -> jax.Array:
  """The key of training step `step`."""
  return jax.random.fold_in(train_key, step)


def example_keys(key: jax.Array, batch_size: int, offset: int | jax.Array = 0) -> jax.Array:
  """Keys of examples `offset .. offset + batch_size - 1` of a global batch.

  A device that holds a slice of the batch passes the slice's offset and
  draws exactly the numbers the whole batch would have given those examples.
  """
  index_B = offset + jnp.arange(batch_size)
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, index_B)


def held_out_keys(key: jax.Array, batch: int, offset: int | jax.Array = 0) -> jax.Array:
  """[batch, 2] keys of held-out examples offset .. offset + batch - 1 in a family's `evaluate`: the first
  binarises the example (every family that scores binarised digits uses it, so that their held-out numbers
  score the same digits), the second is the example's own (the VAE's latents, the PixelCNN's completion)."""
  return jax.vmap(jax.random.split)(example_keys(key, batch, offset))


def binarize(x_BxHxWxC: jax.Array, keys_B: jax.Array) -> jax.Array:
  """x ~ Bernoulli(pixel intensity in [0, 1]), example b from keys_B[b]: the binarisation of every family that
  models binarised digits."""
  draw = jax.vmap(lambda k, p: jax.random.bernoulli(k, p).astype(p.dtype))
  return draw(keys_B, x_BxHxWxC)


# The eval stream folded with these gives the key of one purpose each: a family's eval_params (a GAN's standing
# statistics), a 2-D mixture's mode-coverage samples, the samples of FID/KID (batch b: fold_in of it with b), the
# inpainted held-out examples; apart from fold_in(eval, i) of held-out example i (`held_out_keys`).
EVAL_PARAMS, EVAL_POINTS, EVAL_QUALITY, EVAL_INPAINT = 2**31 - 1, 2**31 - 2, 2**31 - 3, 2**31 - 4


def eval_params_key(eval_key: jax.Array) -> jax.Array:
  """The key that `Family.eval_params` draws from, in the loop and in sample.py alike."""
  return jax.random.fold_in(eval_key, EVAL_PARAMS)


def integer_seed(key: jax.Array) -> int:
  """A non-negative int32 seed for libraries that take integers (tf.data)."""
  return int(jax.random.randint(key, (), 0, 2**31 - 1))
