"""Closed-form tests of genjax.losses: KL terms, likelihoods, ELBO and IWAE.

Every library value is checked against an independent reference computed in
float64 (numpy, scipy quadrature, scipy.stats, closed forms); Monte-Carlo
checks use fixed seeds and a 4-standard-error band, with the standard error
taken from the sample variance.
"""

import functools
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate
from scipy import stats

from genjax import losses

# The library's functions compiled, as a training step uses them. (Eager
# dispatch would compile each primitive separately for each new shape: seconds
# per test on a 2-core machine.) Static: the arguments that fix the reduction.
_STATIC_ARGNAMES = {
    "bernoulli_log_prob": ("event_ndims",),
    "gaussian_log_prob": ("event_ndims",),
    "standard_normal_log_prob": ("event_ndims",),
    "iwae_bound": ("axis",),
}
jlosses = types.SimpleNamespace(**{
    name: jax.jit(getattr(losses, name), static_argnames=_STATIC_ARGNAMES.get(name, ()))
    for name in losses.__all__})

MC_SAMPLES = 200_000
NUM_SE = 4.0


def _assert_within_se(estimate_samples, expected, num_se=NUM_SE):
  """Asserts mean(samples) is within num_se standard errors of expected."""
  samples = np.asarray(estimate_samples, np.float64)
  mean = samples.mean(axis=0)
  se = samples.std(axis=0, ddof=1) / math.sqrt(samples.shape[0])
  assert np.all(se > 0), se
  np.testing.assert_array_less(np.abs(mean - expected), num_se * se)


def _normal_logpdf(z, mean, logvar):
  """float64 log N(z; mean, exp(logvar)), elementwise, via scipy."""
  return stats.norm.logpdf(z, loc=mean, scale=np.exp(0.5 * np.asarray(logvar)))


# ---------------------------------------------------------------- KL terms


def test_kl_normal_standard_matches_formula():
  mean = np.array([[0.0, 1.0, -2.0], [0.5, -0.3, 3.0]])
  logvar = np.array([[0.0, -1.0, 2.0], [-3.0, 0.7, 0.1]])
  expected = 0.5 * np.sum(np.exp(logvar) + mean**2 - 1.0 - logvar, axis=-1)
  got = jlosses.kl_normal_standard(jnp.asarray(mean, jnp.float32),
                                   jnp.asarray(logvar, jnp.float32))
  assert got.shape == (2,)
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  # q = p gives exactly zero.
  np.testing.assert_allclose(jlosses.kl_normal_standard(jnp.zeros((4, 5)), jnp.zeros((4, 5))),
                             np.zeros(4), atol=0)


def test_kl_normal_standard_matches_monte_carlo():
  mean = np.array([0.8, -1.5, 0.2])
  logvar = np.array([-0.6, 0.4, -2.0])
  rng = np.random.default_rng(0)
  z = mean + np.exp(0.5 * logvar) * rng.standard_normal((MC_SAMPLES, 3))
  log_ratio = np.sum(_normal_logpdf(z, mean, logvar) - stats.norm.logpdf(z), axis=-1)
  kl = float(jlosses.kl_normal_standard(jnp.asarray(mean, jnp.float32),
                                        jnp.asarray(logvar, jnp.float32)))
  _assert_within_se(log_ratio, kl)


@pytest.mark.parametrize("shape", [(1,), (3,), (4, 5), (2, 3, 7)])
def test_kl_normal_is_zero_for_equal_arguments(shape):
  rng = np.random.default_rng(1)
  mean = jnp.asarray(rng.normal(scale=3.0, size=shape), jnp.float32)
  logvar = jnp.asarray(rng.normal(scale=2.0, size=shape), jnp.float32)
  kl = jlosses.kl_normal(mean, logvar, mean, logvar)
  assert kl.shape == shape[:-1]
  np.testing.assert_allclose(kl, np.zeros(shape[:-1]), atol=1e-6)


def test_kl_normal_reduces_to_standard_kl():
  rng = np.random.default_rng(2)
  mean_q = jnp.asarray(rng.normal(size=(16, 6)), jnp.float32)
  logvar_q = jnp.asarray(rng.normal(size=(16, 6)), jnp.float32)
  zeros = jnp.zeros_like(mean_q)
  np.testing.assert_allclose(jlosses.kl_normal(mean_q, logvar_q, zeros, zeros),
                             jlosses.kl_normal_standard(mean_q, logvar_q), rtol=1e-6)
  # Same against broadcast scalar parameters of p.
  np.testing.assert_allclose(jlosses.kl_normal(mean_q, logvar_q, 0.0, 0.0),
                             jlosses.kl_normal_standard(mean_q, logvar_q), rtol=1e-6)


# (mean_q, logvar_q, mean_p, logvar_p): mean and variance differing apart
# and together, narrow and wide q, KL from ~0.2 to ~5 nats.
KL_PAIRS = [
    (0.3, -0.5, -1.2, 0.7),
    (2.0, 1.5, 0.0, 0.0),
    (-0.7, -2.0, 0.4, -1.0),
    (1.0, 0.0, 1.0, 2.0),
    (0.0, 0.0, 3.0, 0.0),
    (0.5, 1.0, 0.2, -0.5),
]


def _kl_by_quadrature(mean_q, logvar_q, mean_p, logvar_p):
  """KL(q || p) = int q(z) log(q(z) / p(z)) dz for 1-D Gaussians, float64."""
  sd_q = math.exp(0.5 * logvar_q)

  def integrand(z):
    log_q = _normal_logpdf(z, mean_q, logvar_q)
    return math.exp(log_q) * (log_q - _normal_logpdf(z, mean_p, logvar_p))

  value, error = integrate.quad(integrand, mean_q - 30 * sd_q, mean_q + 30 * sd_q,
                                points=[mean_q], epsabs=1e-13, epsrel=1e-12, limit=500)
  assert error < 1e-9
  return value


def test_kl_normal_matches_quadrature():
  params = np.array(KL_PAIRS)  # [N, 4]
  expected = np.array([_kl_by_quadrature(*row) for row in params])
  # Each pair is one 1-D distribution: last axis of size 1.
  args = [jnp.asarray(params[:, i:i + 1], jnp.float32) for i in range(4)]
  got = jlosses.kl_normal(*args)
  assert got.shape == (len(KL_PAIRS),)
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  # A multivariate diagonal KL is the sum of its 1-D KLs.
  got_sum = jlosses.kl_normal(*[a[:, 0] for a in args])
  np.testing.assert_allclose(got_sum, expected.sum(), rtol=1e-6)


def test_kl_normal_matches_monte_carlo():
  mean_q, logvar_q = np.array([0.5, -1.0]), np.array([0.3, -1.2])
  mean_p, logvar_p = np.array([-0.4, 0.2]), np.array([0.9, -0.5])
  rng = np.random.default_rng(3)
  z = mean_q + np.exp(0.5 * logvar_q) * rng.standard_normal((MC_SAMPLES, 2))
  log_ratio = np.sum(_normal_logpdf(z, mean_q, logvar_q) - _normal_logpdf(z, mean_p, logvar_p),
                     axis=-1)
  args = [jnp.asarray(a, jnp.float32) for a in (mean_q, logvar_q, mean_p, logvar_p)]
  kl = float(jlosses.kl_normal(*args))
  _assert_within_se(log_ratio, kl)


def test_kl_normal_is_nonnegative():
  rng = np.random.default_rng(4)
  mean_q, mean_p = (jnp.asarray(rng.normal(scale=3.0, size=(2000, 8)), jnp.float32)
                    for _ in range(2))
  logvar_q, logvar_p = (jnp.asarray(rng.normal(scale=2.0, size=(2000, 8)), jnp.float32)
                        for _ in range(2))
  kl = jlosses.kl_normal(mean_q, logvar_q, mean_p, logvar_p)
  assert np.all(np.isfinite(kl))
  assert np.all(kl >= 0.0), float(kl.min())
  assert np.all(jlosses.kl_normal_standard(mean_q, logvar_q) >= 0.0)


# ------------------------------------------------------------ likelihoods


def test_bernoulli_log_prob_matches_float64_formula():
  rng = np.random.default_rng(5)
  logits = rng.uniform(-15.0, 15.0, size=(4, 3, 5, 2))
  x = rng.choice([0.0, 0.25, 0.5, 0.9, 1.0], size=logits.shape)
  p = 1.0 / (1.0 + np.exp(-logits))
  expected = x * np.log(p) + (1.0 - x) * np.log(1.0 - p)
  x32, logits32 = jnp.asarray(x, jnp.float32), jnp.asarray(logits, jnp.float32)
  np.testing.assert_allclose(jlosses.bernoulli_log_prob(x32, logits32, event_ndims=0),
                             expected, rtol=2e-5, atol=1e-6)
  np.testing.assert_allclose(jlosses.bernoulli_log_prob(x32, logits32),
                             expected.sum(-1), rtol=2e-5, atol=1e-5)
  np.testing.assert_allclose(jlosses.bernoulli_log_prob(x32, logits32, event_ndims=3),
                             expected.sum((1, 2, 3)), rtol=2e-5, atol=1e-5)


def test_bernoulli_log_prob_is_stable_at_extreme_logits():
  x = jnp.array([0.0, 0.5, 1.0, 0.0, 0.5, 1.0])
  logits = jnp.array([100.0, 100.0, 100.0, -100.0, -100.0, -100.0])
  value = jlosses.bernoulli_log_prob(x, logits, event_ndims=0)
  # log p(x) = x l - softplus(l): -100, -50, ~0 at l = 100; ~0, -50, -100 at l = -100.
  np.testing.assert_allclose(value, [-100.0, -50.0, 0.0, 0.0, -50.0, -100.0], atol=1e-5)

  grad_logits = jax.grad(lambda l: jnp.sum(jlosses.bernoulli_log_prob(x, l, 0)))(logits)
  grad_x = jax.grad(lambda x_: jnp.sum(jlosses.bernoulli_log_prob(x_, logits, 0)))(x)
  assert np.all(np.isfinite(grad_logits)) and np.all(np.isfinite(grad_x))
  # d/dl = x - sigmoid(l); d/dx = l.
  np.testing.assert_allclose(grad_logits, [-1.0, -0.5, 0.0, 0.0, 0.5, 1.0], atol=1e-6)
  np.testing.assert_allclose(grad_x, logits, rtol=1e-6)


def test_gaussian_log_prob_matches_scipy():
  rng = np.random.default_rng(6)
  x = rng.normal(size=(3, 4, 5))
  mean = rng.normal(size=(3, 4, 5))
  logvar = rng.uniform(-3.0, 2.0, size=(3, 4, 5))
  expected = stats.norm.logpdf(x, loc=mean, scale=np.exp(0.5 * logvar))
  args = [jnp.asarray(a, jnp.float32) for a in (x, mean, logvar)]
  np.testing.assert_allclose(jlosses.gaussian_log_prob(*args), expected.sum(-1), rtol=1e-5)
  np.testing.assert_allclose(jlosses.gaussian_log_prob(*args, event_ndims=2),
                             expected.sum((1, 2)), rtol=1e-5)
  np.testing.assert_allclose(jlosses.gaussian_log_prob(*args, event_ndims=0), expected,
                             rtol=1e-5, atol=1e-6)
  # A scalar log-variance broadcasts (the fixed-variance Gaussian decoder).
  np.testing.assert_allclose(
      jlosses.gaussian_log_prob(args[0], args[1], -1.0, event_ndims=3),
      stats.norm.logpdf(x, loc=mean, scale=math.exp(-0.5)).sum(), rtol=1e-5)


def test_standard_normal_log_prob_matches_scipy():
  z = np.random.default_rng(7).normal(scale=2.0, size=(6, 4))
  expected = stats.norm.logpdf(z)
  z32 = jnp.asarray(z, jnp.float32)
  np.testing.assert_allclose(jlosses.standard_normal_log_prob(z32), expected.sum(-1), rtol=1e-5)
  np.testing.assert_allclose(jlosses.standard_normal_log_prob(z32, event_ndims=2), expected.sum(),
                             rtol=1e-5)


def test_event_ndims_out_of_range_is_rejected():
  with pytest.raises(ValueError, match="event_ndims"):
    jlosses.standard_normal_log_prob(jnp.zeros((2, 3)), event_ndims=3)


# ------------------------------------------------- reparameterised sampling


def test_reparameterize_draws_from_q_and_keeps_dtype():
  mean = jnp.array([1.0, -2.0, 0.0])
  logvar = jnp.array([0.0, -1.5, 1.0])
  key = jax.random.key(8)
  z = jlosses.reparameterize(key, jnp.broadcast_to(mean, (MC_SAMPLES, 3)), logvar)
  assert z.dtype == jnp.float32
  # Same key, same draw (the key is the only source of randomness); another key, another draw.
  np.testing.assert_array_equal(z[:5], jlosses.reparameterize(
      key, jnp.broadcast_to(mean, (MC_SAMPLES, 3)), logvar)[:5])
  z_other = jlosses.reparameterize(jax.random.key(9), mean, logvar)
  assert not np.allclose(z_other, z[0])
  _assert_within_se(z, np.asarray(mean))
  var = np.exp(np.asarray(logvar, np.float64))
  # E[(z - m)^2] = var; its samples have variance 2 var^2.
  _assert_within_se((np.asarray(z, np.float64) - np.asarray(mean)) ** 2, var)
  z_bf16 = jlosses.reparameterize(key, mean.astype(jnp.bfloat16), logvar.astype(jnp.bfloat16))
  assert z_bf16.dtype == jnp.bfloat16


def test_reparameterized_gradient_matches_analytic_gradient():
  # f(z) = sum(a z^2 + c z); E_q[f] = sum(a (m^2 + e^v) + c m), so
  # dE/dm = 2 a m + c and dE/dv = a e^v.
  a = jnp.array([0.5, -1.0, 2.0])
  c = jnp.array([1.0, 0.3, -0.7])
  mean = jnp.array([0.4, -1.2, 0.9])
  logvar = jnp.array([-0.5, 0.3, -1.0])
  key = jax.random.key(10)
  shape = (MC_SAMPLES // 2, 3)

  def f_sum(mean_NxZ, logvar_NxZ):
    z_NxZ = jlosses.reparameterize(key, mean_NxZ, logvar_NxZ)
    return jnp.sum(a * z_NxZ**2 + c * z_NxZ)

  def objective(mean_Z, logvar_Z):
    """The MC estimate of E_q[f] that a VAE step differentiates."""
    return f_sum(jnp.broadcast_to(mean_Z, shape), jnp.broadcast_to(logvar_Z, shape)) / shape[0]

  grad_mean, grad_logvar = jax.grad(objective, argnums=(0, 1))(mean, logvar)
  # Per-sample gradients (w.r.t. each sample's copy of the parameters) give
  # the standard errors of the MC gradient.
  grads_mean_NxZ, grads_logvar_NxZ = jax.grad(f_sum, argnums=(0, 1))(
      jnp.broadcast_to(mean, shape), jnp.broadcast_to(logvar, shape))

  m, v = np.asarray(mean, np.float64), np.asarray(logvar, np.float64)
  a64, c64 = np.asarray(a, np.float64), np.asarray(c, np.float64)
  _assert_within_se(grads_mean_NxZ, 2.0 * a64 * m + c64)
  _assert_within_se(grads_logvar_NxZ, a64 * np.exp(v))

  # Tight: given the draws z = m + e^(v/2) eps, the pathwise gradients are
  # mean(2 a z + c) and mean((2 a z + c) (z - m) / 2).
  z = np.asarray(jlosses.reparameterize(key, jnp.broadcast_to(mean, shape),
                                        jnp.broadcast_to(logvar, shape)), np.float64)
  np.testing.assert_allclose(grad_mean, np.mean(2 * a64 * z + c64, axis=0), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(grad_logvar, np.mean((2 * a64 * z + c64) * (z - m) / 2, axis=0),
                             rtol=1e-4, atol=1e-5)
  # The objective itself is an unbiased estimate of E_q[f].
  _assert_within_se(np.sum(a64 * z**2 + c64 * z, axis=-1),
                    np.sum(a64 * (m**2 + np.exp(v)) + c64 * m))


# --------------------------------------------------------- ELBO and IWAE


def test_elbo_is_log_likelihood_minus_weighted_kl():
  log_lik = jnp.array([-3.0, -10.0, 2.5])
  kl = jnp.array([0.5, 2.0, 0.0])
  np.testing.assert_allclose(jlosses.elbo(log_lik, kl), [-3.5, -12.0, 2.5])
  np.testing.assert_allclose(jlosses.elbo(log_lik, kl, beta=4.0), [-5.0, -18.0, 2.5])
  np.testing.assert_allclose(jlosses.elbo(log_lik, kl, beta=0.0), log_lik)


def test_importance_log_weights_is_log_joint_minus_log_q():
  np.testing.assert_allclose(
      jlosses.importance_log_weights(jnp.array([-2.0, -5.0]), jnp.array([-1.0, -0.5]),
                                     jnp.array([-3.0, 1.0])),
      [0.0, -6.5])


def test_iwae_bound_matches_float64_log_mean_exp():
  w = np.random.default_rng(11).normal(scale=3.0, size=(7, 4))
  expected = np.log(np.mean(np.exp(w), axis=0))
  w32 = jnp.asarray(w, jnp.float32)
  np.testing.assert_allclose(jlosses.iwae_bound(w32), expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(jlosses.iwae_bound(w32.T, axis=1), expected, rtol=1e-5, atol=1e-5)
  # K = 1: the bound is the weight itself (the single-sample ELBO).
  np.testing.assert_allclose(jlosses.iwae_bound(w32[:1]), w32[0], rtol=0, atol=0)
  # Equal weights: the bound is that weight for any K.
  np.testing.assert_allclose(jlosses.iwae_bound(jnp.full((50, 2), -3.25)), [-3.25, -3.25],
                             atol=1e-6)


def test_iwae_bound_is_stable_for_large_log_weights():
  rng = np.random.default_rng(12)
  for offset in (-1e4, 1e4):
    w32 = np.asarray(offset + rng.normal(size=(20, 3)), np.float32)
    shift = w32.astype(np.float64) - offset
    expected = offset + np.log(np.mean(np.exp(shift), axis=0))
    got = jlosses.iwae_bound(jnp.asarray(w32))
    assert np.all(np.isfinite(got))
    # float32 resolves numbers near 1e4 to about 1e-3.
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-3)
  np.testing.assert_allclose(jlosses.iwae_bound(jnp.full((9, 1), -1e4)), [-1e4], rtol=0, atol=0)


@functools.partial(jax.jit, static_argnums=(7,))
def _linear_gaussian_log_weights(key, x_BxD, w_DxZ, b_D, mean_q_BxZ, logvar_q_BxZ, logvar_x,
                                 sample_shape):
  """log w = log p(x | z) + log p(z) - log q(z | x), z ~ q: shape sample_shape + [B].

  Compiled as one program: eager dispatch of the same ops costs seconds of
  per-primitive compilation at these sample shapes.
  """
  shape = sample_shape + mean_q_BxZ.shape
  mean_q = jnp.broadcast_to(mean_q_BxZ, shape)
  logvar_q = jnp.broadcast_to(logvar_q_BxZ, shape)
  z = jlosses.reparameterize(key, mean_q, logvar_q)
  return jlosses.importance_log_weights(
      jlosses.gaussian_log_prob(x_BxD, z @ w_DxZ.T + b_D, logvar_x),
      jlosses.standard_normal_log_prob(z),
      jlosses.gaussian_log_prob(z, mean_q, logvar_q))


class LinearGaussian:
  """p(z) = N(0, I_2), p(x | z) = N(W z + b, s^2 I_3), with W's columns orthogonal.

  log p(x) = log N(x; b, W W^T + s^2 I) exactly, and the posterior is
  N(S W^T (x - b) / s^2, S) with S = (I + W^T W / s^2)^-1, diagonal because
  W^T W is: so a diagonal-Gaussian encoder can represent it exactly.
  """

  def __init__(self):
    q, _ = np.linalg.qr(np.array([[1.0, 0.5], [-0.3, 1.0], [0.8, -0.6]]))
    self.w = q * np.array([1.5, 0.7])  # [D=3, Z=2], W^T W = diag(2.25, 0.49)
    self.b = np.array([0.3, -0.2, 0.5])
    self.logvar_x = 2.0 * math.log(0.6)
    self.x = np.array([[1.0, -0.5, 2.0], [-1.5, 0.8, 0.0], [0.2, 0.1, -0.4]])  # [B=3, D=3]

  def log_marginal(self):
    cov = self.w @ self.w.T + math.exp(self.logvar_x) * np.eye(3)
    return stats.multivariate_normal(self.b, cov).logpdf(self.x)  # [B]

  def posterior(self):
    wtw = self.w.T @ self.w
    assert np.allclose(wtw, np.diag(np.diag(wtw)))
    var = 1.0 / (1.0 + np.diag(wtw) / math.exp(self.logvar_x))  # [Z]
    mean = var * ((self.x - self.b) @ self.w) / math.exp(self.logvar_x)  # [B, Z]
    return mean, np.broadcast_to(np.log(var), mean.shape)

  def expected_log_likelihood(self, mean_q, logvar_q):
    """E_q[log p(x | z)] for q = N(mean_q, diag e^logvar_q), closed form, [B]."""
    resid = self.x - self.b - mean_q @ self.w.T
    trace = np.sum(np.exp(logvar_q) * np.sum(self.w**2, axis=0), axis=-1)
    var_x = math.exp(self.logvar_x)
    return -0.5 * (3 * math.log(2 * math.pi * var_x) + (np.sum(resid**2, -1) + trace) / var_x)

  def log_weights(self, key, mean_q, logvar_q, sample_shape):
    """Library log-weights log p(x, z) - log q(z | x), shape sample_shape + [B]."""
    return _linear_gaussian_log_weights(
        key, *(jnp.asarray(a, jnp.float32) for a in (self.x, self.w, self.b, mean_q, logvar_q)),
        self.logvar_x, sample_shape)

  def wrong_encoder(self):
    mean, logvar = self.posterior()
    return mean + np.array([1.0, -0.8]), logvar + np.array([0.5, 0.5])


def test_linear_gaussian_exact_posterior_makes_every_bound_exact():
  model = LinearGaussian()
  log_px = model.log_marginal()
  mean_q, logvar_q = model.posterior()
  log_w = model.log_weights(jax.random.key(13), mean_q, logvar_q, (100,))  # [K, B]
  # Every importance weight is p(x, z) / p(z | x) = p(x).
  np.testing.assert_allclose(log_w, np.broadcast_to(log_px, log_w.shape), rtol=0, atol=1e-5)
  np.testing.assert_allclose(jlosses.iwae_bound(log_w), log_px, rtol=0, atol=1e-5)
  np.testing.assert_allclose(jlosses.iwae_bound(log_w[:1]), log_px, rtol=0, atol=1e-5)
  # The analytic ELBO is tight too: KL(q || posterior) = 0.
  elbo = jlosses.elbo(jnp.asarray(model.expected_log_likelihood(mean_q, logvar_q), jnp.float32),
                      jlosses.kl_normal_standard(jnp.asarray(mean_q, jnp.float32),
                                                 jnp.asarray(logvar_q, jnp.float32)))
  np.testing.assert_allclose(elbo, log_px, rtol=0, atol=1e-5)


def test_linear_gaussian_analytic_elbo():
  model = LinearGaussian()
  log_px = model.log_marginal()
  mean_q, logvar_q = model.wrong_encoder()
  as32 = lambda a: jnp.asarray(a, jnp.float32)
  elbo = jlosses.elbo(as32(model.expected_log_likelihood(mean_q, logvar_q)),
                      jlosses.kl_normal_standard(as32(mean_q), as32(logvar_q)))
  # ELBO = log p(x) - KL(q || p(z | x)), an identity in closed form.
  mean_post, logvar_post = model.posterior()
  gap = jlosses.kl_normal(as32(mean_q), as32(logvar_q), as32(mean_post), as32(logvar_post))
  assert np.all(gap > 0.1)
  np.testing.assert_allclose(elbo, log_px - gap, rtol=0, atol=1e-5)
  # And it is the mean of the single-sample log-weights.
  log_w = model.log_weights(jax.random.key(14), mean_q, logvar_q, (MC_SAMPLES // 2,))
  _assert_within_se(log_w, np.asarray(elbo, np.float64))


def test_linear_gaussian_bounds_are_ordered_and_tighten_with_k():
  model = LinearGaussian()
  log_px = model.log_marginal()  # [B]
  mean_q, logvar_q = model.wrong_encoder()
  reps = 2000
  log_w_RxKxB = model.log_weights(jax.random.key(15), mean_q, logvar_q, (reps, 50))
  elbo_RxB = jnp.mean(log_w_RxKxB, axis=1)  # unbiased ELBO estimate per repetition
  iwae5_RxB = jlosses.iwae_bound(log_w_RxKxB[:, :5], axis=1)
  iwae50_RxB = jlosses.iwae_bound(log_w_RxKxB, axis=1)

  # Paired differences from the same samples: each gap > 4 standard errors.
  _assert_positive_gap(iwae5_RxB - elbo_RxB)
  _assert_positive_gap(iwae50_RxB - iwae5_RxB)
  _assert_positive_gap(log_px - np.asarray(iwae50_RxB, np.float64))

  # The gap log p(x) - IWAE_K shrinks with K (theory: about Var(w / p(x)) / 2K),
  # and IWAE_5000 agrees with log p(x) to within its standard error (< 0.01 nats).
  reps_5000 = 200
  log_w_RxKxB = model.log_weights(jax.random.key(16), mean_q, logvar_q, (reps_5000, 5000))
  iwae5000_RxB = np.asarray(jlosses.iwae_bound(log_w_RxKxB, axis=1), np.float64)
  iwae50_RxB = np.asarray(iwae50_RxB, np.float64)
  gap50, gap5000 = log_px - iwae50_RxB.mean(axis=0), log_px - iwae5000_RxB.mean(axis=0)
  se50 = iwae50_RxB.std(axis=0, ddof=1) / math.sqrt(reps)
  se5000 = iwae5000_RxB.std(axis=0, ddof=1) / math.sqrt(reps_5000)
  np.testing.assert_array_less(NUM_SE * np.hypot(se50, se5000), gap50 - gap5000)
  np.testing.assert_array_less(np.abs(gap5000), NUM_SE * se5000)
  np.testing.assert_array_less(se5000, 0.01)


def _assert_positive_gap(diff_RxB):
  diff = np.asarray(diff_RxB, np.float64)
  se = diff.std(axis=0, ddof=1) / math.sqrt(diff.shape[0])
  np.testing.assert_array_less(NUM_SE * se, diff.mean(axis=0))
