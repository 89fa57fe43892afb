"""FID against steps of benchmarks/small_data_gan.py's runs, one panel per training-set size, as one PNG.

Command: python benchmarks/plot_small_data.py --out=docs/small_data_fid.png \
    docs/small_data_100_long.json+docs/small_data_100_long32.json docs/small_data_450.json \
    docs/small_data_4500.json docs/small_data_100_hinge_sn.json docs/small_data_450_sn_lr4_b64.json \
    docs/small_data_4500_sn_lr4_b64.json
Panels run three to a row; FILE+FILE draws the runs in one panel (a run measured further than another: their rows
merged, the later file's kept at a step both measured). Each panel draws every variant's FID (1,000 EMA samples
against the 4,500 training digits) at the steps the run measured, and a dotted line at the FID of digits drawn from
the training subset itself (what a generator that memorised it would score).
"""

import json

from absl import app, flags

_OUT = flags.DEFINE_string("out", None, "The PNG written.", required=True)

LABELS = {"none": "no augmentation", "diffaugment": "DiffAugment", "ada": "ADA",
          "translation": "DiffAugment (translation)"}
COLUMNS = 3  # panels a row


def main(argv):
  runs = argv[1:]  # the JSON files written by small_data_gan.py
  import matplotlib  # pylint: disable=g-import-not-at-top  (the bench extra's; the flags parse without it)
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  cols = min(COLUMNS, len(runs))
  rows = -(-len(runs) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.4 * rows), dpi=120, squeeze=False)
  for ax in axes.flat[len(runs):]:
    ax.set_axis_off()
  for ax, paths in zip(axes.flat, runs):
    run = None
    for path in paths.split("+"):
      with open(path, encoding="utf-8") as f:
        more = json.load(f)
      if run is not None:  # the same variant at the same step: the later file's
        seen = {(r["variant"], r["step"]) for r in more["rows"]}
        more["rows"] = [r for r in run["rows"] if (r["variant"], r["step"]) not in seen] + more["rows"]
      run = more
    for variant in dict.fromkeys(row["variant"] for row in run["rows"]):
      points = sorted((r["step"], r["fid"]) for r in run["rows"] if r["variant"] == variant)
      ax.plot(*zip(*points), "o-", label=LABELS.get(variant, variant))
    if run.get("memorised_fid") is not None:
      ax.axhline(run["memorised_fid"], color="gray", linestyle=":", label="the subset itself")
    recipe = run.get("recipe", {})
    d = "SNGAN's D" if recipe.get("model.d_spectral_norm") else "BatchNorm D"
    lr = f", Adam {recipe['optim.learning_rate']:g}" if "optim.learning_rate" in recipe else ""
    ax.set_title(f"{run['train_examples']:,} digits, {d}{lr} (batch {run['batch_size']})", fontsize=9)
    ax.set_xlabel("steps")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
  for row in axes:
    row[0].set_ylabel("FID (1,000 EMA samples)")
  for ax in axes.flat[:len(runs)]:
    ax.legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(_OUT.value)
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
