"""What every family's training step shares: one gradient update, and the EMA of weights as one option block.

A family's `train_step` is its loss plus `apply_gradients`; where the update
step changes (a precision policy, loss scaling, augmentation), it changes
here for every family. A family that keeps an EMA of its weights declares
the three fields with `add_ema_fields`, checks them with
`check_ema_fields` and builds its `EMA` with `EMA.of(block)`.
"""

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import ml_collections
import optax

from genjax import config_checks as checks
from genjax import parallel
from genjax.losses import ema as ema_lib


class Update(NamedTuple):
  """The result of one gradient update."""

  params: Any  # the updated parameters
  opt_state: Any  # the optimizer's new state
  loss: jax.Array  # the loss at the parameters before the update (this device's, not averaged)
  aux: Any  # what the loss function returned beside the loss (metrics, new statistics)
  grad_norm: jax.Array  # the global norm of the (device-averaged) gradient


def apply_gradients(loss_fn: Callable[..., tuple[jax.Array, Any]], params, opt_state,
                    optimizer: optax.GradientTransformation, axis_name: str | None, *args) -> Update:
  """One optimizer step on `loss_fn(params, *args) -> (loss, aux)`.

  The gradient is averaged over pmap's device axis `axis_name` (None under
  jit, whose loss is already the global batch's), so 1 and 8 devices take
  the same step; the optimizer sees the parameters it updates (weight
  decay, clipping).
  """
  (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, *args)
  grads = parallel.mean_over(grads, axis_name)
  updates, opt_state = optimizer.update(grads, opt_state, params)
  return Update(optax.apply_updates(params, updates), opt_state, loss, aux, optax.tree.norm(grads))


# ------------------------------------------------------------------ the EMA of weights


@dataclasses.dataclass(frozen=True)
class EMA:
  """ema <- d_n ema + (1 - d_n) params after update n, d_n by `warmup`'s rule (`genjax.losses.ema`)."""

  decay: float = 0.999  # in [0, 1); 0: the average is the weights
  warmup: str = "rampup"  # one of genjax.losses.ema.RULES
  rampup: float = 0.05  # the 'rampup' rule's ratio (StyleGAN2-ADA's and EDM's 0.05)

  def __post_init__(self):
    if not 0.0 <= self.decay < 1.0:
      raise ValueError(f"ema_decay: must be in [0, 1), got {self.decay}")
    if self.warmup not in ema_lib.RULES:
      raise ValueError(f"ema_warmup: unknown {self.warmup!r}; allowed: {', '.join(ema_lib.RULES)}")

  def __call__(self, ema_params, params, num_updates: jax.Array):
    """The average after update `num_updates` (this one included) of `params`."""
    return ema_lib.update(ema_params, params, ema_lib.decay(self.warmup, self.decay, num_updates, self.rampup))

  @classmethod
  def of(cls, block: ml_collections.ConfigDict) -> "EMA":
    """The EMA of a validated config block holding the fields of `add_ema_fields`."""
    return cls(decay=block.ema_decay, warmup=block.ema_warmup, rampup=block.ema_rampup)


def add_ema_fields(block: ml_collections.ConfigDict, decay: float, warmup: str = "rampup",
                   rampup: float = 0.05) -> None:
  """Declares the EMA's three fields in a family's config block, with their defaults."""
  block.ema_decay = decay  # float in [0, 1): decay of the EMA of the weights that sample (0: no EMA)
  # How the decay ramps up (genjax.losses.ema): 'rampup' (half-life <= ema_rampup x updates so far),
  # 'num_updates' (TensorFlow's) or 'none' (the constant decay from the first update).
  block.ema_warmup = warmup
  block.ema_rampup = rampup  # float > 0: the 'rampup' rule's ratio (StyleGAN2-ADA's and EDM's 0.05)


def check_ema_fields(config: ml_collections.ConfigDict, block: str) -> None:
  """Refuses, naming the field, a bad EMA field of `config[block]`."""
  checks.number(config, f"{block}.ema_decay", "[0, 1)")
  checks.one_of(config, f"{block}.ema_warmup", ema_lib.RULES)
  checks.number(config, f"{block}.ema_rampup", "> 0")
