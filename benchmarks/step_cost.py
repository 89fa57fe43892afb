"""What one training step of a config costs, before it runs anywhere: FLOPs, state, memory, expected time.

Command: python benchmarks/step_cost.py --config=configs/diffusion_cifar10.py --chips=16 --device="TPU v4"
         [--precision=bfloat16 --mfu=0.3 --compile]

Traces the config's training step at its per-chip batch (batch_size / --chips) on this machine's CPU and
prints the step's FLOPs from XLA's cost analysis (the count the loop logs, genjax.utilization), the bytes of
the state (parameters, optimizer state, statistics, EMA) and, with --compile, the compiled program's
arguments and temporaries (XLA:CPU's, an estimate of an accelerator's: layouts and fusions differ). From the
FLOPs it writes out the expected step time on `--device` (genjax.utilization's peak table) at an assumed
MFU, and the run's time for the config's num_steps. Nothing is trained and nothing is downloaded: the shape
of the dataset is all it needs.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from genjax import build, data, utilization  # noqa: E402
from genjax import random as grandom  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "configs/diffusion_cifar10.py", "The config to cost.")
_CHIPS = flags.DEFINE_integer("chips", 1, "Devices the global batch is split over (a v4-32 slice: 16 chips;"
                              " on TPU v2 and v3 each chip is two devices).")
_DEVICE = flags.DEFINE_string("device", "TPU v4", "A device kind of genjax.utilization's table.")
_PRECISION = flags.DEFINE_string("precision", "bfloat16", "The precision policy the run would use.")
_MFU = flags.DEFINE_float("mfu", 0.3, "The share of the peak assumed for the time estimate.")
_COMPILE = flags.DEFINE_bool("compile", False, "Also compile (minutes for a large net) for the memory estimate.")

_GB = 1e9


def main(argv):
  del argv
  config = _CONFIG.value
  config.unlock()
  config.precision = _PRECISION.value
  config.batch_size = config.batch_size // _CHIPS.value  # one chip's program (what pmap compiles, jit shards to)
  config.eval.quality_samples = 0
  build.validate(config)
  family = build.family(config)
  keys = grandom.streams(config.seed)
  state = jax.eval_shape(family.init, keys.init)
  shape = data.image_shape(config.dataset.name)
  batch = {"image": jax.ShapeDtypeStruct((config.batch_size, *shape), np.uint8),
           "label": jax.ShapeDtypeStruct((config.batch_size,), np.int32)}
  lowered = jax.jit(family.train_step).lower(state, batch, keys.train)
  flops = utilization.flops_of(lowered)
  leaves = jax.tree.leaves(state)
  state_bytes = sum(x.size * x.dtype.itemsize for x in leaves)
  trained = [getattr(state, name) for name in ("params", "g_params", "d_params") if hasattr(state, name)]
  params = sum(x.size for x in jax.tree.leaves(trained))
  print(f"{config.family} ({config.model.arch}) on {config.dataset.name} {shape}, precision {config.precision}")
  print(f"per-chip batch {config.batch_size} (global {config.batch_size * _CHIPS.value} over {_CHIPS.value} chips)")
  print(f"parameters {params / 1e6:.1f} M; state {state_bytes / _GB:.2f} GB (float32: parameters, Adam's two"
        " moments, EMA, statistics)")
  print(f"step FLOPs per chip {flops / 1e12:.3f} TFLOP ({flops / config.batch_size / 1e9:.2f} GFLOP an example)")
  peak = utilization.peak_tflops(_DEVICE.value, config.precision)
  if peak:
    seconds = flops / (peak * 1e12 * _MFU.value)
    print(f"on {_DEVICE.value} ({peak:.0f} TFLOP/s peak, {config.precision}) at {100 * _MFU.value:.0f}% MFU:"
          f" {1000 * seconds:.1f} ms a step; {config.num_steps:,} steps in {seconds * config.num_steps / 60:,.0f} min")
  else:
    print(f"no peak for {_DEVICE.value!r} under {config.precision} in genjax.utilization.PEAKS")
  if _COMPILE.value:
    memory = lowered.compile().memory_analysis()
    if memory is not None:
      print(f"compiled (XLA:CPU): arguments {memory.argument_size_in_bytes / _GB:.2f} GB, outputs"
            f" {memory.output_size_in_bytes / _GB:.2f} GB, temporaries {memory.temp_size_in_bytes / _GB:.2f} GB")


if __name__ == "__main__":
  app.run(main)
