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
GPUs and TPUs, and TensorFlow would otherwise reserve their memory.
"""

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from genjax.data import mnist5k, toy2d
from genjax.data.registry import (OFFLINE_ALTERNATIVE, POINT_DATASETS, DatasetUnavailableError, check_name,
                                   image_shape)
from genjax.errors import UserError

# TFDS shuffles within a buffer this large (or the whole shard if smaller): big enough to mix
# the 10 classes of MNIST well, small enough for celeb_a's encoded JPEGs (~100 MB).
SHUFFLE_BUFFER = 10_000
# TFDS retries every URL 10 times with a 0.2 s backoff that doubles: about 200 s before a machine
# without network hears it has none. 5 retries still ride out a short outage (0 + 0.4 + ... + 3.2 s).
# TFDS 4.9 has no setting for this (DownloadConfig has none), hence the patch in `_download_retries`.
DOWNLOAD_RETRIES = 5
_EVAL_CHUNK = 1000  # images per tf.data batch when collecting eval_images
_PREPARE_HINT = "prepare it on a machine with network and copy it there, or " + OFFLINE_ALTERNATIVE


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
                   process_count: int | None = None) -> Iterator[dict[str, np.ndarray]]:
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
      (default: `jax.process_index()`, `jax.process_count()`). Process i reads
      its own 1/process_count of the train split (the remainder is dropped).

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
  if name in POINT_DATASETS:
    return toy2d.train_batches(name, batch_size=local_batch, seed=seed, skip_batches=skip_batches,
                               process_index=process_index, process_count=process_count)
  if name == "mnist5k":
    return mnist5k.train_batches(batch_size=local_batch, seed=seed, skip_batches=skip_batches,
                                 process_index=process_index, process_count=process_count)
  return _tfds_train_batches(name, local_batch=local_batch, seed=seed, data_dir=data_dir, download=download,
                             skip_batches=skip_batches, process_index=process_index, process_count=process_count)


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
    return mnist5k.load_mnist5k(split)["image"][:num_examples]
  return _tfds_eval_examples(name, num_examples, split=split, data_dir=data_dir, download=download)["image"]


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
    images = mnist5k.load_mnist5k(split)["image"][:num_examples]
    return (images[i:i + _EVAL_CHUNK] for i in range(0, images.shape[0], _EVAL_CHUNK))
  return (chunk["image"] for chunk in _tfds_eval_chunks(name, num_examples, split=split, data_dir=data_dir,
                                                        download=download))


def eval_examples(name: str, num_examples: int, *, split: str = "test", data_dir: str | None = None,
                  download: bool = True) -> dict[str, np.ndarray]:
  """`eval_images` with the labels: {'image': uint8 [N, H, W, C], 'label': int32 [N]} (zeros where a dataset has none).

  The 2-D mixtures give their fixed float32 points as 'image', with zero labels.
  """
  check_name(name)
  num_examples = _check_int("num_examples", num_examples, 1)
  if name in POINT_DATASETS:
    points = toy2d.eval_points(name, num_examples)
    return {"image": points, "label": np.zeros((points.shape[0],), np.int32)}
  if name == "mnist5k":
    examples = mnist5k.load_mnist5k(split)
    return {"image": examples["image"][:num_examples], "label": examples["label"][:num_examples]}
  return _tfds_eval_examples(name, num_examples, split=split, data_dir=data_dir, download=download)


# ---------------------------------------------------------------------------------------------
# TFDS


def _tensorflow():
  """Imports TensorFlow with the GPUs and TPUs hidden from it, so that JAX keeps them."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  for kind in ("GPU", "TPU"):
    try:
      tf.config.set_visible_devices([], kind)
    except RuntimeError:  # TensorFlow already initialised its devices: too late to change, keep going.
      pass
  return tf


def _deterministic_options(tf):
  options = tf.data.Options()
  # Parallel map and interleave keep their input order: a seed fixes the batches.
  options.deterministic = True
  return options


def _epoch_seed(seed: int, process_index: int, epoch: int) -> int:
  """tf.data's int64 seed of one epoch, derived like mnist5k's so both orders are keyed alike."""
  return int(mnist5k.epoch_rng(seed, process_index, epoch).integers(2**63 - 1))


def _failure_reason(error: BaseException) -> str:
  """'OuterType: message' in one line, the message taken from the most specific link of the chain.

  A failed download is a requests ConnectionError whose first argument is
  urllib3's MaxRetryError, whose `reason` is the error that says what
  happened (for instance "Failed to resolve 'storage.googleapis.com'"); the
  walk stops above a bare OSError, whose "[Errno -2] ..." alone would no
  longer name the host.
  """
  detail = error
  for _ in range(8):
    links = (getattr(detail, "reason", None), detail.args[0] if detail.args else None)
    deeper = next((e for e in links if isinstance(e, BaseException)), None)
    if deeper is None or type(deeper) is OSError or type(deeper).__module__ == "socket" or not str(deeper).strip():
      break
    detail = deeper
  lines = str(detail).strip().splitlines()
  reason = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
  return reason if len(reason) <= 240 else reason[:237] + "..."


@contextlib.contextmanager
def _download_retries(retries: int) -> Iterator[None]:
  """Lowers TFDS's per-URL HTTP retries for the duration of one download_and_prepare."""
  try:
    from tensorflow_datasets.core.download import downloader  # pylint: disable=g-import-not-at-top
  except ImportError:
    downloader = None
  if downloader is None or not isinstance(getattr(downloader, "MAX_RETRIES", None), int):
    yield
    return
  saved = downloader.MAX_RETRIES
  downloader.MAX_RETRIES = min(saved, retries)
  try:
    yield
  finally:
    downloader.MAX_RETRIES = saved


@contextlib.contextmanager
def _quiet_download() -> Iterator[None]:
  """No progress bars and no per-retry HTTP warnings: a failed download is then one line, not fifty."""
  import logging  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.core.utils import tqdm_utils  # pylint: disable=g-import-not-at-top
  http_log = logging.getLogger("urllib3.connectionpool")
  saved_level, saved_bar = http_log.level, getattr(tqdm_utils, "_active", True)
  http_log.setLevel(logging.ERROR)
  tqdm_utils.display_progress_bar(False)
  try:
    yield
  finally:
    http_log.setLevel(saved_level)
    tqdm_utils.display_progress_bar(saved_bar)


def _paths_under(roots: list[str]) -> set[str]:
  """Every file and folder below (and including) each root that exists."""
  found = set()
  for root in roots:
    if os.path.lexists(root):
      found.add(root)
    for folder, dirs, files in os.walk(root):
      found.update(os.path.join(folder, n) for n in dirs + files)
  return found


def _remove_new_paths(roots: list[str], existing: set[str]) -> None:
  """Removes what a failed download left under `roots` that was not there before it (TFDS leaves
  `*.tmp.*` downloads and `*.incomplete*` folders); nothing that was there before is touched."""
  for path in sorted(_paths_under(roots) - existing, key=lambda p: p.count(os.sep), reverse=True):
    try:
      if os.path.isdir(path) and not os.path.islink(path):
        os.rmdir(path)  # only empty once its new contents are gone; a folder with old files stays
      else:
        os.remove(path)
    except OSError:
      pass


def prepared_builder(name: str, data_dir: str | None, download: bool):
  """The TFDS builder of `name`, downloaded and prepared if it was not and `download` allows.

  Raises:
    DatasetUnavailableError: not prepared in `data_dir`, and `download` is
      False or the download failed (one line: dataset, data_dir, reason, and
      what to do instead).
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(name, data_dir=data_dir)
  if builder.is_prepared():
    return builder
  where = os.fspath(builder.data_dir_root)
  if not download:
    raise DatasetUnavailableError(
        f"TFDS dataset {name!r} is not in data_dir={where} and dataset.download=False; {_PREPARE_HINT}")
  # What this attempt may write under data_dir: the dataset's folder and the download cache.
  scratch = [os.path.join(where, builder.name), os.path.join(where, "downloads")]
  existing = _paths_under(scratch) | ({where} if os.path.lexists(where) else set())
  try:
    with _download_retries(DOWNLOAD_RETRIES), _quiet_download():
      builder.download_and_prepare()
  except BaseException as e:  # an interrupt too leaves half downloads behind
    _remove_new_paths(scratch, existing)
    if where not in existing:
      with contextlib.suppress(OSError):
        os.rmdir(where)  # made for this attempt; removed only if nothing else is in it
    if not isinstance(e, Exception):
      raise
    # network, checksum, disk, missing module: all mean "not available here"
    raise DatasetUnavailableError(
        f"TFDS dataset {name!r} is not in data_dir={where} and could not be downloaded "
        f"({_failure_reason(e)}); {_PREPARE_HINT}") from e
  return builder


def resize_and_center_crop(image, size: int):
  """Resizes `image` [h, w, c] so its shorter side is `size`, then crops the centre size x size.

  As torchvision's Resize(size) + CenterCrop(size) in the PyTorch DCGAN
  example: the longer side becomes int(size * long / short), the crop starts
  at round((side - size) / 2), resampling is bilinear with antialiasing
  (a downscale must average, not skip, pixels). Returns uint8 [size, size, c]
  (rounded and clipped).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  h, w, _ = image.shape
  if h is None or w is None:
    raise ValueError(f"resize_and_center_crop needs a static image shape, got {image.shape}")
  if w <= h:
    new_h, new_w = int(size * h / w), size
  else:
    new_h, new_w = size, int(size * w / h)
  resized = tf.image.resize(image, (new_h, new_w), method="bilinear", antialias=True)
  top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
  cropped = resized[top:top + size, left:left + size, :]
  return tf.cast(tf.clip_by_value(tf.round(cropped), 0.0, 255.0), tf.uint8)


def _example_fn(tf, builder, name: str):
  """The function from a raw example (image still encoded) to {'image': uint8 [H, W, C], 'label': int32}."""
  feature = builder.info.features["image"]
  raw_shape = tuple(feature.shape)
  want = image_shape(name)
  if (raw_shape[-1] != want[-1]) if name == "celeb_a" else (raw_shape != want):
    raise DatasetUnavailableError(
        f"TFDS dataset {name!r} has images of shape {raw_shape}, genjax expects {want}: unsupported TFDS version")
  has_label = "label" in builder.info.features

  def to_example(example):
    image = tf.ensure_shape(feature.decode_example(example["image"]), raw_shape)
    if name == "binarized_mnist":
      # Pixels are {0, 1}; thresholding (rather than * 255) cannot wrap around in uint8.
      image = tf.cast(image > 0, tf.uint8) * 255
    elif name == "celeb_a":
      image = resize_and_center_crop(image, want[0])
    label = tf.cast(example["label"], tf.int32) if has_label else tf.zeros([], tf.int32)
    return {"image": image, "label": label}

  return to_example


def _raw_dataset(tfds, builder, split, *, shuffle_files: bool, shuffle_seed: int | None, options):
  """Examples of `split` with the image left encoded and every other feature but the label dropped.

  Shuffling and skipping encoded images costs a fraction of the memory and
  time of decoded ones (a decoded celeb_a image is 116 KB): decoding waits
  until after the shuffle and the skip.
  """
  ds = builder.as_dataset(split=split, shuffle_files=shuffle_files,
                          decoders={"image": tfds.decode.SkipDecoding()},
                          read_config=tfds.ReadConfig(shuffle_seed=shuffle_seed, options=options))
  keep = [k for k in ("image", "label") if k in builder.info.features]
  return ds.map(lambda example: {k: example[k] for k in keep})


def _tfds_train_batches(name: str, *, local_batch: int, seed: int, data_dir: str | None, download: bool,
                        skip_batches: int, process_index: int, process_count: int
                        ) -> Iterator[dict[str, np.ndarray]]:
  tf = _tensorflow()
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = prepared_builder(name, data_dir, download)
  to_example = _example_fn(tf, builder, name)
  options = _deterministic_options(tf)
  split = tfds.even_splits("train", n=process_count, drop_remainder=True)[process_index]

  def epoch_raw(epoch: int):
    epoch_seed = _epoch_seed(seed, process_index, epoch)
    return _raw_dataset(tfds, builder, split, shuffle_files=True, shuffle_seed=epoch_seed, options=options), epoch_seed

  # TFDS asserts the cardinality of every split it reads (mock_data's too).
  shard_size = int(epoch_raw(0)[0].cardinality())
  if shard_size < 0:
    raise DatasetUnavailableError(f"TFDS dataset {name!r}: the size of the train split is unknown")
  steps_per_epoch = shard_size // local_batch
  if steps_per_epoch == 0:
    raise UserError(f"batch_size: the per-process batch {local_batch} exceeds the {shard_size} training "
                    f"examples of each of the {process_count} processes of dataset {name!r}; allowed: at most"
                    f" {shard_size * process_count}")
  buffer = min(SHUFFLE_BUFFER, shard_size)
  first_epoch, first_step = divmod(skip_batches, steps_per_epoch)

  def epoch_batches(epoch: int, skip_steps: int):
    raw, epoch_seed = epoch_raw(epoch)
    ds = raw.shuffle(buffer, seed=epoch_seed, reshuffle_each_iteration=False)
    ds = ds.skip(skip_steps * local_batch)
    ds = ds.map(to_example, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(local_batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    return ds.with_options(options)

  def batches() -> Iterator[dict[str, np.ndarray]]:
    epoch, skip_steps = first_epoch, first_step
    while True:
      yield from epoch_batches(epoch, skip_steps).as_numpy_iterator()
      epoch, skip_steps = epoch + 1, 0

  return batches()


def _tfds_eval_chunks(name: str, num_examples: int, *, split: str, data_dir: str | None,
                      download: bool) -> Iterator[dict[str, np.ndarray]]:
  """The first `num_examples` examples of `split` in order, as {'image', 'label'} chunks of at most _EVAL_CHUNK."""
  tf = _tensorflow()
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = prepared_builder(name, data_dir, download)
  known = list(builder.info.splits.keys())
  if known and split not in known:  # under tfds.testing.mock_data no split is known, and any is accepted
    raise UserError(f"split: unknown split {split!r} of dataset {name!r}; allowed: {', '.join(sorted(known))}")
  options = _deterministic_options(tf)
  ds = _raw_dataset(tfds, builder, split, shuffle_files=False, shuffle_seed=None, options=options)
  ds = ds.take(num_examples).map(_example_fn(tf, builder, name), num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(_EVAL_CHUNK).with_options(options)
  yield from ds.as_numpy_iterator()


def _tfds_eval_examples(name: str, num_examples: int, *, split: str, data_dir: str | None,
                        download: bool) -> dict[str, np.ndarray]:
  chunks = list(_tfds_eval_chunks(name, num_examples, split=split, data_dir=data_dir, download=download))
  if not chunks:
    return {"image": np.zeros((0, *image_shape(name)), np.uint8), "label": np.zeros((0,), np.int32)}
  return {key: np.concatenate([c[key] for c in chunks]) for key in ("image", "label")}
