"""What train.py and sample.py share: process set-up, logging and the exit status of user errors."""

import contextlib
import ctypes
import platform
import sys

from absl import app, flags, logging

from genjax.errors import NonFiniteLossError, Preempted, UserError


@contextlib.contextmanager
def user_errors_exit():
  """Prints bad input as one line `error: ...` and exits 2 (1 for a diverged run, 0 when preempted)."""
  from genjax.data import DatasetUnavailableError  # pylint: disable=g-import-not-at-top
  try:
    yield
  except (UserError, DatasetUnavailableError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except NonFiniteLossError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  except Preempted as e:
    print(str(e), file=sys.stderr)
    sys.exit(0)


_RETAIN = flags.DEFINE_bool(
    "retain_host_memory", True,
    "glibc: keep freed host memory for reuse instead of returning it to the OS (retain_host_memory()).")

# mallopt(3) parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def retain_host_memory() -> bool:
  """Makes glibc's malloc keep freed memory for reuse; True if it took effect (Linux with glibc).

  XLA:CPU allocates a step's buffers afresh at every call. glibc serves an
  allocation over 32 MiB with its own mmap and unmaps it when freed, so each
  step writes into new pages, which the kernel faults in and zeroes one by
  one: 13,400 faults (52 MiB) and 25 ms of system time per step of the conv
  VAE on a 2-core CPU. With allocations up to 1 GiB served from the heap and
  the heap never trimmed below 2 GiB of free space, the same pages are
  reused: that step runs 12-15% faster (benchmarks/vae_speed.py). The cost
  is that the process keeps its peak host memory (the VAE's: 1.05-1.16 GiB,
  steady from step 500 to 3,500, instead of 590 MiB). It affects the whole
  process, so the library never calls it on import; train.py, sample.py and
  the benchmarks do (--retain_host_memory).
  """
  if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
    return False
  try:
    libc = ctypes.CDLL("libc.so.6")
  except OSError:
    return False
  # mallopt takes an int: 2**31 - 1 is the largest trim threshold it can hold.
  return bool(libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1))


def set_up_process() -> bool:
  """What --retain_host_memory asks of the whole process (call after flags are parsed); True if memory is kept."""
  return _RETAIN.value and retain_host_memory()


def run(main) -> None:
  """absl's app.run, with the process set up (set_up_process) and INFO logs on stderr (progress lines)."""
  def _main(argv):
    set_up_process()
    logging.set_verbosity(logging.INFO)
    logging.use_absl_handler()
    # Orbax reports every save and restore at INFO; keep its warnings only.
    logging.get_absl_handler().addFilter(
        lambda record: record.levelno >= logging.converter.STANDARD_WARNING or "/orbax/" not in record.pathname)
    return main(argv)
  app.run(_main)
