"""The reference-feature cache of genjax.quality: checked before use, replaced when bad, never fatal, bounded.

Every case uses mnist5k's train digits and the shipped digit classifier,
offline, with GENJAX_CACHE in the test's own directory (the TFDS case serves
those digits as 'mnist'); "fresh" features are computed straight from the
train split, with no cache involved.
"""

import errno
import json
import logging
import os
import re
import shutil

import numpy as np
import pytest

from genjax import data, quality, train_lib
from tests.helpers import run_cli, tiny_config

PROVENANCE = ("network", "dataset", "data_version", "split", "limit", "count", "whole_split")


@pytest.fixture(autouse=True)
def _own_process_state(monkeypatch):
  """Each test starts with none of the features or split sizes that earlier tests left in this process."""
  monkeypatch.setattr(quality, "_in_memory", {}, raising=False)
  monkeypatch.setattr(quality, "_whole_split", {}, raising=False)


@pytest.fixture(scope="module")
def net():
  return quality.network("mnist5k")


@pytest.fixture(scope="module")
def train():
  return data.load_mnist5k("train")["image"]


@pytest.fixture(scope="module")
def fresh(net, train):
  return quality._features(net, train)  # pylint: disable=protected-access


@pytest.fixture
def cache(tmp_path, monkeypatch, net):
  """The mnist5k cache file's path in a fresh GENJAX_CACHE (the directory exists, the file does not)."""
  directory = tmp_path / "cache"
  directory.mkdir()
  monkeypatch.setenv("GENJAX_CACHE", str(directory))
  return str(directory / f"mnist5k_train_{net.tag}.npz")


@pytest.fixture
def calls(monkeypatch):
  """The image arrays each feature computation receives."""
  seen = []
  real = quality._features  # pylint: disable=protected-access

  def spy(net, images):
    seen.append(np.array(images))
    return real(net, images)

  monkeypatch.setattr(quality, "_features", spy)
  return seen


def _fields(net, features, **overrides):
  """What a good cache file of mnist5k's 4,500 train digits holds, with `overrides`."""
  return {"features": features, "network": net.tag, "dataset": "mnist5k", "data_version": data.version("mnist5k"),
          "split": "train", "limit": 50_000, "count": len(features), "whole_split": 1, **overrides}


def _save(path, **arrays):
  with open(path, "wb") as f:
    np.savez(f, **arrays)


def _assert_valid_cache(path, features, net, *, limit=50_000, whole=1):
  """The file holds exactly `features` with the provenance of mnist5k's reference, and nothing is left beside it."""
  assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]
  with np.load(path, allow_pickle=False) as stored:
    assert stored["features"].dtype == np.float32
    np.testing.assert_array_equal(stored["features"], features)
    assert {k: stored[k].item() for k in PROVENANCE} == {
        "network": net.tag, "dataset": "mnist5k", "data_version": "1.0.0", "split": "train", "limit": limit,
        "count": len(features), "whole_split": whole}


def _warnings(caplog):
  return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def _truncated(path, net, fresh):
  _save(path, **_fields(net, fresh))
  with open(path, "rb") as f:
    whole = f.read()
  with open(path, "wb") as f:
    f.write(whole[:len(whole) // 2])


def _npy(path, net, fresh):
  with open(path, "wb") as f:
    np.save(f, fresh)


def _with_nan(path, net, fresh):
  bad = fresh.copy()
  bad[7, 3] = np.nan
  _save(path, **_fields(net, bad))


def _file(features, **overrides):
  """A writer of a cache file holding features(fresh), good but for `overrides`."""
  return lambda path, net, fresh: _save(path, **_fields(net, features(fresh), **overrides))


def _other(fresh):
  return fresh * 2 + 1  # finite features of the right shape that are not the reference's


# name: (what writes the bad file, a regular expression of the reason its warning gives)
BAD_FILES = {
    "truncated": (_truncated, r"it does not open \(BadZipFile: .+\)"),
    "empty": (lambda path, net, fresh: open(path, "wb").close(), r"it does not open \(EOFError: .+\)"),
    "not_an_npz": (_npy, r"it is not an \.npz archive"),
    "pickled_features": (_file(lambda f: np.array(list(f), dtype=object), count=4500),
                         r"it does not read \(ValueError: .*allow_pickle=False.*\)"),
    "nan_features": (_with_nan, r"its features hold non-finite values"),
    "ten_rows": (_file(lambda f: f[:10]), r"its count is 10, want 4,500"),  # its count says 10 too
    "three_columns": (_file(lambda f: np.ascontiguousarray(f[:, :3])),
                      r"its features are float32 \(4500, 3\), want float32 \(4500, 128\)"),
    "float64_features": (_file(lambda f: f.astype(np.float64)),
                         r"its features are float64 \(4500, 128\), want float32 \(4500, 128\)"),
    "another_network": (_file(_other, network="fid_inception-0123456789ab"),
                        r"its network is 'fid_inception-0123456789ab', want 'mnist5k_classifier-\w{12}'"),
    "another_dataset": (_file(_other, dataset="mnist"), r"its dataset is 'mnist', want 'mnist5k'"),
    "another_data_version": (_file(_other, data_version="0.9.0"), r"its data_version is '0\.9\.0', want '1\.0\.0'"),
    "no_data_version": (lambda path, net, fresh: _save(path, **{k: v for k, v in _fields(net, _other(fresh)).items()
                                                                if k != "data_version"}),  # an earlier format
                        r"it has no data_version"),
    "no_provenance": (lambda path, net, fresh: _save(path, features=_other(fresh)),  # the first format
                      r"it has no network, dataset, data_version, split, limit, count, whole_split"),
}


@pytest.mark.parametrize("bad", list(BAD_FILES))
def test_a_bad_cache_file_is_recomputed_and_replaced(bad, cache, net, fresh, calls, caplog):
  write, reason = BAD_FILES[bad]
  write(cache, net, fresh)
  with caplog.at_level(logging.WARNING):
    got = quality.reference_features("mnist5k", net)
  np.testing.assert_array_equal(got, fresh)
  assert len(calls) == 1
  (warning,) = _warnings(caplog)
  assert re.fullmatch(rf"reference features cache {re.escape(cache)} is bad: {reason}; recomputing it", warning)
  assert "\n" not in warning
  _assert_valid_cache(cache, fresh, net)
  # The replaced file is used as it is: no second computation, no warning.
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    np.testing.assert_array_equal(quality.reference_features("mnist5k", net), fresh)
  assert len(calls) == 1 and not _warnings(caplog)


def _read_only_directory(tmp_path, monkeypatch):
  if os.geteuid() == 0:
    pytest.skip("root writes into a 0o500 directory; the regular-file cases cover root")
  directory = tmp_path / "read_only"
  directory.mkdir()
  directory.chmod(0o500)
  return str(directory)


def _under_a_file(tmp_path, monkeypatch):
  (tmp_path / "a_file").write_text("")
  return str(tmp_path / "a_file" / "cache")


def _a_file(tmp_path, monkeypatch):
  (tmp_path / "a_file").write_text("")
  return str(tmp_path / "a_file")


def _full_disk(tmp_path, monkeypatch):
  def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(np, "savez", no_space)
  directory = tmp_path / "full"
  directory.mkdir()
  return str(directory)


UNWRITABLE = {"read_only_directory": _read_only_directory, "under_a_regular_file": _under_a_file,
              "a_regular_file": _a_file, "full_disk": _full_disk}


@pytest.mark.parametrize("where", list(UNWRITABLE))
def test_an_unwritable_cache_directory_keeps_the_features_in_memory(where, tmp_path, monkeypatch, net, fresh,
                                                                    calls, caplog):
  directory = UNWRITABLE[where](tmp_path, monkeypatch)
  monkeypatch.setenv("GENJAX_CACHE", directory)
  try:
    with caplog.at_level(logging.WARNING):
      first = quality.reference_features("mnist5k", net)
      second = quality.reference_features("mnist5k", net)
  finally:
    if where == "read_only_directory":
      os.chmod(directory, 0o700)
  np.testing.assert_array_equal(first, fresh)
  np.testing.assert_array_equal(second, fresh)
  assert len(calls) == 1  # the second evaluation takes them from memory
  (warning,) = _warnings(caplog)
  assert warning.startswith(f"reference features cache directory {directory} cannot be written (")
  assert warning.endswith("); keeping the features in memory for this process") and "\n" not in warning
  if os.path.isdir(directory):
    assert not os.listdir(directory)  # no temporary file left behind


def test_the_reference_is_the_first_reference_limit_train_images(cache, monkeypatch, net, train, fresh, calls):
  monkeypatch.setattr(quality, "REFERENCE_LIMIT", 100)
  got = quality.reference_features("mnist5k", net)
  assert len(calls) == 1
  np.testing.assert_array_equal(calls[0], train[:100])  # the first 100, and only those are computed
  np.testing.assert_array_equal(got, quality._features(net, train[:100]))  # pylint: disable=protected-access
  _assert_valid_cache(cache, got, net, limit=100, whole=0)
  assert quality.describe("mnist5k", 5000, 0) == (
      "5,000 samples (seed 0) against the first 100 of the train split of mnist5k,"
      f" features of mnist5k_classifier ({net.tag})")
  # Back at the default limit, the 100-image file is not taken for the 4,500-digit reference.
  monkeypatch.setattr(quality, "REFERENCE_LIMIT", 50_000)
  np.testing.assert_array_equal(quality.reference_features("mnist5k", net), fresh)
  _assert_valid_cache(cache, fresh, net)
  assert quality.describe("mnist5k", 5000, 0) == (
      f"5,000 samples (seed 0) against the train split of mnist5k, features of mnist5k_classifier ({net.tag})")


@pytest.mark.parametrize("limit,whole", [(2500, False), (4500, True)])
def test_a_tfds_reference_is_read_in_chunks_up_to_the_limit(limit, whole, tmp_path, monkeypatch, net, train,
                                                            calls):
  """A TFDS split ('mnist' here, served by mnist5k's 4,500 train digits) is read in chunks, one past the limit."""
  monkeypatch.setenv("GENJAX_CACHE", str(tmp_path))
  monkeypatch.setattr(quality, "REFERENCE_LIMIT", limit)
  requested = []

  def chunks(name, num_examples, *, split, data_dir=None, download=True):
    requested.append((name, num_examples, split, data_dir))
    images = train[:num_examples]
    return (images[i:i + 1000] for i in range(0, len(images), 1000))

  monkeypatch.setattr(quality.data, "eval_image_chunks", chunks)
  # Before the split is read or cached, its size is not known here.
  assert quality.describe("mnist", 64, 1) == (
      f"64 samples (seed 1) against up to the first {limit:,} of the train split of mnist,"
      f" features of mnist5k_classifier ({net.tag})")
  got = quality.reference_features("mnist", net, data_dir="/nowhere")
  assert requested == [("mnist", limit + 1, "train", "/nowhere")]
  assert max(len(c) for c in calls) == 1000 and sum(len(c) for c in calls) == limit
  np.testing.assert_array_equal(got, quality._features(net, train[:limit]))  # pylint: disable=protected-access
  reference = "the train split of mnist" if whole else f"the first {limit:,} of the train split of mnist"
  assert quality.describe("mnist", 64, 1) == (
      f"64 samples (seed 1) against {reference}, features of mnist5k_classifier ({net.tag})")
  # From the cache, in a process that has not read the split, the text is the same.
  monkeypatch.setattr(quality, "_whole_split", {})
  np.testing.assert_array_equal(quality.reference_features("mnist", net), got)
  assert len(requested) == 1
  assert quality.describe("mnist", 64, 1).endswith(f"against {reference}, features of mnist5k_classifier ({net.tag})")


def _fid_line(stdout):
  (line,) = [line for line in stdout.splitlines() if line.split()[:1] == ["fid"]]
  return line


def test_sample_py_with_a_corrupt_cache_prints_the_fid_of_a_clean_one(tmp_path, monkeypatch, net):
  workdir = str(tmp_path / "run")
  monkeypatch.setenv("GENJAX_CACHE", str(tmp_path / "training_cache"))
  train_lib.train_and_evaluate(tiny_config("vae_mnist5k_mlp", num_steps=2, checkpoint_every=1, eval_every=2,
                                           log_every=1, **{"model.hidden": (16,), "model.latent_dim": 4}), workdir)
  args = ["--workdir", workdir, "--quality_samples=64", "--iwae_k=4", "--num_examples=32"]
  runs = {}
  for name in ("clean", "corrupt"):
    directory = tmp_path / f"{name}_cache"
    directory.mkdir()
    path = str(directory / f"mnist5k_train_{net.tag}.npz")
    if name == "corrupt":
      with open(path, "wb") as f:
        f.write(b"PK\x03\x04 not the rest of a zip file")
    monkeypatch.setenv("GENJAX_CACHE", str(directory))
    result = run_cli("sample.py", *args)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    with open(os.path.join(workdir, "sample", "eval.json"), encoding="utf-8") as f:
      runs[name] = (_fid_line(result.stdout), json.load(f)["fid"], result.stderr)
    with np.load(path, allow_pickle=False) as stored:  # the corrupt file was replaced by a good one
      assert stored["features"].shape == (4500, 128) and stored["network"].item() == net.tag
    shutil.rmtree(directory)
  assert runs["corrupt"][:2] == runs["clean"][:2]
  assert f"reference features cache {tmp_path / 'corrupt_cache'}" in runs["corrupt"][2]
  assert "reference features cache" not in runs["clean"][2]


def test_a_tfds_cache_whose_count_misses_the_prepared_split_is_recomputed(tmp_path, monkeypatch, net, train, calls,
                                                                          caplog):
  """A cache written from another copy of a TFDS split (64 mock examples, a partial download) is not the
  reference of a prepared split whose metadata says it holds more."""
  monkeypatch.setenv("GENJAX_CACHE", str(tmp_path))
  monkeypatch.setattr(quality, "REFERENCE_LIMIT", 2500)
  path = tmp_path / f"mnist_train_{net.tag}.npz"
  _save(path, **_fields(net, quality._features(net, train[:64]), dataset="mnist", limit=2500,  # pylint: disable=protected-access
                        whole_split=1, data_version=data.version("mnist", "/prepared")))
  monkeypatch.setattr(quality.data, "eval_image_chunks",
                      lambda name, n, *, split, data_dir=None, download=True: iter([train[:n]]))
  sizes = []
  monkeypatch.setattr(quality.data, "split_size", lambda *args: sizes.append(args) or 60_000)
  calls.clear()
  got = quality.reference_features("mnist", net, data_dir="/prepared")
  assert sum(len(c) for c in calls) == 2500  # recomputed from the split
  assert sizes == [("mnist", "train", "/prepared")]
  assert any(re.search(r"is bad: its count is 64, want 2,500; recomputing", m) for m in _warnings(caplog))
  np.testing.assert_array_equal(got, quality._features(net, train[:2500]))  # pylint: disable=protected-access


def test_split_size_reads_a_prepared_tfds_split_s_metadata_and_knows_no_mock(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from genjax.data import tfds_batches  # pylint: disable=g-import-not-at-top
  assert data.split_size("mnist5k", "train") == 4500 and data.split_size("mnist5k", "test") == 500
  assert tfds_batches.split_size("dummy_mnist", "train", str(tmp_path)) is None  # not prepared there
  tfds.testing.DummyMnist(data_dir=str(tmp_path)).download_and_prepare()
  assert tfds_batches.split_size("dummy_mnist", "train", str(tmp_path)) == 20
  assert tfds_batches.split_size("dummy_mnist", "validation", str(tmp_path)) is None
  with tfds.testing.mock_data(num_examples=64):
    assert data.split_size("mnist", "train", str(tmp_path / "none")) is None


def test_the_data_version_is_the_prepared_tfds_datasets_and_mnist5ks_own(tmp_path):
  """What the reference cache records of its images: a TFDS dataset's version as prepared (or as TFDS would
  prepare it), mnist5k's shipped file's; '' for a name TFDS does not know."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from genjax.data import tfds_batches  # pylint: disable=g-import-not-at-top
  assert data.version("mnist5k") == "1.0.0"
  tfds.testing.DummyMnist(data_dir=str(tmp_path)).download_and_prepare()
  assert tfds_batches.version("dummy_mnist", str(tmp_path)) == str(tfds.testing.DummyMnist.VERSION)
  assert data.version("mnist", str(tmp_path / "none")) == str(tfds.builder("mnist").info.version)
  assert tfds_batches.version("no_such_dataset", str(tmp_path)) == ""


def test_writers_at_once_each_write_a_whole_file_of_their_own(tmp_path, net, fresh):
  """Threads of one process (or hosts whose processes share a pid) storing the same cache: each write lands."""
  import threading  # pylint: disable=g-import-not-at-top
  path = str(tmp_path / f"mnist5k_train_{net.tag}.npz")
  provenance = {k: v for k, v in _fields(net, fresh).items() if k != "features"}
  results = []

  def write():
    results.extend(quality._store(path, fresh, provenance) for _ in range(10))  # pylint: disable=protected-access

  threads = [threading.Thread(target=write) for _ in range(3)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert results == [True] * 30
  _assert_valid_cache(path, fresh, net)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_a_cache_file_and_an_atomic_write_get_the_mode_of_a_new_file(tmp_path, net, fresh, umask):
  """Not mkstemp's 0600: a cache directory shared by users (or config.json in a shared workdir) is read by others."""
  from genjax import paths  # pylint: disable=g-import-not-at-top
  provenance = {k: v for k, v in _fields(net, fresh).items() if k != "features"}
  old = os.umask(umask)
  try:
    assert quality._store(str(tmp_path / "cache.npz"), fresh, provenance)  # pylint: disable=protected-access
    paths.write_atomically(str(tmp_path / "config.json"), "{}")
    (tmp_path / "plain").write_text("")
  finally:
    os.umask(old)
  want = 0o666 & ~umask
  assert [os.stat(tmp_path / name).st_mode & 0o777 for name in ("cache.npz", "config.json", "plain")] == [want] * 3
