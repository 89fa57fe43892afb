"""TFDS datasets made ready to read: downloaded and prepared if they are not, or one line that says why not.

A failed download (no network, a bad checksum, a full disk) is one
DatasetUnavailableError that names the dataset, the data_dir, the reason and
what to do instead; it leaves under data_dir only what was there before it.
TFDS is imported only when a dataset is prepared, so importing this module
costs nothing.
"""

import contextlib
import os
from collections.abc import Iterator

from genjax.data.registry import OFFLINE_ALTERNATIVE, DatasetUnavailableError

# TFDS retries every URL 10 times with a 0.2 s backoff that doubles: about 200 s before a machine
# without network hears it has none. 5 retries still ride out a short outage (0 + 0.4 + ... + 3.2 s).
# TFDS 4.9 has no setting for this (DownloadConfig has none), hence the patch in `_download_retries`.
DOWNLOAD_RETRIES = 5
_PREPARE_HINT = "prepare it on a machine with network and copy it there, or " + OFFLINE_ALTERNATIVE


def _failure_reason(error: BaseException) -> str:
  """'OuterType: message' in one line, the message taken from the most specific link of the chain.

  A failed download is a requests ConnectionError whose first argument is
  urllib3's MaxRetryError, whose `reason` is the error that says what
  happened (for instance "Failed to resolve 'storage.googleapis.com'"); the
  walk stops above a bare OSError, whose "[Errno -2] ..." alone would no
  longer name the host.
  """
  detail = error
  for _ in range(8):
    links = (getattr(detail, "reason", None), detail.args[0] if detail.args else None)
    deeper = next((e for e in links if isinstance(e, BaseException)), None)
    if deeper is None or type(deeper) is OSError or type(deeper).__module__ == "socket" or not str(deeper).strip():
      break
    detail = deeper
  lines = str(detail).strip().splitlines()
  reason = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
  return reason if len(reason) <= 240 else reason[:237] + "..."


@contextlib.contextmanager
def _download_retries(retries: int) -> Iterator[None]:
  """Lowers TFDS's per-URL HTTP retries for the duration of one download_and_prepare."""
  try:
    from tensorflow_datasets.core.download import downloader  # pylint: disable=g-import-not-at-top
  except ImportError:
    downloader = None
  if downloader is None or not isinstance(getattr(downloader, "MAX_RETRIES", None), int):
    yield
    return
  saved = downloader.MAX_RETRIES
  downloader.MAX_RETRIES = min(saved, retries)
  try:
    yield
  finally:
    downloader.MAX_RETRIES = saved


@contextlib.contextmanager
def _quiet_download() -> Iterator[None]:
  """No progress bars and no per-retry HTTP warnings: a failed download is then one line, not fifty."""
  import logging  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.core.utils import tqdm_utils  # pylint: disable=g-import-not-at-top
  http_log = logging.getLogger("urllib3.connectionpool")
  saved_level, saved_bar = http_log.level, getattr(tqdm_utils, "_active", True)
  http_log.setLevel(logging.ERROR)
  tqdm_utils.display_progress_bar(False)
  try:
    yield
  finally:
    http_log.setLevel(saved_level)
    tqdm_utils.display_progress_bar(saved_bar)


def _paths_under(roots: list[str]) -> set[str]:
  """Every file and folder below (and including) each root that exists."""
  found = set()
  for root in roots:
    if os.path.lexists(root):
      found.add(root)
    for folder, dirs, files in os.walk(root):
      found.update(os.path.join(folder, n) for n in dirs + files)
  return found


def _remove_new_paths(roots: list[str], existing: set[str]) -> None:
  """Removes what a failed download left under `roots` that was not there before it (TFDS leaves
  `*.tmp.*` downloads and `*.incomplete*` folders); nothing that was there before is touched."""
  for path in sorted(_paths_under(roots) - existing, key=lambda p: p.count(os.sep), reverse=True):
    try:
      if os.path.isdir(path) and not os.path.islink(path):
        os.rmdir(path)  # only empty once its new contents are gone; a folder with old files stays
      else:
        os.remove(path)
    except OSError:
      pass


def prepared_builder(name: str, data_dir: str | None, download: bool):
  """The TFDS builder of `name`, downloaded and prepared if it was not and `download` allows.

  Raises:
    DatasetUnavailableError: not prepared in `data_dir`, and `download` is
      False or the download failed (one line: dataset, data_dir, reason, and
      what to do instead).
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(name, data_dir=data_dir)
  if builder.is_prepared():
    return builder
  where = os.fspath(builder.data_dir_root)
  if not download:
    raise DatasetUnavailableError(
        f"TFDS dataset {name!r} is not in data_dir={where} and dataset.download=False; {_PREPARE_HINT}")
  # What this attempt may write under data_dir: the dataset's folder and the download cache.
  scratch = [os.path.join(where, builder.name), os.path.join(where, "downloads")]
  existing = _paths_under(scratch) | ({where} if os.path.lexists(where) else set())
  try:
    with _download_retries(DOWNLOAD_RETRIES), _quiet_download():
      builder.download_and_prepare()
  except BaseException as e:  # an interrupt too leaves half downloads behind
    _remove_new_paths(scratch, existing)
    if where not in existing:
      with contextlib.suppress(OSError):
        os.rmdir(where)  # made for this attempt; removed only if nothing else is in it
    if not isinstance(e, Exception):
      raise
    # network, checksum, disk, missing module: all mean "not available here"
    raise DatasetUnavailableError(
        f"TFDS dataset {name!r} is not in data_dir={where} and could not be downloaded "
        f"({_failure_reason(e)}); {_PREPARE_HINT}") from e
  return builder
