"""The datasets genjax knows, their image shapes, and the error for a missing one.

Nothing here reads a file or imports TensorFlow, so a config can be checked
against these names in a second, before any input pipeline is built.
"""

from genjax.errors import UserError

# mnist5k first: it is the one that works everywhere, with no download.
DATASETS: tuple[str, ...] = ("mnist5k", "mnist", "fashion_mnist", "binarized_mnist", "cifar10", "celeb_a",
                             "ring8", "grid25")
# 2-D Gaussian mixtures (genjax.data.toy2d): examples are float32 points, not images.
POINT_DATASETS: tuple[str, ...] = ("ring8", "grid25")

# Shape of one example: (H, W, C) of the images every pipeline yields (celeb_a is resized
# and cropped to 64x64), (2,) for the points of a 2-D mixture.
_IMAGE_SHAPES: dict[str, tuple[int, int, int]] = {
    "mnist5k": (28, 28, 1),
    "mnist": (28, 28, 1),
    "fashion_mnist": (28, 28, 1),
    "binarized_mnist": (28, 28, 1),
    "cifar10": (32, 32, 3),
    "celeb_a": (64, 64, 3),
    "ring8": (2,),
    "grid25": (2,),
}

# Classes of each dataset's labels (0..n - 1); 0 where it has none: binarized_mnist and the 2-D mixtures carry
# no label, and celeb_a's are 40 binary attributes, not one class. A conditional model needs n > 0.
_NUM_CLASSES: dict[str, int] = {"mnist5k": 10, "mnist": 10, "fashion_mnist": 10, "binarized_mnist": 0,
                                "cifar10": 10, "celeb_a": 0, "ring8": 0, "grid25": 0}

# What a user without network can do instead; every unavailable-dataset error ends with it.
OFFLINE_ALTERNATIVE = "train offline with --config=configs/vae_mnist5k.py (dataset.name='mnist5k')"


class DatasetUnavailableError(RuntimeError):
  """A dataset is not on this machine and cannot be fetched; the message is one line.

  The CLIs print it as it is, so it names the dataset, where it was looked
  for, why it could not be fetched, and the offline alternative.
  """


def check_name(name: str) -> str:
  """Returns `name` if genjax knows it, else raises a one-line UserError naming the field."""
  if name not in _IMAGE_SHAPES:
    raise UserError(f"dataset.name: unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
  return name


def image_shape(name: str) -> tuple[int, int, int]:
  """Shape of one example of `train_iterator(name)` and `eval_images(name)`: (H, W, C) or (2,).

  Lets a model be built (and a config rejected) without touching the data.
  """
  return _IMAGE_SHAPES[check_name(name)]


def num_classes(name: str) -> int:
  """The classes of `name`'s labels; 0 when its examples have no class (their labels are all 0)."""
  check_name(name)
  return _NUM_CLASSES[name]
