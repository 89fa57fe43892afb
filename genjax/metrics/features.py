"""Feature networks for sample quality, loaded from local files: nothing downloads at run time.

`digit_features` is the MNIST family's (28x28x1): `genjax.nets.classifier`
with weights trained by `python -m genjax.train_classifier`; the weights for
`mnist5k` ship inside the package (`weights/mnist5k_classifier.npz`).
Images go in as uint8, generated ones quantised like real ones.
"""

import functools
import hashlib
import os
import zipfile

import jax
import numpy as np

from genjax.nets import classifier, inception

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
SHIPPED = {"mnist5k": os.path.join(WEIGHTS_DIR, "mnist5k_classifier.npz")}


def sha256(path: str) -> str:
  """The hex sha256 of a file (weights files name their caches and are checked against published hashes)."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def save_params(path: str, params) -> None:
  """Writes a parameter tree as an .npz of arrays named by their paths (no pickle)."""
  flat = {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}
  with open(path, "wb") as f:
    np.savez(f, **flat)


def load_params(path: str, like):
  """The parameter tree of `like`'s structure from an .npz written by `save_params`; ValueError if it does not fit."""
  try:
    with np.load(path, allow_pickle=False) as stored:
      arrays = dict(stored)
  except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:  # BadZipFile: a truncated copy, a bad CRC
    raise ValueError(f"{path}: not an .npz of named arrays ({type(e).__name__})") from None
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


# Inception-v3 of FID (genjax.nets.inception), from a local file that `python -m genjax.convert_inception` writes.

INCEPTION_BN_EPS = 1e-3  # the published network's BatchNorm epsilon (TensorFlow's, kept by torchvision and pytorch-fid)
# pytorch-fid's port of TensorFlow's 2015-12-05 graph: the file the converter reads (the name carries its sha256 prefix).
INCEPTION_SOURCE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_SOURCE_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                        "pt_inception-2015-12-05-6726825d.pth")


def init_inception(key: jax.Array, last_block: int = 3):
  return inception.FIDInceptionV3(last_block).init(key, np.zeros((1, 75, 75, 3), np.float32))["params"]


def inception_params_from_torch(state_dict, last_block: int = 3):
  """FIDInceptionV3 parameters from pytorch-fid's state dict (name -> array), BatchNorm folded into each conv.

  A conv `A.B.conv.weight` [O, I, kh, kw] followed by `A.B.bn` (gamma, beta,
  running mean m, running variance v) becomes the kernel [kh, kw, I, O] times
  s = gamma / sqrt(v + 1e-3), with bias beta - m s, computed in float64.
  The classifier (`fc.*`) is dropped: FID reads the pool before it.
  """
  like = jax.eval_shape(functools.partial(init_inception, last_block=last_block), jax.random.key(0))
  leaves = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(like)[0]:
    names = [str(k.key) for k in path]  # [..., module, 'conv', 'kernel' | 'bias']
    prefix = ".".join(names[:-2])
    try:
      w = np.asarray(state_dict[f"{prefix}.conv.weight"], np.float64)
      gamma, beta, mean, var = (np.asarray(state_dict[f"{prefix}.bn.{n}"], np.float64)
                                for n in ("weight", "bias", "running_mean", "running_var"))
    except KeyError as e:
      raise ValueError(f"the state dict has no {e.args[0]}: not pytorch-fid's Inception-v3") from None
    scale = gamma / np.sqrt(var + INCEPTION_BN_EPS)
    value = w.transpose(2, 3, 1, 0) * scale if names[-1] == "kernel" else beta - mean * scale
    if value.shape != leaf.shape:
      raise ValueError(f"{prefix}: {value.shape} in the state dict, {leaf.shape} in the network")
    leaves.append(value.astype(np.float32))
  return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like), leaves)


def load_inception(path: str):
  """FIDInceptionV3 parameters from an .npz written by `python -m genjax.convert_inception`."""
  return load_params(path, jax.eval_shape(init_inception, jax.random.key(0)))


@jax.jit
def inception_features(params, image_BxHxWxC: jax.Array) -> jax.Array:
  """The 2,048 final-pool activations of uint8 images (1 or 3 channels, any size), by `inception.fid_input`."""
  return inception.FIDInceptionV3().apply({"params": params}, inception.fid_input(image_BxHxWxC))[-1]
