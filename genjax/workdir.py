"""What train.py and sample.py share about a workdir: its config, its directories, its lock (the evaluation they
share is `genjax.evaluation`).

The loop (`genjax.train_lib`) and the sampling entry point
(`genjax.sample_lib`) are siblings: both import this module, neither imports
the other. Nothing here compiles a step or touches a checkpoint.
"""

import errno
import fcntl
import json
import os
import socket
import tempfile
import time
from typing import Any

import ml_collections

from genjax import build, options, paths
from genjax.errors import UserError
from genjax.models import family as family_lib

CONFIG_FILE = "config.json"
# Holder of a workdir's lock (`RunLock`): written once the run's checks have passed, to name it to a second run.
HOLDER_FILE = ".genjax-run.json"


def check_workdir(workdir: str, flag: str = "--workdir") -> str:
  """The absolute path of `workdir` if it is, or can be made, a writable directory; writes nothing.

  An existing directory is proven writable with a temporary file that is
  removed at once, and so is each of its entries (checkpoints/, metrics.jsonl,
  ...), which a run writes into or replaces; a missing one needs its nearest
  existing parent to be a writable directory. A gs:// workdir (`genjax.paths`) is proven writable
  with a probe object, removed at once; another scheme is refused.
  """
  path = paths.resolve(workdir, flag)
  if paths.is_remote(path):
    return _check_remote(workdir, path, flag)
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
  if probe == path:  # found at a save, or a metrics row, after minutes of training
    for entry in sorted(os.path.join(path, name) for name in os.listdir(path)):
      if not os.access(entry, os.W_OK):
        raise UserError(f"{flag}: cannot write to {entry} (permission); fix that, then run the same command again")
  return path


def _check_remote(workdir: str, path: str, flag: str) -> str:
  """`check_workdir` of a bucket's path: an object of that name is no directory, and a probe object is written
  and removed (a missing bucket or permission is one line here, before anything is compiled)."""
  if paths.isfile(path):
    raise UserError(f"{flag}: cannot write to {workdir!r} ({path} is a file, not a directory)")
  probe = paths.join(path, f".genjax-probe-{socket.gethostname()}-{os.getpid()}")
  try:
    paths.write_atomically(probe, b"")
    paths.remove(probe)
  except Exception as e:  # pylint: disable=broad-except  (gcsfs, gfile and google-api-core each have their own)
    text = " ".join(str(e).split())[:300] or type(e).__name__
    raise UserError(f"{flag}: cannot write to {workdir!r} ({text})") from e
  return path


def prepare_workdir(workdir: str, flag: str = "--workdir") -> str:
  """Creates `workdir` (after `check_workdir`); UserError when it cannot."""
  path = check_workdir(workdir, flag)
  try:
    paths.makedirs(path)
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


def _migrated(saved: dict) -> dict:
  """`saved` in this version's layout (`genjax.options.migrate`), by the declarations of its family."""
  try:
    own = build.blocks_of(saved.get("family"))
  except UserError:
    return saved  # validation names the field
  # Other families' fields, where they are now and where they were (a GAN's old eval.iwae_k).
  others = {field for name in family_lib.names() if name != saved["family"]
            for new, option in options.every(family_lib.get(name).options).items()
            for field in (new, option.moved_from) if field}
  return options.migrate(saved, own, others)


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a workdir was trained with, validated; UserError naming the file when it is missing or bad."""
  path = paths.join(workdir, CONFIG_FILE)
  if not paths.isfile(path):
    raise UserError(f"--workdir: {workdir!r} holds no {CONFIG_FILE}; train into it first with train.py")
  try:
    saved = json.loads(paths.read_text(path))
  except json.JSONDecodeError as e:
    raise UserError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); train.py writes"
                    " this file: restore it, or train into a new --workdir") from e
  except (OSError, UnicodeDecodeError) as e:
    raise UserError(f"{path}: cannot be read ({getattr(e, 'strerror', None) or e})") from e
  if not isinstance(saved, dict):
    raise UserError(f"{path}: holds a JSON {type(saved).__name__}, not the object of a config that train.py writes")
  try:
    config = ml_collections.ConfigDict(_freeze(_migrated(saved)))
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


def pinned_fields(config) -> list[str]:
  """The dotted fields of `config` that a resume must keep: every one not declared free (genjax.options), and
  `num_steps` too under a cosine schedule, whose decay spans the run's steps."""
  declared = options.every(build.blocks_of(config["family"]))
  free = {field for field, option in declared.items() if option.free}
  if _flat(config).get("optim.schedule") == "cosine":
    free.discard("num_steps")
  return [name for name in _flat(config) if name not in free]


def check_resumable(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Refuses to resume a workdir with a config that changes what its weights were trained with (`pinned_fields`).

  A field the saved config lacks was added to genjax after that run started: `load_config` gives it the value
  the run had where the field's family declares one (`added`), and it is not compared otherwise.
  """
  if not paths.isfile(paths.join(workdir, CONFIG_FILE)):
    return
  saved_config = load_config(workdir)
  saved, new = _flat(saved_config), _flat(ml_collections.ConfigDict(_freeze(json.loads(config.to_json()))))
  for name in pinned_fields(saved_config):
    if name in new and saved[name] != new[name]:
      raise UserError(
          f"{name}: this workdir was trained with {saved.get(name)!r}, the config asks for {new.get(name)!r};"
          f" a resume keeps what the weights were trained with: use the same {name}, or a new --workdir")


def _dead_here(holder) -> bool:
  """Whether a holder label names a process of this host that no longer exists."""
  try:
    if holder["host"] != socket.gethostname():
      return False
    os.kill(int(holder["pid"]), 0)
  except ProcessLookupError:
    return True
  except (OSError, ValueError, KeyError, TypeError):
    return False
  return False


class RunLock:
  """One train.py per workdir: an exclusive lock on the workdir directory, held for the run's life.

  `flock` on the directory itself writes nothing (a refused run leaves the workdir as it was) and the kernel
  releases it when the process ends however it ends, so a SIGKILL leaves nothing stale. The holder's pid,
  host and start time go to HOLDER_FILE once its checks have passed (`announce`), so that a second run can
  name it; that file is only a label, never the lock.

  A bucket has no flock: there HOLDER_FILE is the lock itself (`genjax.paths.BucketLock`: created only while
  absent, renewed by its holder, taken over once a dead run has left it unrenewed for `paths.LEASE_S`).
  """

  def __init__(self, workdir: str):
    self.workdir = workdir
    self._fd = None
    self._bucket = None
    if paths.is_remote(workdir):
      try:
        self._bucket = paths.BucketLock(paths.join(workdir, HOLDER_FILE), self._label())
        acquired = self._bucket.acquire()
      except Exception as e:  # pylint: disable=broad-except  (credentials, permissions, network: google's errors)
        raise UserError(f"--workdir: cannot lock {workdir!r} for this run ({type(e).__name__}:"
                        f" {str(e).strip().splitlines()[0] if str(e).strip() else e!r})") from None
      if not acquired:
        raise UserError(f"--workdir: {workdir!r} is in use by {self._describe(self._bucket.holder)}; one train.py"
                        " per workdir: wait for it to finish or stop it (the same command then resumes), or use"
                        f" another --workdir (a run that died without releasing a bucket's lock is taken over once"
                        f" it has gone {paths.LEASE_S:.0f} s unrenewed)")
      return
    self._fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
    try:
      fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      os.close(self._fd)
      if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        raise UserError(f"--workdir: cannot lock {workdir!r} for this run ({e.strerror or e})") from e
      raise UserError(f"--workdir: {workdir!r} is in use by {self._holder()}; one train.py per workdir: wait for"
                      " it to finish or stop it (the same command then resumes), or use another --workdir") from None

  @staticmethod
  def _label() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}

  @staticmethod
  def _describe(holder) -> str:
    try:
      return (f"another train.py (pid {int(holder['pid'])} on {holder['host']}, started"
              f" {holder['started']})")
    except (ValueError, KeyError, TypeError):
      return "another train.py"  # still checking its input, or from a genjax that wrote no label

  def _holder(self) -> str:
    try:
      with open(os.path.join(self.workdir, HOLDER_FILE), encoding="utf-8") as f:
        holder = json.load(f)
    except (OSError, ValueError):
      return "another train.py"
    if _dead_here(holder):  # a killed run's label, not yet rewritten by the run holding the lock now
      return "another train.py (still checking its input)"
    return self._describe(holder)

  def announce(self) -> None:
    """Labels the workdir with this process (atomically), for the refusal of a second run."""
    if self._bucket is not None:
      self._bucket.announce(self._label())
      return
    write_atomically(os.path.join(self.workdir, HOLDER_FILE), json.dumps(self._label()) + "\n")

  def check(self) -> None:
    """Raises UserError where another run took the (bucket) lock over: this run must write nothing more there."""
    if self._bucket is not None and self._bucket.lost:
      raise UserError(f"--workdir: another run took over the lock of {self.workdir!r} (this one did not renew it"
                      f" for {paths.LEASE_S:.0f} s, a stall or a lost network); stopping without saving: the"
                      " workdir is that run's now, resumed from its last checkpoint")

  def release(self) -> None:
    if self._bucket is not None:
      self._bucket.release()
      self._bucket = None
      return
    if self._fd is None:
      return
    try:
      os.remove(os.path.join(self.workdir, HOLDER_FILE))
    except OSError:
      pass
    os.close(self._fd)  # closing the last descriptor releases the lock
    self._fd = None


def write_atomically(path: str, text: str) -> None:
  """Writes `text` to `path` through a temporary file and a rename: a crash leaves the old file or the new one
  (on a bucket, one upload of the whole object: `genjax.paths.write_atomically`)."""
  paths.write_atomically(path, text)


def save_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Writes `config.json` atomically (a crash leaves the old file or the new one, never half of one), with the
  version of its layout, which `load_config` reads it by."""
  saved = {options.VERSION_KEY: options.VERSION, **json.loads(config.to_json())}
  write_atomically(paths.join(workdir, CONFIG_FILE), json.dumps(saved, indent=2, sort_keys=True))
