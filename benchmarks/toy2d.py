"""Mode coverage on the ring of 8 and the grid of 25 Gaussians over 10 seeds, next to the published rows.

Command: python benchmarks/toy2d.py [--seeds=10] [--jobs=1] [--root=/tmp/genjax_toy2d] [--variants=genjax,baseline]
Trains configs/gan_ring8.py and configs/gan_grid25.py ('genjax') and, with
the same networks, steps and batch, the plain non-saturating GAN ('baseline':
constant Adam 2e-4 with b1 = 0.5, b2 = 0.999 as in DCGAN, no penalty, no EMA)
for every seed, each run through `train_lib.train_and_evaluate` in a fresh
workdir (the wall time includes compilation, checkpoints and evaluations).
Scores 2,500 samples of the final generator with the VEEGAN / PacGAN protocol
(`genjax.metrics.mode_coverage`) and prints, per dataset and variant, the mean
and standard error over seeds, the worst seed, and the slowest seed. Writes a
scatter plot of seed 0's samples over the mode centres (needs matplotlib) and
the per-seed numbers as JSON.

'diffusion' trains configs/diffusion_ring8.py and configs/diffusion_grid25.py
(the diffusion family's MLP denoiser; sampling from the EMA weights) and
scores them the same way.

`--jobs=2` trains two seeds at a time, each process pinned to its own core:
on a 2-core machine about 1.5x the throughput of one process on both
cores, at the price of per-seed times that are single-core times.
"""

import concurrent.futures
import json
import math
import multiprocessing
import os
import shutil
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from configs import diffusion_grid25, diffusion_ring8, gan_grid25, gan_ring8  # noqa: E402
from genjax import build, checkpoint, train_lib  # noqa: E402
from genjax import random as grandom  # noqa: E402
from genjax.data import toy2d  # noqa: E402
from genjax.evaluation import POINT_SAMPLES  # noqa: E402

_DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
_SEEDS = flags.DEFINE_integer("seeds", 10, "Seeds 0 .. seeds-1 of every dataset and variant.")
_ROOT = flags.DEFINE_string("root", "/tmp/genjax_toy2d", "Scratch workdirs (emptied per run).")
_VARIANTS = flags.DEFINE_list("variants", ["genjax", "baseline"], "Which of genjax, baseline, diffusion to run.")
_DATASETS = flags.DEFINE_list("datasets", ["ring8", "grid25"], "Which of ring8, grid25 to run.")
_PLOT = flags.DEFINE_string("plot", os.path.join(_DOCS, "toy2d.png"), "Scatter plot PNG; empty: none.")
_JOBS = flags.DEFINE_integer("jobs", 1, "Seeds trained at once, each process pinned to one core (1: in this process).")
_JSON = flags.DEFINE_string("json", os.path.join(_DOCS, "toy2d.json"), "Per-seed numbers; empty: none.")

CONFIGS = {"ring8": gan_ring8, "grid25": gan_grid25}
DIFFUSION_CONFIGS = {"ring8": diffusion_ring8, "grid25": diffusion_grid25}
# The plain GAN of Goodfellow et al. with the DCGAN optimizer, on the same nets, batch and steps.
BASELINE = {"gan.loss": "non_saturating", "gan.r1_gamma": 0.0, "gan.ema_decay": 0.0, "optim.schedule": "constant",
            "optim.learning_rate": 2e-4, "optim.b1": 0.5, "optim.b2": 0.999}
PUBLISHED = [  # (name, ring modes, ring %HQ, ring rev-KL, grid modes, grid %HQ, grid rev-KL)
    ("VEEGAN (Table 1)", 8, 52.9, None, 24.6, 40, None),
    ("PacGAN4 (Table 1)", 7.8, 95.9, 0.07, 24.8, 93.6, 0.04),
    ("a perfect sampler (2,500 draws)", 8, 98.9, 0.002, 25, 98.9, 0.005),
]


def make_config(dataset: str, variant: str, seed: int):
  config = (DIFFUSION_CONFIGS if variant == "diffusion" else CONFIGS)[dataset].get_config()
  config.seed = seed
  config.eval_every = config.num_steps  # evaluate once, at the end
  if variant == "baseline":
    for field, value in BASELINE.items():
      group, name = field.split(".")
      config[group][name] = value
  return config


def final_samples(config, workdir: str) -> np.ndarray:
  """The 2,500 samples the final evaluation scored (same key), for the plot."""
  family = build.family(config)
  keys = grandom.streams(config.seed)
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), config.keep_checkpoints, read_only=True)
  state = ckpt.restore(ckpt.latest_step(), jax.jit(family.init)(keys.init))
  ckpt.close()
  return np.asarray(family.sample(family.eval_params(state, grandom.eval_params_key(keys.eval), "ema"), keys.eval,
                                  POINT_SAMPLES))


def _pin(cores) -> None:
  """Worker initializer: run on one core of its own (XLA then sizes its thread pool to it)."""
  os.sched_setaffinity(0, {cores.get()})
  logging.set_verbosity(logging.WARNING)


def run_one(run: tuple[str, str, int], root: str) -> tuple[dict, np.ndarray | None]:
  """Trains one (dataset, variant, seed) in a fresh workdir; its row, and seed 0's samples for the plot."""
  dataset, variant, seed = run
  config = make_config(dataset, variant, seed)
  workdir = os.path.join(root, f"{dataset}_{variant}_{seed}")
  shutil.rmtree(workdir, ignore_errors=True)
  t0 = time.perf_counter()
  result = train_lib.train_and_evaluate(config, workdir)
  seconds = time.perf_counter() - t0
  row = {"seed": seed, "seconds": seconds, **{k: float(v) for k, v in result.items()}}
  points = final_samples(config, workdir) if seed == 0 else None
  shutil.rmtree(workdir, ignore_errors=True)
  return row, points


def summary(rows: list[dict]) -> dict:
  out = {}
  for key in ("modes", "high_quality", "reverse_kl", "seconds"):
    values = np.asarray([r[key] for r in rows], np.float64)
    out[key] = (values.mean(), values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else 0.0)
  out["worst_modes"] = min(r["modes"] for r in rows)
  out["worst_hq"] = min(r["high_quality"] for r in rows)
  out["worst_kl"] = max(r["reverse_kl"] for r in rows)
  out["slowest"] = max(r["seconds"] for r in rows)
  return out


def plot(samples: dict, path: str) -> None:
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  except ImportError:
    logging.warning("matplotlib is not installed: no plot (pip install matplotlib)")
    return
  panels = sorted(samples)
  fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.2), squeeze=False)
  for ax, (dataset, variant) in zip(axes[0], panels):
    points, result = samples[(dataset, variant)]
    centres = toy2d.mode_centres(dataset)
    ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.4, color="tab:blue", linewidths=0)
    ax.scatter(centres[:, 0], centres[:, 1], s=30, marker="x", color="tab:red")
    span = 1.5 if dataset == "ring8" else 5.5
    ax.set_xlim(-span, span)
    ax.set_ylim(-span, span)
    ax.set_aspect("equal")
    ax.set_title(f"{dataset}, {variant}, seed 0\n{result['modes']:.0f} modes, {result['high_quality']:.1f}% HQ,"
                 f" rev-KL {result['reverse_kl']:.3f}", fontsize=9)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  logging.info("wrote %s", path)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  rows: dict[tuple[str, str], list[dict]] = {}
  samples = {}
  runs = [(d, v, seed) for d in _DATASETS.value for v in _VARIANTS.value for seed in range(_SEEDS.value)]

  def collect(outcomes):
    for (dataset, variant, seed), (row, points) in zip(runs, outcomes):
      rows.setdefault((dataset, variant), []).append(row)
      print(f"{dataset:7s} {variant:9s} seed {seed}: {row['modes']:.0f} modes  {row['high_quality']:.1f}% HQ"
            f"  rev-KL {row['reverse_kl']:.4f}  {row['seconds']:.1f} s", flush=True)
      if points is not None:
        samples[(dataset, variant)] = (points, row)

  if _JOBS.value > 1:
    context = multiprocessing.get_context("spawn")  # a fresh JAX per worker; fork would copy this one's threads
    cores = context.Queue()
    for core in sorted(os.sched_getaffinity(0))[:_JOBS.value]:
      cores.put(core)
    with concurrent.futures.ProcessPoolExecutor(_JOBS.value, mp_context=context, initializer=_pin,
                                                initargs=(cores,)) as pool:
      collect(pool.map(run_one, runs, [_ROOT.value] * len(runs)))
  else:
    collect(run_one(run, _ROOT.value) for run in runs)

  print(f"\n{_SEEDS.value} seeds; mean ± standard error; worst seed; 2,500 samples, 3-std high quality")
  print(f"{'':34s}{'modes':>12s}{'% HQ':>14s}{'rev-KL':>16s}{'worst (modes/HQ/KL)':>24s}{'s/seed (max)':>16s}")
  for (dataset, variant), seed_rows in rows.items():
    s = summary(seed_rows)
    print(f"{dataset + ', ' + variant:34s}{s['modes'][0]:>7.2f}±{s['modes'][1]:<4.2f}"
          f"{s['high_quality'][0]:>8.2f}±{s['high_quality'][1]:<5.2f}"
          f"{s['reverse_kl'][0]:>9.4f}±{s['reverse_kl'][1]:<6.4f}"
          f"{s['worst_modes']:>8.0f}/{s['worst_hq']:.1f}/{s['worst_kl']:.4f}"
          f"{s['seconds'][0]:>9.1f} ({s['slowest']:.1f})")
  print("\npublished (ring modes, %HQ, rev-KL | grid modes, %HQ, rev-KL):")
  for name, *values in PUBLISHED:
    print(f"  {name:34s}" + "  ".join("–" if v is None else f"{v:g}" for v in values))

  if _JSON.value:
    os.makedirs(os.path.dirname(os.path.abspath(_JSON.value)), exist_ok=True)
    with open(_JSON.value, "w", encoding="utf-8") as f:
      json.dump({f"{d}/{v}": r for (d, v), r in rows.items()}, f, indent=1)
  if _PLOT.value and samples:
    plot(samples, _PLOT.value)


if __name__ == "__main__":
  app.run(main)
