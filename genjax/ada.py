"""Adaptive discriminator augmentation (Karras et al. 2020): StyleGAN2-ADA's 'bgc' pipeline at an adaptive p.

Everything D sees, reals and fakes, passes through the same random transforms, each applied with probability p:
G learns the un-augmented distribution as long as p < 1 leaves every transform undone often enough (the paper's
"non-leaking" condition). p rises while D's mean sign on reals exceeds a target (D too sure of the reals: it is
memorising them) and falls otherwise. `ada_augment` is the pipeline (`draws`: its random parameters,
`geometry_matrix` and `colour_matrix`: what they do), `ada_adjust` the rule, `ADA` the GAN's option group
and state. The resampling reuses the input pipeline's `genjax.augment.warp`.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from genjax import augment
from genjax import options

# StyleGAN2-ADA's luma axis: hue turns about it, saturation scales away from it, the luma flip mirrors along it.
_LUMA = np.full(3, 1.0 / np.sqrt(3.0), np.float32)
_KEYS = 26  # two per transform: whether it applies, and its parameter
# The losses (genjax.losses.gan.LOSSES) whose D decides real against fake at 0, so that ADA's r_t = E[sign D(real)]
# measures overfitting: least squares aims D at 0 and 1 (a D that cannot tell scores 0.5, r_t = 1), and a
# Wasserstein critic is the same up to a constant, so its sign is arbitrary.
SIGN_LOSSES = ("minimax", "non_saturating", "hinge")


def _rotation(angle):
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  return jnp.array([[cos, sin], [-sin, cos]])


def draws(key: jax.Array, p: jax.Array, height: int, width: int) -> dict:
  """One image's transforms, each applied with probability p (the two rotations with 1 - sqrt(1 - p), so that
  some rotation happens with probability p), each from its own keys; a transform not applied takes its
  identity value. The paper's strengths: a left-right flip (-1), a quarter turn (radians), a whole-pixel shift
  of up to 1/8 of the side, an isotropic zoom 2^N(0, 0.2^2), a rotation uniform in a full turn, an anisotropic
  zoom 2^N(0, 0.2^2), a second rotation, a fractional shift N(0, (1/8)^2) of the side (pixels: rows, cols);
  brightness + N(0, 0.2^2), contrast x 2^N(0, 0.5^2), a luma flip (1: on), a hue rotation uniform in a full
  turn, saturation x 2^N(0, 1)."""
  p = jnp.clip(jnp.asarray(p, jnp.float32), 0.0, 1.0)
  p_rotate = 1.0 - jnp.sqrt(1.0 - p)
  size = jnp.array([height, width], jnp.float32)
  k = jax.random.split(key, _KEYS)
  on = lambda i, q=p: jax.random.uniform(k[i]) < q  # noqa: E731
  normal = lambda i, shape=(): jax.random.normal(k[i], shape)  # noqa: E731
  turn = lambda i: jax.random.uniform(k[i], minval=-jnp.pi, maxval=jnp.pi)  # noqa: E731
  return {
      "flip": jnp.where(on(0) & jax.random.bernoulli(k[1]), -1.0, 1.0),
      "quarter": jnp.where(on(2), jax.random.randint(k[3], (), 0, 4), 0) * (jnp.pi / 2),
      "whole_shift": jnp.where(on(4), jnp.round(jax.random.uniform(k[5], (2,), minval=-0.125, maxval=0.125) * size),
                               0.0),
      "zoom": jnp.where(on(6), 2.0 ** (0.2 * normal(7)), 1.0),
      "pre_rotation": jnp.where(on(8, p_rotate), turn(9), 0.0),
      "aniso": jnp.where(on(10), 2.0 ** (0.2 * normal(11)), 1.0),
      "post_rotation": jnp.where(on(12, p_rotate), turn(13), 0.0),
      "fraction_shift": jnp.where(on(14), 0.125 * normal(15, (2,)) * size, 0.0),
      "brightness": jnp.where(on(16), 0.2 * normal(17), 0.0),
      "contrast": jnp.where(on(18), 2.0 ** (0.5 * normal(19)), 1.0),
      "luma_flip": jnp.where(on(20) & jax.random.bernoulli(k[21]), 1.0, 0.0),
      "hue": jnp.where(on(22), turn(23), 0.0),
      "saturation": jnp.where(on(24), 2.0 ** normal(25), 1.0),
  }


def geometry_matrix(d: dict, height: int, width: int) -> jax.Array:
  """The [2, 3] sampling matrix (`genjax.augment.warp`'s) of `draws`' geometric transforms, composed in the
  official order: flip, quarter turn, whole-pixel shift, zoom, rotation, anisotropic zoom, rotation, fractional
  shift, all about the image's centre (so the whole-pixel shift is zoomed and turned by what follows it)."""
  first = _rotation(d["quarter"]) @ jnp.diag(jnp.stack([1.0, d["flip"]]))
  then = _rotation(d["post_rotation"]) @ jnp.diag(jnp.stack([d["aniso"], 1.0 / d["aniso"]])) @ _rotation(
      d["pre_rotation"]) * d["zoom"]
  shift = then @ d["whole_shift"] + d["fraction_shift"]
  # Output o reads the input at i with o - c = F (i - c) + shift, F = then @ first.
  inverse = jnp.linalg.inv(then @ first)
  centre = jnp.array([(height - 1) / 2, (width - 1) / 2], jnp.float32)
  return jnp.concatenate([inverse, (centre - inverse @ (centre + shift))[:, None]], axis=1)


def colour_matrix(brightness, contrast, luma_flip, hue, saturation) -> jax.Array:
  """The [3, 4] affine map of RGB (pixel' = M[:, :3] @ pixel + M[:, 3]) of StyleGAN2-ADA's colour transforms,
  applied in its order: + brightness, x contrast, the luma flip (a mirror along the luma axis where 1), a turn
  by `hue` radians about that axis, saturation (the part off the axis scaled). Each is exactly the identity at
  its identity value."""
  v = jnp.asarray(_LUMA)
  vv = jnp.outer(v, v)
  eye = jnp.eye(3)
  cross = jnp.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])  # cross @ x = v x x
  flip = eye - 2.0 * luma_flip * vv
  turn = jnp.cos(hue) * eye + jnp.sin(hue) * cross + (1.0 - jnp.cos(hue)) * vv  # Rodrigues' formula
  scale = eye + (saturation - 1.0) * (eye - vv)
  linear = scale @ turn @ flip * contrast
  return jnp.concatenate([linear, (linear @ jnp.full(3, brightness))[:, None]], axis=1)


def apply_colour(matrix_3x4: jax.Array, x_HxWxC: jax.Array) -> jax.Array:
  """`colour_matrix`'s map of an RGB image, or of a grey one (1 channel) as of the grey RGB image it stands for
  (its three outputs averaged, as the official implementation does): hue and saturation leave grey unchanged,
  the luma flip negates it."""
  if x_HxWxC.shape[-1] == 3:
    return x_HxWxC @ matrix_3x4[:, :3].T + matrix_3x4[:, 3]
  return x_HxWxC * (jnp.sum(matrix_3x4[:, :3]) / 3.0) + jnp.mean(matrix_3x4[:, 3])


def ada_augment(keys_B: jax.Array, x_BxHxWxC: jax.Array, p: jax.Array) -> jax.Array:
  """StyleGAN2-ADA's 'bgc' pipeline for images in [-1, 1] with 1 or 3 channels, image b drawing from keys_B[b]
  (`draws`): the geometric transforms as one bilinear resampling with mirrored borders, then the colour
  transforms. Differentiable in the images; p is an array, so changing it never recompiles. At p = 0 the
  images come back unchanged."""
  _, height, width, channels = x_BxHxWxC.shape
  if channels not in (1, 3):
    raise ValueError(f"ada_augment: colour transforms of 1 (grey) or 3 (RGB) channels, got {channels}")

  def one(key, x):
    d = draws(key, p, height, width)
    x = augment.warp(x[None], geometry_matrix(d, height, width)[None], mode="mirror")[0]
    return apply_colour(colour_matrix(d["brightness"], d["contrast"], d["luma_flip"], d["hue"], d["saturation"]),
                        x)

  with augment.float32_geometry():
    return jax.vmap(one)(keys_B, x_BxHxWxC)


def ada_adjust(p: jax.Array, sign_mean: jax.Array, target: float, images_per_adjustment: int,
               kimg: float) -> jax.Array:
  """ADA's update of p after an interval whose D outputs on reals had mean sign r_t = `sign_mean`: up by
  images_per_adjustment / (kimg * 1000) when r_t > target (D is overfitting: too sure of the reals), down by
  as much otherwise, kept in [0, 1]; p can go from 0 to 1 in `kimg` thousand images."""
  step = images_per_adjustment / (kimg * 1000.0)
  return jnp.clip(p + jnp.sign(sign_mean - target) * step, 0.0, 1.0)


def ada_options() -> options.Group:
  """The GAN's `gan.ada_*` fields, which build an `ADA`."""
  return options.Group({
      "target": options.number(0.0, "ADA (Karras et al. 2020): the mean sign of D on reals that p is steered to"
                               " (the paper's 0.6); 0: no ADA", "[0, 1)", added=(augment.ADDED, 0.0)),
      "kimg": options.number(500.0, "ADA: thousands of images over which p can go from 0 to 1", "> 0",
                             added=(augment.ADDED, 500.0)),
      "interval": options.count(4, "ADA: steps between adjustments of p", most=10000, added=(augment.ADDED, 4)),
  }, ADA)


@dataclasses.dataclass(frozen=True)
class ADA:
  """Adaptive discriminator augmentation (Karras et al. 2020): `ada_augment` of everything D sees at probability
  p, p adjusted every `interval` steps by the sign of D's outputs on reals (`ada_adjust`). target 0: off.

  Its state ({'p', 'sign_sum', 'count'}: p, and the sum and number of the per-step mean signs since the last
  adjustment) is part of the model's, so it is checkpointed and a resume goes on with the same p.
  """

  target: float = 0.0
  kimg: float = 500.0
  interval: int = 4

  def __post_init__(self):
    if not 0.0 <= self.target < 1.0 or not self.kimg > 0 or self.interval < 1:
      raise ValueError(f"ada: target in [0, 1), kimg > 0 and interval >= 1, got {self.target}, {self.kimg},"
                       f" {self.interval}")

  @property
  def enabled(self) -> bool:
    return self.target > 0

  def check_gan(self, loss: str, diffaugment: str) -> None:
    """Raises ValueError unless a GAN with this loss and DiffAugment policy can use ADA (or ADA is off)."""
    if self.enabled and diffaugment:
      raise ValueError("diffaugment and ada: one augmentation of what D sees, not both")
    if self.enabled and loss not in SIGN_LOSSES:
      raise ValueError(f"ada: steers p by the sign of D on reals, which tells real from fake only for the losses"
                       f" {', '.join(SIGN_LOSSES)}; got {loss!r}")

  def init(self) -> dict | None:
    if not self.enabled:
      return None
    return {"p": jnp.zeros((), jnp.float32), "sign_sum": jnp.zeros((), jnp.float32),
            "count": jnp.zeros((), jnp.int32)}

  def update(self, state: dict, sign_mean: jax.Array, local_batch: int, axis_name: str | None = None) -> dict:
    """The state after a step whose D outputs on the global real batch had mean sign `sign_mean` (of
    `local_batch` examples on each device of pmap's `axis_name`)."""
    batch_size = local_batch * (1 if axis_name is None else jax.lax.axis_size(axis_name))
    sign_sum, count = state["sign_sum"] + sign_mean, state["count"] + 1
    due = count >= self.interval
    p = jnp.where(due, ada_adjust(state["p"], sign_sum / count, self.target, batch_size * self.interval, self.kimg),
                  state["p"])
    return {"p": p, "sign_sum": jnp.where(due, 0.0, sign_sum), "count": jnp.where(due, 0, count)}
