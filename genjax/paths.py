"""Where a workdir's files go: a local directory, or a bucket (gs://BUCKET/PATH) for a pod to share.

Every file genjax writes or reads in a workdir goes through here. A local path takes exactly the calls it
always took (os, open, flock, rename). A gs:// path goes through etils.epath, as orbax's checkpoints and TFDS
reach the same bucket: TensorFlow's gfile where TensorFlow is installed (genjax installs it), gcsfs with
EPATH_USE_TF=false. Before this module a gs:// workdir became a local folder named 'gs:'; now a path with any
other scheme is refused in one line, and so is gs:// where the packages it needs are missing.

An object store has no append, no rename and no flock, so on a bucket:
- a write (`write_atomically`) is one upload of the whole object, which readers see whole or not at all;
- an appended file (`Appender`: metrics.jsonl, TensorBoard events) is kept in memory and the whole object is
  uploaded again at most every REMOTE_FLUSH_S seconds and when it is closed (a process killed outright loses
  at most the rows of those seconds; a resume drops the rows after its checkpoint anyway);
- the one-run-per-workdir lock (`BucketLock`) is an object created only if absent (a generation precondition)
  and renewed by its holder every HEARTBEAT_S; a holder that stopped renewing for LEASE_S (a host that died
  without releasing it) is taken over.
Only process 0 of a multi-host run writes these files (the callers check `parallel.is_chief()`); orbax
coordinates its own writes across hosts.
"""

import contextlib
import errno
import importlib.util
import io
import json
import os
import posixpath
import re
import shutil
import tempfile
import threading
import time

from absl import logging

from genjax.errors import UserError

# Schemes whose files orbax's checkpoints (tensorstore's kvstore drivers) and our files reach alike.
SCHEMES = ("gs",)
# What a gs:// workdir needs beside genjax's own dependencies, and why: (module, package).
_GS_NEEDS = (("google.cloud.storage", "google-cloud-storage"),)  # orbax removes old checkpoints with it; our lock
_INSTALL = "pip install 'genjax[gcs]'"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")

# A bucket's object may be rewritten about once a second; appended files are uploaded at most this often.
REMOTE_FLUSH_S = 5.0
# The holder of a bucket's lock renews it this often; a lock not renewed for LEASE_S is a dead run's.
HEARTBEAT_S = 60.0
LEASE_S = 300.0


def scheme(path: str) -> str | None:
  """'gs' of 'gs://bucket/run'; None for a local path."""
  match = _SCHEME.match(str(path))
  return match.group(1).lower() if match else None


def is_remote(path: str) -> bool:
  return scheme(path) is not None


def _installed(module: str) -> bool:
  try:
    return importlib.util.find_spec(module) is not None
  except ModuleNotFoundError:  # a parent package (google.cloud) is missing
    return False


def _epath_uses_tf() -> bool:
  """Whether etils.epath reaches gs:// through TensorFlow's gfile (its own rule), else through gcsfs."""
  use_tf = os.environ.get("EPATH_USE_TF", "").lower() not in ("false", "no", "f", "0")
  return use_tf and _installed("tensorflow")


def resolve(path: str, flag: str = "--workdir") -> str:
  """The absolute local path, or the remote one (no trailing '/'); UserError for a scheme genjax cannot write
  to, a gs:// path without a bucket, or missing packages (naming what to install)."""
  name = scheme(path)
  if name is None:
    return os.path.abspath(os.path.expanduser(path))
  if name not in SCHEMES:
    raise UserError(f"{flag}: {path!r}: {name}:// is not a place genjax can keep checkpoints; allowed: a local"
                    " directory or gs://BUCKET/PATH")
  rest = str(path)[len(name) + 3:].strip("/")
  if not rest:
    raise UserError(f"{flag}: {path!r} names no bucket; allowed: gs://BUCKET/PATH")
  needs = list(_GS_NEEDS) + ([] if _epath_uses_tf() else [("gcsfs", "gcsfs")])
  missing = [package for module, package in needs if not _installed(module)]
  if missing:
    raise UserError(f"{flag}: {path!r} needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'}"
                    f" not installed; {_INSTALL}")
  return f"{name}://{re.sub('/+', '/', rest)}"


def absolute(path: str) -> str:
  """`path` made absolute where it is local; a remote path as it is."""
  return str(path) if is_remote(path) else os.path.abspath(path)


def _epath(path: str):
  from etils import epath  # pylint: disable=g-import-not-at-top  (only a remote workdir pays for it)
  return epath.Path(path)


@contextlib.contextmanager
def _remote_errors(path: str):
  """TensorFlow's gfile (epath's backend where TensorFlow is installed, as it is with genjax) raises tf.errors,
  which are not OSErrors: the callers' `except OSError` (a missing checkpoint, a file that cannot be read) sees
  them as the OSError `open` would give."""
  try:
    yield
  except OSError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    if not type(e).__module__.startswith("tensorflow"):
      raise
    missing = type(e).__name__ == "NotFoundError"
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise (FileNotFoundError if missing else OSError)(errno.ENOENT if missing else errno.EIO, text, path) from e


def join(path: str, *parts: str) -> str:
  return posixpath.join(path, *parts) if is_remote(path) else os.path.join(path, *parts)


def dirname(path: str) -> str:
  return posixpath.dirname(path) if is_remote(path) else os.path.dirname(path)


def exists(path: str) -> bool:
  if is_remote(path):
    with _remote_errors(path):
      return _epath(path).exists()
  return os.path.exists(path)


def isdir(path: str) -> bool:
  """On a bucket: whether any object lies under `path` (an object store has no directories)."""
  if is_remote(path):
    with _remote_errors(path):
      return _epath(path).is_dir()
  return os.path.isdir(path)


def isfile(path: str) -> bool:
  if is_remote(path):
    with _remote_errors(path):
      return _epath(path).is_file()
  return os.path.isfile(path)


def listdir(path: str) -> list[str]:
  if is_remote(path):
    with _remote_errors(path):
      return [child.name for child in _epath(path).iterdir()]
  return os.listdir(path)


def makedirs(path: str) -> None:
  """Creates a local directory; nothing on a bucket, which has none (and gcsfs would create a missing bucket)."""
  if not is_remote(path):
    os.makedirs(path, exist_ok=True)


def remove(path: str) -> None:
  """Removes a file; FileNotFoundError when it is absent."""
  if is_remote(path):
    with _remote_errors(path):
      _epath(path).unlink()
  else:
    os.remove(path)


def rmtree(path: str) -> None:
  """Removes a directory and everything under it, ignoring errors (what is left is removed next time)."""
  if is_remote(path):
    try:
      with _remote_errors(path):
        _epath(path).rmtree(missing_ok=True)
    except OSError:
      pass
  else:
    shutil.rmtree(path, ignore_errors=True)


def read_text(path: str) -> str:
  """The text of a UTF-8 file; FileNotFoundError, OSError or UnicodeDecodeError as `open` gives them."""
  if is_remote(path):
    with _remote_errors(path):
      return _epath(path).read_bytes().decode("utf-8")
  with open(path, encoding="utf-8") as f:
    return f.read()


def read_bytes(path: str) -> bytes:
  if is_remote(path):
    with _remote_errors(path):
      return _epath(path).read_bytes()
  with open(path, "rb") as f:
    return f.read()


def new_file_mode() -> int:
  """The mode `open` gives a new file: 0o666 less the process's umask. A `tempfile.mkstemp` file is 0o600, so a
  file renamed from one needs it, or other users of a shared workdir or cache could not read it."""
  try:
    with open("/proc/self/status", encoding="ascii") as f:  # Linux: reading it does not change it
      mask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
  except (OSError, StopIteration, ValueError):
    mask = os.umask(0o022)  # elsewhere: set and put back at once
    os.umask(mask)
  return 0o666 & ~mask


def write_atomically(path: str, data: str | bytes) -> None:
  """Writes `data` to `path` so that a crash leaves the old file or the new one, never part of one.

  Locally: a temporary file beside it, then a rename. On a bucket: one upload of the whole object, which GCS
  makes visible whole or not at all.
  """
  payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
  if is_remote(path):
    with _remote_errors(path):
      _epath(path).write_bytes(payload)
    return
  directory, name = os.path.split(path)
  fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
  try:
    os.fchmod(fd, new_file_mode())
    # Unbuffered: a write that fails fails here, once (a buffered file would fail again when closed, past the
    # cleanup), and the temporary file goes.
    view = memoryview(payload)
    while view:
      view = view[os.write(fd, view):]
    os.fsync(fd)
  except OSError as e:  # a full disk: no half file left behind, and the error names the file
    os.close(fd)
    os.remove(temporary)
    raise OSError(e.errno, e.strerror, path) from e
  os.close(fd)
  os.replace(temporary, path)


class Appender:
  """A file that grows at its end: metrics.jsonl, a TensorBoard event file.

  Locally an open file (append mode, or a new file with `truncate`) whose every flush reaches the file. On a
  bucket, whose objects cannot be appended to (gcsfs's 'a' silently overwrites), the whole content is kept in
  memory, seeded with the object's, and uploaded whole at most every REMOTE_FLUSH_S seconds and on close.
  """

  def __init__(self, path: str, binary: bool = False, truncate: bool = False):
    self.path = path
    self._binary = binary
    self._remote = is_remote(path)
    if not self._remote:
      mode = ("w" if truncate else "a") + ("b" if binary else "")
      self._file = open(path, mode, encoding=None if binary else "utf-8")  # pylint: disable=consider-using-with
      return
    self._data = bytearray()
    if not truncate and exists(path):
      self._data += read_bytes(path)
    self._uploaded_at = float("-inf")  # the first write is uploaded at once
    self._dirty = False

  def _local(self, operation) -> None:
    """operation() on the open file; an OSError (a full disk) then names the file, as the OS does not."""
    try:
      operation()
    except OSError as e:
      if e.filename is not None:
        raise
      raise OSError(e.errno, e.strerror, self.path) from e

  def write(self, data) -> None:
    if not self._remote:
      self._local(lambda: self._file.write(data))
      return
    self._data += data if self._binary else data.encode("utf-8")
    self._dirty = True

  def flush(self, force: bool = False) -> None:
    if not self._remote:
      self._local(self._file.flush)
      return
    if self._dirty and (force or time.monotonic() - self._uploaded_at >= REMOTE_FLUSH_S):
      write_atomically(self.path, self._data)
      self._uploaded_at, self._dirty = time.monotonic(), False

  def close(self) -> None:
    if not self._remote:
      self._local(self._file.close)
      return
    self.flush(force=True)


class BucketLock:
  """One run per gs:// workdir: the object `path`, created only while absent, renewed by its holder.

  GCS creates an object under the precondition 'generation 0' (absent) for exactly one of two writers, and
  replaces it under 'generation N' only while it is still N: a second run is refused, and of two runs
  taking over a dead run's lock only one succeeds. The holder renews it every HEARTBEAT_S on a daemon thread;
  a lock whose last renewal (the bucket's clock, against this host's) is older than LEASE_S is a run's that
  died without releasing it (a SIGKILL, a lost host), and is taken over; its holder, if alive after all
  (a stall), finds it `lost` at its next renewal.
  """

  def __init__(self, path: str, label: dict):
    from google.api_core import exceptions  # pylint: disable=g-import-not-at-top
    from google.cloud import storage  # pylint: disable=g-import-not-at-top
    self._precondition_failed = exceptions.PreconditionFailed
    self._not_found = exceptions.NotFound
    bucket, name = path[len("gs://"):].split("/", 1)
    # project=None: no project is needed for one bucket's objects, and Application Default Credentials
    # without one would otherwise fail to construct the client.
    self._blob = storage.Client(project=None).bucket(bucket).blob(name)
    self.path, self.label = path, dict(label)
    self.holder: dict | None = None  # the other run's label, when refused
    self.lost = False  # another run took it over (this one did not renew it for LEASE_S)
    self._generation: int | None = None
    self._stop = threading.Event()
    self._writing = threading.Lock()  # the renewing thread and `announce` each write under the last generation
    self._thread: threading.Thread | None = None

  def acquire(self) -> bool:
    """Takes the lock; False (with `holder` set) when another live run holds it."""
    blob = self._blob
    current = None
    # Read first: the emulators that tests use do not all honour preconditions, and the holder is named.
    try:
      blob.reload()  # absent: NotFound, as when the holder released it between two reads
      current = blob.generation
    except self._not_found:
      pass
    if current is not None:
      try:
        self.holder = json.loads(blob.download_as_bytes(if_generation_match=current))
      except Exception:  # pylint: disable=broad-except  (replaced or unreadable: the precondition decides)
        self.holder = {}
      age = time.time() - blob.updated.timestamp()
      if age < LEASE_S:
        return False
      logging.warning("taking over the lock %s: its holder (%s) has not renewed it for %.0f s", self.path,
                      self.holder, age)
    try:
      self._upload(current or 0)
    except self._precondition_failed:  # another run created or took it between the read and the write
      return False
    self._thread = threading.Thread(target=self._renew, name="genjax-bucket-lock", daemon=True)
    self._thread.start()
    return True

  def _upload(self, generation: int | None = None) -> None:
    with self._writing:
      self._blob.upload_from_string(json.dumps({**self.label, "renewed": time.time()}) + "\n",
                                    content_type="application/json",
                                    if_generation_match=self._generation if generation is None else generation)
      self._generation = self._blob.generation

  def announce(self, label: dict) -> None:
    """Names this run in the lock (pid, host, start), for the refusal of a second run."""
    self.label = dict(label)
    self._upload()

  def _renew(self) -> None:
    while not self._stop.wait(HEARTBEAT_S):
      try:
        self._upload()
      except self._precondition_failed:  # the training loop stops at its next step (RunLock.check)
        logging.error("the lock %s was taken by another run (this one did not renew it for %.0f s)", self.path,
                      LEASE_S)
        self.lost = True
        return
      except Exception as e:  # pylint: disable=broad-except  (a network error: renewed at the next beat)
        logging.warning("could not renew the lock %s: %s", self.path, e)

  def release(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
      self._thread = None
    if self._generation is not None:
      try:
        self._blob.delete(if_generation_match=self._generation)
      except Exception:  # pylint: disable=broad-except  (gone or taken over: nothing of ours is left)
        pass
      self._generation = None


def png_bytes(picture) -> bytes:
  """A PIL picture as PNG bytes, for an upload."""
  buffer = io.BytesIO()
  picture.save(buffer, format="PNG")
  return buffer.getvalue()

