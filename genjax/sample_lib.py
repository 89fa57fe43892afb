"""`sample_and_evaluate(workdir)`: pictures and held-out numbers from the latest checkpoint."""

import ast
import functools
import math

import jax
from absl import logging

from genjax import build, checkpoint, config_checks, data, evaluation, masks, paths, quality, writers
from genjax import random as grandom
from genjax import workdir as workdir_lib
from genjax.errors import NonFiniteLossError, UserError
from genjax.models import family as family_lib


QUALITY_ORDER = ("fid", "kid", "kid_std", "precision", "recall", "density", "coverage", "class_accuracy")


def _parse_value(text: str, old):
  """`text` as the type of the field's current value `old`: a Python literal, else the text itself (a name)."""
  if isinstance(old, float):  # 'nan' and 'inf' too, which the field's own check then refuses
    try:
      return float(text)
    except ValueError:
      pass
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    value = text
  if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  return value


def sample_and_evaluate(workdir: str, iwae_k: int | None = None, num_examples: int | None = None,
                        out_dir: str | None = None, truncation: float | None = None,
                        quality_samples: int = 5000, inception_weights: str | None = None,
                        weights: str | None = None, options: dict[str, str] | None = None,
                        flag_values: dict[str, float] | None = None, label: int | None = None,
                        inpaint: str | None = None) -> dict:
  """Restores the latest checkpoint of `workdir`, writes its grids and evaluates it.

  Grids use the run's fixed sample key, so pictures of different checkpoints
  are comparable. Returns {'step', 'num_examples', 'files', 'report'} and the
  numbers: the family's held-out ones (a VAE's 'neg_elbo' and 'nll', nats,
  with 'iwae_k'), and on a 2-D mixture the mode coverage of any family's
  samples ('modes', 'high_quality', 'reverse_kl'); 'report' holds them as
  (label, unit, value) rows for printing.
  The evaluation uses the family's `sample_eval` settings (a VAE's 1,000
  importance samples); `iwae_k` sets the field that declares the flag
  `iwae_k` (a VAE's model.iwae_k). `truncation` adds grids from the truncated prior, for a family whose
  `sample` and `visuals` take one (the GAN). `quality_samples` samples give
  FID, KID, precision/recall and density/coverage (genjax.quality), with the
  Inception-v3 of `inception_weights` (default: the run's
  eval.inception_weights) or on digit datasets the shipped classifier.
  `weights` chooses the parameters (the family's `weights`: 'ema' or 'raw'
  for a GAN; default the family's first); pictures and eval.json of other
  than the default go to DIR/sample_<weights>.
  `options` ({field: value as text}) sets the family's evaluation and
  sampling options (its spec's `free` fields: a diffusion model's sampler,
  steps, eta, ...), after `sample_eval`; each is checked as the config is.
  `flag_values` ({sample.py flag: value}, None values ignored) set the fields
  that declare those flags (a diffusion model's --guidance, --guidance_lo,
  --guidance_hi). `label` adds a grid of 64 samples of that class, for a
  conditional model; `inpaint` (a kind of genjax.masks) a grid of held-out
  images inpainted where that mask hides them, for a family that inpaints.
  """
  config_checks.quality_samples("--quality_samples", quality_samples, config_checks.MIN_FULL_QUALITY_SAMPLES)
  if iwae_k is not None and iwae_k <= 0:
    raise UserError(f"--iwae_k: must be a positive integer, got {iwae_k}")
  if iwae_k is not None:
    config_checks.in_range("--iwae_k", iwae_k, 1, config_checks.MAX_IWAE_K)
  if num_examples is not None and num_examples <= 0:
    raise UserError(f"--num_examples: must be a positive integer, got {num_examples}")
  if num_examples is not None:
    config_checks.in_range("--num_examples", num_examples, 1, config_checks.MAX_NUM_EXAMPLES)
  if truncation is not None and not 0 < truncation < float("inf"):
    raise UserError(f"--truncation: must be a finite number > 0, got {truncation}")
  workdir = paths.resolve(workdir)  # a gs:// one as it is; another scheme refused
  config = workdir_lib.load_config(workdir)  # validated, or refused naming the file
  spec = family_lib.get(config.family)
  weights = weights or spec.weights[0]
  if weights not in spec.weights:
    raise UserError(f"--weights: the {config.family} in {workdir!r} has no {weights!r} weights; allowed:"
                    f" {', '.join(spec.weights)}")
  # Checked before anything is restored or compiled: the pictures and eval.json go there.
  default_dir = "sample" if weights == spec.weights[0] else f"sample_{weights}"
  out_dir = workdir_lib.check_workdir(out_dir or paths.join(workdir, default_dir), "--workdir")
  settings = dict(spec.sample_eval)
  if iwae_k is not None:  # the field that declares the flag (genjax.options), not a field found by its name
    if "iwae_k" not in spec.sample_flags:
      raise UserError(f"--iwae_k: the {config.family} family draws no importance samples; {workdir!r} holds a"
                      f" {config.family}")
    settings[spec.sample_flags["iwae_k"]] = iwae_k
  flag_values = {flag: value for flag, value in (flag_values or {}).items() if value is not None}
  for flag, value in flag_values.items():  # each checked below, with the config, as its field
    if flag not in spec.sample_flags:
      raise UserError(f"--{flag}: the {config.family} family has no option it sets; {workdir!r} holds a"
                      f" {config.family}")
    settings[spec.sample_flags[flag]] = value
  if inpaint is not None and inpaint not in masks.KINDS:
    raise UserError(f"--inpaint: unknown {inpaint!r}; allowed: {', '.join(masks.KINDS)}")
  for field, text in (options or {}).items():
    if field not in spec.free:
      raise UserError(f"--set: {field} is not a sampling or evaluation option of the {config.family} family (a"
                      f" resume could not keep it); allowed: {', '.join(spec.free) or 'none'}")
    settings[field] = _parse_value(text, config[field.split(".")[0]][field.split(".")[1]])
  config.unlock()
  for field, value in settings.items():
    block, name = field.split(".")
    try:
      config[block][name] = value
    except TypeError as e:  # ml_collections keeps each field's type
      kind = type(config[block][name]).__name__
      raise UserError(f"--set: {field}: cannot use {value!r}; allowed: a value of type {kind}") from e
  config.lock()
  if options or flag_values:
    try:
      build.validate(config)
    except UserError as e:
      raise UserError(f"--set: {e}" if options else f"--{next(iter(flag_values))}: {e}") from e
  family = build.family(config)
  if label is not None and not 0 <= label < family.num_classes:
    raise UserError(f"--label: the {config.family} in {workdir!r} is conditioned on no class {label}; allowed: "
                    + (f"0 to {family.num_classes - 1}" if family.num_classes else "none (it is unconditional)"))
  if inpaint is not None and len(data.image_shape(config.dataset.name)) == 1:
    raise UserError(f"--inpaint: the examples of {config.dataset.name!r} are points, not images")
  if inpaint is not None and evaluation.inpaintings_of(family) is None:
    raise UserError(f"--inpaint: the {config.family} family does not inpaint; {workdir!r} holds a {config.family}")
  if truncation is not None and not spec.truncation:
    raise UserError(f"--truncation: the {config.family} family samples from no truncated prior; {workdir!r}"
                    f" holds a {config.family}")
  keys = grandom.streams(config.seed)
  if quality_samples:
    quality.check_inception_weights(inception_weights, "--inception_weights")
    if not inception_weights:
      quality.check_inception_weights(config.eval.inception_weights, f"{workdir}/config.json: eval.inception_weights")
  inception_weights = inception_weights or config.eval.inception_weights

  ckpt = checkpoint.Checkpointer(paths.join(workdir, "checkpoints"), config.keep_checkpoints, read_only=True)
  try:  # closed on every way out, or orbax's threads complain at exit after the one-line error
    if ckpt.latest_step() is None:
      raise UserError(f"--workdir: {workdir!r} holds no checkpoint yet; train into it first with train.py")
    ds = config.dataset
    held = evaluation.held_out(ds, num_examples or config.eval.num_examples, family.num_classes)
    # The newest complete checkpoint, even while a live run rotates them; refuses another model's or
    # non-finite weights.
    latest = ckpt.restore_latest(jax.jit(family.init)(keys.init))
    if latest is None:
      raise UserError(f"--workdir: {workdir!r} holds no checkpoint yet; train into it first with train.py")
    step, state = latest
  finally:
    ckpt.close()
  params = jax.jit(family.eval_params, static_argnums=2)(state, grandom.eval_params_key(keys.eval), weights)
  visuals = jax.jit(family.visuals)
  if truncation is not None:
    visuals = jax.jit(functools.partial(family.visuals, truncation=truncation))
  sample_fn = jax.jit(family.sample, static_argnums=2)
  sample_fns = {"samples": sample_fn}
  if truncation is not None:
    sample_fns[f"truncated_{truncation:g}"] = jax.jit(functools.partial(family.sample, truncation=truncation),
                                                      static_argnums=2)
  # The numbers first: weights that give a non-finite one are refused before any picture or eval.json is written.
  result = {"step": step, "weights": weights,
            **evaluation.evaluate_dataset(jax.jit(family.evaluate), params, held.images, keys.eval,
                                          config.eval.batch_size, held.labels),
            **evaluation.sample_numbers(sample_fn, jax.jit(family.unscale), params, keys.eval, ds, quality_samples,
                                        held=held, inception_weights=inception_weights, full=True,
                                        inpaint_fn=evaluation.inpaintings_of(family),
                                        batch_size=config.eval.batch_size),
            "num_examples": held.num_examples}
  _require_finite(result, spec, config, step)
  if any(name in result for name in QUALITY_ORDER):
    result.update(quality_samples=quality_samples,
                  quality_protocol=quality.describe(ds.name, quality_samples, config.seed, inception_weights))
  workdir_lib.prepare_workdir(out_dir, "--workdir")
  extra = evaluation.point_grids(sample_fns, params, keys.sample, ds.name)
  if label is not None:
    extra[f"samples_class_{label}"] = evaluation.class_grid(sample_fn, jax.jit(family.unscale), params, keys.sample,
                                                           label)
  if inpaint is not None:
    extra[f"inpaint_{inpaint}"] = evaluation.inpaint_grid(evaluation.inpaintings_of(family), jax.jit(family.unscale),
                                                          params, keys.sample, held, inpaint)
  files = evaluation.write_visuals(visuals, params, keys.sample, held.images, out_dir, extra=extra,
                                   eval_labels=held.labels)
  # What it was sampled and evaluated with: every option of the family's that a run may change.
  result.update({field.split(".")[1]: config[field.split(".")[0]][field.split(".")[1]]
                 for field in (*spec.free, *settings)})
  workdir_lib.write_atomically(paths.join(out_dir, "eval.json"), writers.dumps(result, indent=2) + "\n")
  logging.info("wrote %s", ", ".join(files))
  # What sample.py prints: (label, unit, value) of the family's held-out numbers, then the data's.
  report = {
      "held_out": [(spec.labels.get(name, name).format(**config.model), spec.units.get(name, ""), result[name])
                   for name in sorted(set(result) & set(spec.units))]
                  + [(label, unit, result[name]) for name, (label, unit) in evaluation.INPAINT_METRICS.items()
                     if name in result],
      "points": [(label, unit, result[name]) for name, (label, unit) in evaluation.POINT_METRICS.items()
                 if name in result],
      "num_points": evaluation.POINT_SAMPLES,
      "quality": [(name, result[name]) for name in QUALITY_ORDER if name in result],
      "quality_protocol": result.get("quality_protocol")}
  return {**result, "files": files, "report": report}


def _require_finite(result: dict, spec, config, step: int) -> None:
  """NonFiniteLossError unless every held-out number and every sample-quality number is finite.

  A NaN negative ELBO or FID is no result: the weights diverged (written by a run that stopped at a non-finite
  loss, or by an older genjax). Mode coverage's reverse KL may be infinite (no sample near a mode) and is a result.
  """
  numbers = [(spec.labels.get(name, name).format(**config.model), spec.units.get(name, ""), result[name])
             for name in sorted(set(result) & set(spec.units))]
  numbers += [(name, "", result[name]) for name in QUALITY_ORDER if name in result]
  for label, unit, value in numbers:
    if not math.isfinite(value):
      raise NonFiniteLossError(f"checkpoint step {step} gives a non-finite {label} ({value} {unit}".rstrip() +
                               "): its weights diverged; train again with another config in a new --workdir")
