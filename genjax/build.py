"""From a config to typed objects: validation, the family, the optimizer.

This module checks the shared fields and builds the shared optimizer; the
family named by `config.family` (genjax.models.family's registry) checks and
reads its own fields. Everything built receives typed fields. `validate` runs before any compilation or data
loading, so a bad field costs the user a second, not a compile.
"""

import math

import ml_collections
import numpy as np
import optax

from genjax import config_checks as checks
from genjax import data, parallel
from genjax import models  # noqa: F401  pylint: disable=unused-import  (its families register themselves)
from genjax.models import family as family_lib
from genjax.nets import layers

SCHEDULES = ("constant", "cosine")


# The largest float32: every float field reaches the model as float32, where a larger number is infinite.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _non_finite_field(config, prefix: str = "") -> str | None:
  """The first field anywhere in the config that holds a float NaN or infinity, in Python or in float32 (in a
  tuple too), or None."""
  for key, value in config.items():
    name = f"{prefix}{key}"
    if isinstance(value, (dict, ml_collections.ConfigDict)):
      found = _non_finite_field(value, name + ".")
      if found:
        return found
    values = value if isinstance(value, (tuple, list)) else (value,)
    if any(isinstance(v, float) and not math.isfinite(v) for v in values):
      return f"{name}: must be a finite number, got {value!r}"
    if any(isinstance(v, float) and abs(v) > FLOAT32_MAX for v in values):
      return f"{name}: must be a finite number in float32 (at most {FLOAT32_MAX:.4g} in size), got {value!r}"
  return None


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises UserError naming the first bad field and its allowed values.

  Every field a family reads is checked for presence and type as well as
  range, so a `config.json` edited by hand is refused as a command-line
  override is; no float anywhere may be NaN or infinite.
  """
  non_finite = _non_finite_field(config)
  checks.require(non_finite is None, str(non_finite))
  spec = family_lib.get(checks.get(config, "family"))
  for block in ("dataset", "optim", "eval"):
    checks.require(isinstance(checks.get(config, block), (dict, ml_collections.ConfigDict)),
                   f"{block}: must be a block of fields, got {checks.get(config, block)!r}")
  for block, fields in spec.config_blocks().items():
    node = checks.get(config, block)
    checks.require(isinstance(node, (dict, ml_collections.ConfigDict)),
                   f"{block}: must be a block of fields, got {node!r}")
    for field in fields:
      checks.require(field in node, f"{block}.{field}: missing; a {spec.name} config starts from"
                                    f" configs/base.get_config({spec.name!r}), which has every field of its family")
  checks.one_of(config, "dataset.name", data.DATASETS)
  data_dir = checks.get(config, "dataset.data_dir")
  checks.require(data_dir is None or isinstance(data_dir, str),
                 f"dataset.data_dir: must be a directory name or None, got {data_dir!r}")
  checks.boolean(config, "dataset.download")
  counts = {"batch_size": checks.MAX_BATCH_SIZE, "num_steps": checks.MAX_STEPS,
            "steps_per_call": checks.MAX_STEPS_PER_CALL, "log_every": checks.MAX_STEPS,
            "eval_every": checks.MAX_STEPS, "checkpoint_every": checks.MAX_STEPS,
            "keep_checkpoints": checks.MAX_KEEP_CHECKPOINTS, "eval.num_examples": checks.MAX_NUM_EXAMPLES,
            "eval.batch_size": checks.MAX_BATCH_SIZE}
  for field, most in counts.items():
    checks.positive_int(config, field, most=most)
  checks.quality_samples("eval.quality_samples", checks.get(config, "eval.quality_samples"))
  inception_weights = checks.get(config, "eval.inception_weights")
  checks.require(inception_weights is None or isinstance(inception_weights, str),
                 f"eval.inception_weights: must be a file name or None, got {inception_weights!r}")
  seed = checks.get(config, "seed")
  checks.require(checks.is_int(seed), f"seed: must be an integer, got {seed!r}")
  checks.in_range("seed", seed, 0, checks.MAX_SEED)
  checks.one_of(config, "parallel", parallel.PATHS)
  checks.one_of(config, "conv_impl", layers.IMPLS)
  if checks.get(config, "num_devices") is not None:
    checks.positive_int(config, "num_devices")

  checks.number(config, "optim.learning_rate", "> 0")
  checks.number(config, "optim.d_learning_rate", "> 0", optional=True)
  checks.one_of(config, "optim.schedule", SCHEDULES)
  for name in ("b1", "b2"):
    checks.number(config, f"optim.{name}", "[0, 1)")
  checks.number(config, "optim.grad_clip_norm", "> 0", optional=True)

  spec.validate_config(config, config.dataset.name, data.image_shape(config.dataset.name))


def learning_rate(value: float, schedule: str, num_steps: int) -> optax.ScalarOrSchedule:
  """A constant step size, or a cosine decay from `value` to 0 over `num_steps` (Loshchilov & Hutter 2017)."""
  if schedule == "cosine":
    return optax.cosine_decay_schedule(value, num_steps)
  return value


def optimizer(learning_rate: optax.ScalarOrSchedule, b1: float, b2: float,
              grad_clip_norm: float | None) -> optax.GradientTransformation:
  """Adam, after global-norm clipping when `grad_clip_norm` is set."""
  adam = optax.adam(learning_rate, b1=b1, b2=b2)
  if grad_clip_norm is None:
    return adam
  return optax.chain(optax.clip_by_global_norm(grad_clip_norm), adam)


def family(config: ml_collections.ConfigDict) -> family_lib.Family:
  """The model family described by a validated config (through the registry), built for its `parallel` path."""
  axis_name = parallel.AXIS if config.parallel == "pmap" else None
  optim = config.optim

  def optimizer_for(value: float) -> optax.GradientTransformation:
    return optimizer(learning_rate(value, optim.schedule, config.num_steps), optim.b1, optim.b2,
                     optim.grad_clip_norm)

  spec = family_lib.get(config.family)
  return spec.from_config(config, data.image_shape(config.dataset.name), axis_name, optimizer_for)
