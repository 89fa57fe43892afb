"""The class-conditional GAN (issue 27): the MLP nets' conditioning by value, labels through every term of the
step (the loss, WGAN-GP, R1, R2, the EMA generator's statistics), a conditional DCGAN whose classes are all alike
is the unconditional one, one picture row per class, and a GAN trained briefly on two far-apart classes of
points generates each class when asked."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax import build
from genjax import random as grandom
from genjax.errors import UserError
from genjax.losses import gan as gan_losses
from genjax.models.gan import GAN
from genjax.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from genjax.nets.mlp_gan import MLPDiscriminator, MLPGenerator
from tests.helpers import set_fields

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


# ------------------------------------------------------------------ the family: labels through every term


def points_gan(num_classes=3, **kw) -> GAN:
  return GAN(MLPGenerator(2, (32, 32), kw.pop("g_batchnorm", False), num_classes=num_classes),
             MLPDiscriminator((32, 32), num_classes=num_classes), kw.pop("g_opt", optax.adam(1e-3, 0.5)),
             optax.adam(1e-3, 0.5), (2,), latent_dim=2, points=True, num_classes=num_classes, **kw)


def _fakes_of_the_step(gan, state, key, labels):
  """The D update's fakes, rebuilt from the step's keys (train_step: d_key, then the scan's first key's z_key)."""
  d_key, _ = jax.random.split(key)
  z_key, penalty_key = jax.random.split(jax.random.split(d_key, 1)[0])
  fake, _ = gan.generate(state.g_params, state.g_stats, gan.latents(z_key, labels.shape[0]), train=True,
                         labels_B=labels)
  return fake, penalty_key


def test_d_sees_the_reals_with_their_labels_and_fakes_generated_for_the_same_labels():
  """The step's d_loss is the loss of D(real_i, y_i) and D(G(z_i, y_i), y_i), y the batch's labels (hinge, so
  no sigmoid saturates the comparison); scored with the labels rolled by one it is another number."""
  gan = points_gan(loss="hinge")
  state = gan.init(jax.random.key(0))
  state = state.replace(g_params=_randomised(state.g_params, 1), d_params=_randomised(state.d_params, 2))
  real = np.random.default_rng(0).normal(size=(B, 2)).astype(np.float32)
  key = jax.random.key(3)
  _, metrics = jax.jit(gan.train_step)(state, {"image": real, "label": LABELS}, key)

  def d_loss(real_labels, fake_labels, d_labels):
    fake, _ = _fakes_of_the_step(gan, state, key, fake_labels)
    real_logits, _ = gan.discriminate(state.d_params, {}, real, train=False, labels_B=real_labels)
    fake_logits, _ = gan.discriminate(state.d_params, {}, fake, train=False, labels_B=d_labels)
    return float(gan_losses.hinge_discriminator_loss(real_logits, fake_logits))

  rolled = jnp.roll(LABELS, 1)
  want = d_loss(LABELS, LABELS, LABELS)
  np.testing.assert_allclose(float(metrics["d_loss"]), want, rtol=1e-5)
  for other in (d_loss(rolled, LABELS, LABELS), d_loss(LABELS, rolled, rolled), d_loss(LABELS, LABELS, rolled)):
    assert abs(other - want) > 1e-3, (other, want)


@pytest.mark.parametrize("penalty", ["gp_weight", "r1_gamma", "r2_gamma"])
def test_every_penalty_scores_each_example_with_its_label(penalty):
  """WGAN-GP (interpolates of real_i and fake_i, both of class y_i), R1 (reals) and R2 (fakes) of the step equal
  the penalty of the critic x -> D(x, y), and differ from that of D(x, rolled y)."""
  gan = points_gan(loss="wasserstein", **{penalty: 1.0})
  state = gan.init(jax.random.key(0))
  state = state.replace(g_params=_randomised(state.g_params, 1), d_params=_randomised(state.d_params, 2))
  real = np.random.default_rng(0).normal(size=(B, 2)).astype(np.float32)
  key = jax.random.key(3)
  _, metrics = jax.jit(gan.train_step)(state, {"image": real, "label": LABELS}, key)
  fake, penalty_key = _fakes_of_the_step(gan, state, key, LABELS)

  def penalty_of(labels):
    def critic(x):
      return gan.discriminate(state.d_params, {}, x, train=False, labels_B=labels)[0]
    if penalty == "gp_weight":
      keys = grandom.example_keys(penalty_key, B, 0)  # one per example, from its global index
      return float(gan_losses.gradient_penalty(critic, real, fake, keys))
    return float(gan_losses.zero_centered_gradient_penalty(critic, real if penalty == "r1_gamma" else fake))

  name = {"gp_weight": "gp", "r1_gamma": "r1", "r2_gamma": "r2"}[penalty]
  want = penalty_of(LABELS)
  np.testing.assert_allclose(float(metrics[name]), want, rtol=1e-4)
  assert abs(penalty_of(jnp.roll(LABELS, 1)) - want) > 1e-3 * want


def _tiny_dcgan(num_classes, **kw):
  return GAN(DCGANGenerator((28, 28, 1), width=4, num_classes=num_classes),
             DCGANDiscriminator(width=4, num_classes=num_classes), optax.adam(1e-3, 0.5), optax.adam(1e-3, 0.5),
             (28, 28, 1), latent_dim=8, num_classes=num_classes, **kw)


def _unit_norms(plain_params):
  """The unconditional G's parameters with every BatchNorm's scale 1 and offset 0: what a conditional G whose
  class maps are zero computes (`_alike`)."""
  return {k: ({"scale": jnp.ones_like(v["scale"]), "bias": jnp.zeros_like(v["bias"])} if k.startswith("BatchNorm_")
              else v) for k, v in plain_params.items()}


def _alike(plain_params, cond_params, num_classes):
  """The conditional DCGAN's G parameters in which every class is alike: the BatchNorms' class maps zero (scale
  1, offset 0, as `_unit_norms`), the first layer's rows of the class's one-hot zero, the rest the plain G's."""
  out = {k: v for k, v in plain_params.items() if not k.startswith("BatchNorm_")}
  kernel = plain_params["ConvTranspose_0"]["kernel"]
  out["ConvTranspose_0"] = {"kernel": jnp.concatenate(
      [kernel, jnp.zeros((*kernel.shape[:2], num_classes, kernel.shape[3]))], axis=2)}
  out["class_embedding"] = cond_params["class_embedding"]
  for k in plain_params:
    if k.startswith("BatchNorm_"):
      out["Class" + k] = jax.tree.map(jnp.zeros_like, cond_params["Class" + k])
  return out


def _d_alike(plain_params, num_classes):
  """The projection D's parameters that ignore the class: the label maps' input rows and the projection zero."""
  kernel = plain_params["Conv_0"]["kernel"]
  return {**plain_params, "Conv_0": {"kernel": jnp.concatenate(
      [kernel, jnp.zeros((*kernel.shape[:2], num_classes, kernel.shape[3]))], axis=2)},
          "projection": {"embedding": jnp.zeros((num_classes, plain_params["Conv_1"]["kernel"].shape[-1]))}}


def _stats_as_conditional(plain_stats):
  return {"Class" + k: {"BatchNorm_0": v} for k, v in plain_stats.items()}


def test_a_conditional_dcgan_whose_classes_are_alike_is_the_unconditional_one():
  """Every class alike (the class maps of G's BatchNorms and of its input zero, D's label maps and projection
  zero; the unconditional G's BatchNorms at scale 1 and offset 0): the step's D-side
  numbers (computed before D moves), the EMA generator's standing statistics and the samples of given labels
  are the unconditional GAN's, from the same keys. So the conditional path draws z (and the standing latents)
  from the keys the unconditional one does, and the labels enter only through the classes' parameters."""
  plain, cond = _tiny_dcgan(0), _tiny_dcgan(3)
  state = jax.jit(plain.init)(jax.random.key(0))
  state = state.replace(g_params=_unit_norms(_randomised(state.g_params, 1)))
  cstate = jax.jit(cond.init)(jax.random.key(0))
  g_params = _alike(state.g_params, cstate.g_params, 3)
  d_params = _d_alike(state.d_params, 3)
  cstate = cstate.replace(g_params=g_params, ema_params=g_params, d_params=d_params,
                          g_stats=_stats_as_conditional(state.g_stats), d_stats=state.d_stats)
  x = np.random.default_rng(0).integers(0, 256, (B, 28, 28, 1), dtype=np.uint8)
  key = jax.random.key(5)
  _, want = jax.jit(plain.train_step)(state, {"image": x}, key)
  _, got = jax.jit(cond.train_step)(cstate, {"image": x, "label": LABELS}, key)
  for name in ("d_loss", "d_real", "d_fake"):
    np.testing.assert_allclose(float(got[name]), float(want[name]), rtol=1e-5, err_msg=name)
  # Standing statistics: those of the same latents; the conditional path splits its key into the classes' key
  # and the codes' (as `sample` given no labels does).
  _, z_key = jax.random.split(key)
  ema_plain = jax.jit(plain.eval_params, static_argnums=2)(state.replace(ema_params=state.g_params), z_key, "ema")
  ema_cond = jax.jit(cond.eval_params, static_argnums=2)(cstate, key, "ema")
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               ema_cond["batch_stats"], _stats_as_conditional(ema_plain["batch_stats"]))
  # Given labels, sample draws z from the key itself, as the unconditional GAN does, truncated or not.
  for truncation in (None, 0.5):
    np.testing.assert_allclose(np.asarray(cond.sample(ema_cond, key, B, LABELS, truncation=truncation)),
                               np.asarray(plain.sample(ema_plain, key, B, truncation=truncation)), rtol=1e-4,
                               atol=1e-5)


def test_the_ema_generators_statistics_are_those_of_its_activations_on_uniformly_drawn_classes():
  """The class-conditional BatchNorm's shared statistics, in the EMA generator, are the batch statistics of
  its inputs on `standing_latents` codes and classes drawn uniformly (family.labels_or_uniform) from `key`."""
  gan = _tiny_dcgan(3)
  state = jax.jit(gan.init)(jax.random.key(0))
  state = state.replace(ema_params=_randomised(state.g_params, 4), g_stats=jax.tree.map(lambda s: s + 5.0,
                                                                                        state.g_stats))
  key = jax.random.key(6)
  params = jax.jit(gan.eval_params, static_argnums=2)(state, key, "ema")
  label_key, z_key = jax.random.split(key)
  labels = jax.random.randint(label_key, (gan.standing_latents,), 0, 3, jnp.int32)
  _, captured = gan.generator.apply({"params": state.ema_params, "batch_stats": state.g_stats},
                                    gan.latents(z_key, gan.standing_latents), train=True, labels_B=labels,
                                    capture_intermediates=True, mutable=["batch_stats", "intermediates"])
  for i in range(2):  # the input of ClassBatchNorm_i is the output of ConvTranspose_i
    h = np.asarray(captured["intermediates"][f"ConvTranspose_{i}"]["__call__"][0], np.float64)
    stats = params["batch_stats"][f"ClassBatchNorm_{i}"]["BatchNorm_0"]
    np.testing.assert_allclose(stats["mean"], h.mean((0, 1, 2)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats["var"], h.var((0, 1, 2)), rtol=1e-4, atol=1e-5)
  # The second layer's statistics depend on the classes drawn (through the first layer's scale and offset).
  _, one_class = gan.generator.apply({"params": state.ema_params, "batch_stats": state.g_stats},
                                     gan.latents(z_key, gan.standing_latents), train=True,
                                     labels_B=jnp.zeros_like(labels), capture_intermediates=True,
                                     mutable=["batch_stats", "intermediates"])
  h0 = np.asarray(one_class["intermediates"]["ConvTranspose_1"]["__call__"][0], np.float64)
  assert np.abs(params["batch_stats"]["ClassBatchNorm_1"]["BatchNorm_0"]["mean"] - h0.mean((0, 1, 2))).max() > 1e-3


def test_samples_by_class_has_one_row_per_class_each_of_its_class_with_the_same_codes():
  """Swapping classes 0 and 1's parameters (their class embeddings, and the first layer's rows of their one-hot
  codes) swaps rows 0 and 1 of the grid and leaves row 2: row c is of class c alone, and the codes are the same
  in every row."""
  gan = _tiny_dcgan(3)
  state = jax.jit(gan.init)(jax.random.key(0))
  params = {"params": _randomised(state.g_params, 7), "batch_stats": state.g_stats}
  visuals = jax.jit(gan.visuals)
  key = jax.random.key(8)
  grids = visuals(params, key, None, labels=LABELS)
  assert grids["samples_by_class"].shape == (3, 8, 28, 28, 1) and grids["samples_by_class"].dtype == jnp.uint8
  assert grids["samples"].shape == (8, 8, 28, 28, 1) and grids["interpolations"].shape == (8, 10, 28, 28, 1)
  swap = jnp.array([1, 0, 2])
  swapped = dict(params["params"])
  swapped["class_embedding"] = {"embedding": swapped["class_embedding"]["embedding"][swap]}
  kernel = swapped["ConvTranspose_0"]["kernel"]  # [7, 7, Z + 3, C]: the classes' one-hot rows after z's 8
  swapped["ConvTranspose_0"] = {"kernel": kernel.at[:, :, 8:].set(kernel[:, :, 8:][:, :, swap])}
  other = visuals({**params, "params": swapped}, key, None, labels=LABELS)["samples_by_class"]
  by_class = np.asarray(grids["samples_by_class"])
  np.testing.assert_array_equal(np.asarray(other), by_class[[1, 0, 2]])
  assert not np.array_equal(by_class[0], by_class[1])
  # The other grids are of the given labels: the pictured examples' classes change them, the key alone does not.
  again = visuals(params, key, None, labels=jnp.roll(LABELS, 1))
  assert not np.array_equal(np.asarray(again["samples"]), np.asarray(grids["samples"]))
  np.testing.assert_array_equal(np.asarray(again["samples_by_class"]), by_class)


def test_given_labels_are_the_samples_classes_and_none_draws_them_uniformly():
  gan = _tiny_dcgan(3)
  state = jax.jit(gan.init)(jax.random.key(0))
  params = {"params": _randomised(state.g_params, 7), "batch_stats": state.g_stats}
  key = jax.random.key(9)
  drawn = gan.sample(params, key, 64)
  label_key, z_key = jax.random.split(key)
  labels = jax.random.randint(label_key, (64,), 0, 3, jnp.int32)
  assert len(set(np.asarray(labels).tolist())) == 3
  np.testing.assert_allclose(np.asarray(drawn), np.asarray(gan.sample(params, z_key, 64, labels)), atol=1e-6)


# ------------------------------------------------------------------ construction and refusals


def test_a_conditional_gan_packs_one_example_and_its_nets_have_its_classes():
  with pytest.raises(ValueError, match="pack: a projection D scores one class per input"):
    points_gan(pack=2)
  with pytest.raises(ValueError, match="num_classes: G's and D's must be the GAN's, 3"):
    GAN(MLPGenerator(2, (16,)), MLPDiscriminator((16,), num_classes=3), optax.adam(1e-3), optax.adam(1e-3), (2,),
        points=True, num_classes=3)
  from configs import dcgan_mnist5k  # pylint: disable=g-import-not-at-top
  config = set_fields(dcgan_mnist5k.get_config(), {"model.num_classes": 10, "model.pack": 2})
  with pytest.raises(UserError, match=r"^model.pack: a projection discriminator scores one class per input, so a"
                                      r" conditional GAN \(model.num_classes 10\) packs 1 example, got 2$"):
    build.validate(config)


def test_the_class_config_is_the_classic_dcgan_mnist5k_config_with_ten_classes():
  base = importlib.import_module("configs.dcgan_mnist5k").classic()
  config = importlib.import_module("configs.dcgan_mnist5k_class").get_config()
  build.validate(config)
  gan = build.family(config)
  assert gan.num_classes == gan.generator.num_classes == gan.discriminator.num_classes == 10
  assert config.model.num_classes == 10
  base.model.num_classes = 10
  assert config.to_dict() == base.to_dict()


# ------------------------------------------------------------------ it learns the classes


def two_classes(key, n):
  """Class 0 ~ N((-4, 0), 0.1^2 I), class 1 ~ N((4, 0), 0.1^2 I), half of each, in random order."""
  label_key, noise_key = jax.random.split(key)
  labels = jax.random.permutation(label_key, jnp.arange(n) % 2).astype(jnp.int32)
  centres = jnp.where(labels[:, None] == 0, jnp.array([-4.0, 0.0]), jnp.array([4.0, 0.0]))
  return {"image": centres + 0.1 * jax.random.normal(noise_key, (n, 2)), "label": labels}


def test_a_gan_trained_briefly_on_two_far_apart_classes_generates_each_when_asked():
  """After 300 steps on two classes of points 8 apart, 500 samples asked for each class land on its side of 0
  (chance: half), and near its centre."""
  gan = points_gan(num_classes=2, g_opt=optax.adam(2e-3, 0.5))
  step = jax.jit(gan.train_step)
  state = jax.jit(gan.init)(jax.random.key(0))
  data_key, train_key = jax.random.split(jax.random.key(1))
  for s in range(300):
    state, metrics = step(state, two_classes(jax.random.fold_in(data_key, s), 64), jax.random.fold_in(train_key, s))
  assert np.isfinite(float(metrics["loss"]))
  params = jax.jit(gan.eval_params, static_argnums=2)(state, jax.random.key(2), "raw")
  for c, sign in ((0, -1.0), (1, 1.0)):
    x = np.asarray(gan.sample(params, jax.random.key(3), 500, jnp.full((500,), c, jnp.int32)))
    on_its_side = float(np.mean(sign * x[:, 0] > 0))
    assert on_its_side > 0.95, (c, on_its_side)
    assert abs(float(np.median(x[:, 0])) - 4.0 * sign) < 1.0, (c, np.median(x[:, 0]))
