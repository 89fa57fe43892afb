"""The class-conditional VAE (CVAE, Sohn et al. 2015), by value.

* the nets: a class's one-hot row entering a dense layer is that layer's
  class bias, W [h; y] + b = W h + (b + V[y]): each example of a mixed batch
  equals the unconditional net whose class-reading layers add the rows V[c] of
  its own class c to their biases;
* the bound: a linear-Gaussian CVAE (the library's MLP nets without hidden
  layers are affine) with its exact posterior q(z|x, y) = p(z|x, y) gives,
  for any K, neg_elbo = nll = -log p(x|y), the closed-form Gaussian marginal
  N(x; b + M[y], W^T W + s^2 I), each example given its own class;
* the pictures: row c of 'samples_by_class' is what `sample` gives for class
  c, reconstructions and interpolations are given each example's class;
* the end: trained for seconds on two digit classes, it draws each class when
  asked, as the shipped digit classifier labels them, far above chance.
"""

import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax import build, data, quality
from genjax.models import vae as vae_lib
from genjax.models.vae import VAE
from genjax.nets import vae as nets

K = 3  # classes of the small nets
LABELS = np.array([2, 0, 1, 2, 1, 0], np.int32)


def _nets(arch: str, num_classes: int, hidden=(16,)):
  shape = (8, 8, 1)
  if arch == "mlp":
    return nets.MLPEncoder(4, hidden, num_classes=num_classes), nets.MLPDecoder(shape, hidden,
                                                                                num_classes=num_classes)
  return (nets.ConvEncoder(4, (4, 8), hidden, num_classes=num_classes),
          nets.ConvDecoder(shape, (4, 8), hidden, num_classes=num_classes))


def _as_class_bias(conditional, unconditional, c: int):
  """The unconditional tree of parameters that the conditional one is for class c: each layer whose kernel has K
  more input rows loses them and adds row c of them to its bias (W [h; e_c] + b = W h + (b + V[c]))."""
  found = []

  def layer(cond, uncond):
    if isinstance(cond, dict) and "kernel" in cond and cond["kernel"].shape != uncond["kernel"].shape:
      kernel = cond["kernel"]
      assert kernel.shape[0] == uncond["kernel"].shape[0] + K and kernel.shape[1:] == uncond["kernel"].shape[1:]
      found.append(1)
      return {"kernel": kernel[:-K], "bias": cond["bias"] + kernel[-K + c]}
    if isinstance(cond, dict):
      return {name: layer(cond[name], uncond[name]) for name in cond}
    assert cond.shape == uncond.shape
    return cond

  return layer(conditional, unconditional), len(found)


@pytest.mark.parametrize("arch,hidden,reading", [("mlp", (16,), 1), ("conv", (16,), 1), ("conv", (), 2)])
def test_each_example_is_the_unconditional_net_with_its_own_class_row_added_to_the_first_bias(arch, hidden, reading):
  """The encoder's and the decoder's class input is a class bias of the first dense layer(s) that read them, and
  an example reads only its own class: a mixed batch matches, example by example, the unconditional net with
  the bias of the example's class. Without dense hidden layers both of the encoder's heads read the class."""
  enc, dec = _nets(arch, K, hidden)
  enc0, dec0 = _nets(arch, 0, hidden)
  x = jax.random.uniform(jax.random.key(0), (6, 8, 8, 1))
  z = jax.random.normal(jax.random.key(1), (6, 4))
  y = jax.nn.one_hot(LABELS, K)
  for net, net0, inputs in ((enc, enc0, x), (dec, dec0, z)):
    params = net.init(jax.random.key(2), inputs, y)["params"]
    params0 = net0.init(jax.random.key(2), inputs)["params"]
    got = net.apply({"params": params}, inputs, y)
    for c in range(K):
      as_bias, layers = _as_class_bias(params, params0, c)
      assert layers == (reading if net is enc else 1)
      want = net0.apply({"params": as_bias}, inputs)
      rows = LABELS == c
      for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(g)[rows], np.asarray(w)[rows], rtol=1e-5, atol=1e-6)
        # The class matters: the other classes' examples differ from this class's net.
        assert np.max(np.abs(np.asarray(g)[~rows] - np.asarray(w)[~rows])) > 1e-4


def test_a_conditional_net_needs_a_class_an_unconditional_one_refuses_it_and_the_vae_its_nets_classes():
  enc, dec = _nets("mlp", K)
  x = jnp.zeros((2, 8, 8, 1))
  with pytest.raises(ValueError, match=r"needs the one-hot class of every example, \[2, 3\]; got None"):
    enc.init(jax.random.key(0), x)
  with pytest.raises(ValueError, match=r"\[2, 3\]; got \(2, 4\)"):
    dec.init(jax.random.key(0), jnp.zeros((2, 4)), jnp.zeros((2, 4)))
  with pytest.raises(ValueError, match="an unconditional net .num_classes=0. takes no class"):
    _nets("conv", 0)[0].init(jax.random.key(0), x, jnp.zeros((2, K)))
  with pytest.raises(ValueError, match=r"^decoder: its num_classes \(0\) must be the VAE's \(3\)$"):
    VAE(encoder=enc, decoder=_nets("mlp", 0)[1], optimizer=optax.adam(1e-3), image_shape=(8, 8, 1), latent_dim=4,
        num_classes=K)
  vae = VAE(encoder=enc, decoder=dec, optimizer=optax.adam(1e-3), image_shape=(8, 8, 1), latent_dim=4,
            num_classes=K)
  params = vae.init(jax.random.key(0)).params
  with pytest.raises(ValueError, match=r"^labels: a class-conditional VAE \(3 classes\) needs the class"):
    vae.evaluate(params, np.zeros((2, 8, 8, 1), np.uint8), jax.random.key(0))


# ------------------------------------------------------------------ a linear-Gaussian CVAE, exact

SHAPE = (2, 2, 1)  # D = 4 pixels
D, Z = 4, 2
OBS_LOGVAR = -1.0
# p(x|z, y) = N(z W + b + M[y], s2 I): the decoder's kernel is [W; M]. W's rows are orthogonal, so the exact
# posterior is diagonal: p(z|x, y) = N((x - b - M[y]) A, S), S = (I + W W^T / s2)^-1, A = W^T S / s2.
W_ZxD = np.array([[1.0, 0.5, -0.5, 0.2], [1.0, -2.0, 0.4, 1.0]])
B_D = np.array([0.1, -0.2, 0.3, 0.0])
M_KxD = np.array([[0.0, 0.0, 0.0, 0.0], [2.4, -1.8, 0.6, 1.5], [-2.1, 2.7, 1.8, -1.2]])  # classes far apart


def _linear_cvae(iwae_k: int) -> tuple[VAE, dict]:
  vae = VAE(encoder=nets.MLPEncoder(Z, (), num_classes=K), decoder=nets.MLPDecoder(SHAPE, (), num_classes=K),
            optimizer=optax.sgd(0.1), image_shape=SHAPE, latent_dim=Z, likelihood="gaussian", binarize=False,
            obs_logvar=OBS_LOGVAR, iwae_k=iwae_k, num_classes=K)
  s2 = math.exp(OBS_LOGVAR)
  var_Z = 1.0 / (1.0 + np.sum(W_ZxD**2, axis=1) / s2)
  a_DxZ = W_ZxD.T * var_Z / s2
  encoder = {"mean": {"kernel": np.concatenate([a_DxZ, -M_KxD @ a_DxZ]), "bias": -B_D @ a_DxZ},
             "logvar": {"kernel": np.zeros((D + K, Z)), "bias": np.log(var_Z)}}
  decoder = {"Dense_0": {"kernel": np.concatenate([W_ZxD, M_KxD]), "bias": B_D}}
  params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), {"encoder": encoder, "decoder": decoder})
  assert jax.tree.structure(params) == jax.tree.structure(vae.init(jax.random.key(0)).params)
  return vae, params


def _exact_neg_log_marginal(image, labels):
  """-log N(x; b + M[y], W^T W + s2 I) in float64."""
  x_BxD = image.reshape(image.shape[0], -1).astype(np.float64) / 255.0
  cov = W_ZxD.T @ W_ZxD + math.exp(OBS_LOGVAR) * np.eye(D)
  r = x_BxD - B_D - M_KxD[labels]
  _, logdet = np.linalg.slogdet(cov)
  return 0.5 * (np.einsum("bd,de,be->b", r, np.linalg.inv(cov), r) + logdet + D * math.log(2 * math.pi))


def test_with_the_exact_posterior_every_bound_is_the_exact_class_conditional_marginal():
  """q(z|x, y) = p(z|x, y) makes every importance weight p(x|y) (prior N(0, I)): neg_elbo = nll = -log p(x|y),
  for K = 1 and 8, each example scored given its own class; another class gives another, wrong number."""
  image = np.random.default_rng(3).integers(0, 256, (6, *SHAPE), dtype=np.uint8)
  want = _exact_neg_log_marginal(image, LABELS)
  for k in (1, 8):
    vae, params = _linear_cvae(k)
    got = jax.jit(vae.evaluate)(params, image, jax.random.key(k), labels=LABELS)
    np.testing.assert_allclose(got["neg_elbo"], want, rtol=1e-5)
    np.testing.assert_allclose(got["nll"], want, rtol=1e-5)
  other = jax.jit(vae.evaluate)(params, image, jax.random.key(8), labels=np.roll(LABELS, 1))["nll"]
  assert np.all(np.abs(np.asarray(other) - want) > 0.3)


def test_the_training_loss_is_the_conditional_elbo_of_the_batch_labels():
  """With the exact posterior, E_q[-log p(x|z, y)] + KL(q(z|x, y) || N(0, I)) = -log p(x|y): the step's loss on
  500 copies of 6 examples, each given its class by `batch['label']`, is their mean within 4 standard errors of
  its one-sample reconstruction term (float64 draws of z ~ q); with the labels rolled it is far off."""
  vae, params = _linear_cvae(1)
  image = np.tile(np.random.default_rng(4).integers(0, 256, (6, *SHAPE), dtype=np.uint8), (500, 1, 1, 1))
  labels = np.tile(LABELS, 500)
  exact = _exact_neg_log_marginal(image[:6], LABELS)
  # The spread of -log p(x|z, y), z ~ p(z|x, y) = N((x - b - M[y]) A, S), of each of the 6 examples.
  s2 = math.exp(OBS_LOGVAR)
  var_Z = 1.0 / (1.0 + np.sum(W_ZxD**2, axis=1) / s2)
  x_6xD = image[:6].reshape(6, D) / 255.0
  r_6xD = x_6xD - B_D - M_KxD[LABELS]
  z_Nx6xZ = r_6xD @ (W_ZxD.T * var_Z / s2) + np.sqrt(var_Z) * np.random.default_rng(5).normal(size=(20000, 6, Z))
  recon_Nx6 = 0.5 * np.sum((r_6xD - z_Nx6xZ @ W_ZxD)**2, axis=-1) / s2
  se = math.sqrt(500 * np.sum(np.var(recon_Nx6, axis=0))) / image.shape[0]
  state = vae.init(jax.random.key(0))
  state = state.replace(params=params, opt_state=vae.optimizer.init(params))
  step = jax.jit(vae.train_step)
  _, metrics = step(state, {"image": image, "label": labels}, jax.random.key(5))
  assert abs(float(metrics["loss"]) - np.mean(exact)) < 4 * se, (float(metrics["loss"]), np.mean(exact), se)
  _, rolled = step(state, {"image": image, "label": np.roll(labels, 1)}, jax.random.key(5))
  assert float(rolled["loss"]) - np.mean(exact) > 20 * se


# ------------------------------------------------------------------ sampling and pictures


def _small_cvae(arch="conv"):
  shape = (28, 28, 1)
  if arch == "mlp":
    enc, dec = nets.MLPEncoder(4, (16,), num_classes=10), nets.MLPDecoder(shape, (16,), num_classes=10)
  else:
    enc, dec = nets.ConvEncoder(4, (4, 8), (16,), num_classes=10), nets.ConvDecoder(shape, (4, 8), (16,),
                                                                                      num_classes=10)
  return VAE(encoder=enc, decoder=dec, optimizer=optax.adam(1e-3), image_shape=shape, latent_dim=4, num_classes=10)


def test_sample_draws_z_as_the_unconditional_vae_and_labels_uniformly_from_a_key_of_their_own():
  vae = _small_cvae()
  params = vae.init(jax.random.key(0)).params
  sample = jax.jit(vae.sample, static_argnums=2)
  key = jax.random.key(4)
  classes = np.arange(10, dtype=np.int32)
  # Given labels, z comes from `key` itself: one z per column, decoded as each class.
  z = jax.random.normal(key, (10, 4))
  np.testing.assert_array_equal(sample(params, key, 10, classes),
                                vae.mean_image(vae.decode(params, z, jax.nn.one_hot(classes, 10))))
  # Without labels: the classes are drawn from a key split off `key`, z from the rest.
  rest, label_key = jax.random.split(key)
  drawn = jax.random.randint(label_key, (10,), 0, 10, jnp.int32)
  np.testing.assert_array_equal(sample(params, key, 10), sample(params, rest, 10, drawn))


def test_visuals_picture_each_example_given_its_class_and_a_row_per_class():
  vae = _small_cvae()
  state = vae.init(jax.random.key(0))
  # A few steps, so that the classes' rows differ from their initial values.
  held = data.eval_examples("mnist5k", 500)  # stored in class order: every 16th example, to mix the classes
  images, labels = held["image"][::16][:32], held["label"][::16][:32].astype(np.int32)
  assert np.all(labels[:8] != labels[8:16])  # each interpolation joins two classes
  step = jax.jit(vae.train_step)
  for s in range(3):
    state, _ = step(state, {"image": images, "label": labels}, jax.random.key(s))
  params = state.params
  key = jax.random.key(7)
  grids = jax.jit(vae.visuals)(params, key, images, labels)
  assert set(grids) == {"samples", "samples_by_class", "reconstructions", "interpolations"}
  rest, class_key = jax.random.split(key)
  by_class = np.asarray(grids["samples_by_class"])
  assert by_class.shape == (10, 8, 28, 28, 1) and by_class.dtype == np.uint8
  for c in range(10):
    np.testing.assert_array_equal(by_class[c], vae.unscale(vae.sample(params, class_key, 8, np.full(8, c))))
  np.testing.assert_array_equal(grids["samples"].reshape(64, 28, 28, 1),
                                vae.unscale(vae.sample(params, rest, 64, np.resize(labels, 64))))
  x = vae.scale(images)
  recon = np.asarray(grids["reconstructions"])
  np.testing.assert_array_equal(recon[0], images[:8])
  np.testing.assert_array_equal(recon[3], vae.unscale(vae.reconstruct(params, x[8:16], labels[8:16])))
  inter = np.asarray(grids["interpolations"])
  assert inter.shape == (8, 12, 28, 28, 1)
  # The paths' ends are the reconstructions of their two examples, each given its own class.
  np.testing.assert_array_equal(inter[:, 1], vae.unscale(vae.reconstruct(params, x[:8], labels[:8])))
  np.testing.assert_array_equal(inter[:, -2], vae.unscale(vae.reconstruct(params, x[8:16], labels[8:16])))
  with pytest.raises(ValueError, match="pictures each example given its class"):
    vae.visuals(params, key, images)


def test_num_classes_0_draws_and_pictures_from_the_keys_it_always_did():
  """The unconditional VAE's samples are z ~ N(0, I) of `key` itself, its 'samples' grid those of the visuals' key:
  no key is split for classes it does not have (its numbers and pictures stay bit for bit)."""
  shape = (28, 28, 1)
  vae = VAE(encoder=nets.MLPEncoder(4, (16,)), decoder=nets.MLPDecoder(shape, (16,)), optimizer=optax.adam(1e-3),
            image_shape=shape, latent_dim=4)
  params = vae.init(jax.random.key(0)).params
  key = jax.random.key(3)
  want = vae.mean_image(vae.decode(params, jax.random.normal(key, (64, 4))))
  np.testing.assert_array_equal(vae.sample(params, key, 64, labels=np.ones(64, np.int32)), want)
  grids = vae.visuals(params, key, data.eval_images("mnist5k", 32), labels=np.ones(32, np.int32))
  assert set(grids) == {"samples", "reconstructions", "interpolations"}
  np.testing.assert_array_equal(grids["samples"].reshape(64, *shape), vae.unscale(want))


# ------------------------------------------------------------------ trained: each class when asked


def test_trained_briefly_on_two_digits_it_draws_the_digit_asked_for():
  """Digits 0 and 1 of mnist5k (10 classes declared, as the config's), 300 steps of 64 of an MLP CVAE with a
  2-D latent: the shipped digit classifier labels at least 90% of the samples asked for class c as c (98-100%
  over seeds 0-3), where a decoder that ignored the class could be right about half the time."""
  examples = data.load_mnist5k("train")
  keep = examples["label"] < 2
  images, labels = examples["image"][keep], examples["label"][keep].astype(np.int32)
  shape = (28, 28, 1)
  vae = VAE(encoder=nets.MLPEncoder(2, (64,), num_classes=10), decoder=nets.MLPDecoder(shape, (64,), num_classes=10),
            optimizer=optax.adam(1e-2), image_shape=shape, latent_dim=2, num_classes=10)
  state = vae.init(jax.random.key(0))
  step = jax.jit(vae.train_step)
  rng = np.random.default_rng(0)
  for s in range(300):
    rows = rng.choice(images.shape[0], 64, replace=False)
    state, _ = step(state, {"image": images[rows], "label": labels[rows]}, jax.random.key(s))
  asked = np.repeat(np.arange(2, dtype=np.int32), 100)
  samples = jax.jit(vae.sample, static_argnums=2)(state.params, jax.random.key(1), 200, asked)
  got = quality.digit_labels(np.asarray(vae.unscale(samples)))
  accuracy = [float(np.mean(got[asked == c] == c)) for c in (0, 1)]
  assert min(accuracy) >= 0.9, accuracy


# ------------------------------------------------------------------ the config


@pytest.mark.parametrize("name", ["vae_mnist5k", "vae_mnist5k_mlp", "vae_mnist5k_class"])
def test_the_vae_configs_validate_and_build_and_the_class_config_is_the_conv_one_conditioned_with_beta_3(name):
  config = importlib.import_module(f"configs.{name}").get_config()
  build.validate(config)
  model = build.family(config)
  assert isinstance(model, vae_lib.VAE) and model.num_classes == config.model.num_classes
  if name == "vae_mnist5k_class":
    base = importlib.import_module("configs.vae_mnist5k").get_config()
    assert config.model.num_classes == 10 == data.num_classes(config.dataset.name)
    with base.unlocked():
      base.model.num_classes = 10
      base.model.beta = 3.0
    assert config.to_dict() == base.to_dict()
    assert model.encoder.num_classes == model.decoder.num_classes == 10
