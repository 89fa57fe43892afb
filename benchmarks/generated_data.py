"""Generated digits as training data (issue 28): a digit classifier trained on a small real subset, on the subset
plus a conditional model's samples, and on the samples alone (the Classification Accuracy Score of Ravuri &
Vinyals 2019), each scored on the 500 held-out digits.

Command: python benchmarks/generated_data.py --train_examples=450 [--families=vae,dcgan,diffusion --minutes=5
         --config_steps --per_class=500 --classifier_steps=1500]

For each family, configs/<family>_mnist5k_class.py is trained on the subset (dataset.train_examples, a fixed
class-balanced one) for --minutes of training time, or with --config_steps for its config's num_steps (which
do not depend on the machine's load, so the run may share the CPU), then draws --per_class samples of every
class with its default weights (a diffusion model with its config's sampler, unguided). The classifier
(genjax.train_classifier, the same net and steps each time, --seeds of them) trains on (a) the real subset, (b)
the subset and the samples, (c) the samples only. Prints the held-out accuracies and writes
docs/generated_data_<n>.json (docs/generated_data_<n>_config_steps.json with --config_steps).
"""

import importlib
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from benchmarks import alternating  # noqa: E402
from genjax import train_classifier  # noqa: E402
from genjax.data import mnist5k  # noqa: E402

_EXAMPLES = flags.DEFINE_integer("train_examples", 450, "Real training digits.")
_FAMILIES = flags.DEFINE_list("families", ["vae", "dcgan", "diffusion"], "Conditional models to generate with.")
_MINUTES = flags.DEFINE_float("minutes", 5.0, "Training minutes of each model.")
_CONFIG_STEPS = flags.DEFINE_bool("config_steps", False, "Train each model for its config's num_steps, not "
                                  "--minutes.")
_PER_CLASS = flags.DEFINE_integer("per_class", 500, "Generated digits of each class.")
_STEPS = flags.DEFINE_integer("classifier_steps", 1500, "Adam steps of each classifier (batches of 128).")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Classifiers per data set (seeds 0, 1, ...): the mean is reported, "
                              "and the spread says which differences are more than a seed's.")

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")


def generate(family: str, n: int):
  """(uint8 images, labels) of --per_class samples of each class of the family's class config trained on n."""
  config = importlib.import_module(f"configs.{family}_mnist5k_class").get_config()
  config.dataset.train_examples = n
  config.batch_size = min(config.batch_size, n // 2)
  run = alternating.Run(family, config)
  if _CONFIG_STEPS.value:
    run.train_to_step(config.num_steps)
  else:
    run.train_until(60 * _MINUTES.value)
  params, labels = run.params(), np.repeat(np.arange(10, dtype=np.int32), _PER_CLASS.value)
  sample = jax.jit(lambda p, k, y: run.family.unscale(run.family.sample(p, k, y.shape[0], y)))
  images = np.concatenate([np.asarray(sample(params, jax.random.fold_in(run.keys.sample, i), jnp.asarray(chunk)))
                           for i, chunk in enumerate(np.array_split(labels, max(1, len(labels) // 500)))])
  return images, labels, run.step


def score(images, labels, held) -> list[float]:
  """Held-out accuracies of --seeds classifiers, each with its own initialisation and batch order."""
  accuracies = []
  for seed in range(_SEEDS.value):
    batches = train_classifier.array_batches(images, labels, 128, seed=seed)
    params = train_classifier.fit(batches, _STEPS.value, seed=seed)
    accuracies.append(float(train_classifier.accuracy(params, held["image"], held["label"])))
  return accuracies


def shown(accuracies: list[float]) -> str:
  return f"{np.mean(accuracies):>9.3f} (seeds {min(accuracies):.3f}-{max(accuracies):.3f})"


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  n, held = _EXAMPLES.value, mnist5k.load_mnist5k("test")
  real_images, real_labels = (np.asarray(a) for a in mnist5k.train_subset(n))
  print(f"JAX {jax.__version__}, {os.cpu_count()} CPUs; {n} real digits; {_PER_CLASS.value} generated a class;"
        f" classifier {_STEPS.value} steps; held-out accuracy on {len(held['label'])} digits")
  real = score(real_images, real_labels, held)
  rows = [{"data": "real", "family": None, "accuracy": float(np.mean(real)), "accuracies": real}]
  print(f"{'real only':>28s}{shown(real)}", flush=True)
  for family in _FAMILIES.value:
    images, labels, steps = generate(family, n)
    both = score(np.concatenate([real_images, images]), np.concatenate([real_labels, labels]), held)
    generated = score(images, labels, held)
    rows += [{"data": "real + generated", "family": family, "model_steps": steps, "accuracy": float(np.mean(both)),
              "accuracies": both},
             {"data": "generated (CAS)", "family": family, "model_steps": steps,
              "accuracy": float(np.mean(generated)), "accuracies": generated}]
    print(f"{family + ' real + generated':>28s}{shown(both)}\n{family + ' generated only':>28s}{shown(generated)}",
          flush=True)
    suffix = "_config_steps" if _CONFIG_STEPS.value else ""
    with open(os.path.join(DOCS, f"generated_data_{n}{suffix}.json"), "w", encoding="utf-8") as f:
      json.dump({"train_examples": n, "per_class": _PER_CLASS.value,
                 "minutes": None if _CONFIG_STEPS.value else _MINUTES.value,
                 "classifier_steps": _STEPS.value, "seeds": _SEEDS.value, "date": time.strftime("%Y-%m-%d"),
                 "rows": rows}, f, indent=1)


if __name__ == "__main__":
  app.run(main)
