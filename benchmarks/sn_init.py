"""What spectral normalisation's initial weights do to configs/dcgan_mnist5k.py: the initializer's draw (genjax, as
Miyato et al.'s Chainer code and PyTorch's spectral_norm) against that draw divided by the first estimate of
its top singular value (what flax's SpectralNorm stores at init, which genjax did before), at equal steps.

Command: python benchmarks/sn_init.py --steps=2000,4300 [--num_samples=1000]

The forward pass at init is the same for both (SN divides the weight by its sigma either way); what differs is
the scale of the parameters Adam updates, so each layer's steps relative to its weight. The two runs train in
turns of --segment steps, with the same batches and keys, and at each of --steps the EMA generator is measured
with the loop's protocol (`genjax.quality`: FID against the 4,500 training digits, the digit classifier's
features). Prints the table and writes docs/sn_init.json.
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from benchmarks import alternating  # noqa: E402
from configs import dcgan_mnist5k  # noqa: E402

from genjax import quality  # noqa: E402
from genjax.nets import dcgan  # noqa: E402

_STEPS = flags.DEFINE_list("steps", ["2000", "4300"],
                           "Steps at which to measure both runs (4,300: about 5 CPU minutes).")
_NUM = flags.DEFINE_integer("num_samples", 1000, "Samples per FID.")
_SEGMENT = flags.DEFINE_integer("segment", 250, "Steps of one run before the other's turn.")

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")


def _flax_init_apply_layer(layer, x, train, spectral_norm):
  """genjax.nets.dcgan.apply_layer as it was: flax's SpectralNorm alone, which stores W / sigma_0 at init."""
  if not spectral_norm:
    return layer(x)
  dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else None
  return nn.SpectralNorm(layer, dtype=dtype)(x, update_stats=train)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  config = dcgan_mnist5k.get_config()
  assert config.model.d_spectral_norm
  runs = [alternating.Run("drawn", config)]
  fixed = dcgan.apply_layer
  dcgan.apply_layer = _flax_init_apply_layer
  try:
    runs.append(alternating.Run("normalised", config))  # initialised (and its step traced) with the old layer
  finally:
    dcgan.apply_layer = fixed
  d_kernel = lambda run: run.state.d_params["Conv_0"]["kernel"]
  print(f"JAX {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs; load "
        f"{os.getloadavg()[0]:.1f}; {quality.describe('mnist5k', _NUM.value, config.seed)}")
  ratio = float(d_kernel(runs[1]).ravel()[0] / d_kernel(runs[0]).ravel()[0])
  print(f"D's first kernel at init, normalised / drawn: {ratio:.2f}")
  print(f"{'init':>12s}{'steps':>7s}{'FID':>9s}")
  rows, wall = [], time.perf_counter()
  for steps in sorted(int(s) for s in _STEPS.value):
    while min(run.step for run in runs) < steps:
      for run in runs:
        run.train_to_step(min(steps, run.step + _SEGMENT.value))
    for run in runs:
      numbers = quality.measure(jax.jit(run.family.sample, static_argnums=2), jax.jit(run.family.unscale),
                                run.params(), run.keys.eval, "mnist5k", _NUM.value)
      rows.append({"init": run.name, "step": run.step, "train_s": round(run.train_s, 1), "fid": numbers["fid"]})
      print(f"{run.name:>12s}{run.step:>7d}{numbers['fid']:>9.2f}", flush=True)
    with open(os.path.join(DOCS, "sn_init.json"), "w", encoding="utf-8") as f:
      json.dump({"config": "dcgan_mnist5k", "num_samples": _NUM.value, "date": time.strftime("%Y-%m-%d"),
                 "rows": rows}, f, indent=1)
  print(f"wall {(time.perf_counter() - wall) / 60:.1f} min, load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  app.run(main)
