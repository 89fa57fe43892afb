"""FID against steps of benchmarks/small_data_gan.py's runs, one panel per training-set size, as one PNG.

Command: python benchmarks/plot_small_data.py --out=docs/small_data_fid.png docs/small_data_100.json \
    docs/small_data_100_hinge_sn.json docs/small_data_450.json docs/small_data_4500.json
Each panel draws every variant's FID (1,000 EMA samples against the 4,500 training digits) at the steps the
run measured, and a dotted line at the FID of digits drawn from the training subset itself (what a generator
that memorised it would score).
"""

import json

from absl import app, flags

_OUT = flags.DEFINE_string("out", None, "The PNG written.", required=True)

LABELS = {"none": "no augmentation", "diffaugment": "DiffAugment", "ada": "ADA"}


def main(argv):
  runs = argv[1:]  # the JSON files written by small_data_gan.py
  import matplotlib  # pylint: disable=g-import-not-at-top  (the bench extra's; the flags parse without it)
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(runs), figsize=(3.6 * len(runs), 3.4), dpi=120, squeeze=False)
  for ax, path in zip(axes[0], runs):
    with open(path, encoding="utf-8") as f:
      run = json.load(f)
    for variant in dict.fromkeys(row["variant"] for row in run["rows"]):
      points = sorted((r["step"], r["fid"]) for r in run["rows"] if r["variant"] == variant)
      ax.plot(*zip(*points), "o-", label=LABELS.get(variant, variant))
    if run.get("memorised_fid") is not None:
      ax.axhline(run["memorised_fid"], color="gray", linestyle=":", label="the subset itself")
    d = "SNGAN's D" if run.get("recipe", {}).get("model.d_spectral_norm") else "BatchNorm D"
    ax.set_title(f"{run['train_examples']:,} digits, {d} (batch {run['batch_size']})", fontsize=9)
    ax.set_xlabel("steps")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
  axes[0][0].set_ylabel("FID (1,000 EMA samples)")
  axes[0][0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(_OUT.value)
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
