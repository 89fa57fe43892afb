"""From a config to typed objects: validation, the family, the optimizer.

This module checks the shared fields and builds the shared optimizer; the
family named by `config.family` (genjax.models.family's registry) checks and
reads its own fields. Everything built receives typed fields. `validate` runs before any compilation or data
loading, so a bad field costs the user a second, not a compile.
"""

import math

import ml_collections
import numpy as np
import optax

from genjax import augment
from genjax import config_checks as checks
from genjax import data, options, parallel, precision
from genjax import models  # noqa: F401  pylint: disable=unused-import  (its families register themselves)
from genjax.models import family as family_lib
from genjax.nets import layers

SCHEDULES = ("constant", "cosine")


# The largest float32: every float field reaches the model as float32, where a larger number is infinite.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _non_finite_field(config, prefix: str = "") -> str | None:
  """The first field anywhere in the config that holds a float NaN or infinity, in Python or in float32 (in a
  tuple too), or None."""
  for key, value in config.items():
    name = f"{prefix}{key}"
    if isinstance(value, (dict, ml_collections.ConfigDict)):
      found = _non_finite_field(value, name + ".")
      if found:
        return found
    values = value if isinstance(value, (tuple, list)) else (value,)
    if any(isinstance(v, float) and not math.isfinite(v) for v in values):
      return f"{name}: must be a finite number, got {value!r}"
    if any(isinstance(v, float) and abs(v) > FLOAT32_MAX for v in values):
      return f"{name}: must be a finite number in float32 (at most {FLOAT32_MAX:.4g} in size), got {value!r}"
  return None


def _seed(config, field: str) -> None:
  seed = checks.get(config, field)
  checks.require(checks.is_int(seed), f"{field}: must be an integer, got {seed!r}")
  checks.in_range(field, seed, 0, checks.MAX_SEED)


def _optional_count(config, field: str) -> None:
  if checks.get(config, field) is not None:
    checks.positive_int(config, field)


_V1 = 1  # the version that introduced config versions: fields added before it (runs before had these values)
# The input pipeline's augmentation (genjax.augment.Policy), the dataset block's `augment_*` fields.
AUGMENT = augment.policy_options()

# The fields every config has, declared once: configs/base.py holds them (with a family's blocks after
# 'dataset'), `validate` checks them, and a resume keeps every one not marked free. Free: where and how the
# same numbers are computed, how often the run reports and saves, how long it trains, and the whole 'eval'
# block (what the evaluations measure, never what is trained).
SHARED: dict[str, options.Block] = {
    "": {
        "family": options.Option("vae", "model family, fixed by the config file: 'vae', 'gan', 'diffusion' or"
                                 " 'pixelcnn' (get_config's argument)", lambda c, f: family_lib.get(checks.get(c, f))),
        "seed": options.Option(0, "root of every PRNG stream (init, data, train, sample, eval)", _seed),
    },
    "dataset": {
        "name": options.choice("mnist5k", data.DATASETS, "'mnist5k' (embedded, offline: 4,500 train / 500"
                               " held-out real MNIST digits), a TFDS name: 'mnist', 'fashion_mnist',"
                               " 'binarized_mnist', 'cifar10', 'celeb_a', or a 2-D Gaussian mixture (gan and"
                               " diffusion, points instead of images): 'ring8', 'grid25'"),
        "data_dir": options.optional_text(None, "TFDS data directory; None: TFDS's default (~/tensorflow_datasets)",
                                          "a directory name", free=True),
        "download": options.flag(True, "let TFDS download and prepare a missing dataset", free=True),
        "train_examples": options.Option(
            None, "train on this many examples of the train split, the same ones for every seed (mnist5k: as"
            " many of each class, the first of a fixed shuffle; TFDS: the split's first); None: all of them",
            lambda c, f: _optional_count(c, f), kind=int, added=(augment.ADDED, None)),
        "augment": AUGMENT,
    },
    "optim": {
        "learning_rate": options.number(1e-3, "Adam step size (gan: the generator's)", "> 0"),
        "d_learning_rate": options.number(None, "gan: the discriminator's step size (TTUR); None: learning_rate",
                                          "> 0", optional=True),
        "schedule": options.choice("constant", SCHEDULES, "'constant' or 'cosine' (decays to 0 at num_steps)"),
        "b1": options.number(0.9, "Adam first-moment decay", "[0, 1)"),
        "b2": options.number(0.999, "Adam second-moment decay", "[0, 1)"),
        "grad_clip_norm": options.number(None, "clip the global gradient norm; None: no clipping", "> 0",
                                         optional=True),
    },
    "eval": {
        "num_examples": options.count(500, "held-out examples evaluated (first ones of the test split)",
                                      most=checks.MAX_NUM_EXAMPLES, free=True),
        "batch_size": options.count(100, "held-out examples per evaluation call", most=checks.MAX_BATCH_SIZE,
                                    free=True),
        "quality_samples": options.Option(5000, "samples whose FID and KID every evaluation measures"
                                          " (genjax.quality); 0: none", checks.quality_samples_field, free=True,
                                          added=(_V1, 0)),  # runs before measured no FID
        "inception_weights": options.optional_text(
            None, "FID Inception-v3 weights (.npz from `python -m genjax.convert_inception`), the features of"
            " FID/KID on any image dataset; None: the shipped digit classifier on digit datasets, no numbers on"
            " others", "a file name", free=True, added=(_V1, None)),
    },
}
SHARED[""].update({
    # How the global batch is spread over devices; neither changes the numbers (genjax.parallel).
    "parallel": options.choice("jit", parallel.PATHS, "'jit' (one program over a 1-D device mesh) or 'pmap' (one"
                               " program per device)", free=True, added=(_V1, "jit")),
    "num_devices": options.Option(None, "the first devices of jax.devices(); None: all of them", _optional_count,
                                  kind=int, free=True, added=(_V1, None)),
    # The parameters and numbers are the same either way (genjax.nets.layers).
    "conv_impl": options.choice("auto", layers.IMPLS, "how conv nets run their stride-2 layers: 'auto' ('fast' on"
                                " CPU, 'xla' on GPU/TPU), 'fast' (XLA's convolutions where they win, products"
                                " elsewhere), 'products' (matrix products: sub-pixel phases / strided patches)"
                                " or 'xla' (native)", free=True, added=(_V1, "auto")),
    # Pinned: a float16 run's optimizer state holds its loss scale. The weights are float32 under every policy.
    "precision": precision.option(),
    "peak_tflops": options.number(None, "one device's peak TFLOP/s, of which the progress line and metrics.jsonl"
                                  " give the share used (MFU); None: from genjax.utilization's table of GPUs and"
                                  " TPUs for the precision, no MFU where the device is not in it", "> 0",
                                  optional=True, free=True, added=(precision.ADDED, None)),
    # The batches of one call are stacked; calls stop at every log, checkpoint and eval step, and SIGTERM waits
    # for the call in flight.
    "steps_per_call": options.count(1, "training steps per compiled call (a lax.scan over that many batches; the"
                                    " same numbers as 1)", most=checks.MAX_STEPS_PER_CALL, free=True,
                                    added=(_V1, 1)),
    "batch_size": options.count(128, "global batch, examples per step (divisible by the device count)",
                                most=checks.MAX_BATCH_SIZE),
    # Free, except under a cosine schedule, whose decay spans the run's steps (genjax.workdir.pinned_fields).
    "num_steps": options.count(3000, "training steps (one batch each)", most=checks.MAX_STEPS, free=True),
    "log_every": options.count(100, "steps between metric lines (JSONL, TensorBoard, progress)",
                               most=checks.MAX_STEPS, free=True),
    "eval_every": options.count(1000, "steps between held-out evaluations and sample grids (and at the end)",
                                most=checks.MAX_STEPS, free=True),
    "checkpoint_every": options.count(500, "steps between checkpoints (and at the end)", most=checks.MAX_STEPS,
                                      free=True),
    "keep_checkpoints": options.count(3, "newest checkpoints kept", most=checks.MAX_KEEP_CHECKPOINTS, free=True),
})


def blocks_of(family_name: str) -> dict[str, options.Block]:
  """Every option of a config of `family_name`: the shared ones and the family's blocks (after 'dataset')."""
  spec = family_lib.get(family_name)
  return {"": SHARED[""], "dataset": SHARED["dataset"], **spec.options, "optim": SHARED["optim"],
          "eval": SHARED["eval"]}


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises UserError naming the first bad field and its allowed values.

  Every declared field (the shared ones, the family's) is checked for
  presence and type as well as range, so a `config.json` edited by hand is
  refused as a command-line override is; no float anywhere may be NaN or
  infinite; then the family checks what involves several fields or the data.
  """
  non_finite = _non_finite_field(config)
  checks.require(non_finite is None, str(non_finite))
  spec = family_lib.get(checks.get(config, "family"))
  for block in ("dataset", "optim", "eval"):
    checks.require(isinstance(checks.get(config, block), (dict, ml_collections.ConfigDict)),
                   f"{block}: must be a block of fields, got {checks.get(config, block)!r}")
  for block, fields in spec.config_blocks().items():
    node = checks.get(config, block)
    checks.require(isinstance(node, (dict, ml_collections.ConfigDict)),
                   f"{block}: must be a block of fields, got {node!r}")
    for field in fields:
      checks.require(field in node, f"{block}.{field}: missing; a {spec.name} config starts from"
                                    f" configs/base.get_config({spec.name!r}), which has every field of its family")
  for block_name, block in blocks_of(spec.name).items():
    options.check_block(config, block_name, block)
  _small_data(config)
  if "num_classes" in options.flat(spec.options.get("model", {})):
    _num_classes_of_the_dataset(config.model.num_classes, config.dataset.name)
  spec.validate_config(config, config.dataset.name, data.image_shape(config.dataset.name))


def _small_data(config) -> None:
  """The dataset block's subset and augmentation fit its dataset (and the batch its subset)."""
  ds = config.dataset
  points = ds.name in data.POINT_DATASETS
  checks.require(not (points and ds.train_examples is not None),
                 f"dataset.train_examples: {ds.name!r} draws fresh points every batch and has no train split to take"
                 f" examples from; allowed: None, got {ds.train_examples}")
  for name in AUGMENT.options:
    value = ds[f"augment_{name}"]
    checks.require(not (points and value), f"dataset.augment_{name}: transforms images, and {ds.name!r} has 2-D"
                                           f" points; allowed: {False if name == 'flip' else 0.0}, got {value!r}")
  if ds.name == "mnist5k" and ds.train_examples is not None:
    checks.require(ds.train_examples <= data.MNIST5K_TRAIN, f"dataset.train_examples: mnist5k has"
                   f" {data.MNIST5K_TRAIN} training digits; allowed: 1 to {data.MNIST5K_TRAIN} or None, got"
                   f" {ds.train_examples}")
    checks.require(config.batch_size <= ds.train_examples, f"batch_size: {config.batch_size} exceeds the"
                   f" {ds.train_examples} examples of dataset.train_examples; allowed: at most {ds.train_examples}")


def _num_classes_of_the_dataset(value: int, dataset: str) -> None:
  """A conditional model's `model.num_classes` is its dataset's class count (family.num_classes_option)."""
  have = data.num_classes(dataset)
  checks.require(have or not value, f"model.num_classes: {dataset!r} has no labels to condition on; 0"
                                    f" (unconditional) is the only choice, got {value}")
  checks.require(value in (0, have), f"model.num_classes: {dataset!r} has {have} classes; must be {have}"
                                     f" (conditional) or 0 (unconditional), got {value}")


def learning_rate(value: float, schedule: str, num_steps: int) -> optax.ScalarOrSchedule:
  """A constant step size, or a cosine decay from `value` to 0 over `num_steps` (Loshchilov & Hutter 2017)."""
  if schedule == "cosine":
    return optax.cosine_decay_schedule(value, num_steps)
  return value


def optimizer(learning_rate: optax.ScalarOrSchedule, b1: float, b2: float,
              grad_clip_norm: float | None) -> optax.GradientTransformation:
  """Adam, after global-norm clipping when `grad_clip_norm` is set."""
  adam = optax.adam(learning_rate, b1=b1, b2=b2)
  if grad_clip_norm is None:
    return adam
  return optax.chain(optax.clip_by_global_norm(grad_clip_norm), adam)


def family(config: ml_collections.ConfigDict, par: parallel.DataParallel | None = None) -> family_lib.Family:
  """The model family described by a validated config (through the registry), built for the steps `par`
  compiles (its `axis_name`: under a low precision on several devices the jit path's too); without `par`,
  for config.parallel's path with XLA's collectives under jit, so that `jax.jit(family.train_step)` runs as
  it is."""
  checks.require(par is None or (par.path, par.precision) == (config.parallel, config.precision),
                 f"parallel: the DataParallel is for {getattr(par, 'path', None)} under"
                 f" {getattr(par, 'precision', None)}, the config for {config.parallel} under {config.precision};"
                 " make it with DataParallel(config.parallel, config.num_devices, config.precision)")
  axis_name = par.axis_name if par is not None else parallel.AXIS if config.parallel == "pmap" else None
  optim = config.optim

  def optimizer_for(value: float, updates_per_step: int = 1) -> optax.GradientTransformation:
    # `updates_per_step`: how often a training step applies it (a GAN's D: d_steps), so that a schedule spans the run.
    built = optimizer(learning_rate(value, optim.schedule, config.num_steps * updates_per_step), optim.b1, optim.b2,
                      optim.grad_clip_norm)
    return precision.loss_scaled(built) if config.precision == "float16" else built

  spec = family_lib.get(config.family)
  built = spec.from_config(config, data.image_shape(config.dataset.name), axis_name, optimizer_for)
  policy = augment_policy(config)
  return augment.Augmented(built, policy, axis_name) if policy.enabled else built


def augment_policy(config: ml_collections.ConfigDict) -> augment.Policy:
  """The input pipeline's augmentation of a validated config (the dataset block's `augment_*` fields)."""
  return options.values(config.dataset, {"augment": AUGMENT})["augment"]


def options_doc() -> str:
  """docs/options.md: every option, shared and of each family, from its one declaration."""
  parts = ["# Options\n",
           "Every config field, from its one declaration (the shared ones in `genjax/build.py`, a family's in its",
           "model module). A resume keeps what the weights were trained with and refuses a change to it; the",
           "fields it may change only shape evaluation, sampling or how the run is carried out (`num_steps` is",
           "kept under a cosine schedule, whose decay spans the run). `train.py --config.FIELD=VALUE` sets a",
           "field, `--config.FIELD=None` sets one whose default is None back to it; `sample.py --set=FIELD=VALUE`",
           "sets a family's free fields. Generated by `python -m genjax.build`; a test checks it is current.\n",
           "## Shared\n", options.table(SHARED)]
  for name in family_lib.names():
    if not family_lib.get(name).from_config.__module__.startswith("genjax."):
      continue  # a family of the tests, or of a user's own code
    parts += [f"## {name}\n", options.table(family_lib.get(name).options)]
  return "\n".join(parts)


if __name__ == "__main__":
  print(options_doc(), end="")
