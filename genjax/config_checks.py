"""Checks of config fields, each refusing a bad value with one line that names the field and what is allowed.

Shared by the shared fields (`genjax.build`) and by every family's own block
(its `validate_config`), so every message has the same form:
`optim.b1: must be in [0, 1), got 1.0`.
"""

import math

import ml_collections

from genjax.errors import UserError

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


def positive_int(config, field: str) -> None:
  value = get(config, field)
  require(is_int(value) and value > 0, f"{field}: must be a positive integer, got {value!r}")


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


def positive_ints(config, field: str, allow_empty: bool = False) -> None:
  values = get(config, field)
  ok = isinstance(values, (tuple, list)) and (allow_empty or len(values) > 0)
  require(ok and all(is_int(w) and w > 0 for w in values),
          f"{field}: must be {'' if allow_empty else 'one or more '}positive integers, got {values!r}")
