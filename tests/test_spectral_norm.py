"""Spectral normalisation of the discriminators (Miyato et al. 2018): the normalised weights' largest singular
value is 1 against numpy's SVD once the power iteration has run, D computes with exactly those weights, and the
iteration's state lives in D's statistics, which change in training mode only."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.nets.dcgan import DCGANDiscriminator
from genjax.nets.mlp_gan import MLPDiscriminator

CASES = {
    "dcgan": (DCGANDiscriminator(width=8, norm="none", num_classes=10, spectral_norm=True), (4, 28, 28, 1)),
    "mlp": (MLPDiscriminator((16, 16), num_classes=10, spectral_norm=True), (4, 2)),
}


def _sigmas(stats) -> dict:
  """{(layer, parameter): the power iteration's estimate of its top singular value} from D's statistics."""
  return {tuple(name.split("/")[:2]): float(value) for module in stats.values() for name, value in module.items()
          if name.endswith("/sigma")}


def _matrices(params) -> dict:
  """{(layer, parameter): the weight as the matrix SN normalises, [-1, out]} of every weight of 2 axes or more."""
  return {(layer, name): np.asarray(w).reshape(-1, w.shape[-1]) for layer, ws in params.items()
          for name, w in ws.items() if w.ndim >= 2}


def _iterated(name: str, steps: int = 60):
  """(net, x, labels, params, stats) of a case's fresh net after `steps` training calls, one power iteration
  each."""
  net, shape = CASES[name]
  x = jax.random.normal(jax.random.key(1), shape)
  labels = jnp.arange(shape[0])
  variables = net.init(jax.random.key(0), x, train=False, labels_B=labels)
  params, stats = variables["params"], variables["batch_stats"]

  @jax.jit
  def iterate(stats):
    _, updates = net.apply({"params": params, "batch_stats": stats}, x, train=True, labels_B=labels,
                           mutable=["batch_stats"])
    return updates["batch_stats"]

  for _ in range(steps):
    stats = iterate(stats)
  return net, x, labels, params, stats


@pytest.mark.parametrize("name", CASES)
def test_after_the_power_iterations_each_normalised_weight_has_top_singular_value_one(name):
  _, _, _, params, stats = _iterated(name)
  sigmas, matrices = _sigmas(stats), _matrices(params)
  assert sigmas.keys() == matrices.keys() and len(sigmas) >= 3  # every weight matrix, the projection's too
  for where, w in matrices.items():
    np.testing.assert_allclose(np.linalg.svd(w / sigmas[where], compute_uv=False)[0], 1.0, atol=2e-3,
                               err_msg=str(where))


@pytest.mark.parametrize("name", CASES)
def test_init_stores_the_initializers_weights_not_their_normalised_values(name):
  """As Miyato et al.'s and PyTorch's spectral norm: the weights Adam updates start at the initializer's draw
  (flax's SpectralNorm alone would store them divided by its first estimate of sigma)."""
  net, shape = CASES[name]
  x, labels = jax.random.normal(jax.random.key(1), shape), jnp.arange(shape[0])
  normalised = net.init(jax.random.key(0), x, train=False, labels_B=labels)
  plain = net.clone(spectral_norm=False).init(jax.random.key(0), x, train=False, labels_B=labels)
  assert jax.tree.structure(normalised["params"]) == jax.tree.structure(plain["params"])
  for a, b in zip(jax.tree.leaves(normalised["params"]), jax.tree.leaves(plain["params"])):
    np.testing.assert_array_equal(a, b)
  # The state is the one a training call would start from: a sigma estimate for every weight matrix.
  assert len(_sigmas(normalised["batch_stats"])) >= 3


@pytest.mark.parametrize("name", CASES)
def test_d_computes_with_the_normalised_weights_and_its_state_changes_only_in_training(name):
  net, x, labels, params, stats = _iterated(name)
  evaluated = net.apply({"params": params, "batch_stats": stats}, x, train=False, labels_B=labels)
  # The same net without SN, each weight divided by its exact top singular value.
  plain = net.clone(spectral_norm=False)
  exact = jax.tree.map(lambda w: w / np.linalg.svd(np.asarray(w).reshape(-1, w.shape[-1]), compute_uv=False)[0]
                       if w.ndim >= 2 else w, params)
  np.testing.assert_allclose(evaluated, plain.apply({"params": exact}, x, train=False, labels_B=labels),
                             rtol=5e-3, atol=1e-4)
  assert not np.allclose(evaluated, plain.apply({"params": params}, x, train=False, labels_B=labels), rtol=0.05)
  _, unchanged = net.apply({"params": params, "batch_stats": stats}, x, train=False, labels_B=labels,
                           mutable=["batch_stats"])
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(unchanged["batch_stats"]), jax.tree.leaves(stats)))
