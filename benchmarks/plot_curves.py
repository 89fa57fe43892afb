"""Loss curves of one or more workdirs as one PNG.

Command: python benchmarks/plot_curves.py --out=docs/vae_mnist5k_curves.png \
    conv=/tmp/genjax_bench/vae_mnist5k_conv mlp=/tmp/genjax_bench/vae_mnist5k_mlp
Plots the training negative ELBO (solid) and the held-out negative ELBO
(dots) of each labelled workdir's metrics.jsonl against the step.
"""

import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("runs", nargs="+", help="label=workdir")
  parser.add_argument("--out", required=True)
  parser.add_argument("--metric", default="neg_elbo")
  args = parser.parse_args()
  fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
  for run in args.runs:
    label, workdir = run.split("=", 1)
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
      records = [json.loads(line) for line in f]
    for split, style in (("train", "-"), ("eval", "o--")):
      points = [(r["step"], r[args.metric]) for r in records if r["split"] == split]
      if points:
        steps, values = zip(*points)
        ax.plot(steps, values, style, label=f"{label} {'train' if split == 'train' else 'held-out'}")
  ax.set_xlabel("step")
  ax.set_ylabel(f"{args.metric} (nats)")
  ax.set_ylim(top=min(ax.get_ylim()[1], 200))
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(args.out)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
