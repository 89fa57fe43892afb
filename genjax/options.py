"""Config options, each declared once: default, allowed values, comment, and what a resume must keep.

An `Option` is the one declaration of a config field. Everything else derives
from it: the field and its default in the config (`config_block`), the check
that refuses a bad value in one line naming the field (`check_block`), the
keyword arguments that build the object the field belongs to (`values`),
whether a resume may change it (`free`: it only shapes evaluation or
sampling) or must keep it (pinned: what the weights were trained with), the
value sample.py evaluates with, and how a `config.json` written before the
field existed loads (`added`, `moved_from`; `migrate`).

A family declares the fields of its model object on the dataclass itself,
as `Option(...).field()` defaults, so that the dataclass's default and the
config's are one value:

    @dataclasses.dataclass(frozen=True)
    class MyModel:
      net: nn.Module
      beta: float = options.number(1.0, "weight of the KL term", ">= 0").field()

    options.of(MyModel)  # {'beta': Option(...)}: a config block, checked and built from it

A shared capability a family opts into is a `Group` of options that builds
one object (the EMA of weights: `genjax.models.update.ema_options`); its
fields sit in the family's block as `<name>_<option>` (`ema_decay`).
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import ml_collections
from ml_collections import config_dict

from genjax import config_checks as checks
from genjax.errors import UserError

# The version of the config layout that train.py writes into config.json (`VERSION_KEY`). A field added
# after workdirs were written declares `added=(version, value those runs had)`; `migrate` fills it only into
# files of an older version, so a field missing from a current file is refused as missing.
# 2 (2026-12): model.num_classes, the classes a family is conditioned on. 3 (2026-12): dataset.train_examples,
# dataset.augment_*, gan.diffaugment. 4 (2026-12): precision. 5 (2026-12): diffusion.linear_per_1000 (the
# linear schedule's betas scaled to T; before, unscaled).
VERSION = 5
VERSION_KEY = "config_version"
_UNSET = object()
_KEY = "genjax.option"  # where a dataclass field's metadata holds its Option or Group


@dataclasses.dataclass(frozen=True)
class Option:
  """One config field.

  Attributes:
    default: its value in configs/base.py (and the dataclass's default, where it is a field of one).
    comment: what it is, its unit and allowed values, for a user reading the config.
    check: (config, dotted field) -> None; raises UserError naming the field (genjax.config_checks).
    kind: the type of a field whose default is None (ml_collections' placeholder, so that `--config.FIELD`
      still parses as that type).
    free: it only shapes evaluation or sampling, so a resume may change it and sample.py sets it with
      --set; otherwise it is what the weights were trained with, and a resume that changes it is refused.
    sample: the value sample.py evaluates with (a VAE's 1,000 importance samples; 64 while training).
    added: (config version that added the field, the value runs written before had).
    moved_from: the dotted field that held it before (a config.json with that field still loads).
    block: where a dataclass's fields span config blocks, the block of this one's (see `of`).
    flag: a flag of sample.py that sets this free field, as --set=FIELD=VALUE does (`iwae_k`: --iwae_k).
  """

  default: Any
  comment: str
  check: Callable[[Any, str], None]
  kind: type | None = None
  free: bool = False
  sample: Any = _UNSET
  added: tuple[int, Any] | None = None
  moved_from: str | None = None
  block: str | None = None
  flag: str | None = None

  def field(self) -> Any:
    """A dataclass field whose default is this option's and whose metadata declares it (see `of`)."""
    return dataclasses.field(default=self.default, metadata={_KEY: self})

  @property
  def has_sample(self) -> bool:
    return self.sample is not _UNSET


@dataclasses.dataclass(frozen=True)
class Group:
  """Options that build one object, a shared capability: fields `<name>_<option>` of a block -> build(**values)."""

  options: dict[str, Option]
  build: Callable[..., Any]

  def field(self) -> Any:
    default = self.build(**{name: option.default for name, option in self.options.items()})
    return dataclasses.field(default=default, metadata={_KEY: self})


Block = dict[str, Option | Group]  # the options of one config block, in the order the config shows them


# ------------------------------------------------------------------ declaring


def choice(default: str, allowed: tuple[str, ...], comment: str, **kw) -> Option:
  return Option(default, comment, lambda c, f: checks.one_of(c, f, allowed), **kw)


def count(default: int, comment: str, most: int | None = None, **kw) -> Option:
  """An integer > 0 (and <= `most`)."""
  return Option(default, comment, lambda c, f: checks.positive_int(c, f, most=most), **kw)


def counts(default: tuple[int, ...], comment: str, allow_empty: bool = False, most: int | None = None,
           **kw) -> Option:
  """A tuple of integers > 0."""
  return Option(default, comment, lambda c, f: checks.positive_ints(c, f, allow_empty=allow_empty, most=most), **kw)


def number(default: float | None, comment: str, rule: str, optional: bool = False, **kw) -> Option:
  """A finite float by `rule` ('> 0', '>= 0', '[0, 1)' or 'any'); `optional`: None too."""
  kind = float if optional else None
  return Option(default, comment, lambda c, f: checks.number(c, f, rule, optional=optional), kind=kind, **kw)


def flag(default: bool, comment: str, **kw) -> Option:
  return Option(default, comment, checks.boolean, **kw)


def optional_text(default: str | None, comment: str, what: str, **kw) -> Option:
  """A string or None; `what` names what the string is ('a file name')."""

  def check(config, field):
    value = checks.get(config, field)
    checks.require(value is None or isinstance(value, str), f"{field}: must be {what} or None, got {value!r}")

  return Option(default, comment, check, kind=str, **kw)


# ------------------------------------------------------------------ deriving


def of(cls, block: str | None = None) -> Block:
  """The options a dataclass declares on its fields (`Option.field`, `Group.field`), in field order: those
  declared for config block `block`, or with no block of their own."""
  return {f.name: f.metadata[_KEY] for f in dataclasses.fields(cls)
          if _KEY in f.metadata and getattr(f.metadata[_KEY], "block", None) == block}


def flat(block: Block) -> dict[str, Option]:
  """The block's fields as the config holds them: a group's options as `<group>_<option>`."""
  out = {}
  for name, entry in block.items():
    if isinstance(entry, Group):
      out.update({f"{name}_{member}": option for member, option in entry.options.items()})
    else:
      out[name] = entry
  return out


def config_block(block: Block) -> ml_collections.ConfigDict:
  """The block's fields with their defaults (None defaults as typed placeholders)."""
  node = ml_collections.ConfigDict()
  for name, option in flat(block).items():
    node[name] = config_dict.placeholder(option.kind) if option.default is None and option.kind else option.default
  return node


def check_block(config, block_name: str, block: Block) -> None:
  """Refuses, in one line naming the field, the first bad field of `config[block_name]` (root: '')."""
  if block_name:
    node = checks.get(config, block_name)
    checks.require(isinstance(node, (dict, ml_collections.ConfigDict)),
                   f"{block_name}: must be a block of fields, got {node!r}")
  for name, option in flat(block).items():
    option.check(config, dotted(block_name, name))


def values(node, block: Block) -> dict[str, Any]:
  """Keyword arguments of the object the block's fields build, from a validated config block `node`."""
  out = {}
  for name, entry in block.items():
    if isinstance(entry, Group):
      out[name] = entry.build(**{member: _plain(node[f"{name}_{member}"]) for member in entry.options})
    else:
      out[name] = _plain(node[name])
  return out


def _plain(value):
  return tuple(value) if isinstance(value, list) else value


def dotted(block_name: str, name: str) -> str:
  return f"{block_name}.{name}" if block_name else name


def every(blocks: dict[str, Block]) -> dict[str, Option]:
  """{dotted field: option} of config blocks {name ('' for the root): block}."""
  return {dotted(block_name, name): option for block_name, block in blocks.items()
          for name, option in flat(block).items()}


# ------------------------------------------------------------------ old config files


def migrate(saved: dict, blocks: dict[str, Block], others: set[str]) -> dict:
  """A config.json's dict brought to this version's layout, in the one place that knows old layouts.

  `blocks` are the options of the file's family and the shared ones; `others` the dotted fields of the other
  families. Before version 1 (2026-12) a file had no version; before per-family blocks (2026-11) it held every
  family's fields, and those of other families go. A field declared `moved_from` moves; a field `added` after
  the file's version gets the value runs had before it existed. A file of a newer genjax is refused.
  """
  out = {k: dict(v) if isinstance(v, dict) else v for k, v in saved.items()}
  version = out.pop(VERSION_KEY, 0)
  if not checks.is_int(version) or not 0 <= version <= VERSION:
    raise UserError(f"{VERSION_KEY}: {version!r} is not a config version this genjax reads (0 to {VERSION});"
                    " a newer genjax wrote it: sample or resume with that version")
  own = every(blocks)
  for field, option in own.items():
    if option.moved_from:
      _move(out, option.moved_from, field)
    if option.added and version < option.added[0]:
      _setdefault(out, field, option.added[1])
  if version < 1:
    own_blocks = {field.rpartition(".")[0] for field in own}
    for field in sorted(others - set(own)):
      block, _, name = field.rpartition(".")
      if block not in own_blocks:
        out.pop(block, None)
      elif isinstance(out.get(block), dict):
        out[block].pop(name, None)
  return out


def _move(out: dict, old: str, new: str) -> None:
  (old_block, _, old_name), (new_block, _, new_name) = old.rpartition("."), new.rpartition(".")
  source = out.get(old_block) if old_block else out
  target = out.get(new_block) if new_block else out
  if isinstance(source, dict) and old_name in source and isinstance(target, dict) and new_name not in target:
    target[new_name] = source.pop(old_name)


def _setdefault(out: dict, field: str, value) -> None:
  block, _, name = field.rpartition(".")
  node = out.get(block) if block else out
  if isinstance(node, dict):
    node.setdefault(name, value)


# ------------------------------------------------------------------ the table of docs/options.md


def table(blocks: dict[str, Block]) -> str:
  """A markdown table of the options: field, default, whether a resume keeps it, and the comment."""
  rows = ["| field | default | a resume | what it is |", "| --- | --- | --- | --- |"]
  for field, option in every(blocks).items():
    default = tuple(option.default) if isinstance(option.default, list) else option.default
    comment = option.comment.replace("|", "\\|")
    rows.append(f"| `{field}` | `{default!r}` | {'may change it' if option.free else 'keeps it'} | {comment} |")
  return "\n".join(rows) + "\n"
