"""Class-conditional DCGAN nets (issue 27's first part): the projection discriminator's logit is exactly
psi(phi(x)) + <embed(y), phi(x)>, and class-conditional BatchNorm is the unconditional one where every class
has its scale and offset, and reads only the example's own class's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.nets.dcgan import DCGANDiscriminator, DCGANGenerator

LABELS = jnp.array([0, 2, 1, 2])


def _randomised(variables, seed):
  """Every parameter redrawn at scale 0.5 around its init, so that no term is negligibly small."""
  leaves, tree = jax.tree_util.tree_flatten(variables["params"])
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  params = jax.tree_util.tree_unflatten(tree, [x + 0.5 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])
  return {**variables, "params": params}


def test_the_projection_discriminator_is_psi_of_phi_plus_the_class_embedding_dotted_with_phi():
  d = DCGANDiscriminator(width=4, num_classes=3)
  x = jax.random.normal(jax.random.key(0), (4, 28, 28, 1))
  variables = _randomised(d.init(jax.random.key(1), x, train=False, labels_B=LABELS), 2)
  logits, state = d.apply(variables, x, train=False, labels_B=LABELS, capture_intermediates=True,
                          mutable=["intermediates"])
  # h(x): the last feature map, after the last BatchNorm and the leaky ReLU; phi(x): h summed over positions.
  last_norm = sorted(k for k in state["intermediates"] if k.startswith("BatchNorm_"))[-1]
  h = jax.nn.leaky_relu(state["intermediates"][last_norm]["__call__"][0], 0.2)
  phi = h.sum(axis=(1, 2))
  final_conv = sorted(k for k in variables["params"] if k.startswith("Conv_"))[-1]
  psi = variables["params"][final_conv]["kernel"].reshape(-1)  # the VALID convolution over the whole map
  embed = variables["params"]["projection"]["embedding"]
  assert embed.shape == (3, h.shape[-1])  # a row of the channels per class, shared by every position
  want = h.reshape(4, -1) @ psi + jnp.sum(embed[LABELS] * phi, axis=-1)
  np.testing.assert_allclose(np.asarray(logits), np.asarray(want), rtol=1e-4, atol=1e-4)
  assert np.std(np.asarray(jnp.sum(embed[LABELS] * phi, axis=-1))) > 0.1  # the projection term matters
  # Without its projection, it is the unconditional D with the same weights.
  plain = DCGANDiscriminator(width=4)
  rest = {k: v for k, v in variables["params"].items() if k != "projection"}
  np.testing.assert_allclose(np.asarray(plain.apply({**variables, "params": rest}, x, train=False)),
                             np.asarray(h.reshape(4, -1) @ psi), rtol=1e-4, atol=1e-4)


def _generator_variables(num_classes):
  g = DCGANGenerator(image_shape=(28, 28, 1), width=4, num_classes=num_classes)
  z = jax.random.normal(jax.random.key(0), (4, 8))
  labels = LABELS if num_classes else None
  return g, z, _randomised(g.init(jax.random.key(1), z, train=False, labels_B=labels), 3)


@pytest.mark.parametrize("train", [False, True])
def test_class_batch_norm_with_every_class_alike_is_the_unconditional_batch_norm(train):
  plain, z, variables = _generator_variables(0)
  conditional = DCGANGenerator(image_shape=(28, 28, 1), width=4, num_classes=3)
  params = {k: v for k, v in variables["params"].items() if not k.startswith("BatchNorm_")}
  stats = {}
  for i in range(2):
    bn = variables["params"][f"BatchNorm_{i}"]
    params[f"ClassBatchNorm_{i}"] = {"scale": {"embedding": jnp.tile(bn["scale"], (3, 1))},
                                     "bias": {"embedding": jnp.tile(bn["bias"], (3, 1))}}
    stats[f"ClassBatchNorm_{i}"] = {"BatchNorm_0": variables["batch_stats"][f"BatchNorm_{i}"]}
  want = plain.apply(variables, z, train=train, mutable=["batch_stats"])[0]
  got = conditional.apply({"params": params, "batch_stats": stats}, z, train=train, labels_B=LABELS,
                          mutable=["batch_stats"])[0]
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)


def test_an_example_reads_only_its_own_class_scale_and_offset():
  g, z, variables = _generator_variables(3)
  before = np.asarray(g.apply(variables, z, train=False, labels_B=LABELS))
  params = jax.tree_util.tree_map(lambda x: x, variables["params"])
  params["ClassBatchNorm_0"]["scale"]["embedding"] = params["ClassBatchNorm_0"]["scale"]["embedding"].at[2].mul(3.0)
  after = np.asarray(g.apply({**variables, "params": params}, z, train=False, labels_B=LABELS))
  moved = np.abs(after - before).reshape(4, -1).max(axis=1) > 1e-4
  np.testing.assert_array_equal(moved, np.asarray(LABELS) == 2)


def test_a_conditional_net_without_labels_is_refused_and_num_classes_0_keeps_the_unconditional_parameters():
  with pytest.raises(ValueError, match="needs the class of every example"):
    DCGANDiscriminator(width=4, num_classes=3).init(jax.random.key(0), jnp.zeros((2, 28, 28, 1)), train=False)
  _, _, variables = _generator_variables(0)
  assert sorted(variables["params"]) == ["BatchNorm_0", "BatchNorm_1", "ConvTranspose_0", "ConvTranspose_1",
                                         "ConvTranspose_2"]
