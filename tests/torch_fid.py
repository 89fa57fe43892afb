"""pytorch-fid's own Inception-v3 on random weights: the reference of tests/test_inception.py and
benchmarks/inception_speed.py (needs the test extras: torch, torchvision, pytorch-fid)."""

import importlib
import sys

import torch


def import_pytorch_fid():
  """pytorch_fid.inception, importing torchvision's pure-Python models beside a torch build it was not made for.

  PyPI's torchvision is built against PyPI's (CUDA) torch; beside the CPU
  torch its C++ operators do not load, and its import then fails while
  registering fake kernels for two of them ('operator torchvision::nms does
  not exist'). Declaring those two schemas lets the import finish; the FID
  network calls no torchvision operator. Where torchvision loads as it is,
  nothing is declared.
  """
  try:
    return importlib.import_module("pytorch_fid.inception")
  except RuntimeError as e:
    if "torchvision::" not in str(e):
      raise
  for name in [n for n in sys.modules if n.split(".")[0] in ("torchvision", "pytorch_fid")]:
    del sys.modules[name]
  for op in ("nms", "qnms"):
    torch.library.define(f"torchvision::{op}", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
  return importlib.import_module("pytorch_fid.inception")


def random_state_dict(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
  """Weights that keep activations of order one through 94 layers: He-scaled kernels, BatchNorm near identity."""
  g = torch.Generator().manual_seed(seed)
  out = {}
  for name, x in module.state_dict().items():
    if name.endswith("conv.weight"):
      fan_in = x[0].numel()
      out[name] = torch.randn(x.shape, generator=g) * (2.0 / fan_in) ** 0.5
    elif name.endswith("bn.weight") or name.endswith("bn.running_var"):
      out[name] = 0.5 + torch.rand(x.shape, generator=g)
    elif name.endswith("bn.bias") or name.endswith("bn.running_mean"):
      out[name] = 0.1 * torch.randn(x.shape, generator=g)
    else:  # fc, num_batches_tracked
      out[name] = torch.randn(x.shape, generator=g) * 0.01 if x.is_floating_point() else x.clone()
  return out
