"""The PixelCNN's exact held-out NLL against the conv VAE's IWAE NLL at equal training time, in one run.

Command: python benchmarks/pixelcnn_vs_vae.py [--minutes=1,2,3,5,8,11,15 --segment_s=20 --iwae_k=1000]
Trains configs/pixelcnn_mnist5k.py and configs/vae_mnist5k.py (their batches, optimisers and nets; num_steps
is ignored) in alternating segments of --segment_s seconds of training each, so that both see the same
machine, load and drift. At each of --minutes of a model's own training time (evaluation excluded) it scores
the same 500 held-out digits of mnist5k, binarised with the same keys: the PixelCNN's exact NLL, the VAE's
negative ELBO and IWAE NLL with k = --iwae_k. Prints the table, writes --out (JSON) and the curves (PNG).
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks import alternating  # noqa: E402
from configs import pixelcnn_mnist5k, vae_mnist5k  # noqa: E402
from genjax import data, evaluation  # noqa: E402

_MINUTES = flags.DEFINE_list("minutes", ["1", "2", "3", "5", "8", "11", "15"], "Training minutes to evaluate at.")
_SEGMENT = flags.DEFINE_float("segment_s", 20.0, "Seconds of training of one model before the other's turn.")
_IWAE_K = flags.DEFINE_integer("iwae_k", 1000, "Importance samples of the VAE's NLL estimate.")
_HELD_OUT = flags.DEFINE_integer("held_out", 500, "Held-out digits scored.")
_SET = flags.DEFINE_multi_string("set", [], "pixelcnn config overrides, field=value (model.features=32).")
_OUT = flags.DEFINE_string("out", "docs/pixelcnn_vs_vae.json", "Where the numbers go; the PNG beside it.")

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")


class Run(alternating.Run):
  """A run that scores held-out NLL."""

  def __init__(self, name, config):
    super().__init__(name, config)
    self.evaluate_fn = jax.jit(self.family.evaluate)

  def evaluate(self, images) -> dict:
    numbers = evaluation.evaluate_dataset(self.evaluate_fn, self.params(), images, self.keys.eval, 100)
    row = {"train_s": round(self.train_s, 1), "step": self.step, **{k: round(v, 3) for k, v in numbers.items()}}
    self.rows.append(row)
    print(f"{self.name:9s} {row}", flush=True)
    return row


def _plot(runs, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
  for run, label in ((runs[0], "Gated PixelCNN, exact NLL"), (runs[1], f"conv VAE, IWAE NLL (k={_IWAE_K.value})")):
    ax.plot([r["train_s"] / 60 for r in run.rows], [r["nll"] for r in run.rows], "o-", label=label)
  ax.set_xlabel("training time on the same 2-core CPU (minutes)")
  ax.set_ylabel("held-out NLL, nats (mnist5k, binarised)")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path)


def main(_):
  pixelcnn = pixelcnn_mnist5k.get_config()
  for item in _SET.value:
    field, value = item.split("=", 1)
    block, name = field.split(".") if "." in field else (None, field)
    target = pixelcnn[block] if block else pixelcnn
    target[name] = type(target[name])(value)
  vae = vae_mnist5k.get_config()
  vae.model.iwae_k = _IWAE_K.value
  runs = [Run("pixelcnn", pixelcnn), Run("vae", vae)]
  images = data.eval_examples("mnist5k", _HELD_OUT.value)["image"]
  print(f"JAX {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.1f}")
  wall = time.perf_counter()
  for minutes in sorted(float(m) for m in _MINUTES.value):
    target = 60 * minutes
    alternating.train_in_turns(runs, target, _SEGMENT.value)
    for run in runs:
      run.evaluate(images)
  print(f"\nheld-out NLL (nats) of {_HELD_OUT.value} mnist5k digits at equal training time; wall "
        f"{(time.perf_counter() - wall) / 60:.1f} min, load {os.getloadavg()[0]:.1f}")
  print(f"{'minutes':>8}{'PixelCNN exact':>16}{'steps':>8}{'VAE IWAE':>10}{'-ELBO':>8}{'steps':>8}")
  for p, v in zip(*(run.rows for run in runs)):
    print(f"{p['train_s'] / 60:>8.1f}{p['nll']:>16.2f}{p['step']:>8}{v['nll']:>10.2f}{v['neg_elbo']:>8.2f}"
          f"{v['step']:>8}")
  out = {"pixelcnn_config": {k: pixelcnn.model[k] for k in ("features", "num_layers", "first_kernel_size",
                                                            "kernel_size")} | {"batch_size": pixelcnn.batch_size},
         "iwae_k": _IWAE_K.value, "held_out": _HELD_OUT.value, "segment_s": _SEGMENT.value,
         "pixelcnn": runs[0].rows, "vae": runs[1].rows, "date": time.strftime("%Y-%m-%d")}
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  with open(_OUT.value, "w", encoding="utf-8") as f:
    json.dump(out, f, indent=1)
  _plot(runs, os.path.splitext(_OUT.value)[0] + ".png")


if __name__ == "__main__":
  app.run(main)
