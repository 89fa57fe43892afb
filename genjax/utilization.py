"""How much of the devices a training step uses: its FLOPs from XLA's cost analysis, the FLOP/s achieved and
the share of the devices' peak (MFU, model FLOPs utilisation).

The loop counts the FLOPs of one step once, from the cost analysis of the step's program before XLA's
optimisations (`step_flops`: what the model asks for, not what a fusion saves or a rematerialisation adds),
and writes into every training row of metrics.jsonl, and the progress line, the steps per second, the
TFLOP/s achieved (steps/s x FLOPs) and, where one device's peak is known, MFU = achieved / (peak x devices).

The peaks are dense (no sparsity) TFLOP/s of one device (a chip; a TensorCore on TPU v2 and v3) from the
vendors' data sheets, for the matrix unit a
policy's products run on: float32 products run as TF32 on NVIDIA's tensor cores (JAX's default matmul
precision on those GPUs) and as bfloat16 passes on TPUs. A device not in the table has no MFU unless the
config's `peak_tflops` names its peak.
"""

import re
from typing import Any

# (a word or words of jax's device_kind, {precision: dense peak TFLOP/s of one device}); the first match counts.
PEAKS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H100 PCIe", {"float32": 378.0, "bfloat16": 756.0, "float16": 756.0}),
    ("H100 NVL", {"float32": 417.5, "bfloat16": 835.5, "float16": 835.5}),
    ("H100", {"float32": 494.7, "bfloat16": 989.4, "float16": 989.4}),  # SXM; the H200 has the same units
    ("GH200", {"float32": 494.7, "bfloat16": 989.4, "float16": 989.4}),  # its GPU is an H100 (SXM)
    ("H200", {"float32": 494.7, "bfloat16": 989.4, "float16": 989.4}),
    ("A100", {"float32": 156.0, "bfloat16": 312.0, "float16": 312.0}),
    ("L4", {"float32": 60.0, "bfloat16": 121.0, "float16": 121.0}),
    ("A10G", {"float32": 35.0, "bfloat16": 70.0, "float16": 70.0}),
    ("V100-PCIE", {"float32": 14.0, "float16": 112.0}),  # device_kind 'Tesla V100-PCIE-16GB'
    ("V100", {"float32": 15.7, "float16": 125.0}),  # SXM2; no TF32, no bfloat16 units
    # A v2 or v3 chip is two JAX devices (one per TensorCore, no megacore): each has half the chip's 45 and 123.
    ("TPU v2", {"float32": 22.5, "bfloat16": 22.5}),
    ("TPU v3", {"float32": 61.5, "bfloat16": 61.5}),
    ("TPU v4", {"float32": 275.0, "bfloat16": 275.0}),
    ("TPU v5 lite", {"float32": 197.0, "bfloat16": 197.0}),  # v5e
    ("TPU v5p", {"float32": 459.0, "bfloat16": 459.0}),
    ("TPU v5", {"float32": 459.0, "bfloat16": 459.0}),  # what v5p is called too
    ("TPU v6 lite", {"float32": 918.0, "bfloat16": 918.0}),  # v6e (Trillium)
)


def peak_tflops(device_kind: str, precision: str, given: float | None = None) -> float | None:
  """One device's peak TFLOP/s: `given` where set, else the table's for `device_kind` under `precision`;
  None where neither knows it (a CPU, an unlisted device)."""
  if given is not None:
    return float(given)
  for words, peaks in PEAKS:
    if re.search(rf"\b{re.escape(words)}\b", device_kind):  # whole words: L4 is not L40S
      return peaks.get(precision)
  return None


def flops_of(lowered) -> float | None:
  """The FLOPs of a lowered (jitted or pmapped) program from XLA's cost analysis; None where XLA gives none."""
  analysis: Any = lowered.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older JAX: one dict per program
    analysis = analysis[0] if analysis else None
  if not analysis or analysis.get("flops") is None:
    return None
  return float(analysis["flops"])


def rates(step_flops: float | None, steps_per_s: float, peak: float | None, num_devices: int) -> dict[str, float]:
  """{'steps_per_s', and where the FLOPs are known 'tflops' (achieved, all devices together), and where the
  peak is known too 'mfu' (achieved / (peak x devices))}: what a training row records."""
  out = {"steps_per_s": steps_per_s}
  if step_flops is not None:
    out["tflops"] = step_flops * steps_per_s / 1e12
    if peak:
      out["mfu"] = out["tflops"] / (peak * num_devices)
  return out


def describe(row: dict[str, float]) -> str:
  """The progress line's part: '12.3 steps/s  4.56 TFLOP/s  38.1% MFU'."""
  text = f"{row['steps_per_s']:.1f} steps/s"
  if "tflops" in row:
    text += f"  {row['tflops']:.3g} TFLOP/s"
  if "mfu" in row:
    text += f"  {100 * row['mfu']:.1f}% MFU"
  return text
