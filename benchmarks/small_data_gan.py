"""The DCGAN on little data with and without augmentation of what D sees, at equal steps, in one run (issue 28).

Command: python benchmarks/small_data_gan.py --train_examples=450 [--steps=500,1000,2000,3000
         --variants=none,diffaugment,ada --num_samples=1000 --recipe=base --name=NAME --workdir=DIR]

Trains the DCGAN of --recipe (benchmarks/recipes.py: 'base' is configs/dcgan_mnist5k.py's classic(), the
PyTorch example's recipe) on `--train_examples` of mnist5k's training digits (dataset.train_examples: a fixed
class-balanced subset; 0: all 4,500) once per variant: 'none' (no augmentation), 'diffaugment'
(DiffAugment's colour, translation and cutout, Zhao et al. 2020) and 'ada' (StyleGAN2-ADA's transforms at an
adaptive p, target 0.6; Karras et al. 2020), each for the same steps and batches, in turns of 250 steps so that
all see the same machine. At each of --steps it measures every variant with the loop's protocol
(`genjax.quality`: FID of --num_samples samples of the EMA generator against all 4,500 training digits, so that
FID counts what the subset lacks too). It also prints the FID of --num_samples digits drawn from the subset itself:
what a generator that memorised its training digits would score. Prints the table and writes
docs/small_data_<n>.json (docs/small_data_<n>_<recipe>.json for another recipe, _<name> with --name).
With --workdir, each variant's state is saved there at every measured step and every --save_steps between
them, and the same command run again resumes from the last save (the same batches and keys: the FIDs are those
of an uninterrupted run), so a run longer than one sitting can be taken in several, losing at most --save_steps.
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from benchmarks import alternating, recipes  # noqa: E402
import numpy as np  # noqa: E402

from genjax import quality  # noqa: E402
from genjax.data import mnist5k  # noqa: E402

_EXAMPLES = flags.DEFINE_integer("train_examples", 450, "Training digits (0: all 4,500).")
_STEPS = flags.DEFINE_list("steps", ["500", "1000", "2000", "3000"], "Steps at which to measure.")
_VARIANTS = flags.DEFINE_list("variants", ["none", "diffaugment", "ada"], "Augmentations of what D sees.")
_NUM = flags.DEFINE_integer("num_samples", 1000, "Samples per FID.")
_SEGMENT = flags.DEFINE_integer("segment_steps", 250, "Steps of one variant before the next one's turn.")
_SAVE = flags.DEFINE_integer("save_steps", 2000, "With --workdir, also save every this many steps between measures.")
_NAME = flags.DEFINE_string("name", None, "The JSON's suffix (default: the recipe's name; none for 'base').")
_WORKDIR = flags.DEFINE_string("workdir", None, "Save each variant here at every measured step; resume from it.")
_RECIPE = flags.DEFINE_string("recipe", "base", "The DCGAN every variant starts from: a name of "
                              "benchmarks/gan_recipe.py's RECIPES or name=field:value;field:value.")

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
VARIANTS = {"none": {}, "diffaugment": {"diffaugment": "color,translation,cutout"}, "ada": {"ada_target": 0.6},
            "translation": {"diffaugment": "translation"}}


def config_of(variant: str, train_examples: int, recipe: dict):
  c = recipes.config_of(recipe, train_examples)
  if train_examples:
    c.batch_size = min(c.batch_size, train_examples // 2)  # at least two batches an epoch
  for field, value in VARIANTS[variant].items():
    c.gan[field] = value
  return c


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  recipe_name, recipe = recipes.parse(_RECIPE.value)
  workdir = _WORKDIR.value
  runs = [alternating.Run(v, config_of(v, _EXAMPLES.value, recipe), workdir and os.path.join(workdir, v))
          for v in _VARIANTS.value]
  print(f"JAX {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs; load "
        f"{os.getloadavg()[0]:.1f}; recipe {recipe_name} {recipe}; {_EXAMPLES.value or 4500} training digits, "
        f"batch {runs[0].config.batch_size};"
        f" {quality.describe('mnist5k', _NUM.value, runs[0].config.seed)}")
  subset = mnist5k.train_subset(_EXAMPLES.value or None)[0]
  picks = np.random.default_rng(0).choice(len(subset), _NUM.value, replace=len(subset) < _NUM.value)
  memorised = quality.fid_of_images(subset[picks], "mnist5k")
  print(f"FID of {_NUM.value} digits drawn from the {len(subset)} training digits (a memorising G): {memorised:.2f}")
  rows, wall = [], time.perf_counter()
  measured = os.path.join(workdir, "rows.json") if workdir else None
  if measured and os.path.exists(measured):
    with open(measured, encoding="utf-8") as f:
      rows = json.load(f)
    print(f"resumed from {workdir}: steps {', '.join(f'{run.name} {run.step}' for run in runs)}")
  print(f"{'variant':>12s}{'steps':>7s}{'minutes':>8s}{'FID':>9s}")
  name = recipe_name if _NAME.value is None else _NAME.value
  suffix = "" if name in ("base", "") else f"_{name}"
  out = os.path.join(DOCS, f"small_data_{_EXAMPLES.value or 4500}{suffix}.json")
  for target in sorted(int(s) for s in _STEPS.value):
    if any(row["step"] == target for row in rows) and min(run.step for run in runs) >= target:
      continue  # measured before the run was resumed
    while min(run.step for run in runs) < target:
      for run in runs:
        before = run.step
        run.train_to_step(min(target, run.step + _SEGMENT.value))
        if workdir and run.step < target and run.step // _SAVE.value > before // _SAVE.value:
          run.save()  # a stopped run resumes here; rows.json still ends at the last measured step
    for run in runs:
      numbers = quality.measure(jax.jit(run.family.sample, static_argnums=2), jax.jit(run.family.unscale),
                                run.params(), run.keys.eval, "mnist5k", _NUM.value)
      ada_p = float(run.state.ada["p"]) if run.state.ada is not None else None
      rows.append({"variant": run.name, "step": run.step, "train_s": round(run.train_s, 1), "fid": numbers["fid"],
                   "ada_p": ada_p})
      print(f"{run.name:>12s}{run.step:>7d}{run.train_s / 60:>8.1f}{numbers['fid']:>9.2f}"
            + ("" if ada_p is None else f"   p {ada_p:.3f}"), flush=True)
    with open(out, "w", encoding="utf-8") as f:  # after every point: a long run stopped keeps what it measured
      json.dump({"train_examples": _EXAMPLES.value or 4500, "batch_size": runs[0].config.batch_size,
                 "num_samples": _NUM.value, "recipe": recipe, "memorised_fid": memorised,
                 "date": time.strftime("%Y-%m-%d"),
                 "rows": rows}, f, indent=1)
    if workdir:
      for run in runs:
        run.save()
      with open(measured, "w", encoding="utf-8") as f:
        json.dump(rows, f)
  print(f"wall {(time.perf_counter() - wall) / 60:.1f} min, load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  app.run(main)
