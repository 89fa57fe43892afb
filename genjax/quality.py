"""Sample quality of an image family against its dataset: FID, KID, precision/recall, density/coverage.

The protocol, the same in the loop and in sample.py:
  * samples come from the family's `sample` with a fixed key (so numbers of
    different checkpoints are comparable), in batches, and are quantised to
    uint8 by the family's `unscale`, as the real images are;
  * features come from a network that knows the data: the digit classifier
    (`genjax.metrics.features`) for the 28x28x1 digit datasets; other
    datasets get no numbers yet (Inception-v3 from a local file is to come);
  * the reference is the dataset's whole training split; its features are
    computed once and cached in a file named by the dataset, the split, the
    network and its weights' hash (`GENJAX_CACHE`, default ~/.cache/genjax);
  * every number is reported with the number of samples, the reference split
    and the feature network (`describe`).
"""

import functools
import hashlib
import os

import jax
import numpy as np

from genjax import data
from genjax.metrics import features, sample_quality

# Datasets whose images the shipped digit classifier knows (MNIST digits, 28x28x1).
DIGIT_DATASETS = ("mnist5k", "mnist", "binarized_mnist")
NETWORK = "mnist5k_classifier"
REFERENCE_SPLIT = "train"
_BATCH = 500


def available(dataset: str) -> bool:
  """Whether FID and the others are measured for `dataset`."""
  return dataset in DIGIT_DATASETS


def cache_dir() -> str:
  return os.environ.get("GENJAX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "genjax")


def _features(params, images_NxHxWxC: np.ndarray) -> np.ndarray:
  return np.concatenate([np.asarray(features.digit_features(params, images_NxHxWxC[i:i + _BATCH]))
                         for i in range(0, images_NxHxWxC.shape[0], _BATCH)])


@functools.cache
def network_tag() -> str:
  """The feature network's name and the first digits of its weights' sha256: retrained weights get a new cache."""
  with open(features.SHIPPED["mnist5k"], "rb") as f:
    return f"{NETWORK}-{hashlib.sha256(f.read()).hexdigest()[:12]}"


@functools.cache
def _shipped_network():
  """The digit classifier's parameters, read once per process (not at every evaluation)."""
  return features.load_digit_classifier(features.SHIPPED["mnist5k"])


def reference_features(dataset: str, network_params, data_dir: str | None = None) -> np.ndarray:
  """Features of the dataset's whole training split, from the cache when it holds them."""
  path = os.path.join(cache_dir(), f"{dataset}_{REFERENCE_SPLIT}_{network_tag()}.npz")
  if os.path.isfile(path):
    with np.load(path, allow_pickle=False) as cached:
      return cached["features"]
  if dataset == "mnist5k":
    images = data.load_mnist5k(REFERENCE_SPLIT)["image"]
  else:
    images = data.eval_images(dataset, 10**9, split=REFERENCE_SPLIT, data_dir=data_dir)
  feats = _features(network_params, images)
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
            full: bool = False, data_dir: str | None = None) -> dict[str, float]:
  """FID and KID (and with `full` precision, recall, density and coverage) of `num_samples` samples; {} if none.

  `sample_fn(params, key, n)` and `unscale_fn` are the family's (jitted).
  """
  if num_samples <= 0 or not available(dataset):
    return {}
  network = _shipped_network()
  real = reference_features(dataset, network, data_dir)
  fake = _features(network, generated_images(sample_fn, unscale_fn, params, key, num_samples))
  stats = [sample_quality.GaussianStats(real.shape[1]).update(x) for x in (real, fake)]
  kid_mean, kid_std = sample_quality.kid(real, fake, num_subsets=50, subset_size=min(1000, num_samples))
  result = {"fid": sample_quality.frechet_distance_of(*stats), "kid": kid_mean, "kid_std": kid_std}
  if full:
    result.update(sample_quality.precision_recall_density_coverage(real, fake, k=3))
  return result


def describe(dataset: str, num_samples: int) -> str:
  """What the numbers were measured on, printed beside them."""
  return (f"{num_samples:,} samples against the {REFERENCE_SPLIT} split of {dataset}, features of {NETWORK}"
          " (genjax.metrics.features)")
