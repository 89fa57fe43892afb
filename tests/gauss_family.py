"""A family defined only in the tests: a diagonal Gaussian fitted by maximum likelihood (2-D points, or
images with a mean per class).

It registers itself as 'gauss' on import and lives entirely in this file, to
prove that a family needs no edit outside its own files to train, sample,
evaluate, checkpoint, resume and run on several devices: the conformance
suite runs on it as on the library's families. Its optimum has a closed
form (the data's mean and standard deviation), which its own test checks.
Its 'class' architecture is conditional, so the suite's label checks have a
family to run on.
"""

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from genjax import config_checks as checks
from genjax import options, parallel
from genjax.models import family, update


class GaussState(struct.PyTreeNode):
  step: jax.Array
  params: Any  # {'mean': [D] or [K, *shape] per class, 'log_std': [*shape]}
  opt_state: Any


@dataclasses.dataclass(frozen=True)
class Gauss:
  """p(x) = N(x; mean, diag(exp(log_std)^2)) over examples of `data_shape`.

  'diag': one mean, on 2-D points. 'class': a mean per class (`num_classes`), on images in [0, 1], conditioned
  on the label: the smallest conditional model, which proves that labels reach every method through the seam.
  """

  optimizer: optax.GradientTransformation
  data_shape: tuple[int, ...]
  axis_name: str | None = None
  num_classes: int = 0

  @property
  def points(self) -> bool:
    return len(self.data_shape) == 1

  def scale(self, data: jax.Array) -> jax.Array:
    return data.astype(jnp.float32) if self.points else data.astype(jnp.float32) / 255.0

  def unscale(self, x: jax.Array) -> jax.Array:
    return x if self.points else jnp.round(jnp.clip(x, 0.0, 1.0) * 255.0).astype(jnp.uint8)

  def init(self, key: jax.Array) -> GaussState:
    del key  # a deterministic start: N(0, I)
    mean_shape = (self.num_classes, *self.data_shape) if self.num_classes else self.data_shape
    params = {"mean": jnp.zeros(mean_shape), "log_std": jnp.zeros(self.data_shape)}
    return GaussState(step=jnp.zeros((), jnp.int32), params=params, opt_state=self.optimizer.init(params))

  def _mean(self, params, labels) -> jax.Array:
    if not self.num_classes:
      return params["mean"]
    if labels is None:
      raise ValueError("labels: a conditional model needs the class of every example")
    return params["mean"][jnp.asarray(labels, jnp.int32)]

  def nll(self, params, x: jax.Array, labels=None) -> jax.Array:
    """-log p(x | label) per example, in nats."""
    z = (x - self._mean(params, labels)) * jnp.exp(-params["log_std"])
    per_dim = 0.5 * z * z + params["log_std"] + 0.5 * math.log(2 * math.pi)
    return jnp.sum(per_dim.reshape(x.shape[0], -1), axis=-1)

  def train_step(self, state: GaussState, batch: dict, key: jax.Array) -> tuple[GaussState, dict]:
    del key
    x = self.scale(batch["image"])
    labels = batch["label"] if self.num_classes else None
    new = update.apply_gradients(lambda p: (jnp.mean(self.nll(p, x, labels)), None), state.params, state.opt_state,
                                 self.optimizer, self.axis_name)
    return state.replace(step=state.step + 1, params=new.params, opt_state=new.opt_state), {
        "loss": parallel.mean_over(new.loss, self.axis_name)}

  def eval_params(self, state: GaussState, key: jax.Array, weights: str = "raw"):
    del key, weights
    return state.params

  def sample(self, params, key: jax.Array, n: int, labels: jax.Array | None = None) -> jax.Array:
    if self.num_classes and labels is None:  # classes drawn uniformly, as the protocol says
      label_key, key = jax.random.split(key)
      labels = jax.random.randint(label_key, (n,), 0, self.num_classes)
    return self._mean(params, labels) + jnp.exp(params["log_std"]) * jax.random.normal(key, (n, *self.data_shape))

  def evaluate(self, params, images, key, offset: int = 0, labels: jax.Array | None = None) -> dict[str, jax.Array]:
    del key, offset  # exact: no sampling
    return {"nll": self.nll(params, self.scale(images), labels if self.num_classes else None)}

  def visuals(self, params, key: jax.Array, images, labels: jax.Array | None = None) -> dict:
    """Class-conditional: one row of samples per class, from the pictured examples' labels (so that labels
    reach `visuals` too); none for points."""
    if self.points or not self.num_classes:
      return {}
    del images
    if labels is None:
      raise ValueError("labels: a conditional model's pictures are of the pictured examples' classes")
    rows = self.sample(params, key, labels.shape[0], labels)
    return {"samples_by_label": self.unscale(rows).reshape(1, labels.shape[0], *self.data_shape)}


ARCHS = ("diag", "class")


OPTIONS = {"model": {"arch": options.choice("diag", ARCHS, "'diag': one diagonal Gaussian over 2-D points; 'class':"
                                            " over images, one per class where num_classes > 0"),
                     "num_classes": family.num_classes_option()}}


def validate_config(config, dataset: str, example_shape: tuple[int, ...]) -> None:
  points = config.model.arch == "diag"
  checks.require(points == (len(example_shape) == 1),
                 f"dataset.name: the gauss family's {config.model.arch!r} models {'points' if points else 'images'};"
                 f" {dataset!r} does not hold them")


def from_config(config, example_shape, axis_name, optimizer_for, cls=Gauss) -> Gauss:
  """`cls`: Gauss, or a variant of it with more options (tests/test_options.py adds one)."""
  return cls(optimizer=optimizer_for(config.optim.learning_rate), data_shape=tuple(example_shape),
             axis_name=axis_name, num_classes=config.model.num_classes, **options.values(config.model, options.of(cls)))


SPEC = family.register(family.FamilySpec(
    name="gauss", archs=ARCHS, options=OPTIONS, validate_config=validate_config, from_config=from_config,
    units={"nll": "nats"}, smoke={"diag": {"dataset.name": "ring8", "model.arch": "diag"},
                                  "class": {"dataset.name": "mnist5k", "model.arch": "class",
                                            "model.num_classes": 10}}))
