"""What train.py and sample.py share: flags, logging and user errors' exit statuses (process set-up: host.py)."""

import contextlib
import errno
import os
import re
import signal
import sys
import traceback
import logging as std_logging
from typing import NoReturn

from absl import app, flags, logging
from ml_collections import config_flags

from genjax import config_flag, host
from genjax.errors import (CheckpointWriteError, NonFiniteLossError, Preempted, UserError, chain, disk_full_cause,
                           disk_full_words, os_error_cause, os_error_words, says_disk_full)


EXIT_USER_ERROR = 2  # bad input of any kind: config, flags, workdir, data, checkpoint
EXIT_DIVERGED = 1  # a non-finite loss or state stopped the run (the last checkpoint is finite)
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report 128 + SIGINT


class StopRequested(BaseException):  # noqa: N818  (a request, as KeyboardInterrupt is)
  """SIGTERM outside the training loop (which saves and stops on its own): raised where Python is, like Ctrl-C."""


def _raise_stop_requested(signum, frame):
  del signum, frame
  raise StopRequested()


def fail(message: str, status: int = EXIT_USER_ERROR, at_once: bool = False) -> NoReturn:
  """Prints `error: message` as one line on stderr and exits with `status` (`at_once`: as `_exit_now`)."""
  line = f"error: {' '.join(str(message).split())}"
  if at_once or _joined_processes():
    _exit_now(line, status)
  print(line, file=sys.stderr, flush=True)
  sys.exit(status)


def _joined_processes() -> bool:
  """Whether this process joined a multi-process run (jax.distributed). Such a process that ends by exiting
  the interpreter waits at JAX's shutdown barrier for the others, which wait in their next collective for it:
  all of them hang for the barrier's 5 minutes, then abort. Ended at once, it closes its connections, and the
  others end within seconds: their next all-reduce loses its peer, or JAX ends them ("another task died")."""
  distributed = sys.modules.get("jax.distributed")
  return distributed is not None and distributed.is_initialized()


def _exit_now(line: str, status: int) -> NoReturn:
  """Prints `line` and ends the process at once, without finalising the interpreter.

  A stop request can leave XLA's threads running a computation or a compilation (the evaluation call it cut
  short, or start-up's compiles); finalising the interpreter under them crashed the process now and then
  (a segmentation fault, exit 139, instead of 130). By the time the request reaches here, every checkpoint
  and metric the run keeps is written and closed (the loop closes them on its way out).
  """
  print(line, file=sys.stderr, flush=True)
  sys.stdout.flush()
  os._exit(status)  # pylint: disable=protected-access


def start_jax() -> None:
  """Starts JAX's backends now, refusing in one line a platform this machine cannot start (JAX_PLATFORMS=tpu
  without a TPU), which JAX reports with a traceback at its first use."""
  import jax  # pylint: disable=g-import-not-at-top
  try:
    jax.devices()
  except Exception as e:  # pylint: disable=broad-except  (RuntimeError, or an assertion of a plugin)
    platforms = os.environ.get("JAX_PLATFORMS")
    where = f"JAX_PLATFORMS={platforms}" if platforms else "JAX"
    raise UserError(f"{where}: no backend could start ({type(e).__name__}: {config_flag.first_line(e)}); allowed: a"
                    " platform this machine has and the JAX build for it (cpu always works)") from None


@contextlib.contextmanager
def user_errors_exit():
  """Bad input or a full disk -> one line `error: ...` and exit 2; a diverged run -> 1; a stop request -> 0,
  Ctrl-C -> 130."""
  from genjax.data import DatasetUnavailableError  # pylint: disable=g-import-not-at-top
  try:
    yield
  except CheckpointWriteError as e:  # at once: orbax's threads may still hold the failed save
    fail(str(e), at_once=True)
  except (UserError, DatasetUnavailableError) as e:
    fail(str(e))
  except NonFiniteLossError as e:
    fail(str(e), EXIT_DIVERGED)
  except Preempted as e:
    _exit_now(str(e), EXIT_INTERRUPTED if e.interrupted else 0)
  except KeyboardInterrupt:
    # Ctrl-C before the loop's handler was installed (loading data, compiling) or after it was removed; in
    # sample.py, anywhere (it writes each picture and eval.json whole, through a rename).
    if os.path.basename(sys.argv[0]) == "sample.py":
      _exit_now("error: interrupted (Ctrl-C); no file was left half-written", EXIT_INTERRUPTED)
    _exit_now("error: interrupted (Ctrl-C) outside the training steps; every checkpoint on disk is complete",
              EXIT_INTERRUPTED)
  except StopRequested:
    # SIGTERM there: a request to stop, not an error; there is no step in flight to save.
    _exit_now("stopped on request (SIGTERM) outside the training steps; every checkpoint on disk is complete;"
              " run the same command to go on", 0)
  except OSError as e:
    # Any write or read the OS refused; a checkpoint that failed first says more (which step is intact).
    if e.errno is None:
      raise
    for earlier in chain(e.__context__):
      if isinstance(earlier, CheckpointWriteError):
        fail(str(earlier), at_once=True)
    full = e.errno in (errno.ENOSPC, errno.EDQUOT)
    fail(f"{disk_full_words(e) if full else os_error_words(e)}: {'free space' if full else 'fix that'}, then run"
         " the same command again; every checkpoint on disk is complete")


def define_config(default: str, help_string: str):
  """`config_flags.DEFINE_config_file('config', default, lock_config=True)`, refusing a bad file or override in one
  line.

  ml_collections reads the default file, and checks the overrides against
  it, as the flag is defined (at import of the script); a bad one exits 2 here.
  """
  try:
    return config_flags.DEFINE_config_file("config", default, help_string, lock_config=True)
  except Exception as e:  # pylint: disable=broad-except
    fail(config_flag.describe_config_error(sys.argv, default, e))


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with every error one line and exit status 2 (absl prints usage and exits 1)."""
  paths = config_flag.argv_config_paths(argv)
  if _config_flags() and len(paths) > 1:  # absl would take the last one, and drop the others unsaid
    fail(f"--config: given {len(paths)} times ({', '.join(paths)}); allowed: one config file, changed by"
         " --config.FIELD=VALUE")
  parsed, nones = config_flag.without_none_overrides(argv) if _config_flags() else (argv, [])
  try:
    rest = flags.FLAGS(parsed)
    for flag in _config_flags():
      flag.value.keys()  # ml_collections keeps a file it could not read as an object that raises on first use
      config_flag.require_config_dict(flag.value)
      if not config_flag.set_none(flag.value, nones):
        rest = flags.FLAGS(argv)  # a None for no field (or a block): refused as any such override is
  except flags.Error as e:
    if _config_flags() and isinstance(e, flags.IllegalFlagValueError) and "--config=" in str(e).split(":")[0]:
      defaults = [f.default for f in _config_flags() if isinstance(f.default, str)]
      # ml_collections's text says no why.
      fail(config_flag.describe_config_error(argv, defaults[0] if defaults else "", e))
    fail(_flag_error(e))
  except Exception as e:  # pylint: disable=broad-except  (a config file runs as Python and may raise anything)
    defaults = [f.default for f in _config_flags() if isinstance(f.default, str)]
    fail(config_flag.describe_config_error(argv, defaults[0] if defaults else "", e))
  if len(rest) > 1:
    fail(f"unexpected arguments: {' '.join(rest[1:])}; allowed: flags only (--helpshort lists them)")
  return rest


def _config_flags() -> list:
  return [flags.FLAGS["config"]] if "config" in flags.FLAGS else []


def workdir_flag(value: str | None, flag: str = "--workdir") -> str | None:
  """`value` of a --workdir flag, refused in one line when given empty (`--workdir=` from an unset variable)."""
  if value is not None and not value.strip():
    raise UserError(f"{flag}: empty; allowed: a directory name")
  return value


def _flag_error(error: flags.Error) -> str:
  text = config_flag.first_line(error)
  if isinstance(error, flags.UnrecognizedFlagError):
    near = re.search(r"Did you mean: ([\w.]+)", text)
    hint = f"did you mean --{near.group(1)}?" if near else "--helpshort lists the flags"
    return f"--{error.flagname}: unknown flag; {hint}"
  match = re.match(r"^flag (--[^=]+)=(.*?): (.*)$", text)
  if match:  # absl: "flag --x=v: why"
    flag, value, why = match.groups()
    name = flag.lstrip("-")
    if "must have a value other than None" in why:
      return f"{flag}: required; {flags.FLAGS[name].help if name in flags.FLAGS else ''}"
    kind = flags.FLAGS[name].flag_type() if name in flags.FLAGS else "a value of the flag's type"
    return f"{flag}: cannot use {value!r} ({why}); allowed: {kind}"
  return text


def _keep_log_record(record) -> bool:
  """Orbax reports every save and restore at INFO, and that a read-only manager is read-only: keep its real warnings.

  JAX reports at INFO each platform it looks for and does not find (TPU on any machine without libtpu): it
  then uses the others, so the line is noise before an error's one line.
  """
  if record.levelno < logging.converter.STANDARD_WARNING and record.getMessage().startswith(
      "Unable to initialize backend"):
    return False
  # TFDS warns about the state of its data directory on the way to the error that genjax reports in one line
  # (a dataset not prepared there); its errors still pass.
  if "/tensorflow_datasets/" in record.pathname and record.levelno < logging.converter.STANDARD_ERROR:
    return False
  # A download's retries: TFDS's threads go on retrying other files after the first failure, which genjax
  # reports in one line (a dataset that could not be downloaded).
  if "/urllib3/" in record.pathname and record.getMessage().startswith("Retrying ("):
    return False
  if "/orbax/" not in record.pathname:
    return True
  # A save the disk or the OS refused is logged with a traceback on each thread it passes (the write, the
  # commit, the finalize, the wait) before the save raises it, which genjax.checkpoint says in one line.
  error = record.exc_info[1] if record.exc_info else None
  if says_disk_full(record.getMessage()) or (error is not None and (disk_full_cause(error) or os_error_cause(error))):
    return False
  # An item whose metadata is gone is named in genjax's one-line error (an unreadable checkpoint).
  if "could not be restored. Please provide a `CheckpointHandlerRegistry`" in record.getMessage():
    return False
  return record.levelno >= logging.converter.STANDARD_WARNING and "read only" not in record.getMessage().replace(
      "_", " ")


def _not_an_unretrieved_read(record) -> bool:
  """False for asyncio's report of a task or future whose exception nobody retrieved.

  After a failed restore (the corrupt-checkpoint error, already printed as one line), orbax's other reads
  of the same checkpoint fail too; when their tasks are garbage collected, asyncio logs each one with a
  traceback ("Task exception was never retrieved"), now and then before the process exits. A save that
  found the disk full (one line too) leaves its other writes so, gathered ("_GatheringFuture exception ...").
  """
  return re.match(r"^\w+ exception was never retrieved", str(record.msg)) is None


def run(main) -> None:
  """absl's app.run, with the process set up (host.set_up_process), INFO logs on stderr (progress lines) and
  every error a user can cause as one line with exit status 2 (flags included)."""
  def _main(argv):
    host.set_up_process()
    logging.set_verbosity(logging.INFO)
    logging.use_absl_handler()
    logging.get_absl_handler().addFilter(_keep_log_record)
    try:
      return main(argv)
    except Exception:  # pylint: disable=broad-except
      if not _joined_processes():
        raise
      traceback.print_exc()  # a bug's traceback, then at once, as fail() does there
      _exit_now("error: the exception above ended this process of a multi-process run", 1)
  if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # a background job of a script keeps ignoring it
    signal.signal(signal.SIGINT, signal.default_int_handler)  # train.py's start-up handler gives way
  signal.signal(signal.SIGTERM, _raise_stop_requested)  # the loop installs its own, and gives this one back
  sys.unraisablehook = _without_closed_event_loop(sys.unraisablehook)
  std_logging.getLogger("asyncio").addFilter(_not_an_unretrieved_read)
  app.run(_main, flags_parser=_parse_flags)


def _without_closed_event_loop(hook):
  """`sys.unraisablehook` silent about asyncio's "Event loop is closed" and about coroutines closed at exit.

  After a failed restore, orbax has closed its event loop while tensorstore
  still completes the other reads; each completion calls back into the closed
  loop from a tensorstore thread, which reports the error as unraisable: a
  traceback per array around the one-line message.
  """
  def quiet(unraisable):
    if unraisable.exc_type is RuntimeError and str(unraisable.exc_value) == "Event loop is closed":
      return
    # A save that found the disk full leaves writes that never ran; the interpreter, exiting after the one-line
    # error, closes their coroutines, which can no longer import what their cleanup needs.
    if unraisable.exc_type is ImportError and "Python is likely shutting down" in str(unraisable.exc_value):
      return
    hook(unraisable)
  return quiet
