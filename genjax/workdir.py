"""What train.py and sample.py share about a workdir: its config, its directories, its evaluations and pictures.

The loop (`genjax.train_lib`) and the sampling entry point
(`genjax.sample_lib`) are siblings: both import this module, neither imports
the other. Nothing here compiles a step or touches a checkpoint.
"""

import json
import os
import tempfile
from typing import Any

import jax
import ml_collections
import numpy as np

from genjax import build, images, metrics
from genjax.data import POINT_DATASETS, toy2d
from genjax.errors import UserError
from genjax.models import family as family_lib

CONFIG_FILE = "config.json"
# Fields a workdir's checkpoints depend on: resuming with other values would
# restore parameters into the wrong model or train on other data.
PINNED_FIELDS = ("family", "dataset.name", "model")


def check_workdir(workdir: str, flag: str = "--workdir") -> str:
  """The absolute path of `workdir` if it is, or can be made, a writable directory; writes nothing.

  An existing directory is proven writable with a temporary file that is
  removed at once; a missing one needs its nearest existing parent to be a
  writable directory.
  """
  path = os.path.abspath(os.path.expanduser(workdir))
  probe = path
  while not os.path.exists(probe):
    probe = os.path.dirname(probe)
  if not os.path.isdir(probe):
    raise UserError(f"{flag}: cannot write to {workdir!r} ({probe} is a file, not a directory)")
  try:
    with tempfile.NamedTemporaryFile(dir=probe, prefix=".genjax-probe-"):
      pass
  except OSError as e:
    raise UserError(f"{flag}: cannot write to {workdir!r} ({e.strerror or e})") from e
  return path


def prepare_workdir(workdir: str, flag: str = "--workdir") -> str:
  """Creates `workdir` (after `check_workdir`); UserError when it cannot."""
  path = check_workdir(workdir, flag)
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise UserError(f"{flag}: cannot write to {workdir!r} ({e.strerror or e})") from e
  return path


def _freeze(value):
  """JSON lists back to the tuples the config had."""
  if isinstance(value, dict):
    return {k: _freeze(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_freeze(v) for v in value)
  return value


# Fields added to configs/base.py after workdirs were written, with the value those runs had.
ADDED_FIELDS = {"parallel": "jit", "num_devices": None, "conv_impl": "auto", "steps_per_call": 1}
# The same for fields of the eval block: runs before them measured no FID.
ADDED_EVAL_FIELDS = {"quality_samples": 0, "inception_weights": None}


def _own_family_fields(saved: dict) -> dict:
  """`saved` without the fields of the families it is not.

  Before each family had its own config blocks (2026-11), a config held
  every family's fields in one 'model' block and a VAE's held the GAN's 'gan'
  block too; such a workdir still resumes and samples.
  """
  try:
    spec = family_lib.get(saved.get("family"))
  except UserError:
    return saved  # validation names the field
  own = spec.config_blocks()
  out = {k: dict(v) if isinstance(v, dict) else v for k, v in saved.items()}
  for old, new in spec.moved.items():
    (old_block, old_field), (new_block, new_field) = old.split("."), new.split(".")
    if old_field in out.get(old_block, {}) and new_field not in out.get(new_block, {new_field: None}):
      out[new_block][new_field] = out[old_block].pop(old_field)
  for field, value in spec.added.items():  # the value runs had before the field existed
    block, name = field.split(".")
    if isinstance(out.get(block), dict):
      out[block].setdefault(name, value)
  for other in family_lib.names():
    if other == spec.name:
      continue
    for block, fields in family_lib.get(other).config_blocks().items():
      if block not in own:
        out.pop(block, None)
      elif isinstance(out.get(block), dict):
        out[block] = {k: v for k, v in out[block].items() if k in own[block] or k not in fields}
  return out


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a workdir was trained with, validated; UserError naming the file when it is missing or bad."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.isfile(path):
    raise UserError(f"--workdir: {workdir!r} holds no {CONFIG_FILE}; train into it first with train.py")
  try:
    with open(path, encoding="utf-8") as f:
      saved = json.load(f)
  except json.JSONDecodeError as e:
    raise UserError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); train.py writes"
                    " this file: restore it, or train into a new --workdir") from e
  except (OSError, UnicodeDecodeError) as e:
    raise UserError(f"{path}: cannot be read ({getattr(e, 'strerror', None) or e})") from e
  if not isinstance(saved, dict):
    raise UserError(f"{path}: holds a JSON {type(saved).__name__}, not the object of a config that train.py writes")
  saved = _own_family_fields(saved)
  if isinstance(saved.get("eval"), dict):
    saved["eval"] = {**ADDED_EVAL_FIELDS, **saved["eval"]}
  config = ml_collections.ConfigDict({**ADDED_FIELDS, **_freeze(saved)})
  try:
    build.validate(config)
  except UserError as e:
    raise UserError(f"{path}: {e}") from e
  return config


def _flat(config, prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in config.items():
    name = f"{prefix}{key}"
    if isinstance(value, (dict, ml_collections.ConfigDict)):
      out.update(_flat(value, name + "."))
    else:
      out[name] = tuple(value) if isinstance(value, list) else value
  return out


def check_resumable(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Refuses to resume a workdir trained with another model or dataset."""
  if not os.path.isfile(os.path.join(workdir, CONFIG_FILE)):
    return
  saved, new = _flat(load_config(workdir)), _flat(ml_collections.ConfigDict(_freeze(json.loads(config.to_json()))))
  for name in sorted(set(saved) | set(new)):
    # A field the saved config lacks was added to genjax after that run started.
    if name.startswith(PINNED_FIELDS) and name in saved and saved[name] != new.get(name):
      raise UserError(
          f"{name}: this workdir was trained with {saved.get(name)!r}, the config asks for"
          f" {new.get(name)!r}; use a new --workdir or the same {name}")


def save_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Writes `config.json` atomically: a crash leaves the old file or the new one, never half of one."""
  path = os.path.join(workdir, CONFIG_FILE)
  with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=workdir, prefix=f".{CONFIG_FILE}.", delete=False) as f:
    f.write(config.to_json(indent=2, sort_keys=True))
    f.flush()
    os.fsync(f.fileno())
  os.replace(f.name, path)


def evaluate_dataset(evaluate_fn, params, images_NxHxWxC: np.ndarray, key, batch_size: int) -> dict[str, float]:
  """Means over held-out images of the per-example numbers of `evaluate_fn`.

  Every call sees a batch of exactly `batch_size` (the last one padded and
  its padding dropped), so `evaluate_fn` compiles once.
  """
  n = images_NxHxWxC.shape[0]
  totals: dict[str, float] = {}
  for start in range(0, n, batch_size):
    chunk = images_NxHxWxC[start:start + batch_size]
    valid = chunk.shape[0]
    if valid < batch_size:
      chunk = np.concatenate([chunk, np.zeros((batch_size - valid, *chunk.shape[1:]), chunk.dtype)])
    out = jax.device_get(evaluate_fn(params, chunk, key, offset=start))
    for name, value_B in out.items():
      totals[name] = totals.get(name, 0.0) + float(np.sum(np.asarray(value_B, np.float64)[:valid]))
  return {name: total / n for name, total in totals.items()}


POINT_SAMPLES = 2500  # samples a 2-D mixture's metrics and picture are drawn from (VEEGAN, PacGAN)
# (label, unit) of each number of `point_metrics`.
POINT_METRICS = {"modes": ("modes covered", ""), "high_quality": ("high-quality samples", "%"),
                 "reverse_kl": ("reverse KL", "nats")}


def point_metrics(sample_fn, params, key, dataset: str) -> dict[str, float]:
  """Mode coverage of `POINT_SAMPLES` samples of any family on a 2-D mixture; {} for images.

  `sample_fn(params, key, n)` is the family's `sample`.
  """
  if dataset not in POINT_DATASETS:
    return {}
  samples = np.asarray(sample_fn(params, key, POINT_SAMPLES))
  return metrics.mode_coverage(samples, toy2d.mode_centres(dataset), toy2d.mode_std(dataset))


def point_grids(sample_fns: dict, params, key, dataset: str) -> dict:
  """Scatter pictures of samples on a 2-D mixture, one per `{name: sample_fn}`; {} for images."""
  if dataset not in POINT_DATASETS:
    return {}
  centres = toy2d.mode_centres(dataset)
  return {name: metrics.scatter(fn(params, key, POINT_SAMPLES), centres) for name, fn in sample_fns.items()}


def write_visuals(visuals_fn, params, key, eval_images: np.ndarray, directory: str,
                  suffix: str = "", extra: dict | None = None) -> list[str]:
  """Writes each grid of `visuals_fn`, and of `extra`, as `directory/<name><suffix>.png`; returns the paths.

  The pictures use 32 held-out images spread evenly over the split, which
  shows every class of a split stored in class order (mnist5k).
  """
  n = eval_images.shape[0]
  spread = np.linspace(0, n - 1, min(32, n)).round().astype(int)
  grids = jax.device_get({**visuals_fn(params, key, eval_images[spread]), **(extra or {})})
  return [images.write_png(os.path.join(directory, f"{name}{suffix}.png"), grid, scale=2)
          for name, grid in grids.items()]
