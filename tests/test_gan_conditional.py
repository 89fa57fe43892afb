"""The class-conditional MLP nets for 2-D points (issue 27), by value: the projection discriminator's logit is
psi(phi(x)) + <embed(y), phi(x)>, the conditional generator is the unconditional one on [z, embed(y)]."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.nets.mlp_gan import MLPDiscriminator, MLPGenerator

B = 8
LABELS = jnp.array([0, 2, 1, 2, 0, 1, 1, 2], jnp.int32)


def _randomised(params, seed):
  """Every parameter moved by N(0, 0.5^2), so that no term (a zero-initialised bias, the small projection) is
  negligible."""
  leaves, tree = jax.tree_util.tree_flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree_util.tree_unflatten(tree, [x + 0.5 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])


def _dense(p, h):
  return h @ p["kernel"] + p["bias"]


# ------------------------------------------------------------------ the MLP nets, by value


def test_the_mlp_projection_discriminator_is_psi_of_phi_plus_the_class_embedding_dotted_with_phi():
  """Miyato & Koyama 2018, eq. 3: f(x, y) = psi(phi(x)) + <embed(y), phi(x)>, phi(x) the last hidden layer,
  written out again from the parameters."""
  d = MLPDiscriminator((16, 16), num_classes=3)
  x = jax.random.normal(jax.random.key(0), (B, 2))
  params = _randomised(d.init(jax.random.key(1), x, labels_B=LABELS)["params"], 2)
  phi = x
  for name in ("Dense_0", "Dense_1"):
    phi = jax.nn.leaky_relu(_dense(params[name], phi), 0.2)
  psi = _dense(params["Dense_2"], phi)[:, 0]
  projection = jnp.sum(params["projection"]["embedding"][LABELS] * phi, axis=-1)
  got = d.apply({"params": params}, x, labels_B=LABELS)
  np.testing.assert_allclose(np.asarray(got), np.asarray(psi + projection), rtol=1e-5, atol=1e-5)
  assert float(jnp.std(projection)) > 0.1  # the class term is not negligible, so the check sees it
  # Without its projection it is the unconditional D with the same weights.
  plain = {k: v for k, v in params.items() if k != "projection"}
  np.testing.assert_allclose(np.asarray(MLPDiscriminator((16, 16)).apply({"params": plain}, x)), np.asarray(psi),
                             rtol=1e-5, atol=1e-5)


def test_the_conditional_mlp_generator_is_the_unconditional_one_on_z_and_its_own_class_embedding():
  """G(z, y) = G'([z, embed(y)]) with G' the unconditional net of the same hidden weights: example i reads only
  its own label's row of the embedding."""
  g = MLPGenerator(2, (16, 16), num_classes=3, label_dim=4)
  z = jax.random.normal(jax.random.key(0), (B, 5))
  params = _randomised(g.init(jax.random.key(1), z, labels_B=LABELS)["params"], 3)
  embed = params["label_embed"]["embedding"]
  assert embed.shape == (3, 4) and params["Dense_0"]["kernel"].shape == (5 + 4, 16)
  plain = {k: v for k, v in params.items() if k != "label_embed"}
  want = MLPGenerator(2, (16, 16)).apply({"params": plain}, jnp.concatenate([z, embed[LABELS]], axis=-1))
  np.testing.assert_allclose(np.asarray(g.apply({"params": params}, z, labels_B=LABELS)), np.asarray(want),
                             rtol=1e-5, atol=1e-5)


def test_conditional_nets_refuse_to_run_without_labels_and_unconditional_ones_keep_their_parameters():
  with pytest.raises(ValueError, match="needs the class of every example"):
    MLPGenerator(2, (16,), num_classes=3).init(jax.random.key(0), jnp.zeros((2, 4)))
  with pytest.raises(ValueError, match="needs the class of every example"):
    MLPDiscriminator((16,), num_classes=3).init(jax.random.key(0), jnp.zeros((2, 2)))
  assert sorted(MLPGenerator(2, (16,)).init(jax.random.key(0), jnp.zeros((2, 4)))["params"]) == ["Dense_0", "Dense_1"]
  assert sorted(MLPDiscriminator((16,)).init(jax.random.key(0), jnp.zeros((2, 2)))["params"]) == ["Dense_0",
                                                                                                   "Dense_1"]
