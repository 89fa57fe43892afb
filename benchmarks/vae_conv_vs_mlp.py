"""Conv VAE against the Flax example's MLP VAE on mnist5k, same steps, one run.

Command: python benchmarks/vae_conv_vs_mlp.py [--root=/tmp/genjax_bench] [--iwae_k=1000]
Trains configs/vae_mnist5k.py and configs/vae_mnist5k_mlp.py (3,000 steps of
128 each; a workdir already trained is resumed, i.e. only evaluated), then
evaluates both on the same 500 held-out digits with the same keys and prints
negative ELBO, IWAE NLL, their differences and the training wall time. Copies
the conv VAE's grids to docs/ (the README shows them).
"""

import os
import shutil
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from configs import vae_mnist5k, vae_mnist5k_mlp  # noqa: E402
from genjax import sample_lib, train_lib  # noqa: E402

_ROOT = flags.DEFINE_string("root", "/tmp/genjax_bench", "Where the two workdirs go.")
_IWAE_K = flags.DEFINE_integer("iwae_k", 1000, "Importance samples of the NLL estimate.")
_DOCS = flags.DEFINE_string("docs", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs"),
                            "Where to copy the conv VAE's pictures; empty: nowhere.")


def main(_):
  rows = {}
  for name, module in (("conv", vae_mnist5k), ("mlp", vae_mnist5k_mlp)):
    config = module.get_config()
    workdir = os.path.join(_ROOT.value, f"vae_mnist5k_{name}")
    t0 = time.perf_counter()
    train_lib.train_and_evaluate(config, workdir)
    train_s = time.perf_counter() - t0
    result = sample_lib.sample_and_evaluate(workdir, iwae_k=_IWAE_K.value)
    rows[name] = {**result, "train_s": train_s, "steps": config.num_steps}
  print(f"\nmnist5k held-out ({rows['conv']['num_examples']} digits), {rows['conv']['steps']} steps of 128,"
        f" IWAE k={_IWAE_K.value}, nats (lower is better):")
  print(f"{'model':<28}{'-ELBO':>9}{'NLL':>9}{'train s':>10}")
  for name, label in (("conv", "conv VAE (genjax default)"), ("mlp", "MLP 784-500-20 (Flax ex.)")):
    r = rows[name]
    print(f"{label:<28}{r['neg_elbo']:>9.2f}{r['nll']:>9.2f}{r['train_s']:>10.0f}")
  print(f"{'conv - mlp':<28}{rows['conv']['neg_elbo'] - rows['mlp']['neg_elbo']:>9.2f}"
        f"{rows['conv']['nll'] - rows['mlp']['nll']:>9.2f}")
  if _DOCS.value:
    os.makedirs(_DOCS.value, exist_ok=True)
    for path in rows["conv"]["files"]:
      shutil.copy(path, os.path.join(_DOCS.value, "vae_mnist5k_" + os.path.basename(path)))


if __name__ == "__main__":
  app.run(main)
