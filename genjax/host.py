"""What the entry points set for the whole process before JAX starts: the host's allocator, XLA:CPU's options
and how JAX dispatches CPU programs.

Each setting changes the whole process (glibc's malloc, XLA_FLAGS, a lowering rule, a JAX option), so the
library never applies one on import: train.py, sample.py and the benchmarks call `set_up_process` after their
flags are parsed, and each setting has a flag to turn it off. docs/speed.md has what each was measured to do.
"""

import ctypes
import importlib.metadata
import os
import platform
import re

from absl import flags

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
  one, in system time. With allocations up to 2 GiB served from the heap and
  the heap never trimmed below 2 GiB of free space, the same pages are
  reused, and the step is faster (benchmarks/vae_speed.py measures both;
  docs/speed.md has the figures). The cost is that the process keeps its
  peak host memory rather than returning it between steps. It affects the whole
  process, so the library never calls it on import; train.py, sample.py and
  the benchmarks do (--retain_host_memory).
  """
  # mallopt takes an int: 2**31 - 1 is the largest threshold it can hold. (A U-Net step's temporaries can pass
  # 1 GiB: the diffusion_speed.py U-Net's reach 955 MB at batch 128.)
  largest = (1 << 31) - 1
  return _mallopt((_M_MMAP_THRESHOLD, largest), (_M_TRIM_THRESHOLD, largest))


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
    " (single_malloc_arena(); for programs over several CPU devices, or with --cpu_async_dispatch).")


def single_malloc_arena() -> bool:
  """Makes glibc's malloc serve every thread from one arena; True if it took effect (Linux with glibc).

  Where XLA runs a program on a thread of its own (a program over several CPU
  devices, or any with --cpu_async_dispatch; inline_cpu_dispatch() keeps the
  others in the calling thread), glibc gives that thread an arena whose heaps
  hold at most 64 MiB: it maps every larger buffer afresh
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
  if _backends_started():
    return False
  before = os.environ.get("XLA_FLAGS", "")
  os.environ["XLA_FLAGS"] = with_own_convolutions(before)
  return os.environ["XLA_FLAGS"] != before


def _backends_started() -> bool:
  """Whether JAX has started a backend (False where its private module moved: as before one starts)."""
  try:
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
    return xla_bridge.backends_are_initialized()
  except (ImportError, AttributeError):
    return False


_ASYNC_DISPATCH = flags.DEFINE_bool(
    "cpu_async_dispatch", False,
    "XLA:CPU: hand each program to a thread of XLA's, as JAX does by default, rather than run it in the calling"
    " thread (inline_cpu_dispatch()).")


def inline_cpu_dispatch() -> bool:
  """Makes JAX run a program on one CPU device in the thread that calls it; True if it took effect.

  By default JAX hands each CPU program to a thread of XLA's, which allocates
  the program's temporaries (one block, 224 MB for the diffusion U-Net's
  step at batch 32) from its own glibc arena. Such an arena's heaps hold at
  most 64 MiB, so a larger block is mapped afresh at every call and faulted
  in page by page, whatever retain_host_memory() set. Run in the calling
  thread, the block comes from the main arena, which retain_host_memory()
  keeps, and every step reuses the same pages. Python then waits for each
  CPU step rather than queuing the next, which costs little on a CPU, whose
  cores the host's work shares anyway. Programs over several devices stay
  asynchronous (JAX's rule), and GPUs and TPUs are not affected. Set before
  JAX starts its CPU backend: it does nothing after, or with a JAX without
  the option.
  """
  import jax  # pylint: disable=g-import-not-at-top
  if "jax_cpu_enable_async_dispatch" not in jax.config.values or _backends_started():
    return False
  jax.config.update("jax_cpu_enable_async_dispatch", False)
  return True


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
  """What --retain_host_memory, --single_malloc_arena, --ynn_convolutions, --unroll_threefry and
  --cpu_async_dispatch ask of the whole process (call after flags are parsed, before JAX starts a backend); True
  if memory is kept."""
  if not _YNN_CONVOLUTIONS.value:
    own_convolutions()
  if _UNROLL_THREEFRY.value:
    unroll_threefry()
  if _SINGLE_ARENA.value:
    single_malloc_arena()
  if not _ASYNC_DISPATCH.value:
    inline_cpu_dispatch()
  return _RETAIN.value and retain_host_memory()
