"""Class-conditional DCGAN nets (issue 27): the projection discriminator's logit is exactly
psi(h) + <embed(y), phi> of its last feature map h (phi: h summed over positions), D reads the class's one-hot
maps beside the image, and G's class-conditional BatchNorm (BigGAN's: scale and offset linear in a shared class
embedding) is the unconditional one where those maps are zero, and reads only the example's own class."""

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
  # Without its projection, it is the unconditional D with the same weights, of the image beside the class's
  # one-hot maps.
  plain = DCGANDiscriminator(width=4)
  rest = {k: v for k, v in variables["params"].items() if k != "projection"}
  maps = jnp.broadcast_to(jax.nn.one_hot(LABELS, 3)[:, None, None], (4, 28, 28, 3))
  np.testing.assert_allclose(np.asarray(plain.apply({**variables, "params": rest}, jnp.concatenate([x, maps], -1),
                                                    train=False)),
                             np.asarray(h.reshape(4, -1) @ psi), rtol=1e-4, atol=1e-4)


def _generator_variables(num_classes):
  g = DCGANGenerator(image_shape=(28, 28, 1), width=4, num_classes=num_classes)
  z = jax.random.normal(jax.random.key(0), (4, 8))
  labels = LABELS if num_classes else None
  return g, z, _randomised(g.init(jax.random.key(1), z, train=False, labels_B=labels), 3)


@pytest.mark.parametrize("train", [False, True])
def test_class_batch_norm_with_zero_maps_is_the_unconditional_batch_norm_and_the_code_sits_beside_z(train):
  """With every W_s, W_b zero and the one-hot's rows of the first layer zero, the conditional G is the
  unconditional one whose BatchNorms have scale 1 and offset 0."""
  plain, z, variables = _generator_variables(0)
  conditional = DCGANGenerator(image_shape=(28, 28, 1), width=4, num_classes=3)
  params = {k: v for k, v in variables["params"].items() if not k.startswith("BatchNorm_")}
  kernel = params["ConvTranspose_0"]["kernel"]  # [7, 7, Z, C]: the one-hot's 3 rows after z's
  params["ConvTranspose_0"] = {"kernel": jnp.concatenate([kernel, jnp.zeros((*kernel.shape[:2], 3, kernel.shape[3]))],
                                                         axis=2)}
  params["class_embedding"] = {"embedding": jax.random.normal(jax.random.key(4), (3, 128))}
  plain_params = dict(variables["params"])
  stats = {}
  for i in range(2):
    bn = variables["params"][f"BatchNorm_{i}"]
    plain_params[f"BatchNorm_{i}"] = {"scale": jnp.ones_like(bn["scale"]), "bias": jnp.zeros_like(bn["bias"])}
    zeros = jnp.zeros((128, bn["scale"].shape[0]))
    params[f"ClassBatchNorm_{i}"] = {"scale": {"kernel": zeros}, "bias": {"kernel": zeros}}
    stats[f"ClassBatchNorm_{i}"] = {"BatchNorm_0": variables["batch_stats"][f"BatchNorm_{i}"]}
  want = plain.apply({**variables, "params": plain_params}, z, train=train, mutable=["batch_stats"])[0]
  got = conditional.apply({"params": params, "batch_stats": stats}, z, train=train, labels_B=LABELS,
                          mutable=["batch_stats"])[0]
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("where", ["class_embedding", "one_hot"])
def test_an_example_reads_only_its_own_class(where):
  """Changing class 2's embedding row, or the first layer's weights of class 2's one-hot, moves exactly the
  examples of class 2."""
  g, z, variables = _generator_variables(3)
  before = np.asarray(g.apply(variables, z, train=False, labels_B=LABELS))
  params = jax.tree_util.tree_map(lambda x: x, variables["params"])
  if where == "class_embedding":
    params["class_embedding"]["embedding"] = params["class_embedding"]["embedding"].at[2].mul(3.0)
  else:
    kernel = params["ConvTranspose_0"]["kernel"]
    params["ConvTranspose_0"]["kernel"] = kernel.at[:, :, z.shape[1] + 2].add(1.0)
  after = np.asarray(g.apply({**variables, "params": params}, z, train=False, labels_B=LABELS))
  moved = np.abs(after - before).reshape(4, -1).max(axis=1) > 1e-4
  np.testing.assert_array_equal(moved, np.asarray(LABELS) == 2)


def test_a_conditional_net_without_labels_is_refused_and_num_classes_0_keeps_the_unconditional_parameters():
  with pytest.raises(ValueError, match="needs the class of every example"):
    DCGANDiscriminator(width=4, num_classes=3).init(jax.random.key(0), jnp.zeros((2, 28, 28, 1)), train=False)
  _, _, variables = _generator_variables(0)
  assert sorted(variables["params"]) == ["BatchNorm_0", "BatchNorm_1", "ConvTranspose_0", "ConvTranspose_1",
                                         "ConvTranspose_2"]
