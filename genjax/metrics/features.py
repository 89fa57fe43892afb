"""Feature networks for sample quality, loaded from local files: nothing downloads at run time.

`digit_features` is the MNIST family's (28x28x1): `genjax.nets.classifier`
with weights trained by `python -m genjax.train_classifier`; the weights for
`mnist5k` ship inside the package (`weights/mnist5k_classifier.npz`).
Images go in as uint8, generated ones quantised like real ones.
"""

import functools
import os

import jax
import numpy as np

from genjax.nets import classifier

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
SHIPPED = {"mnist5k": os.path.join(WEIGHTS_DIR, "mnist5k_classifier.npz")}


def save_params(path: str, params) -> None:
  """Writes a parameter tree as an .npz of arrays named by their paths (no pickle)."""
  flat = {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}
  with open(path, "wb") as f:
    np.savez(f, **flat)


def load_params(path: str, like):
  """The parameter tree of `like`'s structure from an .npz written by `save_params`; ValueError if it does not fit."""
  with np.load(path, allow_pickle=False) as stored:
    arrays = dict(stored)
  leaves = []
  for p, x in jax.tree_util.tree_flatten_with_path(like)[0]:
    name = jax.tree_util.keystr(p)
    if name not in arrays or arrays[name].shape != x.shape:
      raise ValueError(f"{path}: {name} is {arrays[name].shape if name in arrays else 'missing'} there,"
                       f" {x.shape} in the network")
    leaves.append(arrays[name].astype(x.dtype))
  return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like), leaves)


def init_digit_classifier(key: jax.Array):
  return classifier.DigitClassifier().init(key, np.zeros((1, 28, 28, 1), np.float32))["params"]


def load_digit_classifier(path: str):
  """The classifier's parameters from `path` (a file written by genjax.train_classifier)."""
  return load_params(path, jax.eval_shape(init_digit_classifier, jax.random.key(0)))


@functools.partial(jax.jit)
def digit_features(params, image_BxHxWxC: jax.Array) -> jax.Array:
  """The classifier's 128 penultimate activations of uint8 28x28x1 images."""
  _, features = classifier.DigitClassifier().apply({"params": params}, classifier.images_to_unit(image_BxHxWxC))
  return features


@jax.jit
def digit_logits(params, image_BxHxWxC: jax.Array) -> jax.Array:
  logits, _ = classifier.DigitClassifier().apply({"params": params}, classifier.images_to_unit(image_BxHxWxC))
  return logits
