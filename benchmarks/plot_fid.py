"""FID of one or more workdirs against the step and against wall time, as one PNG.

Command (docs/results.md's figure; each run with an evaluation every 250 steps):
  python train.py --config=configs/dcgan_mnist5k.py --workdir=/tmp/fid_dcgan --config.eval_every=250
  python train.py --workdir=/tmp/fid_vae --config.eval_every=250
  python benchmarks/plot_fid.py --out=docs/fid_mnist5k.png DCGAN=/tmp/fid_dcgan "conv VAE=/tmp/fid_vae"
  python benchmarks/plot_fid.py --out=docs/ema_dcgan_mnist5k.png "EMA generator=/tmp/fid_dcgan" \
      "raw generator=/tmp/fid_dcgan@fid_raw"

Reads the 'fid' (or, after '@', another number: 'fid_raw') of each evaluation in metrics.jsonl (genjax.quality's
protocol: 5,000 samples, the training split, the digit classifier). Wall time
counts from the run's first record (its first logged step, after
compilation) and includes the evaluations themselves.
"""

import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("runs", nargs="+", help="label=workdir or label=workdir@metric")
  parser.add_argument("--out", required=True)
  args = parser.parse_args()
  fig, (by_step, by_time) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=120, sharey=True)
  for run in args.runs:
    label, spec = run.rsplit("=", 1)  # the last "=": labels may hold one
    workdir, _, metric = spec.partition("@")
    metric = metric or "fid"
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
      records = [json.loads(line) for line in f]
    start = min(r["time"] for r in records)
    points = [(r["step"], r["time"] - start, r[metric]) for r in records if r["split"] == "eval" and metric in r]
    steps, seconds, fids = zip(*points)
    by_step.plot(steps, fids, "o-", label=label)
    by_time.plot([s / 60 for s in seconds], fids, "o-", label=label)
  by_step.set_xlabel("step")
  by_time.set_xlabel("wall time (minutes, 2-core CPU)")
  by_step.set_ylabel("FID (5,000 samples, digit-classifier features)")
  for ax in (by_step, by_time):
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
  by_step.legend()
  fig.tight_layout()
  fig.savefig(args.out)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
