"""2-D Gaussian mixtures for mode-collapse studies (VEEGAN, PacGAN).

`ring8`: 8 modes at (cos 2πi/8, sin 2πi/8), radius 1, std 0.01. The angles
are 2πi/8 for i = 0..7; `linspace(0, 2π, 8)` would put modes 0 and 7 on
top of each other.
`grid25`: 25 modes at {-4, -2, 0, 2, 4}², std 0.05.
"""

import math
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from genjax.data.registry import POINT_DATASETS


def mode_centres(name: str) -> np.ndarray:
  """[K, 2] float32 centres of the mixture's modes."""
  if name == "ring8":
    angle = 2 * math.pi * np.arange(8) / 8
    return np.stack([np.cos(angle), np.sin(angle)], axis=1).astype(np.float32)
  if name == "grid25":
    axis = np.array([-4.0, -2.0, 0.0, 2.0, 4.0], np.float32)
    return np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(25, 2)
  raise ValueError(f"dataset.name: unknown 2-D dataset {name!r}; allowed: {', '.join(POINT_DATASETS)}")


def mode_std(name: str) -> float:
  """The standard deviation of every mode (isotropic)."""
  mode_centres(name)  # validates the name
  return {"ring8": 0.01, "grid25": 0.05}[name]


def sample(name: str, key: jax.Array, n: int) -> jax.Array:
  """n points [n, 2] from the equal-weight mixture, drawn with `key`."""
  centres_Kx2 = jnp.asarray(mode_centres(name))
  mode_key, noise_key = jax.random.split(key)
  mode_N = jax.random.randint(mode_key, (n,), 0, centres_Kx2.shape[0])
  return centres_Kx2[mode_N] + mode_std(name) * jax.random.normal(noise_key, (n, 2))


def _numpy_draw(name: str, rng: np.random.Generator, n: int) -> np.ndarray:
  centres_Kx2 = mode_centres(name)
  mode_N = rng.integers(0, centres_Kx2.shape[0], n)
  return (centres_Kx2[mode_N] + mode_std(name) * rng.standard_normal((n, 2))).astype(np.float32)


def train_batches(name: str, *, batch_size: int, seed: int, skip_batches: int, process_index: int,
                  process_count: int) -> Iterator[dict[str, np.ndarray]]:
  """Infinite batches {'image': float32 [batch_size, 2], 'label': int32 zeros} of fresh draws.

  The mixture has no finite train split: global batch b (`batch_size` points of each of the processes) is drawn
  by numpy from the seed sequence (seed, 0, b), and process p takes its p-th rows, so skipping batches costs
  nothing, a resumed run sees exactly the batches it would have seen, and the global batches do not depend on
  the number of processes. The key is 'image', the name every family reads its examples from.
  """
  mode_centres(name)

  def batches() -> Iterator[dict[str, np.ndarray]]:
    b = skip_batches
    while True:
      points = _numpy_draw(name, np.random.default_rng([seed, 0, b]), batch_size * process_count)
      yield {"image": points[process_index * batch_size:(process_index + 1) * batch_size],
             "label": np.zeros(batch_size, np.int32)}
      b += 1

  return batches()


def eval_points(name: str, num_examples: int) -> np.ndarray:
  """A fixed held-out set of float32 [num_examples, 2] draws, the same in every run.

  Drawn in blocks of 1,000 from their own seeds, so a smaller set is a
  prefix of a larger one.
  """
  blocks = [_numpy_draw(name, np.random.default_rng([2**31 - 1, b]), 1000) for b in range(-(-num_examples // 1000))]
  return np.concatenate(blocks)[:num_examples]
