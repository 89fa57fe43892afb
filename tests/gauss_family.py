"""A family defined only in the tests: a diagonal Gaussian fitted by maximum likelihood to 2-D points.

It registers itself as 'gauss' on import and lives entirely in this file, to
prove that a family needs no edit outside its own files to train, sample,
evaluate, checkpoint, resume and run on several devices: the conformance
suite runs on it as on the library's families. Its optimum has a closed
form (the data's mean and standard deviation), which its own test checks.
"""

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

from genjax import config_checks as checks
from genjax import parallel
from genjax.models import family, update


class GaussState(struct.PyTreeNode):
  step: jax.Array
  params: Any  # {'mean': [D], 'log_std': [D]}
  opt_state: Any


@dataclasses.dataclass(frozen=True)
class Gauss:
  """p(x) = N(x; mean, diag(exp(log_std)^2)) over examples of shape (D,)."""

  optimizer: optax.GradientTransformation
  dim: int
  axis_name: str | None = None

  def scale(self, data: jax.Array) -> jax.Array:
    return data.astype(jnp.float32)

  def unscale(self, x: jax.Array) -> jax.Array:
    return x

  def init(self, key: jax.Array) -> GaussState:
    del key  # a deterministic start: N(0, I)
    params = {"mean": jnp.zeros(self.dim), "log_std": jnp.zeros(self.dim)}
    return GaussState(step=jnp.zeros((), jnp.int32), params=params, opt_state=self.optimizer.init(params))

  def nll(self, params, x_BxD: jax.Array) -> jax.Array:
    """-log p(x) per example, in nats."""
    z = (x_BxD - params["mean"]) * jnp.exp(-params["log_std"])
    return jnp.sum(0.5 * z * z + params["log_std"] + 0.5 * math.log(2 * math.pi), axis=-1)

  def train_step(self, state: GaussState, batch: dict, key: jax.Array) -> tuple[GaussState, dict]:
    del key
    x = self.scale(batch["image"])
    new = update.apply_gradients(lambda p: (jnp.mean(self.nll(p, x)), None), state.params, state.opt_state,
                                 self.optimizer, self.axis_name)
    return state.replace(step=state.step + 1, params=new.params, opt_state=new.opt_state), {
        "loss": parallel.mean_over(new.loss, self.axis_name)}

  def eval_params(self, state: GaussState, key: jax.Array, weights: str = "raw"):
    del key, weights
    return state.params

  def sample(self, params, key: jax.Array, n: int) -> jax.Array:
    return params["mean"] + jnp.exp(params["log_std"]) * jax.random.normal(key, (n, self.dim))

  def evaluate(self, params, images, key, offset: int = 0) -> dict[str, jax.Array]:
    del key, offset  # exact: no sampling
    return {"nll": self.nll(params, self.scale(images))}

  def visuals(self, params, key: jax.Array, images) -> dict:
    del params, key, images
    return {}


def config_blocks():
  model = ml_collections.ConfigDict()
  model.arch = "diag"  # the only one: a diagonal covariance
  return {"model": model}


def validate_config(config, dataset: str, example_shape: tuple[int, ...]) -> None:
  checks.one_of(config, "model.arch", ("diag",))
  checks.require(len(example_shape) == 1, f"dataset.name: the gauss family models points; {dataset!r} holds images")


def from_config(config, example_shape, axis_name, optimizer_for) -> Gauss:
  return Gauss(optimizer=optimizer_for(config.optim.learning_rate), dim=example_shape[0], axis_name=axis_name)


SPEC = family.register(family.FamilySpec(
    name="gauss", archs=("diag",), config_blocks=config_blocks, validate_config=validate_config, from_config=from_config,
    units={"nll": "nats"}, smoke={"diag": {"dataset.name": "ring8", "model.arch": "diag"}}))
