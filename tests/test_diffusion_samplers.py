"""Every sampler with the exact denoiser of Gaussian data reproduces the data's mean and covariance, and DDIM
with eta = 0 inverts, more closely with more steps.

For x ~ N(mu, Sigma) and z = alpha x + sigma eps, E[x | z] = mu + alpha Sigma (alpha^2 Sigma + sigma^2 I)^-1
(z - alpha mu): the optimal denoiser, in closed form. Sampling errors then come from the samplers alone.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.losses import diffusion as dm
from genjax.losses import diffusion_sampling as ds

MU = np.asarray([0.5, -0.3, 0.2], np.float32)
_A = np.asarray([[0.3, 0.1, 0.0], [0.1, 0.2, -0.1], [0.0, 0.15, 0.25]], np.float32)
SIGMA = _A @ _A.T + 0.01 * np.eye(3, dtype=np.float32)  # correlated, eigenvalues 0.01..0.2
N_SAMPLES = 30_000


def vp_denoiser(z, alpha, sigma):
  s, u = np.linalg.eigh(SIGMA.astype(np.float64))
  s, u = jnp.asarray(s, jnp.float32), jnp.asarray(u, jnp.float32)
  gain = (u * (alpha * s / (alpha**2 * s + sigma**2))) @ u.T
  return MU + (z - alpha * MU) @ gain


def respaced(n: int):
  """n of the linear schedule's 1,000 steps, evenly spaced (Nichol & Dhariwal's respacing)."""
  alpha, sigma = dm.linear_schedule()
  idx = np.round(np.linspace(0, 999, n)).astype(int)
  return alpha[idx], sigma[idx]


def _cov_error(x) -> float:
  """max |sample covariance - Sigma| / max |Sigma|, after checking the mean to Monte-Carlo error."""
  x = np.asarray(x, np.float64)
  se = np.sqrt(np.diag(SIGMA) / x.shape[0])
  assert np.all(np.abs(x.mean(0) - MU) <= 5 * se + 2e-3), (x.mean(0), MU)
  return float(np.abs(np.cov(x.T) - SIGMA).max() / np.abs(SIGMA).max())


def _check_moments(x, tol=0.03):
  error = _cov_error(x)
  assert error <= tol, error


@functools.cache
def _prior(n=N_SAMPLES):
  return jax.random.normal(jax.random.key(0), (n, 3))


def _vp(sampler, steps, eta=0.0):
  alphas, sigmas = respaced(steps)
  if sampler == "ancestral":
    return jax.jit(ds.ancestral_sample, static_argnums=0)(vp_denoiser, _prior(), alphas, sigmas, jax.random.key(1))
  return jax.jit(ds.ddim_sample, static_argnums=0)(vp_denoiser, _prior(), alphas, sigmas, jax.random.key(1), eta)


@pytest.mark.parametrize("sampler,eta", [("ancestral", None), ("ddim", 0.0), ("ddim", 1.0)],
                         ids=["ancestral", "ddim-eta0", "ddim-eta1"])
def test_vp_samplers_reproduce_the_gaussian_data_and_converge_with_the_steps(sampler, eta):
  """The mean to Monte-Carlo error at every step count; the covariance's error falls as the steps grow
  (a sampler's discretisation, not a bug: see the next test) and is within 4% at 1,000 steps (DDIM's own
  2% and the sample covariance's noise, 0.8% of it)."""
  errors = [_cov_error(_vp(sampler, steps, eta)) for steps in (25, 100, 1000)]
  assert errors[0] > errors[1] > errors[2] and errors[2] <= 0.04, errors


def test_ddim_shrinks_each_direction_by_exactly_its_discretisation():
  """DDIM (eta = 0) with the exact denoiser is linear: along an eigenvector of Sigma (variance s) the step
  t -> s' multiplies the variance by (alpha_s' alpha_t s + sigma_s' sigma_t)^2 / (v_s' v_t) <= 1,
  v = alpha^2 s + sigma^2 (Cauchy-Schwarz). Started from exact z_T, the sampled variances equal that product.
  On 20 of the 1,000 steps the product is 0.23 to 0.69, far from 1, so the check also tells DDIM from a sampler
  that keeps the variance (on all 1,000 it is 0.984 to 0.992, within 1.6% of 1)."""
  alphas, sigmas = respaced(20)
  a, sg = np.r_[1.0, alphas], np.r_[0.0, sigmas]
  eigenvalues, u = np.linalg.eigh(SIGMA.astype(np.float64))
  x = np.random.default_rng(0).multivariate_normal(MU, SIGMA, 200_000).astype(np.float32)
  z_T = alphas[-1] * x + sigmas[-1] * np.random.default_rng(1).normal(size=x.shape).astype(np.float32)
  out = jax.jit(ds.ddim_sample, static_argnums=0)(vp_denoiser, jnp.asarray(z_T), alphas, sigmas,
                                                  jax.random.key(1), 0.0)
  measured = np.diag(u.T @ np.cov(np.asarray(out, np.float64).T) @ u)
  for var, got in zip(eigenvalues, measured):
    v = a**2 * var + sg**2
    want = var * np.prod((a[:-1] * a[1:] * var + sg[:-1] * sg[1:]) ** 2 / (v[:-1] * v[1:]))
    assert abs(got - want) <= 4 * want * np.sqrt(2 / x.shape[0]), (got, want, var)
    assert want < var  # and it is a shrink, which more steps make smaller


@pytest.mark.parametrize("churn", [0.0, 10.0], ids=["deterministic", "churn"])
def test_edm_heun_reproduces_the_gaussian_data_and_converges(churn):
  """Heun's 2N - 1 evaluations: within 3% at N = 80, and closer than at N = 18 (churn adds noise to undo)."""
  d = ds.edm_denoiser_from_vp(vp_denoiser)
  errors = []
  for n in (18, 80):
    sigmas = dm.edm_sigmas(n)
    x = jax.jit(ds.heun_sample, static_argnums=0)(d, _prior() * float(sigmas[0]), sigmas, jax.random.key(2), churn,
                                                  0.05, 50.0, 1.003)
    errors.append(_cov_error(x))
  assert errors[1] < errors[0] and errors[1] <= 0.03, errors


def _heun_algorithm_2(d, x, sigmas, key, churn, tmin, tmax, noise):
  """Karras et al. 2022, Algorithm 2, line by line in numpy (the keys drawn as `heun_sample` draws them)."""
  n, xs = len(sigmas), np.asarray(x, np.float64)
  keys = jax.random.split(key, n)
  nexts = [*sigmas[1:], 0.0]
  calls = 0
  for i, (s, nxt) in enumerate(zip(sigmas, nexts)):
    gamma = min(churn / n, np.sqrt(2) - 1) if tmin <= s <= tmax else 0.0
    s_hat = s * (1 + gamma)
    eps = np.asarray(jax.random.normal(keys[i], xs.shape), np.float64) * noise
    x_hat = xs + np.sqrt(max(s_hat**2 - s**2, 0.0)) * eps
    slope = (x_hat - np.asarray(d(jnp.asarray(x_hat, jnp.float32), s_hat), np.float64)) / s_hat
    calls += 1
    xs = x_hat + (nxt - s_hat) * slope
    if nxt != 0:
      slope_next = (xs - np.asarray(d(jnp.asarray(xs, jnp.float32), nxt), np.float64)) / nxt
      calls += 1
      xs = x_hat + (nxt - s_hat) * 0.5 * (slope + slope_next)
  return xs, calls


@pytest.mark.parametrize("churn", [0.0, 10.0], ids=["deterministic", "churn"])
def test_edm_heun_is_algorithm_2_with_2n_minus_1_denoiser_calls(churn):
  """Every step as the paper writes it, and no denoiser call whose result is thrown away (the last step is Euler's)."""
  calls = []

  def counted(x, sigma):
    jax.debug.callback(lambda: calls.append(1))
    return ds.edm_denoiser_from_vp(vp_denoiser)(x, sigma)

  sigmas = dm.edm_sigmas(5)
  x_t = _prior()[:64] * float(sigmas[0])
  args = (x_t, sigmas, jax.random.key(3), churn, 0.05, 50.0, 1.003)
  x, (path_x, path_denoised) = jax.jit(ds.heun_sample, static_argnums=(0, 8))(counted, *args, True)
  jax.block_until_ready(x)
  want, want_calls = _heun_algorithm_2(ds.edm_denoiser_from_vp(vp_denoiser), *args)
  assert len(calls) == want_calls == 2 * 5 - 1
  np.testing.assert_allclose(np.asarray(x), want, rtol=0, atol=2e-5)
  assert path_x.shape == (5, *x_t.shape) and path_denoised.shape == (5, *x_t.shape)
  np.testing.assert_array_equal(np.asarray(path_x[-1]), np.asarray(x))


def test_a_wrong_denoiser_is_seen():
  """The moment check can fail: a denoiser that shrinks towards the mean by 20% gives too small a covariance."""
  alphas, sigmas = respaced(1000)
  shrunk = lambda z, a, s: MU + 0.8 * (vp_denoiser(z, a, s) - MU)  # noqa: E731
  x = jax.jit(ds.ddim_sample, static_argnums=0)(shrunk, _prior(), alphas, sigmas, jax.random.key(1), 0.0)
  with pytest.raises(AssertionError):
    _check_moments(x)


def test_ddim_with_eta_zero_inverts_and_more_steps_invert_better():
  x = jnp.asarray(np.random.default_rng(0).multivariate_normal(MU, SIGMA, 2000), jnp.float32)
  errors = []
  for steps in (20, 100, 500):
    alphas, sigmas = respaced(steps)
    z = jax.jit(ds.ddim_encode, static_argnums=0)(vp_denoiser, x, alphas, sigmas)
    back = jax.jit(ds.ddim_sample, static_argnums=0)(vp_denoiser, z, alphas, sigmas, jax.random.key(0), 0.0)
    errors.append(float(jnp.sqrt(jnp.mean(jnp.square(back - x)))))
  assert errors[0] > errors[1] > errors[2], errors
  assert errors[2] < 0.02 * float(np.sqrt(np.trace(SIGMA) / 3)), errors


def test_eta_is_an_array_and_changing_it_does_not_recompile():
  alphas, sigmas = respaced(10)
  traces = []

  def sample(z, eta):
    traces.append(1)
    return ds.ddim_sample(vp_denoiser, z, alphas, sigmas, jax.random.key(0), eta)

  f = jax.jit(sample)
  a, b = f(_prior(64), 0.0), f(_prior(64), 1.0)
  assert len(traces) == 1 and not np.allclose(a, b)


def _gaussian_nll(x, mean, cov):
  d = x.shape[-1]
  diff = x - mean
  _, logdet = np.linalg.slogdet(cov)
  return 0.5 * (np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff) + logdet + d * np.log(2 * np.pi))


def logsnr_schedule(steps: int, high: float = 12.0, low: float = -12.0):
  """(alpha, sigma) of a VP process with log-SNR evenly spaced from `high` to `low` (alpha^2 = sigmoid(lambda))."""
  lam = np.linspace(high, low, steps)
  return np.sqrt(1 / (1 + np.exp(-lam))), np.sqrt(1 / (1 + np.exp(lam)))


def _vlb(x, steps, key):
  """The bound of Gaussian data with the exact denoiser: L_T + L_1..L_{N-1} + the decoder's -log p(x | z_1),
  the decoder being the exact q(x | z_1) = N(E[x | z_1], Cov[x | z_1]) (a continuous x: no discretisation)."""
  alphas, sigmas = logsnr_schedule(steps)
  prior = np.asarray(dm.prior_kl(jnp.asarray(x), float(alphas[-1]), float(sigmas[-1])))
  kl = np.asarray(jax.jit(dm.diffusion_kl_terms, static_argnums=0)(vp_denoiser, jnp.asarray(x), alphas, sigmas, key))
  a1, s1 = float(alphas[0]), float(sigmas[0])
  z1 = a1 * x + s1 * np.asarray(jax.random.normal(jax.random.fold_in(key, 10**6), x.shape))
  post_cov = SIGMA - a1**2 * SIGMA @ np.linalg.inv(a1**2 * SIGMA + s1**2 * np.eye(3)) @ SIGMA
  decoder = np.asarray([_gaussian_nll(x[i:i + 1], np.asarray(vp_denoiser(z1[i:i + 1], a1, s1)), post_cov)[0]
                        for i in range(x.shape[0])])
  return prior + kl + decoder


def test_the_bound_is_above_the_exact_nll_and_approaches_it_with_more_steps():
  """With the exact denoiser the diffusion terms are a Riemann sum of (1/2) int mmse(snr) dsnr (I-MMSE), so the
  bound tends to the exact NLL as log-SNR steps shrink: measured 48.7, 1.92 and 0.18 nats above it at 10, 100
  and 1,000 steps from log-SNR 12 to -12. (The linear schedule's first steps each halve the SNR and keep it
  about a nat above at any number of steps.)"""
  x = np.random.default_rng(3).multivariate_normal(MU, SIGMA, 400).astype(np.float64)
  nll = float(_gaussian_nll(x, MU, SIGMA.astype(np.float64)).mean())
  gaps = [float(_vlb(x, steps, jax.random.key(4)).mean()) - nll for steps in (10, 100, 1000)]
  assert gaps[0] > gaps[1] > gaps[2] > 0, (gaps, nll)
  assert gaps[2] < 0.3 and gaps[1] / gaps[2] > 5, gaps  # about 1 / steps


def test_guidance_scale_is_an_array_and_moves_the_mean_as_the_affine_denoiser_says():
  # The exact denoiser is affine in the data's mean m: m (I - alpha G) + z G. Guiding the denoiser of mean
  # MU + DELTA against that of MU with scale s is the exact denoiser of mean MU + s DELTA, so DDIM's samples
  # have that mean (and the same covariance), at every scale, from one compiled sampler.
  delta = np.asarray([0.4, 0.2, -0.3], np.float32)

  def shifted(z, alpha, sigma):
    return vp_denoiser(z - alpha * delta, alpha, sigma) + delta

  alphas, sigmas = respaced(100)
  traces = []

  def sample(z, scale):
    traces.append(1)
    return ds.ddim_sample(ds.guided(shifted, vp_denoiser, scale), z, alphas, sigmas, jax.random.key(0))

  f = jax.jit(sample)
  for scale in (0.0, 1.0, 2.5):
    x = np.asarray(f(_prior(), jnp.float32(scale)), np.float64)
    se = np.sqrt(np.diag(SIGMA) / x.shape[0])
    assert np.all(np.abs(x.mean(0) - (MU + scale * delta)) <= 5 * se + 2e-3), (scale, x.mean(0))
  assert len(traces) == 1


def test_guidance_is_ho_and_salimans_with_scale_1_plus_w_and_the_interval_guides_only_inside():
  """The stated convention: scale = 1 + w gives (1 + w) eps_c - w eps_u; scale 0 and 1 give the unconditional
  and the conditional denoisers exactly; with an interval (lo, hi] of EDM's sigma = sigma / alpha, guidance
  applies inside it and the conditional denoiser outside, the boundaries as stated."""
  def cond(z, alpha, sigma):
    return 0.7 * z + 0.3

  def uncond(z, alpha, sigma):
    return -0.2 * z + 1.1

  z = jnp.asarray([0.5, -1.0, 2.0])
  alpha, sigma = jnp.float32(0.6), jnp.float32(0.8)  # EDM's sigma = 4/3
  eps = lambda x_hat: dm.eps_from_x(z, x_hat, alpha, sigma)
  for w in (0.0, 0.5, 3.0):
    want_eps = (1 + w) * eps(cond(z, alpha, sigma)) - w * eps(uncond(z, alpha, sigma))
    got = ds.guided(cond, uncond, 1 + w)(z, alpha, sigma)
    np.testing.assert_allclose(np.asarray(eps(got)), np.asarray(want_eps), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(ds.guided(cond, uncond, 0.0)(z, alpha, sigma)),
                                np.asarray(uncond(z, alpha, sigma)))
  np.testing.assert_array_equal(np.asarray(ds.guided(cond, uncond, 1.0)(z, alpha, sigma)),
                                np.asarray(cond(z, alpha, sigma)))
  traces = []

  def f(scale, lo, hi):
    traces.append(1)
    return ds.guided(cond, uncond, scale, (lo, hi))(z, alpha, sigma)

  f = jax.jit(f)
  inside = ds.guided(cond, uncond, 2.5)(z, alpha, sigma)
  level = float(np.float32(0.8) / np.float32(0.6))  # as the sampler computes it, in float32
  for lo, hi, guides in ((1.0, 2.0, True), (level, 2.0, False), (0.5, level, True), (1.5, 9.0, False),
                         (0.1, 1.2, False)):
    got = f(jnp.float32(2.5), jnp.float32(lo), jnp.float32(hi))
    want = inside if guides else cond(z, alpha, sigma)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, err_msg=str((lo, hi)))
  assert len(traces) == 1
