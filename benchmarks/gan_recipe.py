"""DCGAN recipes on mnist5k at equal CPU time, in one run: which loss, normalisation, penalty and augmentation
make configs/dcgan_mnist5k.py (issue 28's goal: the best recipe at 5 and 15 CPU minutes).

Command: python benchmarks/gan_recipe.py --minutes=2,5 [--num_samples=1000 --train_examples=0
         --recipes=base,hinge_sn,ttur]

Each recipe is configs/dcgan_mnist5k.py with the overrides named in benchmarks/recipes.py (or, on the command line,
name=field:value;field:value with dotted config fields). The recipes train in turns of --segment_s seconds of
their own training time, so that all see the same machine and its drift, and at each of --minutes every recipe's
EMA generator is measured with the loop's protocol (`genjax.quality`: FID of --num_samples samples against the
4,500 training digits, features of the digit classifier). --reference adds other configs as they are (the
diffusion model, say), trained in the same turns. Prints the table and writes docs/gan_recipe_<n>.json.
"""

import importlib
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from benchmarks import alternating  # noqa: E402
from benchmarks.recipes import config_of, parse  # noqa: E402

from genjax import quality  # noqa: E402

_MINUTES = flags.DEFINE_list("minutes", ["2", "5"], "Training minutes at which to measure every recipe.")
_RECIPES = flags.DEFINE_list("recipes", ["base", "hinge_sn", "ttur", "translation"],
                             "Names of RECIPES, or name=field:value;field:value.")
_NUM = flags.DEFINE_integer("num_samples", 1000, "Samples per FID.")
_EXAMPLES = flags.DEFINE_integer("train_examples", 0, "Training digits (0: all 4,500).")
_SEGMENT = flags.DEFINE_float("segment_s", 20.0, "Training seconds of one recipe before the next one's turn.")
_REFERENCE = flags.DEFINE_list("reference", [], "Other configs (names in configs/, such as diffusion_mnist5k) "
                               "trained in the same turns and measured the same way, as they are.")
_OUT = flags.DEFINE_string("out", "", "The JSON written (default docs/gan_recipe_<training digits>.json).")

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  runs = [alternating.Run(name, config_of(overrides, _EXAMPLES.value))
          for name, overrides in map(parse, _RECIPES.value)]
  runs += [alternating.Run(name, importlib.import_module(f"configs.{name}").get_config()) for name in _REFERENCE.value]
  print(f"JAX {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs; load "
        f"{os.getloadavg()[0]:.1f}; {_EXAMPLES.value or 4500} training digits; "
        f"{quality.describe('mnist5k', _NUM.value, runs[0].config.seed)}")
  print(f"{'recipe':>14s}{'minutes':>8s}{'steps':>7s}{'FID':>9s}")
  rows, wall = [], time.perf_counter()
  out = _OUT.value or os.path.join(DOCS, f"gan_recipe_{_EXAMPLES.value or 4500}.json")
  for minutes in sorted(float(m) for m in _MINUTES.value):
    alternating.train_in_turns(runs, minutes * 60, _SEGMENT.value)
    for run in runs:
      numbers = quality.measure(jax.jit(run.family.sample, static_argnums=2), jax.jit(run.family.unscale),
                                run.params(), run.keys.eval, "mnist5k", _NUM.value)
      rows.append({"recipe": run.name, "minutes": minutes, "step": run.step, "train_s": round(run.train_s, 1),
                   "fid": numbers["fid"]})
      print(f"{run.name:>14s}{minutes:>8.1f}{run.step:>7d}{numbers['fid']:>9.2f}", flush=True)
    with open(out, "w", encoding="utf-8") as f:  # after every point: a long run stopped keeps what it measured
      json.dump({"train_examples": _EXAMPLES.value or 4500, "num_samples": _NUM.value,
                 "date": time.strftime("%Y-%m-%d"), "recipes": dict(map(parse, _RECIPES.value)),
                 "references": _REFERENCE.value, "rows": rows},
                f, indent=1)
  print(f"wall {(time.perf_counter() - wall) / 60:.1f} min, load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  app.run(main)
