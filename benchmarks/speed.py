"""What the speed benchmarks share: alternating timed rounds, a measured FLOP/s peak, the table.

Each contender is a `Contender`: `start()` compiles (or warms up) and runs a
first step, `run(n)` runs n more steps and returns only when they are done.
Rounds alternate the contenders, so a slow spell of the machine hits all of
them alike; the median round of each is reported.
"""

import dataclasses
import os
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from genjax import host  # noqa: E402  (its --retain_host_memory applies to both contenders: one process)


def define_flags(steps: int, batch: int):
  """The command line both speed scripts take; returns a function giving speed.main's arguments."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  rounds = flags.DEFINE_integer("rounds", 5, "Timed rounds of each contender, alternating.")
  steps_flag = flags.DEFINE_integer("steps", steps, "Steps per round.")
  batch_flag = flags.DEFINE_integer("batch", batch, "Images per step.")
  impls = flags.DEFINE_list("impls", ["fast", "xla"], "genjax conv_impl values to time ('fast', 'products', 'xla').")
  device = flags.DEFINE_enum("device", "cpu", ["cpu", "gpu"], "Where both run (gpu: JAX's GPU and CUDA PyTorch).")
  with_torch = flags.DEFINE_bool("torch", True, "Time the PyTorch reference too.")
  precision = flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16"],
                                "genjax's precision policy; PyTorch autocasts its forward passes to the same dtype.")
  torch_compile = flags.DEFINE_bool("torch_compile", False, "Also time PyTorch with torch.compile (its default mode)"
                                    " over channels-last modules and inputs.")
  profile_dir = flags.DEFINE_string("profile_dir", None, "After the rounds, write a jax.profiler trace of 3 steps of"
                                    " the first genjax contender here (TensorBoard's profile plugin, Perfetto).")
  return lambda: dict(rounds=rounds.value, steps=steps_flag.value, batch=batch_flag.value, impls=impls.value,
                      device=device.value, with_torch=with_torch.value, precision=precision.value,
                      torch_compile=torch_compile.value, profile_dir=profile_dir.value)


@dataclasses.dataclass
class Contender:
  name: str
  start: Callable[[], None]
  run: Callable[[int], None]
  flops_per_step: float | None = None  # the model's FLOPs (XLA's count of the reference layers)
  compile_s: float | None = None  # genjax: tracing and compiling the step (the first call's extra time)


SETTLE_S = 1.0  # idle time before each timed run


def timed_rounds(contenders: list[Contender], rounds: int, steps: int, batch: int) -> dict[str, list[float]]:
  """images/s of every round of every contender, the contenders alternating within each round.

  Each timed run starts after `SETTLE_S` of idle: the thread pools of the
  contender before (PyTorch's OpenMP, XLA's Eigen) spin on the cores for a
  while after their last op. Measured on the 2-core CPU, back to back without
  the pause: genjax 15.2 and PyTorch 19.4 img/s; with it: 17.3 and 20.3.
  """
  for c in contenders:
    t0 = time.perf_counter()
    c.start()
    print(f"  {c.name}: first step {time.perf_counter() - t0:.1f} s", flush=True)
  rates = {c.name: [] for c in contenders}
  for r in range(rounds):
    for c in contenders:
      time.sleep(SETTLE_S)
      t0 = time.perf_counter()
      c.run(steps)
      rates[c.name].append(steps * batch / (time.perf_counter() - t0))
    print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{n} {v[-1]:.1f}" for n, v in rates.items()), flush=True)
  return rates


def matmul_peak(device: str = "cpu", repeats: int = 10, dtype: str = "float32") -> dict[str, float]:
  """Best GFLOP/s of a square matrix product of `dtype`, in JAX and in PyTorch, at each one's default precision.

  On a GPU both float32 defaults may use TF32 tensor cores (JAX's matmuls,
  PyTorch's convolutions), so the best of the two is the peak the steps are
  held to; under bfloat16 the peak is bfloat16's.
  """
  import jax  # pylint: disable=g-import-not-at-top
  size = 2048 if device == "cpu" else 8192
  a = jax.random.normal(jax.random.key(0), (size, size), dtype)
  f = jax.jit(lambda a: a @ a)
  f(a).block_until_ready()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    f(a).block_until_ready()
    times.append(time.perf_counter() - t0)
  best = {"jax": 2 * size**3 / min(times) / 1e9}
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return best
  dev = torch.device("cuda" if device == "gpu" else "cpu")
  t = torch.randn(size, size, device=dev, dtype=getattr(torch, dtype))
  times = []
  for _ in range(repeats + 1):
    t0 = time.perf_counter()
    t @ t
    if dev.type == "cuda":
      torch.cuda.synchronize()
    times.append(time.perf_counter() - t0)
  best["torch"] = 2 * size**3 / min(times[1:]) / 1e9
  return best


def report(title: str, contenders: list[Contender], rates: dict[str, list[float]], batch: int,
           peak: float | None, reference: str) -> None:
  """Median images/s, the ratio to `reference`, achieved GFLOP/s and the fraction of `peak`."""
  print(f"\n{title}")
  ref = statistics.median(rates[reference])
  width = max(24, *(len(c.name) for c in contenders))
  print(f"{'':{width}s} {'images/s':>9s} {'(min-max)':>13s} {'ratio':>10s} {'GFLOP/s':>8s} {'of peak':>8s}"
        f" {'compile':>8s}")
  flops = next((c.flops_per_step for c in contenders if c.flops_per_step), None)
  for c in contenders:
    v = rates[c.name]
    med = statistics.median(v)
    line = f"{c.name:{width}s} {med:9.1f} {min(v):6.1f}-{max(v):<6.1f} {med / ref:10.2f}"
    if flops:
      gflops = flops * med / batch / 1e9
      line += f" {gflops:8.1f}" + (f" {gflops / peak:8.0%}" if peak else f" {'':8s}")
    line += f" {c.compile_s:7.1f}s" if c.compile_s is not None else ""
    print(line)
  print(f"(ratio: images/s over {reference}'s)")
  if flops:
    print(f"(one step: {flops / 1e9:.1f} GFLOP, XLA's count of the model; peak: the best matmul of the title"
          f" {peak:.0f} GFLOP/s)" if peak else "")


def xla_flops(fn, *args) -> float:
  """FLOPs of one call of `fn(*args)`, as XLA:CPU counts them, whatever device the benchmark runs on.

  Counted for the CPU on purpose: compiled for a GPU the convolutions are cuDNN
  custom calls, which XLA's count leaves out (it gave 0.7 of 138 GFLOP).
  """
  import jax  # pylint: disable=g-import-not-at-top
  with jax.default_device(jax.devices("cpu")[0]):
    lowered = jax.jit(fn).lower(*args)
    analysis = lowered.cost_analysis() or lowered.compile().cost_analysis()
  if isinstance(analysis, list):
    analysis = analysis[0]
  return float(analysis["flops"])


def synthetic_images(batch: int, shape, seed: int = 0) -> np.ndarray:
  """uint8 images, the same for every contender."""
  return np.random.default_rng(seed).integers(0, 256, (batch, *shape), dtype=np.uint8)


def genjax_contender(name: str, family, images: np.ndarray, flops: float | None) -> Contender:
  """genjax's compiled train step of `family` on one device, as train.py runs it (state donated, keys on device)."""
  import jax  # pylint: disable=g-import-not-at-top
  from genjax import parallel  # pylint: disable=g-import-not-at-top
  from genjax import random as grandom  # pylint: disable=g-import-not-at-top

  par = parallel.DataParallel("jit", 1)
  keys = grandom.streams(0)
  box = {"state": par.to_run(par.init(family.init, keys.init)), "step": 0}
  batch = par.put_batch({"image": images})
  step_key = par.step_keys(keys.train)
  contender = Contender(name, None, None, flops)

  def run(n):
    state = box["state"]
    for _ in range(n):
      state, metrics = box["fn"](state, batch, step_key(box["step"]))
      box["step"] += 1
    jax.block_until_ready((state, metrics))
    box["state"] = state

  def start():
    t0 = time.perf_counter()
    box["fn"] = par.compile_step(family.train_step).lower(box["state"], batch, step_key(0)).compile()
    contender.compile_s = time.perf_counter() - t0
    run(1)

  contender.start, contender.run = start, run
  return contender


def step_flops(family, images: np.ndarray) -> float:
  """XLA's FLOP count of one train step of `family` (build it with conv_impl='xla': the model's own arithmetic)."""
  import jax  # pylint: disable=g-import-not-at-top
  from genjax import random as grandom  # pylint: disable=g-import-not-at-top
  keys = grandom.streams(0)
  state = jax.eval_shape(family.init, keys.init)
  return xla_flops(family.train_step, state, {"image": images}, keys.train)


def torch_options(dev, precision: str, compiled: bool):
  """(prepare, autocast) for a PyTorch contender: where `compiled`, `prepare(module_or_input)` gives it
  channels-last and, for a module, compiled (else it is the identity); `autocast()` is the context of the
  forward passes, bfloat16 autocast under 'bfloat16' (weights and optimizer state stay float32, as genjax's
  policy keeps them)."""
  import contextlib  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top

  def prepare(x):
    if not compiled:
      return x
    if isinstance(x, torch.nn.Module):
      return torch.compile(x.to(memory_format=torch.channels_last))
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x

  def autocast():
    if precision == "float32":
      return contextlib.nullcontext()
    return torch.autocast(dev.type, dtype=getattr(torch, precision))

  return prepare, autocast


def named(name: str, precision: str) -> str:
  """A contender's name, with the precision where it is not float32."""
  return name if precision == "float32" else f"{name} {precision}"


def torch_name(precision: str, compiled: bool) -> str:
  import torch  # pylint: disable=g-import-not-at-top
  return named(f"PyTorch {torch.__version__}" + (" compiled" if compiled else ""), precision)


def main(title: str, make_config, torch_contender, image_shape, *, rounds: int, steps: int, batch: int,
         impls: list[str], device: str, with_torch: bool, precision: str = "float32", torch_compile: bool = False,
         profile_dir: str | None = None) -> None:
  """Times genjax (each conv_impl, under `precision`) and PyTorch (eager, and compiled with `torch_compile`)
  alternately and prints the table, its ratios to eager PyTorch."""
  if not impls and not with_torch:
    from absl import app  # pylint: disable=g-import-not-at-top
    raise app.UsageError("nothing to time: --impls is empty and --notorch")
  retained = host.set_up_process()
  import jax  # pylint: disable=g-import-not-at-top
  from genjax import build  # pylint: disable=g-import-not-at-top
  print(f"JAX {jax.__version__} on {jax.devices()[0].device_kind} ({jax.default_backend()}),"
        f" {os.cpu_count()} CPU threads, freed host memory {'retained' if retained else 'returned'}"
        " (--retain_host_memory, both contenders)", flush=True)
  images = synthetic_images(batch, image_shape)
  flops = step_flops(build.family(make_config(batch, "xla")), images)

  def genjax_config(impl):
    config = make_config(batch, impl)
    config.precision = precision
    return config

  contenders = [genjax_contender(named(f"genjax conv_impl={impl}", precision), build.family(genjax_config(impl)),
                                 images, flops) for impl in impls]
  reference = contenders[-1].name if contenders else None
  if with_torch:
    import torch  # pylint: disable=g-import-not-at-top
    torch.set_num_threads(os.cpu_count())  # XLA's pool has a thread per logical CPU; PyTorch's default is per core
    contenders.append(torch_contender(images, device, precision, compiled=False))
    reference = contenders[-1].name
    if torch_compile:
      contenders.append(torch_contender(images, device, precision, compiled=True))
  peak = matmul_peak(device, dtype=precision)
  rates = timed_rounds(contenders, rounds, steps, batch)
  title += (f"; median of {rounds} rounds of {steps} steps"
            + f"; {precision} matmul peak {', '.join(f'{k} {v:.0f}' for k, v in peak.items())} GFLOP/s"
            + (" (default precisions: JAX's matmuls and PyTorch's convolutions use TF32)"
               if device == "gpu" and precision == "float32" else ""))
  report(title, contenders, rates, batch, max(peak.values()) if peak else None, reference)
  if profile_dir:
    with jax.profiler.trace(profile_dir):
      contenders[0].run(3)
    print(f"profile of 3 steps of {contenders[0].name}: {profile_dir}")
