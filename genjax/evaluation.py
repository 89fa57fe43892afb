"""Evaluation as the loop and sample.py both do it: the held-out data, its numbers, the samples' numbers and
the pictures.

`held_out` loads the held-out examples once, with the labels that a
conditional model is evaluated and pictured with and the share of each class
that its samples are drawn with; `evaluate_dataset` averages a family's
per-example numbers over them; `sample_numbers` measures a set of weights'
samples (mode coverage on a 2-D mixture, FID and KID on images);
`visual_grids` and `write_grids` make and write the pictures.
"""

import dataclasses

import jax
import numpy as np

from genjax import data, images, masks, metrics, paths, quality
from genjax import random as grandom
from genjax.data import POINT_DATASETS, toy2d
from genjax.errors import UserError


@dataclasses.dataclass(frozen=True)
class HeldOut:
  """The held-out examples an evaluation uses, in the split's order."""

  images: np.ndarray  # uint8 [N, H, W, C] (float32 [N, 2] for points)
  labels: np.ndarray | None  # int32 [N] for a conditional model; None for an unconditional one, which sees none
  label_probs: np.ndarray | None  # the share of each class among `labels`, which its samples are drawn with

  @property
  def num_examples(self) -> int:
    return int(self.images.shape[0])


def held_out(dataset, num_examples: int, num_classes: int) -> HeldOut:
  """The first `num_examples` held-out examples of the config's `dataset` block, for a model of `num_classes`
  classes (0: unconditional)."""
  examples = data.eval_examples(dataset.name, num_examples, data_dir=dataset.data_dir, download=dataset.download)
  if examples["image"].shape[0] == 0:
    raise UserError(f"dataset.name: the held-out split of {dataset.name!r} is empty; nothing to evaluate on")
  if not num_classes:
    return HeldOut(examples["image"], None, None)
  # The classes samples are asked for: their shares in the whole held-out split, the data's frequencies, which
  # the first examples' may differ from.
  every = examples if examples["image"].shape[0] < num_examples else data.eval_examples(
      dataset.name, WHOLE_SPLIT, data_dir=dataset.data_dir, download=dataset.download)
  return HeldOut(examples["image"], examples["label"], quality.label_marginal(every["label"], num_classes))


WHOLE_SPLIT = 1_000_000  # more than any held-out split: eval_examples then reads all of it


def sample_numbers(sample_fn, unscale_fn, params, key, dataset, quality_samples: int, *, held: HeldOut,
                   inception_weights: str | None, full: bool = False, inpaint_fn=None,
                   batch_size: int = 100) -> dict[str, float]:
  """The numbers of one set of weights' samples: a 2-D mixture's mode coverage, an image dataset's FID and KID
  (with `full`, precision, recall, density and coverage too) of `quality_samples` samples, and the inpaintings'
  (`inpainting_numbers`) of a family that inpaints images (`inpaint_fn`, None for one that cannot)."""
  purpose = lambda p: jax.random.fold_in(key, p)  # each its own key (genjax.random), the eval stream's
  return {**point_metrics(sample_fn, params, purpose(grandom.EVAL_POINTS), dataset.name),
          **quality.measure(sample_fn, unscale_fn, params, purpose(grandom.EVAL_QUALITY), dataset.name,
                            quality_samples, full=full, data_dir=dataset.data_dir,
                            inception_weights=inception_weights, label_probs=held.label_probs),
          **inpainting_numbers(inpaint_fn, unscale_fn, params, purpose(grandom.EVAL_INPAINT), dataset, held,
                               batch_size, inception_weights)}


def inpaintings_of(family):
  """The family's `inpaint_held_out`, compiled; None for a family that cannot inpaint."""
  inpaint = getattr(family, "inpaint_held_out", None)
  return None if inpaint is None else jax.jit(inpaint)


# (label, unit) of each number of `inpainting_numbers`, by mask.
INPAINT_METRICS = {f"inpaint_{what}_{mask}": (f"inpainted {mask.replace('_', ' ')}: {label}", "")
                   for mask in masks.EVAL_MASKS for what, label in (("kept", "label kept"), ("fid", "FID"))}


def inpainting_numbers(inpaint_fn, unscale_fn, params, key, dataset, held: HeldOut, batch_size: int,
                       inception_weights: str | None = None) -> dict[str, float]:
  """For each mask of genjax.masks.EVAL_MASKS (the lower half, the centre box), of the held-out digits with
  those pixels drawn by the model given the others: 'inpaint_kept_<mask>', the share the shipped digit
  classifier labels as it labels the whole digit (both as the model sees them, binarised for a binary model),
  and 'inpaint_fid_<mask>', their FID (of as many images as are held out: compare equal counts only); {} without
  an `inpaint_fn` or on images the classifier does not read.

  `inpaint_fn(params, images, known, key, offset, labels)` (a family's `inpaint_held_out`) gives (the images as
  scored, the inpainted images) in the model's range, from `key` and the batch's offset: batches of
  `batch_size` (the last padded, its padding dropped) compile once. A conditional model inpaints each digit
  given its class.
  """
  if inpaint_fn is None or dataset.name not in quality.DIGIT_DATASETS:
    return {}
  out = {}
  for mask in masks.EVAL_MASKS:
    kept, inpainted = [], []
    for start in range(0, held.num_examples, batch_size):
      chunk = held.images[start:start + batch_size]
      batch = _padded(chunk, batch_size)
      labels = None if held.labels is None else _padded(held.labels[start:start + batch_size], batch_size)
      whole, drawn = inpaint_fn(params, batch, masks.known(mask, batch.shape), key, offset=start, labels=labels)
      whole, drawn = (np.asarray(unscale_fn(x))[:chunk.shape[0]] for x in (whole, drawn))
      kept.append(quality.digit_labels(whole) == quality.digit_labels(drawn))
      inpainted.append(drawn)
    out[f"inpaint_kept_{mask}"] = float(np.mean(np.concatenate(kept)))
    out[f"inpaint_fid_{mask}"] = quality.fid_of_images(np.concatenate(inpainted), dataset.name, dataset.data_dir,
                                                       inception_weights)
  return out


INPAINT_ROWS, INPAINT_DRAWS = 8, 4


def inpaint_grid(inpaint_fn, unscale_fn, params, key, held: HeldOut, kind: str) -> np.ndarray:
  """uint8 [8, 2 + 4, H, W, C]: per held-out example (the first 8), the image as the model sees it, the same
  with the pixels the mask `kind` hides set to grey, then 4 inpaintings from keys of their own."""
  images = held.images[:INPAINT_ROWS]
  labels = None if held.labels is None else held.labels[:INPAINT_ROWS]
  known = masks.known(kind, images.shape, jax.random.split(jax.random.fold_in(key, 1), images.shape[0]))
  columns = []
  for j in range(INPAINT_DRAWS):
    whole, drawn = inpaint_fn(params, images, known, jax.random.fold_in(key, 2 + j), offset=0, labels=labels)
    if not columns:
      whole = np.asarray(unscale_fn(whole))
      columns += [whole, np.where(np.asarray(known), whole, np.uint8(128))]
    columns.append(np.asarray(unscale_fn(drawn)))
  return np.stack(columns, axis=1)


def class_grid(sample_fn, unscale_fn, params, key, label: int) -> np.ndarray:
  """uint8 [8, 8, H, W, C]: 64 samples of class `label` of a conditional model."""
  x = np.asarray(unscale_fn(sample_fn(params, jax.random.fold_in(key, label), 64, np.full(64, label, np.int32))))
  return x.reshape(8, 8, *x.shape[1:])


def _padded(x: np.ndarray, size: int) -> np.ndarray:
  return x if x.shape[0] == size else np.concatenate([x, np.zeros((size - x.shape[0], *x.shape[1:]), x.dtype)])


def evaluate_dataset(evaluate_fn, params, images_NxHxWxC: np.ndarray, key, batch_size: int,
                     labels_N: np.ndarray | None = None) -> dict[str, float]:
  """Means over held-out images (and their labels) of the per-example numbers of `evaluate_fn`.

  Every call sees a batch of exactly `batch_size` (the last one padded and
  its padding dropped), so `evaluate_fn` compiles once.
  """
  n = images_NxHxWxC.shape[0]
  totals: dict[str, float] = {}
  for start in range(0, n, batch_size):
    chunk = images_NxHxWxC[start:start + batch_size]
    valid = chunk.shape[0]
    labels = None if labels_N is None else {"labels": _padded(labels_N[start:start + batch_size], batch_size)}
    out = jax.device_get(evaluate_fn(params, _padded(chunk, batch_size), key, offset=start, **(labels or {})))
    for name, value_B in out.items():
      totals[name] = totals.get(name, 0.0) + float(np.sum(np.asarray(value_B, np.float64)[:valid]))
  return {name: total / n for name, total in totals.items()}


POINT_SAMPLES = 2500  # samples a 2-D mixture's metrics and picture are drawn from (VEEGAN, PacGAN)
# (label, unit) of each number of `point_metrics`.
POINT_METRICS = {"modes": ("modes covered", ""), "high_quality": ("high-quality samples", "%"),
                 "reverse_kl": ("reverse KL", "nats")}


def point_metrics(sample_fn, params, key, dataset: str) -> dict[str, float]:
  """Mode coverage of `POINT_SAMPLES` samples of any family on a 2-D mixture; {} for images.

  `sample_fn(params, key, n)` is the family's `sample`.
  """
  if dataset not in POINT_DATASETS:
    return {}
  samples = np.asarray(sample_fn(params, key, POINT_SAMPLES))
  return metrics.mode_coverage(samples, toy2d.mode_centres(dataset), toy2d.mode_std(dataset))


def point_grids(sample_fns: dict, params, key, dataset: str) -> dict:
  """Scatter pictures of samples on a 2-D mixture, one per `{name: sample_fn}`; {} for images."""
  if dataset not in POINT_DATASETS:
    return {}
  centres = toy2d.mode_centres(dataset)
  return {name: metrics.scatter(fn(params, key, POINT_SAMPLES), centres) for name, fn in sample_fns.items()}


def picture_examples(num_examples: int) -> np.ndarray:
  """Indices of the 32 held-out examples that pictures use, spread evenly over the split (so a split stored in
  class order, as mnist5k's, shows every class)."""
  return np.linspace(0, num_examples - 1, min(32, num_examples)).round().astype(int)


def visual_grids(visuals_fn, params, key, eval_images: np.ndarray, extra: dict | None = None,
                 eval_labels: np.ndarray | None = None) -> dict:
  """The grids of `visuals_fn` on the picture examples (with their labels), and `extra`, on the host."""
  rows = picture_examples(eval_images.shape[0])
  labels = {} if eval_labels is None else {"labels": eval_labels[rows]}
  return jax.device_get({**visuals_fn(params, key, eval_images[rows], **labels), **(extra or {})})


def write_grids(grids: dict, directory: str, suffix: str = "") -> list[str]:
  """Writes each grid as `directory/<name><suffix>.png`; returns the paths."""
  return [images.write_png(paths.join(directory, f"{name}{suffix}.png"), grid, scale=2)
          for name, grid in grids.items()]


def write_visuals(visuals_fn, params, key, eval_images: np.ndarray, directory: str,
                  suffix: str = "", extra: dict | None = None, eval_labels: np.ndarray | None = None) -> list[str]:
  """Writes each grid of `visuals_fn` (`visual_grids`), and of `extra`; returns the paths."""
  return write_grids(visual_grids(visuals_fn, params, key, eval_images, extra, eval_labels), directory, suffix)
