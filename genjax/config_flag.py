"""The --config flag's refusals, each one line: a config file that cannot be used, an override of a field it
lacks, a field a config file adds (`check_fields`), and sample.py's --set=BLOCK.FIELD=VALUE items."""

import difflib
import importlib.util
import os
import re
import traceback

import ml_collections

from genjax.errors import UserError


def field_values(flag: str, items: list[str]) -> dict[str, str]:
  """{'block.field': 'value'} of repeated FIELD=VALUE flags; one line naming the flag for a malformed one."""
  out = {}
  for item in items:
    field, sep, value = item.partition("=")
    if not sep or field.count(".") != 1 or not all(field.split(".")):
      raise UserError(f"{flag}: expected BLOCK.FIELD=VALUE (e.g. diffusion.sampler=heun), got {item!r}")
    out[field] = value
  return out


def argv_config_paths(argv: list[str]) -> list[str]:
  """Every --config value on the command line, in order."""
  paths = []
  for i, arg in enumerate(argv):
    if arg.startswith(("--config=", "-config=")):
      paths.append(arg.split("=", 1)[1])
    elif arg in ("--config", "-config") and i + 1 < len(argv):
      paths.append(argv[i + 1])
  return paths


def _argv_config_path(argv: list[str], default: str) -> str:
  """The --config value on the command line (the last one), or `default`."""
  paths = argv_config_paths(argv)
  return paths[-1] if paths else default


def overridden_fields(argv: list[str]) -> list[str]:
  """The field paths of every --config.FIELD[=VALUE] on the command line."""
  return _overrides(argv)


# --config.FIELD=VALUE, or a boolean's --[no]config.FIELD: (FIELD, VALUE or None).
_OVERRIDE = re.compile(r"^--?(?:no)?config\.([^=]+)(?:=(.*))?$")


def _overrides(argv: list[str]) -> list[str]:
  """The field paths of every --config.FIELD[=VALUE] on the command line."""
  return [match.group(1) for arg in argv if (match := _OVERRIDE.match(arg))]


def _fields(config, prefix: str = "") -> list[str]:
  names = []
  for key, value in config.items():
    names.append(prefix + key)
    if isinstance(value, ml_collections.ConfigDict):
      names.extend(_fields(value, prefix + key + "."))
  return names


def _line_in(path: str, error: BaseException) -> str:
  """', line N' of the innermost frame of `error`'s traceback that ran `path`, or ''."""
  if isinstance(error, SyntaxError) and error.lineno:
    return f", line {error.lineno}"
  lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__)
           if os.path.abspath(frame.filename) == os.path.abspath(path)]
  return f", line {lines[-1]}" if lines else ""


def describe_config_error(argv: list[str], default: str, error: BaseException) -> str:
  """One line that says why `--config` (its file, or an override of it) could not be used.

  ml_collections reports these as tracebacks from deep in its flag parser;
  here the file is loaded again, step by step, to find the first thing wrong.
  """
  path = _argv_config_path(argv, default)
  file_path, _, arg = path.partition(":")
  if not os.path.isfile(file_path):
    return f"--config: no such file {file_path!r}; allowed: a Python file with get_config(), e.g. configs/vae_mnist5k.py"
  try:
    spec = importlib.util.spec_from_file_location("genjax_user_config", file_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
  except BaseException as e:  # pylint: disable=broad-except  (the user's file may raise anything)
    text = e.msg if isinstance(e, SyntaxError) else first_line(e)
    return f"--config: {file_path}{_line_in(file_path, e)}: {type(e).__name__}: {text}"
  if not callable(getattr(module, "get_config", None)):
    return f"--config: {file_path} defines no get_config(); a config file returns its ConfigDict from get_config()"
  call = f"get_config({arg!r})" if arg else "get_config()"
  try:
    config = module.get_config(*([arg] if arg else []))
  except BaseException as e:  # pylint: disable=broad-except
    why = f"{type(e).__name__}: {first_line(e)}"
    if arg and isinstance(e, TypeError) and "positional argument" in str(e):
      why = (f"{why} (the text after ':' in --config=FILE:ARG is get_config's argument, and this get_config"
             " takes none)")
    return f"--config: {call} in {file_path}{_line_in(file_path, e)}: {why}"
  if not isinstance(config, ml_collections.ConfigDict):
    return f"--config: {call} in {file_path} returned {type(config).__name__}, not an ml_collections.ConfigDict"
  fields = _fields(config)
  for field in _overrides(argv):
    if field not in fields:
      near = difflib.get_close_matches(field, fields, n=1)
      hint = f"did you mean --config.{near[0]}?" if near else "allowed: the fields of configs/base.py"
      return f"--config.{field}: no such field in {file_path}; {hint}"
  return f"--config: {first_line(error)}"


def require_config_dict(value) -> None:
  """TypeError unless `value` (a --config flag's) is a ConfigDict: ml_collections takes a plain dict too, which
  `describe_config_error` then names."""
  if not isinstance(value, ml_collections.ConfigDict):
    raise TypeError(f"{type(value).__name__}, not an ml_collections.ConfigDict")


def first_line(error: BaseException) -> str:
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__


def check_fields(config: ml_collections.ConfigDict, schema: ml_collections.ConfigDict, path: str) -> None:
  """Refuses a config (file) with a field that `schema` lacks, naming the nearest one, as an override is refused.

  A config file may set any field of a ConfigDict it has not locked, so a misspelt one would be added and
  silently never read.
  """
  known = _fields(schema)
  for field in _fields(config):
    if field not in known:
      near = difflib.get_close_matches(field, known, n=1)
      hint = f"did you mean {near[0]}?" if near else "allowed: the fields of configs/base.py"
      raise UserError(f"{field}: no such field of a {config.family} config (set in {path}); {hint}")


def without_none_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
  """(`argv` less its `--config.FIELD=None` items, the fields whose last override is None).

  ml_collections parses an override by its field's type, so `--config.num_devices=None` fails to parse as an
  int, and a field a config file set cannot be reset to None; genjax sets those fields after parsing
  (`set_none`). A later override of the same field wins, as ever.
  """
  last = {}
  for arg in argv[1:]:
    if match := _OVERRIDE.match(arg):
      last[match.group(1)] = match.group(2)
  nones = [field for field, value in last.items() if value == "None"]
  return [arg for arg in argv if not ((match := _OVERRIDE.match(arg)) and match.group(2) == "None")], nones


def set_none(config: ml_collections.ConfigDict, fields: list[str]) -> bool:
  """Sets each of `fields` (dotted) of `config` to None; False, changing nothing, if one is not a leaf field of it
  (the caller then lets ml_collections refuse that override as it refuses any other)."""
  nodes = []
  for field in fields:
    node, *path = config, *field.split(".")
    for name in path[:-1]:
      node = node.get(name) if isinstance(node, ml_collections.ConfigDict) else None
    if not isinstance(node, ml_collections.ConfigDict) or path[-1] not in node or isinstance(
        node[path[-1]], ml_collections.ConfigDict):
      return False
    nodes.append((node, path[-1]))
  for node, name in nodes:
    node[name] = None
  return True
