"""Augmentation of training images, for any family, and the differentiable transforms of a GAN's step.

Two kinds, for two purposes:

- `Policy` (the dataset block's `augment_*` fields, off by default): random flips, rotations, scalings and
  translations of the training images, one draw per example, before the family's step sees the batch. The model
  learns the augmented distribution, so these are for transforms that leave an image in the data's distribution
  (a digit turned by 10 degrees is still a digit). `Augmented` wraps a family so that its `train_step` does this;
  every family opts in the same way (genjax.build.family).
- `diffaugment` (Zhao et al. 2020): translation, cutout and colour applied to real and generated images alike,
  differentiably, between G and D (genjax.models.gan). D never sees an un-augmented image, and G learns the
  un-augmented distribution because its samples pass through the same transforms as the reals.

ADA (Karras et al. 2020), the other augmentation of what D sees, is `genjax.ada`; it resamples with `warp`.

Keys. Example i of the global batch of step s draws from `fold_in(fold_in(step_key(s), AUGMENT), i)`: a resumed
run augments exactly as an uninterrupted one, and a device holding a slice of the batch draws what the whole
batch would have given its examples, so 1 and 8 devices augment the same examples the same way.
"""

import contextlib
import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from genjax import config_checks as checks
from genjax import options, parallel
from genjax import random as grandom

# The step key folded with this gives the augmentation's key: apart from a family's example keys
# fold_in(step_key, i), i < 2**31 - 2, and from its split keys.
AUGMENT = 2**31 - 2


ADDED = 3  # the config version that added augmentation: runs before had none (and all their data)
# The name scope of the transforms' matrix products (their geometry, their resampling): float32 under every
# precision policy (genjax.precision), which the conformance suite's check of bfloat16 products leaves out.
GEOMETRY = "float32_geometry"


@contextlib.contextmanager
def float32_geometry():
  """The scope of the transforms' products, in full float32: a TPU's default precision for float32 products
  (one bfloat16 pass) would move a 256-pixel image's sampling points by about a pixel, a GPU's TF32 by 0.1."""
  with jax.named_scope(GEOMETRY), jax.default_matmul_precision("highest"):
    yield


# ------------------------------------------------------------------ the input pipeline's augmentation


@dataclasses.dataclass(frozen=True)
class Policy:
  """Random transforms of each training image, drawn independently per example; all zero: none.

  Attributes:
    flip: mirror left-right with probability 1/2 (not for digits: a mirrored 2 is no digit).
    rotate: the largest rotation, in degrees; the angle is uniform in [-rotate, rotate].
    scale: the largest relative zoom; the factor is exp(u), u uniform in [-log(1 + scale), log(1 + scale)], so
      that zooming in and out are equally likely.
    translate: the largest shift, as a fraction of the image's side; uniform in [-translate, translate] per axis.
  """

  flip: bool = False
  rotate: float = 0.0
  scale: float = 0.0
  translate: float = 0.0

  def __post_init__(self):
    for name in ("rotate", "scale", "translate"):
      value = getattr(self, name)
      if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"augment_{name}: must be a finite number >= 0, got {value!r}")
    if self.rotate > 180:
      raise ValueError(f"augment_rotate: at most 180 degrees, got {self.rotate!r}")
    if self.translate >= 1:
      raise ValueError(f"augment_translate: a fraction of the side below 1, got {self.translate!r}")

  @property
  def enabled(self) -> bool:
    return bool(self.flip or self.rotate or self.scale or self.translate)


def _number(most: float, comment: str) -> options.Option:
  """A float in [0, most], 0 by default (and in runs before it existed)."""

  def check(config, field):
    value = checks.number(config, field, ">= 0")
    checks.require(value <= most, f"{field}: must be in [0, {most:g}], got {value!r}")

  return options.Option(0.0, comment, check, added=(ADDED, 0.0))


def policy_options() -> options.Group:
  """The dataset block's `augment_*` fields, which build a `Policy`."""
  return options.Group({
      "flip": options.flag(False, "mirror each training image left-right with probability 1/2 (not for digits)",
                           added=(ADDED, False)),
      "rotate": _number(180.0, "largest rotation of a training image, in degrees (uniform in +-rotate); 0: none"),
      "scale": _number(1.0, "largest zoom of a training image: a factor exp(u), u uniform in +-log(1 + scale);"
                       " 0: none"),
      "translate": _number(0.5, "largest shift of a training image, a fraction of its side per axis (uniform in"
                           " +-translate, rounded to whole pixels); 0: none"),
  }, Policy)


def transform_matrix(flip: jax.Array, angle: jax.Array, zoom: jax.Array, shift: jax.Array, height: int,
                     width: int) -> jax.Array:
  """The [2, 3] matrix A whose output pixel (row, col) reads the input at A @ (row, col, 1): the image mirrored
  left-right where `flip`, turned by `angle` radians (counter-clockwise as shown, as np.rot90), zoomed by
  `zoom` about its centre, then moved by `shift` (rows, cols) pixels."""
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  # Output -> input: undo the shift, the zoom and the rotation, then the flip (of the column).
  inverse = jnp.array([[cos, sin], [-sin, cos]]) / zoom
  inverse = inverse * jnp.array([[1.0], [jnp.where(flip, -1.0, 1.0)]])
  centre = jnp.array([(height - 1) / 2, (width - 1) / 2], jnp.float32)
  with float32_geometry():
    offset = centre - inverse @ (centre + shift)
  return jnp.concatenate([inverse, offset[:, None]], axis=1)


def affine_matrices(keys_B: jax.Array, policy: Policy, height: int, width: int) -> jax.Array:
  """[B, 2, 3] matrices (`transform_matrix`) of the policy's random transforms, one per key."""

  def one(key):
    k_flip, k_rot, k_scale, k_shift = jax.random.split(key, 4)
    flip = policy.flip & jax.random.bernoulli(k_flip)
    angle = math.radians(policy.rotate) * jax.random.uniform(k_rot, minval=-1.0, maxval=1.0)
    zoom = jnp.exp(math.log1p(policy.scale) * jax.random.uniform(k_scale, minval=-1.0, maxval=1.0))
    # Whole pixels (as torchvision's RandomAffine): a shift alone then moves the image without blurring it.
    shift = jnp.round(policy.translate * jax.random.uniform(k_shift, (2,), minval=-1.0, maxval=1.0) * jnp.array(
        [height, width], jnp.float32))
    return transform_matrix(flip, angle, zoom, shift, height, width)

  return jax.vmap(one)(keys_B)


def warp(images_BxHxWxC: jax.Array, matrices_Bx2x3: jax.Array, fill: float = 0.0,
         mode: str = "constant") -> jax.Array:
  """Bilinear resampling of each image at its matrix's coordinates (`affine_matrices`); points outside the
  image read `fill` (mode 'constant') or the image mirrored at its border ('mirror', ADA's padding).
  Differentiable in the images; the identity matrix returns them exactly."""
  _, height, width, _ = images_BxHxWxC.shape
  rows, cols = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32),
                            indexing="ij")
  grid_3xP = jnp.stack([rows.ravel(), cols.ravel(), jnp.ones(height * width, jnp.float32)])

  def one(image_HxWxC, matrix):
    with float32_geometry():
      coords = matrix @ grid_3xP  # [2, P]
    sample = lambda channel: jax.scipy.ndimage.map_coordinates(channel, list(coords), order=1, mode=mode,
                                                               cval=fill)
    return jax.vmap(sample, in_axes=2, out_axes=1)(image_HxWxC).reshape(height, width, -1)

  return jax.vmap(one)(images_BxHxWxC, matrices_Bx2x3)


def augment_images(keys_B: jax.Array, images_BxHxWxC: jax.Array, policy: Policy) -> jax.Array:
  """The policy's transforms of uint8 images, example b from keys_B[b]; uint8 out (rounded), so that every
  family scales them as it scales the data. Black (0) fills what comes from outside the image."""
  if not policy.enabled:
    return images_BxHxWxC
  _, height, width, _ = images_BxHxWxC.shape
  warped = warp(images_BxHxWxC.astype(jnp.float32), affine_matrices(keys_B, policy, height, width))
  return jnp.clip(jnp.round(warped), 0, 255).astype(images_BxHxWxC.dtype)


def augment_batch(batch: dict, key: jax.Array, policy: Policy, axis_name: str | None = None) -> dict:
  """The batch with its images augmented by the policy, from step key `key` (see the module's Keys); this
  device's slice of the global batch under pmap's `axis_name`."""
  if not policy.enabled:
    return batch
  local = batch["image"].shape[0]
  keys_B = grandom.example_keys(jax.random.fold_in(key, AUGMENT), local, parallel.batch_offset(local, axis_name))
  return {**batch, "image": augment_images(keys_B, batch["image"], policy)}


@dataclasses.dataclass(frozen=True)
class Augmented:
  """A family whose training step augments its batch first (`augment_batch`); everything else is the family's.

  Sampling, evaluation and pictures see the data as it is: only training is augmented.
  """

  family: Any
  policy: Policy
  axis_name: str | None = None

  def train_step(self, state, batch: dict, key: jax.Array):
    return self.family.train_step(state, augment_batch(batch, key, self.policy, self.axis_name), key)

  def __getattr__(self, name: str):
    if name == "family":  # not yet set (copying, unpickling): no recursion through __getattr__
      raise AttributeError(name)
    return getattr(self.family, name)


# ------------------------------------------------------------------ DiffAugment (Zhao et al. 2020)

DIFFAUGMENT = ("color", "translation", "cutout")  # the paper's transforms, in its order


def _brightness(key, x):
  return x + (jax.random.uniform(key, (), x.dtype) - 0.5)


def _saturation(key, x):
  mean = x.mean(axis=-1, keepdims=True)
  return (x - mean) * (jax.random.uniform(key, (), x.dtype) * 2) + mean


def _contrast(key, x):
  mean = x.mean()
  return (x - mean) * (jax.random.uniform(key, (), x.dtype) + 0.5) + mean


def _translation(key, x, ratio: float = 0.125):
  """The image moved by whole pixels, up to `ratio` of its side per axis; zeros come in (the paper's padding)."""
  height, width, _ = x.shape
  reach = jnp.array([int(height * ratio + 0.5), int(width * ratio + 0.5)])
  shift = jax.random.randint(key, (2,), -reach, reach + 1)
  padded = jnp.pad(x, ((1, 1), (1, 1), (0, 0)))
  rows = jnp.clip(jnp.arange(height) + shift[0] + 1, 0, height + 1)
  cols = jnp.clip(jnp.arange(width) + shift[1] + 1, 0, width + 1)
  return padded[rows][:, cols]


def _cutout(key, x, ratio: float = 0.5):
  """A box of `ratio` of each side set to zero, its centre anywhere in the image."""
  height, width, _ = x.shape
  size = (int(height * ratio + 0.5), int(width * ratio + 0.5))
  k_row, k_col = jax.random.split(key)
  top = jax.random.randint(k_row, (), 0, height + (1 - size[0] % 2)) - size[0] // 2
  left = jax.random.randint(k_col, (), 0, width + (1 - size[1] % 2)) - size[1] // 2
  in_rows = (jnp.arange(height) >= top) & (jnp.arange(height) < top + size[0])
  in_cols = (jnp.arange(width) >= left) & (jnp.arange(width) < left + size[1])
  return x * (~(in_rows[:, None] & in_cols[None, :]))[..., None].astype(x.dtype)


_DIFFAUGMENT_FNS = {"color": (_brightness, _saturation, _contrast), "translation": (_translation,),
                    "cutout": (_cutout,)}


def is_policy(value) -> bool:
  """Whether `value` is a DiffAugment policy as a config holds it: '' or names of DIFFAUGMENT joined by commas,
  each once ('color,translation,cutout')."""
  names = value.split(",") if isinstance(value, str) and value else []
  return isinstance(value, str) and all(n in DIFFAUGMENT for n in names) and len(set(names)) == len(names)


def policy_error(field: str, value) -> str:
  return f"{field}: '' or transforms joined by commas, each once, of {', '.join(DIFFAUGMENT)}; got {value!r}"


def diffaugment_option() -> options.Option:
  """The GAN's `gan.diffaugment` field."""
  return options.Option(
      "", "DiffAugment (Zhao et al. 2020) of reals and fakes before D, in D's and G's updates: '' (none) or"
      " transforms joined by commas, applied in that order, of 'color', 'translation', 'cutout' (the paper's"
      " 'color,translation,cutout')",
      lambda c, f: checks.require(is_policy(checks.get(c, f)), policy_error(f, checks.get(c, f))),
      added=(ADDED, ""))


def diffaugment(keys_B: jax.Array, x_BxHxWxC: jax.Array, policy: tuple[str, ...]) -> jax.Array:
  """DiffAugment's transforms named in `policy` (of `DIFFAUGMENT`), in its order, image b drawing from keys_B[b],
  on images in the model's range ([-1, 1]); differentiable in the images. As the official implementation: brightness
  +-0.5, saturation x[0, 2], contrast x[0.5, 1.5], translation by up to 1/8 of the side, cutout of half the side,
  zeros where the image is moved away or cut out. Reals and fakes each take their own keys."""
  unknown = sorted(set(policy) - set(DIFFAUGMENT))
  if unknown:
    raise ValueError(f"diffaugment: unknown {', '.join(map(repr, unknown))}; allowed: {', '.join(DIFFAUGMENT)}")
  fns = [fn for name in policy for fn in _DIFFAUGMENT_FNS[name]]  # in the policy's order, as the official code
  if not fns:
    return x_BxHxWxC

  def one(key, x):
    for fn, sub in zip(fns, jax.random.split(key, len(fns))):
      x = fn(sub, x)
    return x

  return jax.vmap(one)(keys_B, x_BxHxWxC)
