"""Input pipelines: seeded, sharded, resumable batches of uint8 images.

Every dataset yields the same thing: dicts of numpy arrays
`{'image': uint8 [b, H, W, C] in 0..255, 'label': int32 [b]}`, so a model
family scales images itself (its `scale`/`unscale` pair) and never sees
where they came from.

Order. Epoch e of process p is one seeded shuffle of p's shard, keyed by
(seed, p, e); batches never straddle two epochs (the last
`len(shard) % batch` examples of each epoch's order are dropped). This is
shuffle-before-repeat with a reshuffle every epoch, written so that any
epoch can be started directly: resuming at batch n (`skip_batches=n`)
replays at most one epoch, and on mnist5k nothing at all.

TensorFlow and TFDS are imported only by the functions that read a TFDS
dataset, and they are hidden from the accelerators first: JAX owns the
GPUs and TPUs, and TensorFlow would otherwise reserve their memory. Those
functions are `tfds_batches` (reading) and `tfds_prepare` (downloading);
this module checks the arguments and picks the dataset's reader.
"""

from collections.abc import Iterator
from typing import Any

import numpy as np

from genjax.data import mnist5k, tfds_batches, toy2d
from genjax.data.registry import POINT_DATASETS, check_name
# Re-exported: configs/dcgan_celeba64.py names it here.
from genjax.data.tfds_batches import resize_and_center_crop  # noqa: F401  pylint: disable=unused-import
from genjax.errors import UserError

_EVAL_CHUNK = 1000  # images per array of eval_image_chunks (and per tf.data batch when collecting eval_images)


def _check_int(field: str, value: Any, minimum: int) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise UserError(f"{field}: must be an integer >= {minimum}, got {value!r}")
  return int(value)


def _processes(process_index: int | None, process_count: int | None) -> tuple[int, int]:
  """(index, count) of this process among those sharing the data; JAX's by default."""
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  process_count = _check_int("process_count", process_count, 1)
  process_index = _check_int("process_index", process_index, 0)
  if process_index >= process_count:
    raise UserError(f"process_index: must be in [0, {process_count}), got {process_index}")
  return process_index, process_count


def train_iterator(name: str, *, batch_size: int, seed: int, data_dir: str | None = None,
                   download: bool = True, skip_batches: int = 0, process_index: int | None = None,
                   process_count: int | None = None,
                   train_examples: int | None = None) -> Iterator[dict[str, np.ndarray]]:
  """Infinite shuffled batches of this process's shard of the train split.

  Args:
    name: one of `DATASETS`.
    batch_size: the GLOBAL batch; each process yields `batch_size // process_count`
      examples per batch, so the processes together make one global batch.
    seed: non-negative int; the same seed gives the same batches in any fresh
      process, a different seed a different order.
    data_dir: TFDS data directory (None: TFDS's default); unused by mnist5k.
    download: let TFDS download and prepare a missing dataset.
    skip_batches: start at the batch a fresh iterator would yield this-th
      (0-based), i.e. resume after `skip_batches` training steps; the batches
      are exactly those of a fresh iterator advanced that many times.
    process_index, process_count: this process and how many read the data
      (default: `jax.process_index()`, `jax.process_count()`). mnist5k and the
      2-D mixtures: process i takes its rows of each global batch, the same
      global batches for any process count. TFDS datasets: process i reads
      its own 1/process_count of the train split (the remainder dropped),
      shuffled with its own key, so their batches depend on the count.
    train_examples: train on this many examples of the train split, the same ones whatever the seed
      (mnist5k: a class-balanced subset, `mnist5k.train_subset`; TFDS: the split's first, 'train[:n]'); None:
      all of them. The 2-D mixtures draw fresh points and have none.

  Returns:
    An iterator of {'image': uint8 [b, H, W, C] in 0..255, 'label': int32 [b]},
    b = batch_size // process_count, H, W, C = image_shape(name); datasets
    without labels (binarized_mnist, celeb_a) give zeros. The 2-D mixtures
    (ring8, grid25) give fresh float32 points [b, 2] under 'image'.

  Raises:
    UserError: a bad argument, or a batch the split cannot fill (one line that names it; a ValueError).
    DatasetUnavailableError: a TFDS dataset that is not prepared and cannot
      be downloaded. Raised by this call, not by the first `next`.
  """
  check_name(name)
  batch_size = _check_int("batch_size", batch_size, 1)
  seed = _check_int("seed", seed, 0)
  skip_batches = _check_int("skip_batches", skip_batches, 0)
  process_index, process_count = _processes(process_index, process_count)
  if batch_size % process_count:
    raise UserError(f"batch_size: the global batch {batch_size} does not divide among {process_count} processes")
  local_batch = batch_size // process_count
  if train_examples is not None:
    train_examples = _check_int("train_examples", train_examples, 1)
    if name in POINT_DATASETS:
      raise UserError(f"dataset.train_examples: {name!r} draws fresh points every batch and has no train split to"
                      f" take examples from; allowed: None, got {train_examples}")
  if name in POINT_DATASETS:
    return toy2d.train_batches(name, batch_size=local_batch, seed=seed, skip_batches=skip_batches,
                               process_index=process_index, process_count=process_count)
  if name == "mnist5k":
    return mnist5k.train_batches(batch_size=local_batch, seed=seed, skip_batches=skip_batches,
                                 process_index=process_index, process_count=process_count,
                                 num_examples=train_examples)
  return tfds_batches.train_batches(name, local_batch=local_batch, seed=seed, data_dir=data_dir, download=download,
                                    skip_batches=skip_batches, process_index=process_index, process_count=process_count,
                                    num_examples=train_examples)


def eval_images(name: str, num_examples: int, *, split: str = "test", data_dir: str | None = None,
                download: bool = True) -> np.ndarray:
  """The first `num_examples` images of a held-out split, always in the same order.

  Args:
    name: one of `DATASETS`.
    num_examples: how many; fewer come back when the split is smaller.
    split: the split to read ('test' by default; mnist5k has 'train' and 'test').
    data_dir, download: as for `train_iterator`.

  Returns:
    uint8 [min(num_examples, split size), H, W, C] in 0..255, preprocessed as
    the training batches are, not shuffled: evaluations at different steps
    (and of different runs) see the same images. The 2-D mixtures give a
    fixed set of float32 points [num_examples, 2].
  """
  check_name(name)
  num_examples = _check_int("num_examples", num_examples, 1)
  if name in POINT_DATASETS:
    return toy2d.eval_points(name, num_examples)
  if name == "mnist5k":
    return eval_examples(name, num_examples, split=split)["image"]  # class by class interleaved
  return tfds_batches.eval_examples(name, num_examples, split=split, data_dir=data_dir, download=download,
                                    chunk=_EVAL_CHUNK)["image"]


def eval_image_chunks(name: str, num_examples: int, *, split: str = "test", data_dir: str | None = None,
                      download: bool = True) -> Iterator[np.ndarray]:
  """`eval_images` a chunk at a time: the same images in the same order, in arrays of at most 1,000.

  For splits too large to hold in memory at once (celeb_a's train split is
  about 19 GB as uint8). Image datasets only. The name and the count are
  checked at once; the split is opened when the first chunk is taken.
  """
  check_name(name)
  num_examples = _check_int("num_examples", num_examples, 1)
  if name in POINT_DATASETS:
    raise UserError(f"dataset.name: {name!r} holds 2-D points, not images")
  if name == "mnist5k":
    images = eval_images(name, num_examples, split=split)  # class by class interleaved, as eval_images
    return (images[i:i + _EVAL_CHUNK] for i in range(0, images.shape[0], _EVAL_CHUNK))
  return (chunk["image"] for chunk in tfds_batches.eval_chunks(name, num_examples, split=split, data_dir=data_dir,
                                                               download=download, chunk=_EVAL_CHUNK))


def split_size(name: str, split: str = "train", data_dir: str | None = None) -> int | None:
  """How many examples `split` of `name` holds, where that is known without reading them: mnist5k's, and a TFDS
  dataset's from its prepared metadata (None where it is not prepared, or under tfds.testing.mock_data)."""
  check_name(name)
  if name == "mnist5k":
    return len(mnist5k.load_mnist5k(split)["label"])
  if name in POINT_DATASETS:
    return None
  return tfds_batches.split_size(name, split, data_dir)


def version(name: str, data_dir: str | None = None) -> str:
  """The version of the examples of `name` a reader takes: mnist5k's shipped file's, a TFDS dataset's as
  prepared in `data_dir` (or as TFDS would prepare it); '' for the 2-D mixtures, which are drawn, not stored."""
  check_name(name)
  if name == "mnist5k":
    return mnist5k.VERSION
  if name in POINT_DATASETS:
    return ""
  return tfds_batches.version(name, data_dir)


def eval_examples(name: str, num_examples: int, *, split: str = "test", data_dir: str | None = None,
                  download: bool = True) -> dict[str, np.ndarray]:
  """`eval_images` with the labels: {'image': uint8 [N, H, W, C], 'label': int32 [N]} (zeros where a dataset has none).

  The 2-D mixtures give their fixed float32 points as 'image', with zero labels. mnist5k's digits come class by
  class interleaved (the first of every class in file order, then the second, ...): its file is sorted by class,
  and the first N of file order would hold only a few classes (100: only 0s and 1s).
  """
  check_name(name)
  num_examples = _check_int("num_examples", num_examples, 1)
  if name in POINT_DATASETS:
    points = toy2d.eval_points(name, num_examples)
    return {"image": points, "label": np.zeros((points.shape[0],), np.int32)}
  if name == "mnist5k":
    examples = mnist5k.load_mnist5k(split)
    labels = examples["label"]
    rows = np.stack([np.flatnonzero(labels == c) for c in range(10)], axis=1).ravel()[:num_examples]
    return {"image": examples["image"][rows], "label": labels[rows]}
  return tfds_batches.eval_examples(name, num_examples, split=split, data_dir=data_dir, download=download,
                                    chunk=_EVAL_CHUNK)

