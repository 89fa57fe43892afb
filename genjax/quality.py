"""Sample quality of an image family against its dataset: FID, KID, precision/recall, density/coverage.

The protocol, the same in the loop and in sample.py:
  * samples come from the family's `sample` with a fixed key (so numbers of
    different checkpoints are comparable), in batches of 500 (or of all of
    them, when fewer are asked for: a quick check of 64 samples does not pay
    for 500) with the key of batch b `fold_in(key, b)`, and are quantised to
    uint8 by the family's `unscale`, as the real images are;
  * features come from one of two networks (`network`):
    - Inception-v3 of FID (`genjax.nets.inception`, pytorch-fid's network and
      input rule: bilinear resize to 299x299 without antialiasing), whenever
      its weights file is given (`eval.inception_weights`, sample.py's
      `--inception_weights`): any image dataset, numbers comparable with
      published ones;
    - otherwise, on the 28x28x1 digit datasets, the digit classifier shipped
      with genjax (`genjax.metrics.features`): no file needed;
    other datasets without Inception weights get no numbers;
  * the reference is the dataset's training split, at most its first
    `REFERENCE_LIMIT` (50,000) images, read a chunk at a time (mnist5k's
    4,500 digits are all of it); its features are computed once and cached in
    a file named by the dataset, the split, the network and its weights' hash
    (`GENJAX_CACHE`, default ~/.cache/genjax), which also records what it was
    made from (network, dataset and its version, split, limit, row count: a
    TFDS dataset prepared again at another version is another reference).
    The file is checked at every use: one that does not open, has the wrong shape, dtype or
    provenance, or holds a non-finite value is recomputed and replaced, with a
    warning; where the cache directory cannot be written, a warning says so
    and the features are kept in memory for the rest of the process;
  * every number is reported with the number of samples, the reference (its
    split, and "the first 50,000" of it when the split is larger), the feature
    network and the seed (`describe`).
"""

import contextlib
import dataclasses
import functools
import os
import tempfile
from collections.abc import Iterator
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from genjax import data, paths
from genjax.errors import UserError
from genjax.metrics import features, sample_quality

# Datasets whose images the shipped digit classifier knows (MNIST digits, 28x28x1).
DIGIT_DATASETS = ("mnist5k", "mnist", "binarized_mnist")
REFERENCE_SPLIT = "train"
# The reference is at most this many images, the first of REFERENCE_SPLIT: FID's usual reference size, and a
# bound on memory (celeb_a's train split is about 19 GB as uint8, its Inception features 1.3 GB).
REFERENCE_LIMIT = 50_000
BATCH = 500  # samples per generation call, and images per feature call


def sample_batch(num_samples: int) -> int:
  """Samples per generation call when `num_samples` are asked for: BATCH, or all of them if fewer."""
  return max(1, min(BATCH, num_samples))


@dataclasses.dataclass(frozen=True)
class Network:
  """A feature network: its name and weights' hash (`tag`), parameters and jitted `features(params, uint8)`."""
  name: str
  tag: str
  params: Any
  features: Callable[[Any, Any], jax.Array]


def cache_dir() -> str:
  return os.environ.get("GENJAX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "genjax")


@functools.cache
def _sha256(path: str) -> str:
  return features.sha256(path)


def check_inception_weights(path: str | None, what: str) -> None:
  """UserError naming `what` (the field or flag) unless `path` is None, empty or an Inception weights file."""
  if not path:
    return
  if not os.path.isfile(path):
    raise UserError(f"{what}: no file {path!r}; convert pytorch-fid's {features.INCEPTION_SOURCE} once with"
                    " `python -m genjax.convert_inception` (docs/evaluation.md, 'FID with Inception-v3')")
  _inception(os.path.abspath(path), what)


@functools.cache
def _digit_network() -> Network:
  """The shipped digit classifier, read once per process (not at every evaluation)."""
  path = features.SHIPPED["mnist5k"]
  try:
    return Network("mnist5k_classifier", f"mnist5k_classifier-{_sha256(path)[:12]}",
                   features.load_digit_classifier(path), features.digit_features)
  except (ValueError, OSError) as e:  # missing, truncated: the install lost its package data
    raise data.DatasetUnavailableError(
        f"the shipped digit classifier {path} does not load ({e}); reinstall genjax"
        " (pip install --force-reinstall genjax)") from None


@functools.cache
def _inception(path: str, what: str = "eval.inception_weights") -> Network:
  try:
    params = features.load_inception(path)
  except (ValueError, OSError) as e:
    raise UserError(f"{what}: {e}; convert pytorch-fid's {features.INCEPTION_SOURCE} with"
                    " `python -m genjax.convert_inception`") from None
  return Network("FID Inception-v3", f"fid_inception-{_sha256(path)[:12]}", params, features.inception_features)


def network(dataset: str, inception_weights: str | None = None) -> Network | None:
  """The feature network of `dataset`'s numbers (module docstring), or None when it has none."""
  if inception_weights:
    return _inception(os.path.abspath(inception_weights))
  return _digit_network() if dataset in DIGIT_DATASETS else None


def _batched(fn, params, images_NxHxWxC: np.ndarray) -> np.ndarray:
  """fn(params, batch) over `images` in batches of BATCH, concatenated."""
  return np.concatenate([np.asarray(fn(params, images_NxHxWxC[i:i + BATCH]))
                         for i in range(0, images_NxHxWxC.shape[0], BATCH)])


def digit_labels(images_NxHxWxC: np.ndarray) -> np.ndarray:
  """The shipped digit classifier's labels [N] of uint8 28x28x1 images."""
  return np.argmax(_batched(features.digit_logits, _digit_network().params, images_NxHxWxC), axis=-1)


def _features(net: Network, images_NxHxWxC: np.ndarray) -> np.ndarray:
  return _batched(net.features, net.params, images_NxHxWxC)


def _why(error: BaseException) -> str:
  """'Type: first line of the message', for one-line warnings."""
  lines = str(error).strip().splitlines()
  return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


# Reference features whose cache file could not be written: {file: (provenance, features, whole split?)},
# so that the loop's later evaluations in this process do not compute them again.
_in_memory: dict[str, tuple[dict[str, Any], np.ndarray, bool]] = {}
# {(dataset, limit): whether the reference is the whole train split}, as computed or read in this process.
_whole_split: dict[tuple[str, int], bool] = {}


_widths: dict[tuple[str, tuple[int, ...]], int] = {}  # {(network tag, image shape): features per image}


def _width(net: Network, dataset: str) -> int:
  """The number of features per image of `net` on `dataset`'s images, from shapes alone (nothing runs)."""
  key = (net.tag, tuple(data.image_shape(dataset)))
  if key not in _widths:
    probe = jax.ShapeDtypeStruct((1, *key[1]), np.uint8)
    _widths[key] = int(jax.eval_shape(net.features, net.params, probe).shape[-1])
  return _widths[key]


def _reference_images(dataset: str, limit: int, data_dir: str | None) -> Iterator[np.ndarray]:
  """Chunks of the first `limit` + 1 reference images: the one past the limit tells whether the split is larger."""
  if dataset == "mnist5k":  # 3.5 MB, already in memory
    return iter([data.load_mnist5k(REFERENCE_SPLIT)["image"][:limit + 1]])
  return data.eval_image_chunks(dataset, limit + 1, split=REFERENCE_SPLIT, data_dir=data_dir)


def _compute(dataset: str, net: Network, limit: int, data_dir: str | None) -> tuple[np.ndarray, bool]:
  """(float32 features of the first `limit` reference images, whether they are the whole split)."""
  parts, seen = [], 0
  for chunk in _reference_images(dataset, limit, data_dir):
    keep = chunk[:max(limit - seen, 0)]
    seen += chunk.shape[0]
    if keep.shape[0]:
      parts.append(_features(net, keep))
  if not parts:
    return np.zeros((0, _width(net, dataset)), np.float32), True
  return np.concatenate(parts).astype(np.float32, copy=False), seen <= limit


def _read(path: str, want: dict[str, Any], net: Network,
          data_dir: str | None) -> tuple[np.ndarray | None, bool, str]:
  """(features, whole split?, '') of cache file `path` if it checks out against `want`, else (None, False, why not)."""
  try:
    stored = np.load(path, allow_pickle=False)
  except Exception as e:  # pylint: disable=broad-except  # whatever a damaged file raises, it is not used
    return None, False, f"it does not open ({_why(e)})"
  if not isinstance(stored, np.lib.npyio.NpzFile):
    return None, False, "it is not an .npz archive"
  try:
    with stored:
      missing = [k for k in ("features", *want, "count", "whole_split") if k not in stored.files]
      if missing:
        return None, False, f"it has no {', '.join(missing)}"
      for key, value in want.items():
        got = stored[key]
        kind = "U" if isinstance(value, str) else "iu"
        if got.shape != () or got.dtype.kind not in kind or got.item() != value:
          return None, False, f"its {key} is {got.item() if got.shape == () else got.shape!r}, want {value!r}"
      count, whole = stored["count"], stored["whole_split"]
      if count.shape != () or count.dtype.kind not in "iu" or whole.shape != () or whole.dtype.kind not in "iu":
        return None, False, "its count or whole_split is not an integer"
      count, whole = int(count), int(whole)
      # A TFDS split's size is known where it is prepared: a file written from another copy (a partial one,
      # another version, tfds.testing.mock_data's examples) then shows a count that does not fit.
      rows = data.split_size(want["dataset"], REFERENCE_SPLIT, data_dir)
      want_count = min(rows, want["limit"]) if rows is not None else count
      if not 0 <= count <= want["limit"] or count != want_count:
        return None, False, f"its count is {count:,}, want {want_count:,}"
      if (whole not in (0, 1) or (rows is not None and whole != (rows <= want["limit"]))
          or (not whole and count != want["limit"])):
        return None, False, f"its whole_split {whole} does not fit its count {count:,}"
      feats = stored["features"]
  except Exception as e:  # pylint: disable=broad-except  # a truncated member, a pickled array, ...
    return None, False, f"it does not read ({_why(e)})"
  width = _width(net, want["dataset"])
  if feats.dtype != np.float32 or feats.shape != (count, width):
    return None, False, f"its features are {feats.dtype} {feats.shape}, want float32 {(count, width)}"
  if not np.isfinite(feats).all():
    return None, False, "its features hold non-finite values"
  return feats, bool(whole), ""


def _store(path: str, feats: np.ndarray, provenance: dict[str, Any]) -> bool:
  """Writes the cache file (a whole new file, atomically); False, with a warning, if the directory refuses it."""
  directory = os.path.dirname(path)
  temporary = None
  try:
    os.makedirs(directory, exist_ok=True)
    # A name of its own for every writer (threads, or hosts sharing the directory whose processes have the same
    # pid); ending in .npz, as a name without it would make np.savez write to another file.
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=os.path.basename(path) + ".", suffix=".tmp.npz")
    os.fchmod(descriptor, paths.new_file_mode())
    with os.fdopen(descriptor, "wb") as f:
      np.savez(f, features=feats, **{k: np.asarray(v) for k, v in provenance.items()})
    os.replace(temporary, path)  # readers and concurrent writers see one whole file, never part of one
    return True
  except OSError as e:  # permission, a path under a regular file, read-only filesystem, full disk
    if temporary:
      with contextlib.suppress(OSError):
        os.remove(temporary)
    logging.warning("reference features cache directory %s cannot be written (%s); keeping the features in"
                    " memory for this process", directory, _why(e))
    return False


def reference_features(dataset: str, net: Network, data_dir: str | None = None) -> np.ndarray:
  """Features of the first REFERENCE_LIMIT images of the dataset's training split (all of it when smaller).

  From the cache file when it checks out, else computed and written there (module docstring). A bad cache
  file or an unwritable cache directory costs a recomputation and a warning, never an error.
  """
  limit = REFERENCE_LIMIT
  path = os.path.join(cache_dir(), f"{dataset}_{REFERENCE_SPLIT}_{net.tag}.npz")
  want = {"network": net.tag, "dataset": dataset, "data_version": data.version(dataset, data_dir),
          "split": REFERENCE_SPLIT, "limit": limit}
  if path in _in_memory and _in_memory[path][0] == want:
    _, feats, whole = _in_memory[path]
    _whole_split[dataset, limit] = whole
    return feats
  if os.path.exists(path):
    feats, whole, why = _read(path, want, net, data_dir)
    if feats is not None:
      _whole_split[dataset, limit] = whole
      return feats
    logging.warning("reference features cache %s is bad: %s; recomputing it", path, why)
  feats, whole = _compute(dataset, net, limit, data_dir)
  _whole_split[dataset, limit] = whole
  if _store(path, feats, {**want, "count": feats.shape[0], "whole_split": int(whole)}):
    _in_memory.pop(path, None)
  else:
    _in_memory[path] = (want, feats, whole)
  return feats


def label_marginal(labels_N: np.ndarray, num_classes: int) -> np.ndarray:
  """The share of each class among `labels_N`: what a conditional model's samples are asked for."""
  counts = np.bincount(np.asarray(labels_N, np.int64), minlength=num_classes)[:num_classes].astype(np.float64)
  if counts.sum() == 0:
    raise UserError(f"dataset.name: no held-out example has a label in [0, {num_classes}) to condition samples on")
  return counts / counts.sum()


def generated_images(sample_fn, unscale_fn, params, key: jax.Array, n: int,
                     label_probs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
  """(n uint8 samples, the classes they were asked for or None): `sample_fn(params, fold_in(key, b), batch)` per
  batch b (`sample_batch(n)` samples each), quantised by `unscale_fn`.

  A conditional model's (`label_probs`, the share of each class) are asked for classes drawn from those
  shares, in every batch from a key of its own.
  """
  out, asked, batch = [], [], sample_batch(n)
  for b, start in enumerate(range(0, n, batch)):
    batch_key = jax.random.fold_in(key, b)
    if label_probs is None:
      x = sample_fn(params, batch_key, batch)
    else:
      label_key, batch_key = jax.random.split(batch_key)
      labels = jax.random.choice(label_key, len(label_probs), (batch,), p=jnp.asarray(label_probs, jnp.float32))
      x = sample_fn(params, batch_key, batch, labels.astype(jnp.int32))
      asked.append(np.asarray(labels)[:n - start])
    out.append(np.asarray(unscale_fn(x))[:n - start])
  return np.concatenate(out), (np.concatenate(asked).astype(np.int32) if asked else None)


def class_accuracy(images_NxHxWxC: np.ndarray, asked_N: np.ndarray, num_classes: int) -> dict[str, float]:
  """The share of a conditional model's digits that the shipped classifier labels as the class they were asked
  for: 'class_accuracy' over all, 'class_accuracy_<c>' of the samples asked for class c (NaN where none was)."""
  right = digit_labels(images_NxHxWxC) == asked_N
  out = {"class_accuracy": float(np.mean(right))}
  for c in range(num_classes):
    mine = asked_N == c
    out[f"class_accuracy_{c}"] = float(np.mean(right[mine])) if mine.any() else float("nan")
  return out


def measure(sample_fn, unscale_fn, params, key: jax.Array, dataset: str, num_samples: int, *,
            full: bool = False, data_dir: str | None = None,
            inception_weights: str | None = None, label_probs: np.ndarray | None = None) -> dict[str, float]:
  """FID and KID (and with `full` precision, recall, density and coverage, on as many reference examples as
  samples: `sample_quality.equal_sizes`) of `num_samples` samples; {} if none.

  `sample_fn(params, key, n[, labels])` and `unscale_fn` are the family's (jitted); a conditional model's
  samples are of classes drawn from `label_probs` (`label_marginal` of the held-out labels), and on digits the
  same samples give `class_accuracy` (overall and per class).
  """
  net = network(dataset, inception_weights)
  if num_samples <= 0 or net is None:
    return {}
  real = reference_features(dataset, net, data_dir)
  generated, asked = generated_images(sample_fn, unscale_fn, params, key, num_samples, label_probs)
  fake = _features(net, generated)
  stats = [sample_quality.GaussianStats(real.shape[1]).update(x) for x in (real, fake)]
  kid_mean, kid_std = sample_quality.kid(real, fake, num_subsets=50, subset_size=min(1000, num_samples))
  result = {"fid": sample_quality.frechet_distance_of(*stats), "kid": kid_mean, "kid_std": kid_std}
  if full:
    result.update(sample_quality.precision_recall_density_coverage(*sample_quality.equal_sizes(real, fake)))
  if asked is not None and dataset in DIGIT_DATASETS:
    result.update(class_accuracy(generated, asked, len(label_probs)))
  return result


def fid_of_images(images_NxHxWxC: np.ndarray, dataset: str, data_dir: str | None = None,
                  inception_weights: str | None = None) -> float | None:
  """FID of uint8 images (inpainted held-out ones, say) against `dataset`'s reference; None where there are no
  features for it. Few images bias FID upwards: compare numbers of the same count only."""
  net = network(dataset, inception_weights)
  if net is None:
    return None
  real = reference_features(dataset, net, data_dir)
  stats = [sample_quality.GaussianStats(real.shape[1]).update(x) for x in (real, _features(net, images_NxHxWxC))]
  return sample_quality.frechet_distance_of(*stats)


def describe(dataset: str, num_samples: int, seed: int, inception_weights: str | None = None) -> str:
  """What the numbers were measured on, printed beside them."""
  net = network(dataset, inception_weights)
  return f"{num_samples:,} samples (seed {seed}) against {_reference(dataset)}, features of {net.name} ({net.tag})"


def _reference(dataset: str) -> str:
  """'the train split of X', or 'the first 50,000 of the train split of X' when the split is larger."""
  limit, split = REFERENCE_LIMIT, f"the {REFERENCE_SPLIT} split of {dataset}"
  # A TFDS split's size (its metadata) is not looked up for a line of text.
  size = data.split_size(dataset, REFERENCE_SPLIT) if dataset == "mnist5k" else None
  whole = _whole_split.get((dataset, limit))
  if whole is None and size is not None:
    whole = size <= limit
  if whole is None:  # a TFDS split neither read nor cached in this process: its size is not known here
    return f"up to the first {limit:,} of {split}"
  return split if whole else f"the first {limit:,} of {split}"
