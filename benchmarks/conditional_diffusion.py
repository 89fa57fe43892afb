"""Classifier-free guidance and inpainting of one trained class-conditional diffusion model, side by side.

Command: python benchmarks/conditional_diffusion.py --workdir=runs/diffusion_mnist5k_class
         [--scales=0,1,1.5,2,3,4] [--interval=0.28,2.9] [--num_samples=1000]
         [--inpaint_methods=replacement,repaint] [--jumps=5x5] [--held_out=200]

Restores the workdir's latest checkpoint (a config with model.num_classes > 0, e.g.
configs/diffusion_mnist5k_class.py) and measures, with the loop's protocol and features (`genjax.quality`):

- guidance: for every scale s (1: the conditional model, 0: the unconditional one), constant and within the
  interval (lo, hi] of sigma / alpha (Kynkäänniemi et al. 2024), FID and class accuracy of `num_samples` samples
  whose classes are drawn from the held-out shares, every setting from the same key and one compiled sampler
  (scale and interval are its arguments);
- inpainting: for each method (the replacement method, RePaint with each jump setting) and each evaluation mask
  (the lower half, the centre box) of `held_out` held-out digits spaced evenly through the split (every class
  its share), the FID of those digits themselves (the floor), the share whose label the digit
  classifier keeps and the FID of the inpainted digits, with the network evaluations per image.

Prints both tables and writes docs/guidance.json and .png (FID and class accuracy against the scale) and
docs/inpainting.json. FID depends on the number of images: compare rows of one run.
"""

import dataclasses
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

from genjax import build, checkpoint, evaluation, quality, workdir as workdir_lib  # noqa: E402
from genjax import random as grandom  # noqa: E402
from genjax.losses import diffusion_sampling as sampling  # noqa: E402

_DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
_WORKDIR = flags.DEFINE_string("workdir", None, "A trained class-conditional diffusion workdir.", required=True)
_SCALES = flags.DEFINE_list("scales", ["0", "1", "1.5", "2", "3", "4"], "Guidance scales s (1: conditional).")
_INTERVAL = flags.DEFINE_list("interval", ["0.28", "2.9"], "lo,hi of sigma / alpha where guidance applies.")
_NUM = flags.DEFINE_integer("num_samples", 1000, "Samples per FID and class accuracy.")
_METHODS = flags.DEFINE_list("inpaint_methods", ["replacement", "repaint"], "Inpainting methods; [] skips.")
_JUMPS = flags.DEFINE_list("jumps", ["5x5"], "RePaint's jump_length x jump_count settings.")
_HELD_OUT = flags.DEFINE_integer("held_out", 200, "Held-out digits inpainted.")
_PARTS = flags.DEFINE_list("parts", ["guidance", "inpainting"], "What to measure.")


def restore(workdir: str):
  config = workdir_lib.load_config(workdir)
  family = build.family(config)
  if not family.num_classes:
    raise app.UsageError(f"{workdir} holds an unconditional model (model.num_classes 0)")
  keys = grandom.streams(config.seed)
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), config.keep_checkpoints, read_only=True)
  try:
    step = ckpt.latest_step()
    state = ckpt.restore(step, jax.jit(family.init)(keys.init))
  finally:
    ckpt.close()
  params = jax.jit(family.eval_params, static_argnums=2)(state, grandom.eval_params_key(keys.eval), "ema")
  return config, family, keys, step, params


def spread(held: evaluation.HeldOut, n: int) -> evaluation.HeldOut:
  """`n` examples evenly spaced through the held-out split: a split sorted by class (mnist5k's) gives every class
  its share, where its first `n` would be of a few classes only, and their FID against the whole data huge."""
  index = np.linspace(0, held.num_examples - 1, min(n, held.num_examples)).round().astype(np.int64)
  return dataclasses.replace(held, images=held.images[index], labels=held.labels[index])


def guidance(config, family, keys, params, held) -> list[dict]:
  lo, hi = (float(v) for v in _INTERVAL.value)
  sampler = jax.jit(lambda p, k, labels, s, low, high: family.sample(p, k, labels.shape[0], labels, guidance=s,
                                                                      interval=(low, high)))
  unscale = jax.jit(family.unscale)
  rows = []
  print(f"{'scale':>6s}{'interval':>16s}{'FID':>9s}{'class acc':>11s}{'seconds':>9s}")
  for interval in ((0.0, float("inf")), (lo, hi)):
    for s in map(float, _SCALES.value):
      if interval != (0.0, float("inf")) and s in (0.0, 1.0):
        continue  # 1 is the conditional model either way; 0 inside the interval only is not a usual setting
      def sample(p, k, n, labels, s=s, interval=interval):
        return sampler(p, k, jnp.asarray(labels, jnp.int32), jnp.float32(s), *map(jnp.float32, interval))
      t0 = time.perf_counter()
      result = quality.measure(sample, unscale, params, keys.eval, config.dataset.name, _NUM.value,
                               data_dir=config.dataset.data_dir, label_probs=held.label_probs)
      row = {"scale": s, "lo": interval[0], "hi": interval[1] if interval[1] != float("inf") else None,
             "fid": result["fid"], "class_accuracy": result["class_accuracy"],
             "class_accuracy_by_class": [result[f"class_accuracy_{c}"] for c in range(family.num_classes)],
             "seconds": time.perf_counter() - t0}
      rows.append(row)
      shown = "all" if row["hi"] is None else f"({interval[0]:g}, {interval[1]:g}]"
      print(f"{s:>6g}{shown:>16s}{row['fid']:>9.2f}{row['class_accuracy']:>11.3f}{row['seconds']:>9.1f}", flush=True)
  return rows


def inpainting(config, family, keys, params, held) -> list[dict]:
  settings = []
  for method in _METHODS.value:
    if method == "repaint":
      for jumps in _JUMPS.value:
        length, count = (int(v) for v in jumps.split("x"))
        settings.append(("repaint", length, count))
    else:
      settings.append((method, 1, 1))
  floor = quality.fid_of_images(held.images, config.dataset.name, config.dataset.data_dir)
  print(f"FID of the {held.num_examples} real held-out digits themselves (the floor of the inpaintings'): {floor:.2f}")
  rows = [{"method": "none (the real digits)", "fid": floor, "kept": 1.0, "evaluations": 0}]
  print(f"{'method':>12s}{'jumps':>7s}{'evals':>7s}{'mask':>12s}{'kept':>7s}{'FID':>9s}{'seconds':>9s}")
  for method, length, count in settings:
    model = dataclasses.replace(family, inpaint_method=method, jump_length=length, jump_count=count)
    evals = (sampling.repaint_evaluations(model.inpaint_steps, length, count) if method == "repaint"
             else model.inpaint_steps)
    t0 = time.perf_counter()
    numbers = evaluation.inpainting_numbers(jax.jit(model.inpaint_held_out), jax.jit(model.unscale), params,
                                            keys.eval, config.dataset, held, 100)
    seconds = time.perf_counter() - t0
    for mask in ("lower_half", "centre_box"):
      row = {"method": method, "jump_length": length, "jump_count": count, "steps": model.inpaint_steps,
             "evaluations": evals, "mask": mask, "kept": numbers[f"inpaint_kept_{mask}"],
             "fid": numbers[f"inpaint_fid_{mask}"], "seconds_both_masks": seconds}
      rows.append(row)
      jumps = f"{length}x{count}" if method == "repaint" else "-"
      print(f"{method:>12s}{jumps:>7s}{evals:>7d}{mask:>12s}{row['kept']:>7.3f}{row['fid']:>9.2f}{seconds:>9.1f}",
            flush=True)
  return rows


def plot(rows: list[dict], title: str, path: str) -> None:
  """FID and class accuracy against the scale, and FID against class accuracy (the trade-off the scale makes),
  for constant guidance and guidance within the interval; scale 1 (no guidance) belongs to both curves."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (ax_fid, ax_acc, ax_both) = plt.subplots(1, 3, figsize=(13, 3.8))
  for constant, label in ((True, "guidance at every level"), (False, "guidance within the interval")):
    mine = sorted((r for r in rows if (r["hi"] is None) == constant or (r["scale"] == 1.0 and r["hi"] is None)),
                  key=lambda r: r["scale"])
    ax_fid.plot([r["scale"] for r in mine], [r["fid"] for r in mine], "o-", label=label)
    ax_acc.plot([r["scale"] for r in mine], [r["class_accuracy"] for r in mine], "o-", label=label)
    guided = [r for r in mine if r["scale"] >= 1.0]
    ax_both.plot([r["class_accuracy"] for r in guided], [r["fid"] for r in guided], "o-", label=label)
    for r in guided:
      ax_both.annotate(f"{r['scale']:g}", (r["class_accuracy"], r["fid"]), fontsize=7, xytext=(3, 3),
                       textcoords="offset points")
  ax_fid.set_ylabel("FID (digit-classifier features)")
  ax_acc.set_ylabel("samples classified as asked")
  for ax in (ax_fid, ax_acc):
    ax.set_xlabel("guidance scale s (1: conditional, 0: unconditional)")
  ax_both.set_xlabel("samples classified as asked (scales >= 1 annotated)")
  ax_both.set_ylabel("FID")
  for ax in (ax_fid, ax_acc, ax_both):
    ax.grid(alpha=0.3)
  ax_fid.legend(fontsize=8)
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=100)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  config, family, keys, step, params = restore(_WORKDIR.value)
  held = spread(evaluation.held_out(config.dataset, evaluation.WHOLE_SPLIT, family.num_classes), _HELD_OUT.value)
  print(f"{_WORKDIR.value} at step {step:,}; JAX {jax.__version__} on {jax.devices()[0].platform}; "
        f"{quality.describe(config.dataset.name, _NUM.value, config.seed)}")
  meta = {"workdir": _WORKDIR.value, "step": step, "date": time.strftime("%Y-%m-%d"), "sampler": family.sampler,
          "sample_steps": family.sample_steps}
  if "guidance" in _PARTS.value:
    rows = guidance(config, family, keys, params, held)
    with open(os.path.join(_DOCS, "guidance.json"), "w", encoding="utf-8") as f:
      json.dump({**meta, "num_samples": _NUM.value, "rows": rows}, f, indent=1)
    plot(rows, f"{config.dataset.name}, step {step:,}, {family.sampler} on {family.sample_steps} levels, "
               f"{_NUM.value:,} samples", os.path.join(_DOCS, "guidance.png"))
  if "inpainting" in _PARTS.value:
    rows = inpainting(config, family, keys, params, held)
    with open(os.path.join(_DOCS, "inpainting.json"), "w", encoding="utf-8") as f:
      json.dump({**meta, "held_out": _HELD_OUT.value, "rows": rows}, f, indent=1)


if __name__ == "__main__":
  app.run(main)
