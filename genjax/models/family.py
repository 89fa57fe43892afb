"""The one seam every model family plugs into: the `Family` protocol and the registry.

A family is a frozen object whose methods are pure functions; the loop
(`genjax.train_lib`), sample.py and the tests know families only through
this module:

    spec = family.get(config.family)       # one line naming the registered ones if unknown
    spec.validate_config(config, dataset, example_shape)
    model = spec.from_config(config, example_shape, axis_name, optimizer_for)

A new family is its own files (model, nets, losses, config files) plus one
`register(FamilySpec(...))` call in its model module, and one import line in
`genjax/models/__init__.py`; the conformance suite (tests/test_conformance.py)
then runs every check on it, for each of its architectures.
"""

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import ml_collections
import optax

from genjax import config_checks as checks
from genjax import options as options_lib
from genjax.errors import UserError

State = Any  # a pytree with an int32 `step`; whatever the family's train_step reads and writes
Params = Any  # the pytree that sampling and evaluation use (e.g. EMA weights and their statistics)


class Family(Protocol):
  """What a model family provides. Every method is pure; the caller compiles it.

  Ranges: `scale` maps a batch as the data pipeline yields it (uint8 images,
  float32 points) to the model's range, `unscale` maps the model's outputs
  back (uint8 for images), as sample grids are written.
  """

  def init(self, key: jax.Array) -> State:
    """A fresh state (parameters, optimizer state, statistics, EMA), with `step` 0."""

  def train_step(self, state: State, batch: dict, key: jax.Array) -> tuple[State, dict]:
    """One update on `batch` (a dict with 'image'); metrics are scalars and hold 'loss'.

    Under pmap (`axis_name` set when built) the family averages its gradients
    and metrics over the axis itself; the conformance suite proves that 1, 2
    and 8 devices and pmap give the numbers of one device.
    """

  def eval_params(self, state: State, key: jax.Array, weights: str) -> Params:
    """The parameters that sampling, evaluation and pictures use, of `weights` (one of the spec's `weights`).

    'raw' is the trained weights as they are; 'ema' their moving average,
    where the family keeps one. `key` draws whatever the parameters need
    beyond the state (a GAN's EMA generator takes the BatchNorm statistics of
    its own activations on latents from it); the caller compiles it with
    `weights` static.
    """

  num_classes: int
  """Classes the model is conditioned on (labels 0..num_classes - 1); 0 for an unconditional model."""

  def sample(self, params: Params, key: jax.Array, n: int, labels: jax.Array | None = None) -> jax.Array:
    """n examples in the model's range (scale's), from `key` alone; of the classes `labels` (int32 [n]) where
    the model is conditional (`num_classes` > 0), which an unconditional one ignores. A conditional model
    given no labels draws each example's class uniformly from `key`."""

  def evaluate(self, params: Params, images: jax.Array, key: jax.Array, offset: int = 0,
               labels: jax.Array | None = None) -> dict[str, jax.Array]:
    """Per-example held-out numbers, each keyed by its example's global index `offset + i`.

    `labels` (int32 [B]) are the examples' classes where the dataset has them;
    a conditional model scores each example given its class.

    {} when the family has none (a GAN has no likelihood). The evaluation's
    own knobs (a VAE's importance samples, a diffusion model's number of
    steps) are fields of the family, from its config block, not arguments.
    """

  def visuals(self, params: Params, key: jax.Array, images: jax.Array,
              labels: jax.Array | None = None) -> dict[str, jax.Array]:
    """Named picture grids, uint8 [rows, cols, H, W, C], of held-out `images` (and their `labels`, where the
    dataset has them); {} when the examples are not images."""

  def scale(self, data: jax.Array) -> jax.Array:
    """The pipeline's examples -> the model's range."""

  def unscale(self, x: jax.Array) -> jax.Array:
    """The model's range -> what is written (uint8 images)."""


def to_signed_unit(data: jax.Array, points: bool) -> jax.Array:
  """`scale` of a family that models [-1, 1]: uint8 0..255 -> float32 [-1, 1]; points only cast to float32."""
  if points:
    return data.astype(jnp.float32)
  return data.astype(jnp.float32) / 127.5 - 1.0


def from_signed_unit(x: jax.Array, points: bool) -> jax.Array:
  """`unscale` of such a family: [-1, 1] -> uint8 0..255 (clipped, rounded); points unchanged."""
  if points:
    return x
  return jnp.round((jnp.clip(x, -1.0, 1.0) + 1.0) * 127.5).astype(jnp.uint8)


def num_classes_option(block: str | None = None) -> options_lib.Option:
  """`model.num_classes` of every family that can be class-conditional, declared once: 0 (unconditional, as
  EDM's `label_dim = 0`) or the dataset's class count, which genjax.build checks against the dataset (a family
  never reads the data's registry itself). `block`: 'model' where the family's dataclass declares fields of
  another block too (options.of)."""

  def check(config, field):
    value = checks.get(config, field)
    checks.require(checks.is_int(value) and value >= 0,
                   f"{field}: must be 0 (unconditional) or the dataset's number of classes, got {value!r}")

  return options_lib.Option(0, "classes the model is conditioned on: the dataset's number of classes, or 0 for an"
                            " unconditional model", check, added=(2, 0), block=block)  # runs before version 2 were unconditional


def labels_or_uniform(key: jax.Array, n: int, num_classes: int, labels: jax.Array | None) -> jax.Array:
  """`labels` as int32 [n], or, where none are given, n classes drawn uniformly from `key` (the protocol's
  `sample` of a conditional model given no labels)."""
  if labels is None:
    return jax.random.randint(key, (n,), 0, num_classes, jnp.int32)
  return jnp.asarray(labels, jnp.int32)


# optimizer_for(learning_rate, updates_per_step=1) -> the shared optimizer (schedule, Adam's betas, clipping) at that
# step size, its schedule spanning num_steps x updates_per_step updates (a GAN's D updates d_steps times a step).
OptimizerFor = Callable[[float], optax.GradientTransformation]


@dataclasses.dataclass(frozen=True)
class FamilySpec:
  """A family as the registry knows it.

  Attributes:
    name: the value of `config.family`.
    archs: the values of `config.model.arch` it builds (the conformance suite runs each).
    options: {block name: its options (genjax.options)}, the family's own
      fields ('model', and any block of its own, such as the GAN's 'gan'),
      each declared once with its default, check, comment and whether a
      resume may change it; configs/base.py adds them for the chosen family
      only, and validation checks each before `validate_config`.
    validate_config: (config, dataset name, example shape) -> None; raises
      UserError naming the first bad field, for what involves more than one
      field or the dataset. Every declared option is checked before it is called.
    from_config: (config, example shape, pmap axis name or None, optimizer_for)
      -> the family, from a validated config.
    units: the unit of each number `evaluate` returns ('nats', ...).
    labels: how sample.py names each of them, formatted with the fields of
      the config's model block (e.g. 'IWAE NLL (k={iwae_k})').
    smoke: for each architecture, overrides of configs/base.py that make a
      small model of it that trains in seconds; the conformance suite runs
      every entry, so a family adds variants of an architecture under names
      of their own (a class-conditional one: 'conv_class', which sets
      `model.arch` and `model.num_classes`).
    weights: what `eval_params` can give, the default first: ('ema', 'raw')
      for a family that keeps an EMA of its weights. The loop measures sample
      quality of each (the default's numbers plain, the others' with the
      suffix `_<weights>`); sample.py takes one with --weights.
    truncation: whether `sample` and `visuals` take a `truncation` T (the
      GAN's prior truncated to [-T, T]); sample.py's --truncation needs it.
  """

  name: str
  archs: tuple[str, ...]
  options: dict[str, options_lib.Block]
  validate_config: Callable[[ml_collections.ConfigDict, str, tuple[int, ...]], None]
  from_config: Callable[[ml_collections.ConfigDict, tuple[int, ...], str | None, OptimizerFor], Family]
  units: dict[str, str] = dataclasses.field(default_factory=dict)
  labels: dict[str, str] = dataclasses.field(default_factory=dict)
  smoke: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
  weights: tuple[str, ...] = ("raw",)
  truncation: bool = False

  def config_blocks(self) -> dict[str, ml_collections.ConfigDict]:
    """{block name: its fields with their defaults}, as configs/base.py adds them."""
    return {name: options_lib.config_block(block) for name, block in self.options.items()}

  @property
  def free(self) -> tuple[str, ...]:
    """The dotted fields of its blocks that only shape evaluation or sampling: a resume may change them, and
    sample.py sets them with --set=FIELD=VALUE. Every other field of its blocks is pinned."""
    return tuple(field for field, option in options_lib.every(self.options).items() if option.free)

  @property
  def sample_flags(self) -> dict[str, str]:
    """{sample.py flag: the dotted field it sets}, of the free options that declare one (a VAE's --iwae_k)."""
    return {option.flag: field for field, option in options_lib.every(self.options).items() if option.flag}

  @property
  def sample_eval(self) -> dict[str, Any]:
    """{dotted field: value} that sample.py evaluates with (a VAE's 1,000 importance samples)."""
    return {field: option.sample for field, option in options_lib.every(self.options).items() if option.has_sample}


_REGISTRY: dict[str, FamilySpec] = {}


def register(spec: FamilySpec) -> FamilySpec:
  """Adds a family under `spec.name` (again: replaces it, so a reloaded module re-registers)."""
  _REGISTRY[spec.name] = spec
  return spec


def names() -> tuple[str, ...]:
  """The registered families, in the order they registered."""
  return tuple(_REGISTRY)


def get(name: Any) -> FamilySpec:
  """The family registered as `name`; UserError listing the registered ones otherwise."""
  if not isinstance(name, str) or name not in _REGISTRY:
    raise UserError(f"family: unknown {name!r}; allowed: {', '.join(_REGISTRY)}")
  return _REGISTRY[name]
