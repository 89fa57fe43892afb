"""Checks of config fields, each refusing a bad value with one line that names the field and what is allowed.

Shared by the shared fields (`genjax.build`) and by every family's own block
(its `validate_config`), so every message has the same form:
`optim.b1: must be in [0, 1), got 1.0`.
"""

import math

import ml_collections

from genjax.errors import UserError

# Upper bounds of counts (config fields and sample.py's flags), each far above what a run wants but below
# what exhausts memory or time before the first evaluation. A value above one is refused in one wording,
# `in_range`'s: `diffusion.sample_steps: must be an integer in [1, 10000], got 2000000000`.
# jax.random.key wraps larger (and negative) seeds: key(2**32) == key(0), key(-1) == key(2**32 - 1)
MAX_SEED = 2**32 - 1
MAX_STEPS = 2**31 - 1  # num_steps, log_every, eval_every, checkpoint_every: the state's step counter is int32
MAX_STEPS_PER_CALL = 1000  # the batches of one call are stacked in device memory
MAX_KEEP_CHECKPOINTS = 1000
MAX_BATCH_SIZE = 2**20  # batch_size, eval.batch_size (the data check also bounds batch_size by the split)
MAX_NUM_EXAMPLES = 1_000_000  # eval.num_examples, sample.py --num_examples
MAX_QUALITY_SAMPLES = 200_000  # eval.quality_samples, sample.py --quality_samples: 4x FID's usual 50,000
# The fewest that give the loop's numbers: KID compares pairs, precision/recall take k = 3 neighbours.
MIN_QUALITY_SAMPLES = 4
# sample.py's, which adds density and coverage: k = 5 neighbours.
MIN_FULL_QUALITY_SAMPLES = 6


def quality_samples(what: str, value, least: int = MIN_QUALITY_SAMPLES) -> None:
  """`what` (a field or flag) must be 0 (no sample-quality numbers) or a count in [least, MAX_QUALITY_SAMPLES]."""
  require(is_int(value) and (value == 0 or least <= value <= MAX_QUALITY_SAMPLES),
          f"{what}: must be 0 (none) or an integer in [{least}, {MAX_QUALITY_SAMPLES}], got {value!r}")


def quality_samples_field(config, field: str) -> None:
  quality_samples(field, get(config, field))


MAX_IWAE_K = 100_000  # vae model.iwae_k, sample.py --iwae_k: 100x sample.py's 1,000
MAX_WIDTH = 2**20  # latent_dim and every width or hidden size (the memory check catches what fits below)


def require(ok: bool, message: str) -> None:
  if not ok:
    raise UserError(message)


def get(config, field: str):
  """The value of a dotted field; UserError naming it when it (or a block above it) is missing."""
  node = config
  for depth, part in enumerate(field.split(".")):
    if not isinstance(node, (dict, ml_collections.ConfigDict)) or part not in node:
      block = ".".join(field.split(".")[:depth]) or "the config"
      raise UserError(f"{field}: missing from {block}; every config starts from configs/base.py, which has it")
    node = node[part]
  return node


def is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def in_range(field: str, value, least: int, most: int) -> None:
  """Refuses an integer `value` of `field` above `most` (or below `least`) in the one wording of the bounds."""
  require(least <= value <= most, f"{field}: must be an integer in [{least}, {most}], got {value!r}")


def positive_int(config, field: str, most: int | None = None) -> int:
  """Checks an integer field > 0 (and <= `most`, where given); returns it."""
  value = get(config, field)
  require(is_int(value) and value > 0, f"{field}: must be a positive integer, got {value!r}")
  if most is not None:
    in_range(field, value, 1, most)
  return value


def number(config, field: str, rule: str, optional: bool = False):
  """Checks a float field against `rule` ('> 0', '>= 0', '[0, 1)' or 'any'); returns it.

  Non-numbers are refused by name (a config.json edited by hand), and so is
  every NaN or infinity whatever the rule: `learning_rate=inf` trains to NaN.
  """
  value = get(config, field)
  allowed = {"> 0": "> 0", ">= 0": ">= 0", "[0, 1)": "in [0, 1)", "any": "a finite number"}[rule]
  allowed += " or None" if optional else ""
  if optional and value is None:
    return value
  require(is_number(value), f"{field}: must be {allowed}, got {value!r}")
  require(math.isfinite(value), f"{field}: must be {allowed} (finite), got {value!r}")
  ok = {"> 0": value > 0, ">= 0": value >= 0, "[0, 1)": 0 <= value < 1, "any": True}[rule]
  require(ok, f"{field}: must be {allowed}, got {value!r}")
  return value


def boolean(config, field: str) -> None:
  value = get(config, field)
  require(isinstance(value, bool), f"{field}: must be True or False, got {value!r}")


def one_of(config, field: str, allowed: tuple) -> None:
  value = get(config, field)
  require(isinstance(value, str) and value in allowed,
          f"{field}: unknown {value!r}; allowed: {', '.join(map(str, allowed))}")


def positive_ints(config, field: str, allow_empty: bool = False, most: int | None = None) -> None:
  """Checks a tuple of integers > 0 (each <= `most`, where given)."""
  values = get(config, field)
  ok = isinstance(values, (tuple, list)) and (allow_empty or len(values) > 0)
  require(ok and all(is_int(w) and w > 0 for w in values),
          f"{field}: must be {'' if allow_empty else 'one or more '}positive integers, got {values!r}")
  if most is not None:
    require(all(w <= most for w in values), f"{field}: each must be an integer in [1, {most}], got {values!r}")
