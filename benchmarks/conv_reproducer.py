"""Standalone reproducer: XLA:CPU's 3x3 convolutions (forward, input gradient, kernel gradient) against PyTorch's.

Command: python benchmarks/conv_reproducer.py [--shapes=128x28x28x32x32,128x14x14x64x64,128x7x7x64x64
         --rounds=5 --calls=3 --torch_layouts=channels_last,nchw --settle_s=0.5 --hlo --noynn]

Needs only jax, numpy and absl (PyTorch, the CPU build, for the comparison; --no_torch
times JAX alone), so that it can be handed as it is to XLA's maintainers. Each
shape is N x H x W x C_in x C_out: a 3x3 convolution, stride 1, 'SAME' padding,
float32, no bias, the shapes of a DDPM U-Net's residual blocks.

JAX: `lax.conv_general_dilated` in NHWC / HWIO, three functions jitted
separately: the forward pass, the gradient with respect to the input and the
gradient with respect to the kernel, each from `jax.vjp` of the convolution in
that one argument (XLA drops the unused forward pass: --hlo prints the one
HLO each compiles to). With --ynn (the default) each is compiled twice: as
jaxlib compiles it (XLA:CPU hands such convolutions to YNNPACK, a `__ynn_fusion`)
and with the compile option xla_cpu_experimental_ynn_fusion_type="" (no library
fusions: XLA's own convolution). PyTorch: `torch.nn.functional.conv2d` under
no_grad, and `aten.convolution_backward` with only the one gradient asked for
(the call autograd makes, on the real input and weight tensors), in
channels_last and in contiguous NCHW, with torch.set_num_threads(os.cpu_count()).
Before anything is timed, each JAX result is checked against PyTorch's.

The contenders alternate within each round, each after --settle_s of idle (the
thread pools of the one before spin for a while after their last op); the table
gives the median milliseconds of a call over the rounds, the GFLOP/s at
2 N H W C_in C_out 9 FLOPs per pass, and JAX's time over PyTorch's.
"""

import argparse
import os
import re
import statistics
import subprocess
import time

import jax
from absl import app, flags
from jax import lax
import numpy as np

PASSES = ("forward", "input grad", "kernel grad")
DIMENSIONS = ("NHWC", "HWIO", "NHWC")
SHORT = {"channels_last": "cl", "nchw": "nchw"}  # PyTorch's memory formats, as the table's columns name them


_SHAPES = flags.DEFINE_string("shapes", "128x28x28x32x32,128x14x14x64x64,128x7x7x64x64",
                              "Comma-separated N x H x W x C_in x C_out of each 3x3 convolution (the defaults:"
                              " the mnist5k U-Net's residual blocks).")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Timed rounds, the contenders alternating.")
_CALLS = flags.DEFINE_integer("calls", 3, "Calls per contender per round.")
_SETTLE_S = flags.DEFINE_float("settle_s", 0.5, "Idle seconds before each timed run.")
_TORCH_LAYOUTS = flags.DEFINE_string("torch_layouts", "channels_last,nchw", "PyTorch memory formats to time.")
_NO_TORCH = flags.DEFINE_bool("no_torch", False, "Time JAX alone.")
_HLO = flags.DEFINE_bool("hlo", False, "Print the HLO XLA compiles for each pass.")
_YNN = flags.DEFINE_bool("ynn", True, "Also time each pass compiled without YNNPACK's fusions ('own').")
NO_YNN = {"xla_cpu_experimental_ynn_fusion_type": ""}  # XLA:CPU's compile option: no library fusions


def parse_shape(text: str) -> tuple[int, ...]:
  shape = tuple(int(d) for d in text.lower().split("x"))
  if len(shape) != 5:
    raise ValueError(f"--shapes: {text!r} is not N x H x W x C_in x C_out")
  return shape


def cpu_model() -> str:
  try:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
  except (OSError, subprocess.CalledProcessError, StopIteration):
    return "? (no lscpu model name)"


# ---------------------------------------------------------------------------------------------------- JAX


def conv(x, kernel):
  return lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=DIMENSIONS)


def jax_passes() -> dict:
  """Each pass jitted on its own, as (x, kernel, cotangent) -> result: what a training step asks of XLA."""
  return {
      "forward": jax.jit(lambda x, k, g: conv(x, k)),
      "input grad": jax.jit(lambda x, k, g: jax.vjp(lambda x: conv(x, k), x)[1](g)[0]),
      "kernel grad": jax.jit(lambda x, k, g: jax.vjp(lambda k: conv(x, k), k)[1](g)[0]),
  }


def hlo_summary(compiled) -> list[str]:
  """The compiled module's entry computation and its convolution instructions (they sit in fusions), metadata
  cut: what XLA runs for the pass, the transposing copies around the convolution included."""
  entry, convolutions, in_entry = [], [], False
  for line in compiled.as_text().splitlines():
    line = re.sub(r", metadata=\{[^}]*\}", "", line)
    if line.startswith("ENTRY"):
      in_entry = True
    if in_entry:
      entry.append(line)
      in_entry = not line.startswith("}")
    elif " convolution(" in line:
      convolutions.append(line.strip())
  return convolutions + entry


# -------------------------------------------------------------------------------------------------- PyTorch


def torch_passes(torch, layout: str, x_nhwc: np.ndarray, kernel_hwio: np.ndarray, cotangent_nhwc: np.ndarray):
  """PyTorch's three passes on tensors in `layout`; each returns its result as NHWC / HWIO numpy."""
  fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
  to_nchw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))  # noqa: E731
  x = to_nchw(x_nhwc).contiguous(memory_format=fmt)
  # Weight in the input's format, as nn.Conv2d.to(memory_format=...) leaves it.
  w = torch.from_numpy(np.ascontiguousarray(kernel_hwio.transpose(3, 2, 0, 1))).contiguous(memory_format=fmt)
  g = to_nchw(cotangent_nhwc).contiguous(memory_format=fmt)
  pad = kernel_hwio.shape[0] // 2
  backward = torch.ops.aten.convolution_backward

  def forward():
    with torch.no_grad():
      return torch.nn.functional.conv2d(x, w, padding=pad)

  def input_grad():
    return backward(g, x, w, None, [1, 1], [pad, pad], [1, 1], False, [0, 0], 1, [True, False, False])[0]

  def kernel_grad():
    return backward(g, x, w, None, [1, 1], [pad, pad], [1, 1], False, [0, 0], 1, [False, True, False])[1]

  as_nhwc = lambda t: t.numpy().transpose(0, 2, 3, 1)  # noqa: E731
  as_hwio = lambda t: t.numpy().transpose(2, 3, 1, 0)  # noqa: E731
  return {"forward": (forward, as_nhwc), "input grad": (input_grad, as_nhwc), "kernel grad": (kernel_grad, as_hwio)}


# ------------------------------------------------------------------------------------------------- the run


def check_close(name: str, got: np.ndarray, want: np.ndarray) -> float:
  """Max |got - want| / max |want|; fails above float32 rounding of sums of up to N H W terms."""
  error = float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-30))
  np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * float(np.max(np.abs(want))), err_msg=name)
  return error


def time_rounds(contenders: dict, rounds: int, calls: int, settle_s: float) -> dict[str, list[float]]:
  """Seconds per call of every round of every contender, the contenders alternating within each round."""
  times = {name: [] for name in contenders}
  for _ in range(rounds):
    for name, run in contenders.items():
      time.sleep(settle_s)
      t0 = time.perf_counter()
      for _ in range(calls):
        run()
      times[name].append((time.perf_counter() - t0) / calls)
  return times


def main(argv):
  del argv
  args = argparse.Namespace(shapes=_SHAPES.value, rounds=_ROUNDS.value, calls=_CALLS.value, settle_s=_SETTLE_S.value,
                            torch_layouts=_TORCH_LAYOUTS.value, no_torch=_NO_TORCH.value, hlo=_HLO.value)
  shapes = [parse_shape(s) for s in args.shapes.split(",") if s]
  layouts = [] if args.no_torch else [s for s in args.torch_layouts.split(",") if s]
  torch = None
  if layouts:
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError:
      print("PyTorch is not installed: JAX alone.")
      layouts = []
  for layout in layouts:
    if layout not in ("channels_last", "nchw"):
      raise ValueError(f"--torch_layouts: unknown {layout!r}; allowed: channels_last, nchw")
  print(f"CPU {cpu_model()}, {os.cpu_count()} logical cores")
  print(f"jax {jax.__version__}, jaxlib {jax.lib.__version__}, device {jax.devices()[0].device_kind};"
        f" XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
  if torch is not None:
    torch.set_num_threads(os.cpu_count())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, mkldnn"
          f" {torch.backends.mkldnn.is_available()}")
  print(f"float32, 3x3, stride 1, SAME; median ms per call of {args.rounds} alternating rounds of"
        f" {args.calls} calls")
  rng = np.random.default_rng(0)
  for n, h, w, c_in, c_out in shapes:
    x = rng.standard_normal((n, h, w, c_in), np.float32)
    kernel = (rng.standard_normal((3, 3, c_in, c_out), np.float32) / np.sqrt(9 * c_in)).astype(np.float32)
    cotangent = rng.standard_normal((n, h, w, c_out), np.float32)
    flops = 2 * n * h * w * c_in * c_out * 9
    args_jax = tuple(jax.device_put(a) for a in (x, kernel, cotangent))
    contenders, results = {}, {}
    compiled = {}
    for name, fn in jax_passes().items():
      compiled[name] = fn.lower(*args_jax).compile()
      results[("jax", name)] = np.asarray(compiled[name](*args_jax))
      contenders[("jax", name)] = (lambda c: lambda: jax.block_until_ready(c(*args_jax)))(compiled[name])
      if _YNN.value:
        own = fn.lower(*args_jax).compile(compiler_options=NO_YNN)
        check_close(f"own {name}", np.asarray(own(*args_jax)), results[("jax", name)])
        contenders[("own", name)] = (lambda c: lambda: jax.block_until_ready(c(*args_jax)))(own)
    errors = {}
    for layout in layouts:
      for name, (run, to_numpy) in torch_passes(torch, layout, x, kernel, cotangent).items():
        want = to_numpy(run())
        errors[(layout, name)] = check_close(f"{layout} {name}", results[("jax", name)], want)
        contenders[(layout, name)] = run
    print(f"\n{n}x{h}x{w}x{c_in} -> {c_out}: {flops / 1e9:.2f} GFLOP per pass", flush=True)
    if errors:
      print("  JAX against PyTorch, max |jax - torch| / max |torch|: "
            + ", ".join(f"{layout} {name} {e:.1e}" for (layout, name), e in errors.items()))
    if args.hlo:
      for name, c in compiled.items():
        print(f"  XLA {name}:")
        for line in hlo_summary(c):
          print(f"    {line}")
    for c in contenders.values():  # warm: oneDNN builds its primitives on the first call of each shape
      c()
    times = time_rounds(contenders, args.rounds, args.calls, args.settle_s)
    med = {key: statistics.median(v) for key, v in times.items()}
    header = f"  {'pass':12s} {'JAX ms':>8s} {'GFLOP/s':>8s}"
    if _YNN.value:
      header += f" {'own ms':>8s} {'GFLOP/s':>8s} {'JAX/own':>8s}"
    for layout in layouts:
      header += f" {SHORT[layout] + ' ms':>10s} {'GFLOP/s':>8s}"
    for layout in layouts:
      header += f" {'JAX/' + SHORT[layout]:>9s}"
    print(header)
    for name in PASSES:
      t = med[("jax", name)]
      line = f"  {name:12s} {1e3 * t:8.2f} {flops / t / 1e9:8.1f}"
      if _YNN.value:
        own = med[("own", name)]
        line += f" {1e3 * own:8.2f} {flops / own / 1e9:8.1f} {t / own:8.2f}"
      for layout in layouts:
        tt = med[(layout, name)]
        line += f" {1e3 * tt:10.2f} {flops / tt / 1e9:8.1f}"
      for layout in layouts:
        line += f" {t / med[(layout, name)]:9.2f}"
      print(line, flush=True)
  print(f"\n({', '.join(f'{v}: PyTorch {k}' for k, v in SHORT.items() if k in layouts)};"
        " JAX/...: JAX's time over PyTorch's, above 1 JAX is slower"
        + ("; own: XLA's own convolution, no YNNPACK fusion)" if _YNN.value else ")"))


if __name__ == "__main__":
  app.run(main)
