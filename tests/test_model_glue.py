"""The glue of genjax.models against numbers computed by hand, not against genjax.losses.

tests/test_losses.py proves the formulas; these tests prove that the
families call them with the right arguments, on the right data, with the
right weights and the documented keys:

* a VAE whose encoder and decoder are affine (a linear-Gaussian model): its
  training loss is the negative ELBO computed in float64 from the same
  reparameterised z, its KL term is KL(q(z|x) || N(0, I)), its evaluation is
  the importance-weighted estimate with q(z|x) as the proposal, and its NLL
  is the closed-form -log p(x) of the Gaussian marginal;
* the GAN's discriminator loss is the base loss plus lambda * GP (one
  interpolation weight per example), gamma / 2 * R1 on real data and
  gamma / 2 * R2 on generated data, in the step's metrics, in
  `discriminator_loss` and in the update the step applies;
* truncated latent codes follow the truncated normal, not a clipped one;
* example i of a step draws with fold_in(step_key, i) (docs/design.md), so a batch
  split into slices with their offsets gives each example the same numbers.

The references draw their noise with jax.random (the only way to reproduce
the same numbers) from keys they derive themselves with fold_in and split,
as documented; all other arithmetic is theirs.
"""

import dataclasses
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import special
from scipy import stats

from genjax.models.gan import GAN
from genjax.models.vae import VAE
from genjax.nets.mlp_gan import MLPDiscriminator, MLPGenerator

NUM_SE = 4.0  # Monte-Carlo checks: a band of 4 standard errors

# ------------------------------------------------------------------ a linear-Gaussian VAE

SHAPE = (2, 2, 1)  # H, W, C: D = 4 pixels
D, Z = 4, 2
OBS_LOGVAR = -1.0

# Decoder p(x|z) = N(z W + b, e^OBS_LOGVAR I). The rows of W are orthogonal,
# so the exact posterior p(z|x) is a diagonal Gaussian (an encoder can match it).
DEC_W_ZxD = np.array([[1.0, 0.5, -0.5, 0.2], [1.0, -2.0, 0.4, 1.0]])
DEC_B_D = np.array([0.1, -0.2, 0.3, 0.0])


def exact_posterior_encoder() -> dict:
  """Affine maps x -> (mean, logvar) of the exact p(z|x) of the decoder above.

  p(z|x) = N(S W (x - b) / s2, S), S = (I + W W^T / s2)^-1, diagonal here.
  """
  s2 = math.exp(OBS_LOGVAR)
  var_Z = 1.0 / (1.0 + np.sum(DEC_W_ZxD**2, axis=1) / s2)
  mean_kernel_DxZ = DEC_W_ZxD.T * var_Z / s2
  return {"mean": {"kernel": mean_kernel_DxZ, "bias": -DEC_B_D @ mean_kernel_DxZ},
          "logvar": {"kernel": np.zeros((D, Z)), "bias": np.log(var_Z)}}


def off_posterior_encoder() -> dict:
  """The exact posterior moved off: shifted, wider means and x-dependent log-variances."""
  enc = exact_posterior_encoder()
  rng = np.random.default_rng(7)
  return {"mean": {"kernel": enc["mean"]["kernel"] + 0.1 * rng.normal(size=(D, Z)),
                   "bias": enc["mean"]["bias"] + np.array([0.3, -0.3])},
          "logvar": {"kernel": 0.3 * rng.normal(size=(D, Z)), "bias": enc["logvar"]["bias"] + 0.6}}


class AffineGaussianEncoder(nn.Module):
  """x_BxHxWxC -> (x A + a, x C + c): q(z|x) with affine mean and log-variance."""

  latent_dim: int

  @nn.compact
  def __call__(self, x_BxHxWxC):
    x_BxD = x_BxHxWxC.reshape(x_BxHxWxC.shape[0], -1)
    return nn.Dense(self.latent_dim, name="mean")(x_BxD), nn.Dense(self.latent_dim, name="logvar")(x_BxD)


class LinearDecoder(nn.Module):
  """z_BxZ -> z W + b, shaped like the images: Gaussian means or Bernoulli logits."""

  image_shape: tuple[int, int, int]

  @nn.compact
  def __call__(self, z_BxZ):
    out_BxD = nn.Dense(math.prod(self.image_shape), name="mean")(z_BxZ)
    return out_BxD.reshape(z_BxZ.shape[0], *self.image_shape)


def linear_vae(likelihood="gaussian", beta=1.0, eval_chunk=100, axis_name=None) -> VAE:
  return VAE(encoder=AffineGaussianEncoder(Z), decoder=LinearDecoder(SHAPE), optimizer=optax.sgd(0.1),
             image_shape=SHAPE, latent_dim=Z, likelihood=likelihood, binarize=likelihood == "bernoulli",
             beta=beta, obs_logvar=OBS_LOGVAR, eval_chunk=eval_chunk, axis_name=axis_name)


def vae_params(encoder: dict) -> dict:
  """float64 reference parameters -> the model's float32 params tree."""
  params = {"encoder": encoder, "decoder": {"mean": {"kernel": DEC_W_ZxD, "bias": DEC_B_D}}}
  return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)


def vae_images(n, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, *SHAPE), dtype=np.uint8)


# References, float64 numpy on the float64 parameters.


def normal_log_prob(x_BxD, mean_BxD, var_BxD):
  """log N(x; m, diag var), summed over the last axis."""
  return np.sum(-0.5 * (np.log(2 * np.pi * var_BxD) + (x_BxD - mean_BxD)**2 / var_BxD), axis=-1)


def posterior(encoder: dict, x_BxD):
  """Mean and log-variance of q(z|x)."""
  return (x_BxD @ encoder["mean"]["kernel"] + encoder["mean"]["bias"],
          x_BxD @ encoder["logvar"]["kernel"] + encoder["logvar"]["bias"])


def log_likelihood(likelihood, x_BxD, z_BxZ):
  """log p(x|z) of the linear decoder."""
  out_BxD = z_BxZ @ DEC_W_ZxD + DEC_B_D
  if likelihood == "gaussian":
    return normal_log_prob(x_BxD, out_BxD, np.full_like(out_BxD, math.exp(OBS_LOGVAR)))
  return np.sum(x_BxD * out_BxD - np.logaddexp(0.0, out_BxD), axis=-1)  # Bernoulli logits


def kl_to_standard_normal(mean_BxZ, logvar_BxZ):
  """KL(N(m, e^v) || N(0, I)) = 0.5 sum(e^v + m^2 - 1 - v)."""
  return 0.5 * np.sum(np.exp(logvar_BxZ) + mean_BxZ**2 - 1.0 - logvar_BxZ, axis=-1)


def exact_log_marginal(x_BxD):
  """log p(x) = log N(x; b, W^T W + e^OBS_LOGVAR I): the linear-Gaussian model's marginal."""
  cov_DxD = DEC_W_ZxD.T @ DEC_W_ZxD + math.exp(OBS_LOGVAR) * np.eye(D)
  return stats.multivariate_normal(DEC_B_D, cov_DxD).logpdf(x_BxD)


def example_key_pair(key, index):
  """The documented keys of example `index`: split(fold_in(step_key, index)) -> (observe, z)."""
  observe_key, z_key = jax.random.split(jax.random.fold_in(key, index))
  return observe_key, z_key


def observed(likelihood, image_BxHxWxC, key, offset=0):
  """The data the likelihood scores, float64 [B, D]: binarised with example i's first key (Bernoulli)."""
  p_BxHxWxC = jnp.asarray(image_BxHxWxC, jnp.float32) / 255.0
  if likelihood == "bernoulli":
    p_BxHxWxC = jnp.stack([jax.random.bernoulli(example_key_pair(key, offset + i)[0], p).astype(jnp.float32)
                           for i, p in enumerate(p_BxHxWxC)])
  return np.asarray(p_BxHxWxC, np.float64).reshape(len(image_BxHxWxC), -1)


def hand_loss_parts(likelihood, encoder, image_BxHxWxC, key, offset=0):
  """Per-example (-log p(x|z), KL) of the training loss, z = m + e^(v/2) eps from example i's second key."""
  x_BxD = observed(likelihood, image_BxHxWxC, key, offset)
  mean_BxZ, logvar_BxZ = posterior(encoder, x_BxD)
  eps_BxZ = np.stack([np.asarray(jax.random.normal(example_key_pair(key, offset + i)[1], (Z,)), np.float64)
                      for i in range(len(x_BxD))])
  z_BxZ = mean_BxZ + np.exp(0.5 * logvar_BxZ) * eps_BxZ
  return -log_likelihood(likelihood, x_BxD, z_BxZ), kl_to_standard_normal(mean_BxZ, logvar_BxZ)


def hand_log_weights(encoder, image_BxHxWxC, key, num_samples):
  """log w_kb = log p(x|z) + log p(z) - log q(z|x), z_kb ~ q(z|x) from fold_in(example b's second key, k)."""
  x_BxD = observed("gaussian", image_BxHxWxC, key)
  mean_BxZ, logvar_BxZ = posterior(encoder, x_BxD)
  z_keys_B = jnp.stack([example_key_pair(key, i)[1] for i in range(len(x_BxD))])
  draw = jax.vmap(jax.vmap(lambda k, s: jax.random.normal(jax.random.fold_in(k, s), (Z,)), in_axes=(0, None)),
                  in_axes=(None, 0))
  eps_KxBxZ = np.asarray(draw(z_keys_B, jnp.arange(num_samples)), np.float64)
  z_KxBxZ = mean_BxZ + np.exp(0.5 * logvar_BxZ) * eps_KxBxZ
  return (log_likelihood("gaussian", x_BxD, z_KxBxZ) + normal_log_prob(z_KxBxZ, 0.0, 1.0)
          - normal_log_prob(z_KxBxZ, mean_BxZ, np.exp(logvar_BxZ)))


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_vae_loss_is_the_negative_elbo_of_the_reparameterised_draw(likelihood):
  """loss = mean(-log p(x|z) + beta KL), z from example i's fold_in key; kl is KL(q || N(0, I)) in closed form.

  Bernoulli: the decoder's outputs are logits and x is binarised with the
  first key of example i's split, z drawn with the second.
  """
  beta = 0.5
  vae = linear_vae(likelihood, beta=beta)
  encoder = off_posterior_encoder()
  image = vae_images(5)
  key = jax.random.key(3)
  _, metrics = jax.jit(vae.loss)(vae_params(encoder), image, key)
  recon_B, kl_B = hand_loss_parts(likelihood, encoder, image, key)
  np.testing.assert_allclose(metrics["kl"], np.mean(kl_B), rtol=1e-5)
  np.testing.assert_allclose(metrics["recon"], np.mean(recon_B), rtol=1e-5)
  np.testing.assert_allclose(metrics["neg_elbo"], np.mean(recon_B + kl_B), rtol=1e-5)
  np.testing.assert_allclose(metrics["loss"], np.mean(recon_B + beta * kl_B), rtol=1e-5)
  # The KL is not symmetric here: KL(N(0, I) || q) differs by far more than the tolerance.
  mean_BxZ, logvar_BxZ = posterior(encoder, observed(likelihood, image, key))
  reverse_B = 0.5 * np.sum(np.exp(-logvar_BxZ) * (1.0 + mean_BxZ**2) - 1.0 + logvar_BxZ, axis=-1)
  assert abs(np.mean(reverse_B) - np.mean(kl_B)) > 0.1


def test_vae_loss_of_example_i_uses_fold_in_of_the_step_key_and_i_on_any_slice():
  """A batch of 8 as one, as 2 slices of 4 and as 8 slices of 1 (vmap over an axis): the same per-example numbers.

  Each slice learns its offset from the axis index (`parallel.batch_offset`);
  every number equals the float64 -ELBO of global example i drawn with
  split(fold_in(step_key, i)).
  """
  encoder = off_posterior_encoder()
  params = vae_params(encoder)
  image = vae_images(8, seed=1)
  key = jax.random.key(11)
  recon_B, kl_B = hand_loss_parts("gaussian", encoder, image, key)
  neg_elbo_B = recon_B + kl_B
  whole, _ = jax.jit(linear_vae().loss)(params, image, key)
  np.testing.assert_allclose(whole, np.mean(neg_elbo_B), rtol=1e-5)
  sliced = linear_vae(axis_name="data")
  for slices in (2, 8):
    per_slice = jax.jit(jax.vmap(lambda x: sliced.loss(params, x, key)[0], axis_name="data"))(
        image.reshape(slices, 8 // slices, *SHAPE))
    np.testing.assert_allclose(per_slice, neg_elbo_B.reshape(slices, -1).mean(axis=1), rtol=1e-5)
  # The numbers do depend on the index: the examples' -ELBOs are not interchangeable.
  assert np.ptp(neg_elbo_B) > 0.1


def test_vae_evaluate_is_the_importance_weighted_estimate_with_q_as_proposal():
  """neg_elbo = -mean_k log w_k and nll = -(logsumexp_k log w_k - log K), z_k ~ q(z|x), computed by hand.

  K = 1: both are the single-sample -ELBO. A proposal other than q(z|x)
  (the prior, say) gives other weights.
  """
  vae = linear_vae()
  encoder = off_posterior_encoder()
  image = vae_images(3, seed=2)
  key = jax.random.key(5)
  for k in (1, 5):
    got = jax.jit(dataclasses.replace(vae, iwae_k=k).evaluate)(vae_params(encoder), image, key)
    log_w_KxB = hand_log_weights(encoder, image, key, k)
    np.testing.assert_allclose(got["neg_elbo"], -np.mean(log_w_KxB, axis=0), rtol=1e-5)
    np.testing.assert_allclose(got["nll"], -(special.logsumexp(log_w_KxB, axis=0) - math.log(k)), rtol=1e-5)
    if k == 1:
      np.testing.assert_allclose(got["nll"], -log_w_KxB[0], rtol=1e-5)
    else:
      assert np.all(np.ptp(log_w_KxB, axis=0) > 0.1)  # the weights differ: q is not the posterior


def test_vae_evaluate_with_the_exact_posterior_gives_the_exact_marginal_for_any_k():
  """With q(z|x) = p(z|x) every weight is p(x): neg_elbo = nll = -log p(x), the Gaussian marginal, for K = 1 and 8."""
  vae = linear_vae()
  image = vae_images(4, seed=3)
  expected_B = -exact_log_marginal(observed("gaussian", image, None))
  for k in (1, 8):
    got = jax.jit(dataclasses.replace(vae, iwae_k=k).evaluate)(vae_params(exact_posterior_encoder()), image,
                                                                jax.random.key(k))
    np.testing.assert_allclose(got["neg_elbo"], expected_B, rtol=1e-5)
    np.testing.assert_allclose(got["nll"], expected_B, rtol=1e-5)


def test_vae_iwae_nll_approaches_the_exact_marginal_as_k_grows():
  """Off the posterior, -ELBO sits KL(q || p(z|x)) above -log p(x); with K = 4096 the NLL is within 4 standard errors.

  The standard error of log mean_k w_k is sd(w) / (mean(w) sqrt(K)) (delta
  method), estimated from the hand-computed weights; its bias is about half
  its square.
  """
  k = 4096
  vae = linear_vae(eval_chunk=1024)
  encoder = off_posterior_encoder()
  image = vae_images(3, seed=4)
  key = jax.random.key(6)
  got = jax.jit(dataclasses.replace(vae, iwae_k=k).evaluate)(vae_params(encoder), image, key)
  expected_B = -exact_log_marginal(observed("gaussian", image, None))
  w_KxB = np.exp(hand_log_weights(encoder, image, key, k) + expected_B)  # w / p(x)
  se_B = np.std(w_KxB, axis=0, ddof=1) / (np.mean(w_KxB, axis=0) * math.sqrt(k))
  tolerance_B = NUM_SE * se_B + se_B**2
  np.testing.assert_array_less(np.abs(np.asarray(got["nll"]) - expected_B), tolerance_B)
  # The test can fail: -ELBO, the K-sample mean of -log w, is more than 10 tolerances above -log p(x).
  gap_B = np.asarray(got["neg_elbo"]) - expected_B
  assert np.all(gap_B > 10 * tolerance_B), (gap_B, tolerance_B)


# ------------------------------------------------------------------ the GAN's penalised discriminator loss

B = 16
D_LEARNING_RATE = 0.1


def mlp_gan(**kw) -> GAN:
  """The 2-D points GAN of tests/test_gan.py; D trains with plain SGD (its update: -lr times its gradient)."""
  return GAN(MLPGenerator(2, (16, 16)), MLPDiscriminator((16, 16)), optax.sgd(0.0), optax.sgd(D_LEARNING_RATE),
             (2,), latent_dim=2, points=True, **kw)


def gan_points(seed=0):
  """Real points far from where the untrained G puts its fakes, so x_hat spans both."""
  return (np.array([3.0, -2.0]) + 0.5 * np.random.default_rng(seed).normal(size=(B, 2))).astype(np.float32)


def d_step_keys(key):
  """The keys of the first D update, as train_step derives them: (z_key, penalty_key)."""
  d_key, _ = jax.random.split(key)  # (D updates, G update)
  z_key, penalty_key = jax.random.split(jax.random.split(d_key, 1)[0])  # d_steps = 1
  return z_key, penalty_key


def hand_discriminator_loss(gan: GAN, d_params, real_Bx2, fake_Bx2, eps_B):
  """(total, parts): base loss + lambda GP + gamma1 / 2 R1 + gamma2 / 2 R2, each input-gradient per example.

  GP: mean_i (||grad f(x_hat_i)|| - 1)^2, x_hat_i = eps_i x_i + (1 - eps_i) G(z_i); R1 at the real
  points; R2 at the fakes (Gulrajani et al. 2017, Alg. 1; Mescheder et al. 2018, eqs. 9-10).
  """

  def critic(x_2):
    return gan.discriminator.apply({"params": d_params}, x_2[None])[0]

  grad_Bx2 = jax.vmap(jax.grad(critic))
  real_B, fake_B = jax.vmap(critic)(real_Bx2), jax.vmap(critic)(fake_Bx2)
  if gan.loss == "wasserstein":
    base = jnp.mean(fake_B) - jnp.mean(real_B)
  else:  # minimax / non-saturating: -log D(x) - log(1 - D(G(z)))
    base = jnp.mean(jax.nn.softplus(-real_B)) + jnp.mean(jax.nn.softplus(fake_B))
  parts = {"d_loss": base}
  total = base
  if gan.gp_weight:
    x_hat_Bx2 = eps_B[:, None] * real_Bx2 + (1.0 - eps_B[:, None]) * fake_Bx2
    parts["gp"] = jnp.mean(jnp.square(jnp.linalg.norm(grad_Bx2(x_hat_Bx2), axis=-1) - 1.0))
    total = total + gan.gp_weight * parts["gp"]
  if gan.r1_gamma:
    parts["r1"] = jnp.mean(jnp.sum(jnp.square(grad_Bx2(real_Bx2)), axis=-1))
    total = total + gan.r1_gamma / 2 * parts["r1"]
  if gan.r2_gamma:
    parts["r2"] = jnp.mean(jnp.sum(jnp.square(grad_Bx2(fake_Bx2)), axis=-1))
    total = total + gan.r2_gamma / 2 * parts["r2"]
  return total, parts


PENALTIES = {
    "gp": {"loss": "wasserstein", "gp_weight": 10.0},
    "r1": {"r1_gamma": 3.0},
    "r2": {"r2_gamma": 5.0},
}


@pytest.mark.parametrize("penalty", sorted(PENALTIES))
def test_gan_step_penalises_d_with_the_documented_weights_points_and_keys(penalty):
  """The step's metrics, `discriminator_loss` and the D update all equal base + penalty computed by hand.

  The fakes are G(normal(z_key)) and example i's interpolation weight is
  uniform(fold_in(penalty_key, i)), with (z_key, penalty_key) split from the
  step key as train_step documents. GP is weighted lambda, R1 and R2
  gamma / 2; R1 is taken at the real points, R2 at the fakes.
  """
  gan = mlp_gan(**PENALTIES[penalty])
  state = gan.init(jax.random.key(0))
  real_Bx2 = gan_points()
  key = jax.random.key(21)
  new_state, metrics = jax.jit(gan.train_step)(state, {"image": real_Bx2}, key)

  z_key, penalty_key = d_step_keys(key)
  fake_Bx2 = gan.generator.apply({"params": state.g_params}, jax.random.normal(z_key, (B, 2)), train=True)
  eps_B = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(penalty_key, i), (1,))[0])(jnp.arange(B))
  hand = jax.jit(functools.partial(hand_discriminator_loss, gan))
  total, parts = hand(state.d_params, real_Bx2, fake_Bx2, eps_B)
  for name, value in parts.items():
    np.testing.assert_allclose(metrics[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
  model_total, _ = jax.jit(gan.discriminator_loss)(state.d_params, state.d_stats, real_Bx2, fake_Bx2, penalty_key)
  np.testing.assert_allclose(model_total, total, rtol=1e-5, atol=1e-6)
  # The update the step applied is SGD on that total.
  grads = jax.jit(jax.grad(lambda p: hand(p, real_Bx2, fake_Bx2, eps_B)[0]))(state.d_params)
  expected = jax.tree.map(lambda p, g: p - D_LEARNING_RATE * g, state.d_params, grads)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), new_state.d_params, expected)

  # The test can fail: each wrong variant moves the numbers by far more than the tolerance.
  penalty_value = float(parts[penalty])
  weight = gan.gp_weight if penalty == "gp" else PENALTIES[penalty][f"{penalty}_gamma"] / 2
  assert 0.5 * weight * penalty_value > 100 * (1e-5 * abs(float(total)) + 1e-6)  # a weight off by 2
  if penalty == "gp":  # one eps shared by the whole batch
    _, shared = hand(state.d_params, real_Bx2, fake_Bx2, jnp.full((B,), eps_B[0]))
    assert abs(float(shared["gp"]) - penalty_value) > 1e-3 * penalty_value
  if penalty == "r2":  # R2 at the real points
    swapped = mlp_gan(r1_gamma=5.0)
    _, at_real = hand_discriminator_loss(swapped, state.d_params, real_Bx2, fake_Bx2, eps_B)
    assert abs(float(at_real["r1"]) - penalty_value) > 1e-3 * penalty_value
  penalty_grads = jax.jit(jax.grad(lambda p: hand(p, real_Bx2, fake_Bx2, eps_B)[1][penalty]))(state.d_params)
  assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(penalty_grads)) * D_LEARNING_RATE > 1e-3


# ------------------------------------------------------------------ truncated latent codes


@pytest.mark.parametrize("truncation", [0.5, 1.0, 2.0])
def test_truncated_latents_are_the_truncated_normal_not_a_clipped_one(truncation):
  """N(0, 1) cut to [-t, t]: variance 1 - 2 t phi(t) / (2 Phi(t) - 1), within 4 standard errors; no mass at +-t.

  A clipped normal has a larger variance and puts 2 (1 - Phi(t)) of its
  mass exactly at +-t.
  """
  t = truncation
  z_N = np.asarray(jax.jit(mlp_gan().latents, static_argnums=(1, 2))(jax.random.key(8), 100_000, t),
                   np.float64).ravel()
  variance = 1.0 - 2.0 * t * stats.norm.pdf(t) / (2.0 * stats.norm.cdf(t) - 1.0)
  se = np.std(z_N**2, ddof=1) / math.sqrt(z_N.size)
  assert abs(np.mean(z_N**2) - variance) < NUM_SE * se, (np.mean(z_N**2), variance, se)
  assert abs(np.mean(z_N)) < NUM_SE * math.sqrt(variance / z_N.size)
  assert np.all(np.abs(z_N) < t)  # strictly inside: no atom at the ends
  assert stats.kstest(z_N, stats.truncnorm(-t, t).cdf).pvalue > 1e-4
  # The test can fail: the clipped normal's variance is many standard errors away.
  clipped = (2.0 * stats.norm.cdf(t) - 1.0) * variance + 2.0 * (1.0 - stats.norm.cdf(t)) * t**2
  assert abs(clipped - variance) > 20 * se
