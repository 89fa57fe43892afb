"""What train.py and sample.py share: process set-up, logging and the exit status of user errors."""

import contextlib
import ctypes
import errno
import importlib.metadata
import os
import platform
import re
import signal
import sys
import logging as std_logging
from typing import NoReturn

from absl import app, flags, logging
from ml_collections import config_flags

from genjax import config_flag
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
  if at_once:
    _exit_now(line, status)
  print(line, file=sys.stderr, flush=True)
  sys.exit(status)


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
  try:
    rest = flags.FLAGS(argv)
    for flag in _config_flags():
      flag.value.keys()  # ml_collections keeps a file it could not read as an object that raises on first use
      config_flag.require_config_dict(flag.value)
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


_RETAIN = flags.DEFINE_bool(
    "retain_host_memory", True,
    "glibc: keep freed host memory for reuse instead of returning it to the OS (retain_host_memory()).")

# mallopt(3) parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8


def retain_host_memory() -> bool:
  """Makes glibc's malloc keep freed memory for reuse; True if it took effect (Linux with glibc).

  XLA:CPU allocates a step's buffers afresh at every call. glibc serves an
  allocation over 32 MiB with its own mmap and unmaps it when freed, so each
  step writes into new pages, which the kernel faults in and zeroes one by
  one, in system time. With allocations up to 1 GiB served from the heap and
  the heap never trimmed below 2 GiB of free space, the same pages are
  reused, and the step is faster (benchmarks/vae_speed.py measures both;
  docs/speed.md has the figures). The cost is that the process keeps its
  peak host memory rather than returning it between steps. It affects the whole
  process, so the library never calls it on import; train.py, sample.py and
  the benchmarks do (--retain_host_memory).
  """
  # mallopt takes an int: 2**31 - 1 is the largest trim threshold it can hold.
  return _mallopt((_M_MMAP_THRESHOLD, 1 << 30), (_M_TRIM_THRESHOLD, (1 << 31) - 1))


def _mallopt(*settings: tuple[int, int]) -> bool:
  """glibc's mallopt(param, value) for each setting; True if all took (False off Linux with glibc)."""
  if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
    return False
  try:
    libc = ctypes.CDLL("libc.so.6")
  except OSError:
    return False
  return all([bool(libc.mallopt(param, value)) for param, value in settings])


_SINGLE_ARENA = flags.DEFINE_bool(
    "single_malloc_arena", False,
    "glibc: one malloc arena for all threads, so that XLA's threads reuse freed buffers over 64 MiB too"
    " (single_malloc_arena(); faster for large activations, slower for small nets).")


def single_malloc_arena() -> bool:
  """Makes glibc's malloc serve every thread from one arena; True if it took effect (Linux with glibc).

  XLA runs its programs on threads of its own, and glibc gives each thread an
  arena whose heaps hold at most 64 MiB: it maps every larger buffer afresh
  for such a thread and unmaps it when freed, whatever retain_host_memory()
  set, so a step whose buffers are that large (im2col patches of a 64x64
  DCGAN, a PixelCNN's stacks) faults all their pages in at every call. With
  one arena they are reused, but the threads then wait on one lock for every
  allocation, which costs more than it saves in small nets' steps
  (docs/speed.md has both). Call it before any thread has allocated: glibc
  fixes its arena limit once a process has more than 8 arenas. Process-wide,
  so only the entry points call it, on --single_malloc_arena.
  """
  return _mallopt((_M_ARENA_MAX, 1))


_YNN_CONVOLUTIONS = flags.DEFINE_bool(
    "ynn_convolutions", False,
    "XLA:CPU: let YNNPACK run the convolutions, as jaxlib does by default (False: XLA's own; own_convolutions()).")

# XLA:CPU's compile option listing what it hands to YNNPACK, and the list without convolutions.
YNN_OPTION = "xla_cpu_experimental_ynn_fusion_type"
YNN_WITHOUT_CONVOLUTIONS = "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"
_YNN_JAXLIBS = ((0, 10), (0, 12))  # the jaxlib releases known to take the option and its values: [from, to)


def _jaxlib_version() -> tuple[int, ...]:
  return tuple(int(p) for p in re.findall(r"\d+", importlib.metadata.version("jaxlib"))[:2])


def with_own_convolutions(xla_flags: str) -> str:
  """`xla_flags` (XLA_FLAGS' value) with YNNPACK's fusions limited to dots and reductions, unless it names them."""
  if f"--{YNN_OPTION}=" in xla_flags:
    return xla_flags  # the user's own choice
  return f"{xla_flags} --{YNN_OPTION}={YNN_WITHOUT_CONVOLUTIONS}".strip()


def own_convolutions() -> bool:
  """Makes XLA:CPU run convolutions itself rather than through YNNPACK; True if it took effect.

  jaxlib's XLA:CPU hands convolutions, dots and reductions to YNNPACK. Where
  measured, XLA's own 3x3 convolutions are faster than YNNPACK's, the diffusion
  U-Net trains and samples faster with them, and the DCGAN and the VAE train
  about as fast (benchmarks/cpu_fusions.py and conv_reproducer.py time both;
  docs/speed.md has the figures and the machine). XLA reads XLA_FLAGS when its
  first backend starts, so this sets them for the whole process and does
  nothing once a backend runs, where XLA_FLAGS already names the option, or
  with a jaxlib outside `_YNN_JAXLIBS` (XLA aborts on a flag it does not
  know). Like retain_host_memory, the library never calls it on import:
  train.py, sample.py and the benchmarks do.
  """
  if not _YNN_JAXLIBS[0] <= _jaxlib_version() < _YNN_JAXLIBS[1]:
    return False
  try:
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
    if xla_bridge.backends_are_initialized():
      return False
  except (ImportError, AttributeError):  # JAX's private module moved: set the flags, as before a backend starts
    pass
  before = os.environ.get("XLA_FLAGS", "")
  os.environ["XLA_FLAGS"] = with_own_convolutions(before)
  return os.environ["XLA_FLAGS"] != before


_UNROLL_THREEFRY = flags.DEFINE_bool(
    "unroll_threefry", True,
    "XLA:CPU: compute random bits with threefry's rounds unrolled, as on a GPU (the same bits; unroll_threefry()).")


def unroll_threefry(unrolled: bool = True) -> bool:
  """Lowers threefry2x32 on the CPU with its 20 rounds unrolled, as JAX does on a GPU (False: JAX's CPU loop
  again); True if it took effect.

  On a CPU, JAX runs threefry's rounds in a loop of five (to compile faster),
  and XLA copies both words of the counter array from one iteration to the
  next: dropout's masks in the diffusion U-Net's step cost half as much again
  as PyTorch's bernoulli_. Unrolled, each draw is one fusion: the same bits,
  a faster step, a slightly longer compile (benchmarks/cpu_fusions.py times
  both; docs/speed.md has the figures). It changes a lowering rule of the
  whole process through JAX's private modules, so the library never calls it
  on import, and where those modules have moved it does nothing.
  """
  try:
    from jax._src.interpreters import mlir  # pylint: disable=g-import-not-at-top
    from jax._src.random import threefry2x32  # pylint: disable=g-import-not-at-top
    rules = threefry2x32._threefry2x32_lowering_rule, threefry2x32._threefry2x32_cpu_lowering_rule  # noqa: SLF001
    primitive, rule = threefry2x32.threefry2x32_p, rules[0] if unrolled else rules[1]
  except (ImportError, AttributeError):
    return False
  mlir.register_lowering(primitive, rule, platform="cpu")
  return True


def set_up_process() -> bool:
  """What --retain_host_memory, --single_malloc_arena, --ynn_convolutions and --unroll_threefry ask of the whole
  process (call after flags are parsed, before JAX starts a backend); True if memory is kept."""
  if not _YNN_CONVOLUTIONS.value:
    own_convolutions()
  if _UNROLL_THREEFRY.value:
    unroll_threefry()
  if _SINGLE_ARENA.value:
    single_malloc_arena()
  return _RETAIN.value and retain_host_memory()


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
  """absl's app.run, with the process set up (set_up_process), INFO logs on stderr (progress lines) and
  every error a user can cause as one line with exit status 2 (flags included)."""
  def _main(argv):
    set_up_process()
    logging.set_verbosity(logging.INFO)
    logging.use_absl_handler()
    logging.get_absl_handler().addFilter(_keep_log_record)
    return main(argv)
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
