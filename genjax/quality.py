"""Sample quality of an image family against its dataset: FID, KID, precision/recall, density/coverage.

The protocol, the same in the loop and in sample.py:
  * samples come from the family's `sample` with a fixed key (so numbers of
    different checkpoints are comparable), in batches of 500 with the key of
    batch b `fold_in(key, b)`, and are quantised to uint8 by the family's
    `unscale`, as the real images are;
  * features come from one of two networks (`network`):
    - Inception-v3 of FID (`genjax.nets.inception`, pytorch-fid's network and
      input rule: bilinear resize to 299x299 without antialiasing), whenever
      its weights file is given (`eval.inception_weights`, sample.py's
      `--inception_weights`): any image dataset, numbers comparable with
      published ones;
    - otherwise, on the 28x28x1 digit datasets, the digit classifier shipped
      with genjax (`genjax.metrics.features`): no file needed;
    other datasets without Inception weights get no numbers;
  * the reference is the dataset's whole training split; its features are
    computed once and cached in a file named by the dataset, the split, the
    network and its weights' hash (`GENJAX_CACHE`, default ~/.cache/genjax);
  * every number is reported with the number of samples, the reference split,
    the feature network and the seed (`describe`).
"""

import dataclasses
import functools
import os
from typing import Any, Callable

import jax
import numpy as np

from genjax import data
from genjax.errors import UserError
from genjax.metrics import features, sample_quality

# Datasets whose images the shipped digit classifier knows (MNIST digits, 28x28x1).
DIGIT_DATASETS = ("mnist5k", "mnist", "binarized_mnist")
REFERENCE_SPLIT = "train"
_BATCH = 500  # samples per generation call, and images per feature call


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
                    " `python -m genjax.convert_inception` (README, 'FID with Inception-v3')")
  _inception(os.path.abspath(path), what)


@functools.cache
def _digit_network() -> Network:
  """The shipped digit classifier, read once per process (not at every evaluation)."""
  path = features.SHIPPED["mnist5k"]
  return Network("mnist5k_classifier", f"mnist5k_classifier-{_sha256(path)[:12]}",
                 features.load_digit_classifier(path), features.digit_features)


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


def _features(net: Network, images_NxHxWxC: np.ndarray) -> np.ndarray:
  return np.concatenate([np.asarray(net.features(net.params, images_NxHxWxC[i:i + _BATCH]))
                         for i in range(0, images_NxHxWxC.shape[0], _BATCH)])


def reference_features(dataset: str, net: Network, data_dir: str | None = None) -> np.ndarray:
  """Features of the dataset's whole training split, from the cache when it holds them."""
  path = os.path.join(cache_dir(), f"{dataset}_{REFERENCE_SPLIT}_{net.tag}.npz")
  if os.path.isfile(path):
    with np.load(path, allow_pickle=False) as cached:
      return cached["features"]
  if dataset == "mnist5k":
    images = data.load_mnist5k(REFERENCE_SPLIT)["image"]
  else:
    images = data.eval_images(dataset, 10**9, split=REFERENCE_SPLIT, data_dir=data_dir)
  feats = _features(net, images)
  os.makedirs(cache_dir(), exist_ok=True)
  temporary = f"{path}.{os.getpid()}.tmp.npz"
  np.savez(temporary, features=feats)
  os.replace(temporary, path)  # concurrent writers leave one whole file
  return feats


def generated_images(sample_fn, unscale_fn, params, key: jax.Array, n: int) -> np.ndarray:
  """n uint8 samples: `sample_fn(params, fold_in(key, b), batch)` per batch b, quantised by `unscale_fn`."""
  out = []
  for b, start in enumerate(range(0, n, _BATCH)):
    x = sample_fn(params, jax.random.fold_in(key, b), _BATCH)
    out.append(np.asarray(unscale_fn(x))[:n - start])
  return np.concatenate(out)


def measure(sample_fn, unscale_fn, params, key: jax.Array, dataset: str, num_samples: int, *,
            full: bool = False, data_dir: str | None = None,
            inception_weights: str | None = None) -> dict[str, float]:
  """FID and KID (and with `full` precision, recall, density and coverage) of `num_samples` samples; {} if none.

  `sample_fn(params, key, n)` and `unscale_fn` are the family's (jitted).
  """
  net = network(dataset, inception_weights)
  if num_samples <= 0 or net is None:
    return {}
  real = reference_features(dataset, net, data_dir)
  fake = _features(net, generated_images(sample_fn, unscale_fn, params, key, num_samples))
  stats = [sample_quality.GaussianStats(real.shape[1]).update(x) for x in (real, fake)]
  kid_mean, kid_std = sample_quality.kid(real, fake, num_subsets=50, subset_size=min(1000, num_samples))
  result = {"fid": sample_quality.frechet_distance_of(*stats), "kid": kid_mean, "kid_std": kid_std}
  if full:
    result.update(sample_quality.precision_recall_density_coverage(real, fake, k=3))
  return result


def describe(dataset: str, num_samples: int, seed: int, inception_weights: str | None = None) -> str:
  """What the numbers were measured on, printed beside them."""
  net = network(dataset, inception_weights)
  return (f"{num_samples:,} samples (seed {seed}) against the {REFERENCE_SPLIT} split of {dataset},"
          f" features of {net.name} ({net.tag})")
