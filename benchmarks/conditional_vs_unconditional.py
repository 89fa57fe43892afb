"""A family's class-conditional model against its unconditional counterpart at equal training time, in one run.

Command: python benchmarks/conditional_vs_unconditional.py --family=vae|dcgan|diffusion
         [--minutes=5 --segment_s=30 --num_samples=1000 --guidance=1,3]

Trains configs/<family>_mnist5k_class.py and the same config with model.num_classes 0 (recipe, nets and options
alike; num_steps is ignored) in turns of --segment_s seconds of training each, so that both see the same
machine, load and drift. At each of --minutes of a model's own training time (evaluations excluded) it measures
both with the loop's protocol (`genjax.quality`, the family's default weights, the same key): FID of
--num_samples samples, and for the conditional model, whose classes are drawn from the held-out split's shares,
the share that the shipped digit classifier gives the class asked for. A conditional diffusion model is measured
at every --guidance scale (1: the conditional model, no guidance). Prints the table and writes --out (default
docs/conditional_<family>.json).
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import importlib  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from benchmarks import alternating  # noqa: E402
from genjax import evaluation, quality  # noqa: E402

_FAMILY = flags.DEFINE_enum("family", "vae", ["vae", "dcgan", "diffusion"], "configs/<family>_mnist5k_class.py")
_MINUTES = flags.DEFINE_list("minutes", ["5"], "Training minutes of each model to measure at.")
_SEGMENT = flags.DEFINE_float("segment_s", 30.0, "Seconds of training of one model before the other's turn.")
_NUM = flags.DEFINE_integer("num_samples", 1000, "Samples per FID and class accuracy.")
_GUIDANCE = flags.DEFINE_list("guidance", ["1"], "Guidance scales of a conditional diffusion model (1: none).")
_OUT = flags.DEFINE_string("out", None, "Where the numbers go (default docs/conditional_<family>.json).")

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")


def samplers(run: alternating.Run) -> dict:
  """{setting: sample_fn(params, key, n[, labels])}: one for an unconditional model or a conditional VAE or GAN,
  one per guidance scale for a conditional diffusion model (scale and interval are the sampler's arguments)."""
  family = run.family
  if not family.num_classes or _FAMILY.value != "diffusion":
    return {"": jax.jit(family.sample, static_argnums=2)}
  guided = jax.jit(lambda p, k, labels, s: family.sample(p, k, labels.shape[0], labels, guidance=s))
  return {f"guidance {s}": (lambda p, k, n, labels, s=float(s): guided(p, k, labels, jnp.float32(s)))
          for s in _GUIDANCE.value}


def measure(run: alternating.Run, held) -> list[dict]:
  params, unscale = run.params(), jax.jit(run.family.unscale)
  rows = []
  for setting, sample_fn in samplers(run).items():
    t0 = time.perf_counter()
    numbers = quality.measure(sample_fn, unscale, params, run.keys.eval, run.config.dataset.name, _NUM.value,
                              label_probs=held.label_probs if run.family.num_classes else None)
    row = {"model": run.name, "setting": setting, "train_s": round(run.train_s, 1), "step": run.step,
           "fid": numbers["fid"], "class_accuracy": numbers.get("class_accuracy"),
           "class_accuracy_by_class": [numbers.get(f"class_accuracy_{c}") for c in range(run.family.num_classes)],
           "sample_s": round(time.perf_counter() - t0, 1)}
    rows.append(row)
    accuracy = "" if row["class_accuracy"] is None else f"{row['class_accuracy']:.3f}"
    print(f"{run.name:>14s}{setting:>14s}{row['train_s'] / 60:>8.1f}{row['step']:>7d}{row['fid']:>9.2f}"
          f"{accuracy:>10s}", flush=True)
  return rows


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  conditional = importlib.import_module(f"configs.{_FAMILY.value}_mnist5k_class").get_config()
  unconditional = conditional.copy_and_resolve_references()
  unconditional.model.num_classes = 0
  runs = [alternating.Run("unconditional", unconditional), alternating.Run("conditional", conditional)]
  held = evaluation.held_out(runs[1].config.dataset, 1, runs[1].family.num_classes)
  print(f"JAX {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs; load "
        f"{os.getloadavg()[0]:.1f}; {quality.describe('mnist5k', _NUM.value, runs[0].config.seed)}")
  print(f"{'model':>14s}{'setting':>14s}{'minutes':>8s}{'steps':>7s}{'FID':>9s}{'class acc':>10s}")
  wall, rows = time.perf_counter(), []
  out = _OUT.value or os.path.join(DOCS, f"conditional_{_FAMILY.value}.json")
  for minutes in sorted(float(m) for m in _MINUTES.value):
    alternating.train_in_turns(runs, 60 * minutes, _SEGMENT.value)
    for run in runs:
      rows += measure(run, held)
    with open(out, "w", encoding="utf-8") as f:  # after every point: a long run stopped keeps what it measured
      json.dump({"family": _FAMILY.value, "num_samples": _NUM.value, "segment_s": _SEGMENT.value,
                 "date": time.strftime("%Y-%m-%d"), "rows": rows}, f, indent=1)
  print(f"wall {(time.perf_counter() - wall) / 60:.1f} min, load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  app.run(main)
