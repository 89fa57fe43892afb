"""The diffusion core against closed forms: schedules, q(z_t | x) by Monte Carlo, the posterior by quadrature
(Bayes' rule on scalars), the parametrisations' conversions, EDM's preconditioning, the bound's pieces."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from genjax.losses import diffusion as dm

jax.config.update("jax_enable_x64", False)


def test_the_linear_schedule_has_ho_et_als_values():
  betas = dm.linear_betas()
  assert betas[0] == 1e-4 and betas[-1] == 0.02 and betas.shape == (1000,)
  alpha, sigma = dm.linear_schedule()
  np.testing.assert_allclose(alpha**2 + sigma**2, 1.0, rtol=1e-12)  # variance preserving
  # alpha_bar_T = prod (1 - beta_t) = 4.036e-5: sqrt(alpha_bar_T) = 0.00635 of the data is left at t = T.
  assert alpha[-1] ** 2 == pytest.approx(4.0358e-5, rel=1e-3)
  assert alpha[0] ** 2 == pytest.approx(1 - 1e-4, rel=1e-12)
  assert np.all(np.diff(dm.log_snr(alpha, sigma)) < 0)  # the log-SNR falls with t


def test_the_linear_schedule_scaled_to_t_ends_near_pure_noise_at_any_t():
  """Ho et al.'s betas are for T = 1,000; improved-diffusion scales both ends by 1,000 / T, so alpha_bar_T stays
  near 4e-5 at any T (unscaled: 0.36 at T = 100, and 0 in float32 from about T = 21,000, where the samplers
  divide by alpha). Betas above 0.999 (T < 20) are clipped."""
  np.testing.assert_array_equal(dm.linear_betas(1000, per_1000=True), dm.linear_betas(1000))
  for t in (100, 250, 4000, 100_000):
    alpha, _ = dm.linear_schedule(t, per_1000=True)
    assert 1e-5 < alpha[-1] ** 2 < 1e-4, (t, alpha[-1] ** 2)
    assert np.float32(alpha[-1]) > 0
  assert dm.linear_schedule(100)[0][-1] ** 2 > 0.3
  betas = dm.linear_betas(8, per_1000=True)
  assert betas.max() == 0.999 and betas[0] == pytest.approx(0.0125)


def test_the_cosine_schedule_telescopes_to_f_t_over_f_0():
  alpha, _ = dm.cosine_schedule(1000)
  f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
  for t in (1, 250, 500, 900):
    assert alpha[t - 1] ** 2 == pytest.approx(f(t / 1000) / f(0), rel=1e-9), t
  assert alpha[499] ** 2 == pytest.approx(0.4939, abs=1e-4)  # half the signal's variance left at mid-way
  assert 0 < alpha[-1] ** 2 < 1e-6  # beta clipped at 0.999 at the very end, not 1


def test_edm_sigmas_run_from_sigma_max_to_sigma_min_by_the_rho_rule():
  s = dm.edm_sigmas(18)
  assert s[0] == pytest.approx(80.0) and s[-1] == pytest.approx(0.002) and np.all(np.diff(s) < 0)
  mid = (80 ** (1 / 7) + 0.5 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
  assert dm.edm_sigmas(3)[1] == pytest.approx(mid, rel=1e-12)


def test_the_forward_process_has_its_moments_by_monte_carlo():
  x = jnp.asarray([-0.8, 0.1, 0.9])
  alpha, sigma = 0.6, 0.8
  eps = jax.random.normal(jax.random.key(0), (200_000, 3))
  z = np.asarray(dm.diffuse(x, alpha, sigma, eps))
  se = sigma / math.sqrt(z.shape[0])
  np.testing.assert_allclose(z.mean(0), alpha * np.asarray(x), atol=5 * se)
  np.testing.assert_allclose(z.var(0), sigma**2, rtol=0.02)


@pytest.mark.parametrize("s,t", [(100, 101), (100, 400), (0, 999)], ids=["consecutive", "respaced", "far"])
def test_the_posterior_is_bayes_rule_by_quadrature(s, t):
  """q(z_s | z_t, x) on scalars: the formula against the normalised product of the two Gaussians on a grid."""
  alpha, sigma = dm.linear_schedule()
  a_s, s_s, a_t, s_t = alpha[s], sigma[s], alpha[t], sigma[t]
  x, z_t = 0.7, -0.3
  a_ts, var_ts = dm.transition(a_s, s_s, a_t, s_t)

  def density(z_s):
    return stats.norm.pdf(z_s, a_s * x, s_s) * stats.norm.pdf(z_t, a_ts * z_s, math.sqrt(var_ts))

  mean, var = dm.posterior(x, z_t, a_s, s_s, a_t, s_t)
  lo, hi = float(mean) - 12 * math.sqrt(var), float(mean) + 12 * math.sqrt(var)
  mass = integrate.quad(density, lo, hi, epsabs=0, epsrel=1e-12, limit=200)[0]
  m = integrate.quad(lambda z: z * density(z), lo, hi, epsabs=0, epsrel=1e-12, limit=200)[0] / mass
  v = integrate.quad(lambda z: (z - m) ** 2 * density(z), lo, hi, epsabs=0, epsrel=1e-12, limit=200)[0] / mass
  assert float(mean) == pytest.approx(m, rel=1e-7, abs=1e-10)
  assert float(var) == pytest.approx(v, rel=1e-6)


def test_the_posterior_of_consecutive_steps_is_ho_et_als():
  betas = dm.linear_betas()
  alpha_bar = np.cumprod(1 - betas)
  alpha, sigma = dm.linear_schedule()
  t = 500  # q(x_{t-1} | x_t, x_0) with t - 1 = 499 at index 498, t at index 499
  mean_coef_x = math.sqrt(alpha_bar[t - 2]) * betas[t - 1] / (1 - alpha_bar[t - 1])
  mean_coef_z = math.sqrt(1 - betas[t - 1]) * (1 - alpha_bar[t - 2]) / (1 - alpha_bar[t - 1])
  variance = betas[t - 1] * (1 - alpha_bar[t - 2]) / (1 - alpha_bar[t - 1])
  mean, var = dm.posterior(1.0, 0.0, alpha[t - 2], sigma[t - 2], alpha[t - 1], sigma[t - 1])
  assert mean == pytest.approx(mean_coef_x, rel=1e-10)
  mean, _ = dm.posterior(0.0, 1.0, alpha[t - 2], sigma[t - 2], alpha[t - 1], sigma[t - 1])
  assert mean == pytest.approx(mean_coef_z, rel=1e-10)
  assert var == pytest.approx(variance, rel=1e-10)


def test_the_parametrisations_invert_each_other():
  kx, ke = jax.random.split(jax.random.key(1))
  x = jax.random.uniform(kx, (4, 5), minval=-1, maxval=1)
  eps = jax.random.normal(ke, (4, 5))
  alpha = jnp.asarray([0.99, 0.7, 0.3, 0.05])[:, None]
  sigma = jnp.sqrt(1 - alpha**2)
  z = dm.diffuse(x, alpha, sigma, eps)
  v = dm.v_from_eps_x(eps, x, alpha, sigma)
  for got, want in ((dm.x_from_eps(z, eps, alpha, sigma), x), (dm.eps_from_x(z, x, alpha, sigma), eps),
                    (dm.x_from_v(z, v, alpha, sigma), x), (dm.eps_from_v(z, v, alpha, sigma), eps)):
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_edm_preconditioning_and_weight():
  sigma = jnp.asarray([0.002, 0.5, 80.0])
  c_skip, c_out, c_in, c_noise = dm.edm_preconditioning(sigma)
  # lambda(sigma) c_out^2 = 1: every noise level's effective target has unit weight (EDM, eq. 8 and Table 1).
  np.testing.assert_allclose(dm.edm_loss_weight(sigma) * c_out**2, 1.0, rtol=1e-6)
  # the input and the effective target have unit variance for data of standard deviation sigma_data
  np.testing.assert_allclose(c_in**2 * (0.5**2 + sigma**2), 1.0, rtol=1e-6)
  assert float(c_skip[0]) == pytest.approx(1.0, abs=1e-4) and float(c_skip[-1]) < 1e-4
  np.testing.assert_allclose(c_noise, np.log(np.asarray(sigma)) / 4, rtol=1e-6)
  s = dm.edm_training_sigmas(jax.random.key(0), 100_000)
  assert float(jnp.mean(jnp.log(s))) == pytest.approx(-1.2, abs=0.02)
  assert float(jnp.std(jnp.log(s))) == pytest.approx(1.2, abs=0.02)


def test_gaussian_kl_and_the_prior_term():
  assert float(dm.gaussian_kl(0.0, 1.0, 1.0, 2.0)) == pytest.approx(0.5 * math.log(2), rel=1e-6)
  assert float(dm.gaussian_kl(0.3, 0.7, 0.3, 0.7)) == pytest.approx(0.0, abs=1e-7)
  alpha, sigma = dm.linear_schedule()
  x = jnp.full((2, 28, 28, 1), 1.0)
  # the linear schedule leaves almost nothing of the data: L_T of the whitest image about 4e-5 bits/dim
  bpd = dm.nats_to_bits_per_dim(dm.prior_kl(x, float(alpha[-1]), float(sigma[-1])), 28 * 28)
  want = 0.5 * (-math.log(sigma[-1] ** 2) + sigma[-1] ** 2 + alpha[-1] ** 2 - 1) / math.log(2)
  np.testing.assert_allclose(bpd, want, rtol=2e-3)  # float32: var_q = 1 - 4e-5 cancels in log(var_p / var_q)
  assert 0 < float(bpd[0]) < 1e-4


@pytest.mark.parametrize("mean,log_scale", [(0.0, -1.0), (0.93, -4.0), (-1.2, 0.5), (-1 + 191 * 2 / 255, -7.0)])
def test_the_discretised_decoder_is_a_distribution_over_the_256_levels(mean, log_scale):
  levels = jnp.linspace(-1.0, 1.0, 256)
  log_p = dm.discretized_gaussian_log_likelihood(levels, mean, log_scale)
  assert float(jnp.sum(jnp.exp(log_p))) == pytest.approx(1.0, abs=1e-5)
  if log_scale == -7.0:  # a narrow Gaussian centred on a level puts its mass there
    nearest = int(jnp.argmin(jnp.abs(levels - mean)))
    assert float(log_p[nearest]) > -1e-3
