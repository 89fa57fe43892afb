"""What every family's training step shares: one gradient update, and the EMA of weights as one option block.

A family's `train_step` is its loss plus `apply_gradients`; where the update
step changes (a precision policy, loss scaling, augmentation), it changes
here for every family. A family that keeps an EMA of its weights declares
its `ema` field with `ema_options(decay).field()`: three options of its config
block, checked and built into an `EMA` from that one declaration.
"""

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from genjax import options, parallel, precision
from genjax.losses import ema as ema_lib


class Update(NamedTuple):
  """The result of one gradient update."""

  params: Any  # the updated parameters
  opt_state: Any  # the optimizer's new state
  loss: jax.Array  # the loss at the parameters before the update (this device's, not averaged)
  aux: Any  # what the loss function returned beside the loss (metrics, new statistics)
  grad_norm: jax.Array  # the global norm of the (device-averaged) gradient
  # Under float16's loss scaling, a traced bool: the gradient was not finite and the update is zero. Otherwise
  # the Python False, so that `unless_skipped` adds nothing to a step without loss scaling.
  skipped: Any = False


def unless_skipped(skipped, new, old):
  """`new`, or `old` where the update was skipped (float16's loss scaling, a gradient not finite): a skipped
  step leaves what it computes beside the weights, BatchNorm's statistics and the EMA, as they were too."""
  if skipped is False:
    return new
  return jax.tree.map(lambda n, o: jnp.where(skipped, o, n), new, old)


def apply_gradients(loss_fn: Callable[..., tuple[jax.Array, Any]], params, opt_state,
                    optimizer: optax.GradientTransformation, axis_name: str | None, *args) -> Update:
  """One optimizer step on `loss_fn(params, *args) -> (loss, aux)`.

  The gradient is averaged over pmap's device axis `axis_name` (None under
  jit, whose loss is already the global batch's), so 1 and 8 devices take
  the same step; the optimizer sees the parameters it updates (weight
  decay, clipping).

  Under float16's loss scaling (`genjax.precision.loss_scaled`, whose state
  holds the scale) the loss is multiplied by the scale before
  differentiation and the optimizer divides every gradient leaf by it; the
  gradient norm reported is the unscaled one, 0 for a skipped step.
  """
  scale = precision.scale_of(opt_state)
  if scale is None:
    (loss, aux), grads = precision.sums_in_float32(jax.value_and_grad(loss_fn, has_aux=True))(params, *args)
  else:
    def scaled(params, *args):
      loss, aux = loss_fn(params, *args)
      return loss * scale, (loss, aux)

    (_, (loss, aux)), grads = precision.sums_in_float32(jax.value_and_grad(scaled, has_aux=True))(params, *args)
  grads = parallel.mean_over(grads, axis_name)
  updates, opt_state = optimizer.update(grads, opt_state, params)
  grad_norm = optax.tree.norm(grads)
  skipped = False
  if scale is not None:
    grad_norm = jnp.where(jnp.isfinite(grad_norm), grad_norm / scale, 0.0)
    skipped = jnp.logical_not(precision.all_finite(grads))
  return Update(optax.apply_updates(params, updates), opt_state, loss, aux, grad_norm, skipped)


# ------------------------------------------------------------------ the EMA of weights


@dataclasses.dataclass(frozen=True)
class EMA:
  """ema <- d_n ema + (1 - d_n) params after update n, d_n by `warmup`'s rule (`genjax.losses.ema`).

  Each field is an option of the config block of a family that keeps an EMA (`ema_options`).
  """

  decay: float = options.number(0.999, "decay of the EMA of the weights that sample (0: no EMA)", "[0, 1)").field()
  warmup: str = options.choice(
      "rampup", ema_lib.RULES, "how the decay ramps up (genjax.losses.ema): 'rampup' (half-life <= ema_rampup x"
      " updates so far), 'num_updates' (TensorFlow's) or 'none' (the constant decay from the first update)").field()
  rampup: float = options.number(0.05, "the 'rampup' rule's ratio (StyleGAN2-ADA's and EDM's 0.05)", "> 0").field()

  def __post_init__(self):
    if not 0.0 <= self.decay < 1.0:
      raise ValueError(f"ema_decay: must be in [0, 1), got {self.decay}")
    if self.warmup not in ema_lib.RULES:
      raise ValueError(f"ema_warmup: unknown {self.warmup!r}; allowed: {', '.join(ema_lib.RULES)}")

  def __call__(self, ema_params, params, num_updates: jax.Array, skipped=False):
    """The average after update `num_updates` (this one included) of `params`; `ema_params` as they are where
    the update was `skipped` (`unless_skipped`)."""
    new = ema_lib.update(ema_params, params, ema_lib.decay(self.warmup, self.decay, num_updates, self.rampup))
    return unless_skipped(skipped, new, ema_params)


EMA_WEIGHTS = ("ema", "raw")  # what `eval_params` gives of a family that keeps an EMA, its default first


def pick_weights(weights: str, raw: Callable[[], Any], ema: Callable[[], Any]):
  """`eval_params` of a family that keeps an EMA: raw() for 'raw', ema() for 'ema' (only the one chosen is
  traced); ValueError naming the allowed ones otherwise."""
  if weights == "raw":
    return raw()
  if weights != "ema":
    raise ValueError(f"weights: unknown {weights!r}; allowed: {', '.join(EMA_WEIGHTS)}")
  return ema()


def ema_options(decay: float, added: dict[str, tuple[int, object]] | None = None) -> options.Group:
  """The EMA as a shared capability of a family's config block: fields `ema_decay`, `ema_warmup`, `ema_rampup`
  (`EMA`'s options), this family's default `decay`, and `added` {EMA field: (version, value older runs had)}."""
  members = options.of(EMA)
  members["decay"] = dataclasses.replace(members["decay"], default=decay)
  for name, when in (added or {}).items():
    members[name] = dataclasses.replace(members[name], added=when)
  return options.Group(members, EMA)
