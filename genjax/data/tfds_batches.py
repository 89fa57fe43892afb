"""TFDS datasets as genjax's batches: a TFDS dataset read as `pipeline` promises every dataset is.

The train batches of one process are its even split of the train split,
shuffled per epoch by a seed derived as mnist5k's is (so a seed fixes the
order and `skip_batches` resumes exactly); held-out examples come in the
split's order. Images stay encoded through the shuffle and the skip and are
decoded (binarized_mnist thresholded to {0, 255}, celeb_a resized and
centre-cropped to 64x64) just before batching. TensorFlow and TFDS are
imported by the functions that read, with the GPUs and TPUs hidden from
TensorFlow first: JAX owns them.
"""

from collections.abc import Iterator

import numpy as np

from genjax.data import mnist5k
from genjax.data.registry import DatasetUnavailableError, image_shape
from genjax.data.tfds_prepare import prepared_builder
from genjax.errors import UserError

# TFDS shuffles within a buffer this large (or the whole shard if smaller): big enough to mix
# the 10 classes of MNIST well, small enough for celeb_a's encoded JPEGs (~100 MB).
SHUFFLE_BUFFER = 10_000


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


def train_batches(name: str, *, local_batch: int, seed: int, data_dir: str | None, download: bool,
                  skip_batches: int, process_index: int, process_count: int,
                  num_examples: int | None = None) -> Iterator[dict[str, np.ndarray]]:
  tf = _tensorflow()
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = prepared_builder(name, data_dir, download)
  to_example = _example_fn(tf, builder, name)
  options = _deterministic_options(tf)
  # train_examples: the split's first (TFDS's slicing), shared out among the processes as the whole split is.
  whole = "train" if num_examples is None else f"train[:{num_examples}]"
  split = tfds.even_splits(whole, n=process_count, drop_remainder=True)[process_index]

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


def split_size(name: str, split: str, data_dir: str | None) -> int | None:
  """The examples in `split` of `name` as prepared in `data_dir`, from its metadata (nothing is read); None where
  TFDS does not know it: not prepared there, or under tfds.testing.mock_data."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    builder = tfds.builder(name, data_dir=data_dir)
    splits = builder.info.splits if builder.is_prepared() else {}
    return int(splits[split].num_examples) if split in splits else None
  except Exception:  # pylint: disable=broad-except  # an unknown name, an unreadable data_dir: not known
    return None


def version(name: str, data_dir: str | None) -> str:
  """The version of `name` that a reader of `data_dir` takes (the prepared one's, else the one TFDS would
  prepare); '' where TFDS does not know the name."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    return str(tfds.builder(name, data_dir=data_dir).info.version)
  except Exception:  # pylint: disable=broad-except  # an unknown name, an unreadable data_dir: not known
    return ""


def eval_chunks(name: str, num_examples: int, *, split: str, data_dir: str | None, download: bool,
                chunk: int) -> Iterator[dict[str, np.ndarray]]:
  """The first `num_examples` examples of `split` in order, as {'image', 'label'} chunks of at most `chunk`."""
  tf = _tensorflow()
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = prepared_builder(name, data_dir, download)
  known = list(builder.info.splits.keys())
  if known and split not in known:  # under tfds.testing.mock_data no split is known, and any is accepted
    raise UserError(f"split: unknown split {split!r} of dataset {name!r}; allowed: {', '.join(sorted(known))}")
  options = _deterministic_options(tf)
  ds = _raw_dataset(tfds, builder, split, shuffle_files=False, shuffle_seed=None, options=options)
  ds = ds.take(num_examples).map(_example_fn(tf, builder, name), num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(chunk).with_options(options)
  yield from ds.as_numpy_iterator()


def eval_examples(name: str, num_examples: int, *, split: str, data_dir: str | None, download: bool,
                  chunk: int) -> dict[str, np.ndarray]:
  """`eval_chunks` in one array each of images and labels."""
  chunks = list(eval_chunks(name, num_examples, split=split, data_dir=data_dir, download=download, chunk=chunk))
  if not chunks:
    return {"image": np.zeros((0, *image_shape(name)), np.uint8), "label": np.zeros((0,), np.int32)}
  return {key: np.concatenate([c[key] for c in chunks]) for key in ("image", "label")}
