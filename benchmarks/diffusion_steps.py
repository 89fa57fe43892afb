"""Sample quality against the number of network evaluations, for each sampler of one trained diffusion model.

Command: python benchmarks/diffusion_steps.py --workdir=runs/diffusion_mnist5k
         [--samplers=ancestral,ddim,heun] [--steps=5,10,20,50,100] [--num_samples=2000] [--weights=ema]
         [--step=STEP]

Restores the workdir's latest checkpoint and, for every sampler and number of
levels N, measures FID and KID (`genjax.quality`, the loop's protocol and
features) of `num_samples` samples drawn with the same key. Net evaluations:
N for the ancestral sampler and DDIM, 2N - 1 for Heun. Prints a table and
writes the curves of FID against evaluations (docs/diffusion_fid_vs_steps.png,
needs matplotlib) and the numbers as JSON. FID depends on the number of
samples: compare the rows of one run, not with the loop's 5,000-sample FID.
"""

import functools
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from genjax import build, checkpoint, quality, workdir as workdir_lib  # noqa: E402
from genjax import random as grandom  # noqa: E402

_DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
_WORKDIR = flags.DEFINE_string("workdir", None, "A trained diffusion workdir.", required=True)
_SAMPLERS = flags.DEFINE_list("samplers", ["ancestral", "ddim", "heun"], "Samplers to compare.")
_STEPS = flags.DEFINE_list("steps", ["5", "10", "20", "50", "100"], "Noise levels N of each sampler.")
_NUM = flags.DEFINE_integer("num_samples", 2000, "Samples per FID.")
_WEIGHTS = flags.DEFINE_string("weights", "ema", "Which weights sample: ema or raw.")
_STEP = flags.DEFINE_integer("step", None, "The checkpoint's step; default: the latest.")
_PLOT = flags.DEFINE_string("plot", os.path.join(_DOCS, "diffusion_fid_vs_steps.png"), "PNG; empty: none.")
_JSON = flags.DEFINE_string("json", os.path.join(_DOCS, "diffusion_fid_vs_steps.json"), "JSON; empty: none.")


def evaluations(sampler: str, steps: int) -> int:
  return 2 * steps - 1 if sampler == "heun" else steps


def plot(rows: list[dict], title: str, path: str) -> None:
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  except ImportError:
    logging.warning("matplotlib is not installed: no plot (pip install matplotlib)")
    return
  fig, ax = plt.subplots(figsize=(6, 4))
  for sampler in dict.fromkeys(r["sampler"] for r in rows):
    mine = [r for r in rows if r["sampler"] == sampler]
    ax.plot([r["nfe"] for r in mine], [r["fid"] for r in mine], marker="o", label=sampler)
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("network evaluations per sample")
  ax.set_ylabel("FID")
  ax.set_title(title, fontsize=9)
  ax.legend()
  ax.grid(alpha=0.3)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  logging.info("wrote %s", path)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  config = workdir_lib.load_config(_WORKDIR.value)
  family = build.family(config)
  keys = grandom.streams(config.seed)
  ckpt = checkpoint.Checkpointer(os.path.join(_WORKDIR.value, "checkpoints"), config.keep_checkpoints,
                                 read_only=True)
  try:
    step = ckpt.latest_step() if _STEP.value is None else _STEP.value
    state = ckpt.restore(step, jax.jit(family.init)(keys.init))
  finally:
    ckpt.close()
  params = jax.jit(family.eval_params, static_argnums=2)(state, grandom.eval_params_key(keys.eval), _WEIGHTS.value)
  unscale = jax.jit(family.unscale)
  ds = config.dataset
  print(f"{_WORKDIR.value} at step {step:,} ({_WEIGHTS.value} weights); "
        f"{quality.describe(ds.name, _NUM.value, config.seed, config.eval.inception_weights)}")
  print(f"{'sampler':10s}{'levels':>8s}{'evals':>8s}{'FID':>10s}{'KID':>12s}{'seconds':>10s}")
  rows = []
  for sampler in _SAMPLERS.value:
    for steps in map(int, _STEPS.value):
      sample = jax.jit(functools.partial(family.sample, sampler=sampler, steps=steps), static_argnums=2)
      t0 = time.perf_counter()
      result = quality.measure(sample, unscale, params, keys.eval, ds.name, _NUM.value, data_dir=ds.data_dir,
                               inception_weights=config.eval.inception_weights)
      row = {"sampler": sampler, "steps": steps, "nfe": evaluations(sampler, steps),
             "seconds": time.perf_counter() - t0, **{k: float(v) for k, v in result.items()}}
      rows.append(row)
      print(f"{sampler:10s}{steps:>8d}{row['nfe']:>8d}{row['fid']:>10.2f}{row['kid']:>12.2f}{row['seconds']:>10.1f}",
            flush=True)
  title = f"{ds.name}, step {step:,}, {_WEIGHTS.value} weights, {_NUM.value:,} samples"
  if _JSON.value:
    os.makedirs(os.path.dirname(os.path.abspath(_JSON.value)), exist_ok=True)
    with open(_JSON.value, "w", encoding="utf-8") as f:
      json.dump({"title": title, "rows": rows}, f, indent=1)
  if _PLOT.value:
    plot(rows, title, _PLOT.value)


if __name__ == "__main__":
  app.run(main)
