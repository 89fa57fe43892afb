"""Diffusion math as pure functions: the forward process, its schedules, parametrisations, losses and bound.

The forward process (Kingma et al. 2021, "Variational Diffusion Models",
notation): z_t = alpha_t x + sigma_t eps, eps ~ N(0, I), with the log
signal-to-noise ratio lambda_t = log(alpha_t^2 / sigma_t^2) decreasing in t.
Variance preserving (VP) processes have alpha_t^2 + sigma_t^2 = 1; EDM
(Karras et al. 2022) writes alpha = 1, sigma = sigma_t.

Between two times s < t the process is Gaussian too:
    q(z_t | z_s) = N(alpha_{t|s} z_s, sigma_{t|s}^2),
    alpha_{t|s} = alpha_t / alpha_s,  sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2,
and its posterior given x (Bayes' rule on the two Gaussians) is
    q(z_s | z_t, x) = N(mu, var),
    mu = (alpha_{t|s} sigma_s^2 / sigma_t^2) z_t + (alpha_s sigma_{t|s}^2 / sigma_t^2) x,
    var = sigma_{t|s}^2 sigma_s^2 / sigma_t^2,
which for consecutive steps of a discrete schedule is Ho et al. (2020)'s
q(x_{t-1} | x_t, x_0) with beta_t = sigma_{t|t-1}^2, and for any pair of
steps is the respaced process that DDIM and the respaced samplers use.

Schedules, each returning (alpha, sigma) arrays:
  * `linear_schedule`: Ho et al. (2020), beta from 1e-4 to 0.02 over T = 1,000
    steps, alpha_bar_t = prod_{s <= t} (1 - beta_s); for another T both ends
    scaled by 1,000 / T (Nichol & Dhariwal's code), so that alpha_bar_T stays
    near 4e-5 (unscaled it is 0.36 at T = 100 and underflows past 20,000);
  * `cosine_schedule`: Nichol & Dhariwal (2021), alpha_bar(t) = f(t) / f(0),
    f(t) = cos^2((t / T + s) / (1 + s) pi / 2), s = 0.008, beta clipped to 0.999;
  * `edm_sigmas`: Karras et al. (2022), sigma_i = (sigma_max^(1/rho) + i / (N - 1)
    (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, rho = 7, sigma in [0.002, 80].

Arrays are indexed by step t = 1..T at position t - 1 (alpha_0 = 1, sigma_0 = 0
is the data itself and is not stored).
"""

import jax
import jax.numpy as jnp
import numpy as np

# ------------------------------------------------------------------ schedules


def alphas_from_alpha_bar(alpha_bar_T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(alpha_t, sigma_t) of a VP process with cumulative products alpha_bar_t: sqrt(alpha_bar), sqrt(1 - alpha_bar)."""
  alpha_bar_T = np.asarray(alpha_bar_T, np.float64)
  return np.sqrt(alpha_bar_T), np.sqrt(1.0 - alpha_bar_T)


def linear_betas(num_steps: int = 1000, beta_1: float = 1e-4, beta_T: float = 0.02, per_1000: bool = False,
                 max_beta: float = 0.999) -> np.ndarray:
  """Ho et al. (2020): beta_t evenly spaced from beta_1 to beta_T (float64 [T]); `per_1000`: both ends as given
  for 1,000 steps and scaled by 1,000 / T (improved-diffusion's get_named_beta_schedule); clipped to max_beta."""
  scale = 1000.0 / num_steps if per_1000 else 1.0
  return np.minimum(np.linspace(beta_1 * scale, beta_T * scale, num_steps, dtype=np.float64), max_beta)


def linear_schedule(num_steps: int = 1000, beta_1: float = 1e-4, beta_T: float = 0.02, per_1000: bool = False):
  """(alpha_t, sigma_t), float64 [T], of Ho et al.'s linear beta schedule (`linear_betas`)."""
  return alphas_from_alpha_bar(np.cumprod(1.0 - linear_betas(num_steps, beta_1, beta_T, per_1000)))


def cosine_schedule(num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999):
  """(alpha_t, sigma_t), float64 [T], of Nichol & Dhariwal's cosine schedule (betas clipped to `max_beta`)."""
  t = np.arange(num_steps + 1, dtype=np.float64) / num_steps
  f = np.cos((t + s) / (1 + s) * np.pi / 2) ** 2
  alpha_bar = f / f[0]
  betas = np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], max_beta)
  return alphas_from_alpha_bar(np.cumprod(1.0 - betas))


def edm_sigmas(num_steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> np.ndarray:
  """Karras et al. (2022), eq. 5: N noise levels from sigma_max down to sigma_min (float64 [N], N >= 2)."""
  i = np.arange(num_steps, dtype=np.float64)
  return (sigma_max ** (1 / rho) + i / (num_steps - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho


def log_snr(alpha, sigma):
  """lambda = log(alpha^2 / sigma^2)."""
  return 2.0 * (jnp.log(alpha) - jnp.log(sigma))


# ------------------------------------------------------- the forward process


def diffuse(x, alpha, sigma, eps):
  """z = alpha x + sigma eps: a draw of q(z_t | x) from the noise eps (alpha, sigma broadcast against x)."""
  return alpha * x + sigma * eps


def transition(alpha_s, sigma_s, alpha_t, sigma_t):
  """(alpha_{t|s}, sigma_{t|s}^2) of q(z_t | z_s), s < t."""
  alpha_ts = alpha_t / alpha_s
  return alpha_ts, sigma_t**2 - alpha_ts**2 * sigma_s**2


def posterior(x, z_t, alpha_s, sigma_s, alpha_t, sigma_t):
  """(mean, variance) of q(z_s | z_t, x), s < t; sigma_s = 0 (s the data) gives (x, 0)."""
  alpha_ts, var_ts = transition(alpha_s, sigma_s, alpha_t, sigma_t)
  mean = (alpha_ts * sigma_s**2 / sigma_t**2) * z_t + (alpha_s * var_ts / sigma_t**2) * x
  return mean, var_ts * sigma_s**2 / sigma_t**2


# ---------------------------------------------------------- parametrisations
# A network predicts eps, x or v = alpha eps - sigma x (Salimans & Ho 2022); with z = alpha x + sigma eps each
# determines the others. The v forms assume a VP process (alpha^2 + sigma^2 = 1).


def x_from_eps(z, eps, alpha, sigma):
  return (z - sigma * eps) / alpha


def eps_from_x(z, x, alpha, sigma):
  return (z - alpha * x) / sigma


def v_from_eps_x(eps, x, alpha, sigma):
  return alpha * eps - sigma * x


def x_from_v(z, v, alpha, sigma):
  """x = alpha z - sigma v (VP)."""
  return alpha * z - sigma * v


def eps_from_v(z, v, alpha, sigma):
  """eps = sigma z + alpha v (VP)."""
  return sigma * z + alpha * v


# -------------------------------------------------------------------- losses


def eps_mse(eps_hat, eps):
  """Ho et al.'s simple loss, per example: mean over the example's dimensions of (eps_hat - eps)^2."""
  return jnp.mean(jnp.square(eps_hat - eps).reshape(eps.shape[0], -1), axis=-1)


EDM_P_MEAN, EDM_P_STD, EDM_SIGMA_DATA = -1.2, 1.2, 0.5


def edm_preconditioning(sigma, sigma_data: float = EDM_SIGMA_DATA):
  """Karras et al. (2022), Table 1: (c_skip, c_out, c_in, c_noise) with D(x) = c_skip x + c_out F(c_in x, c_noise)."""
  total = sigma**2 + sigma_data**2
  return sigma_data**2 / total, sigma * sigma_data / jnp.sqrt(total), 1.0 / jnp.sqrt(total), jnp.log(sigma) / 4.0


def edm_loss_weight(sigma, sigma_data: float = EDM_SIGMA_DATA):
  """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2, which makes the loss 1/c_out^2-weighted."""
  return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def edm_training_sigmas(key: jax.Array, n: int, p_mean: float = EDM_P_MEAN, p_std: float = EDM_P_STD):
  """n noise levels with ln(sigma) ~ N(P_mean, P_std^2)."""
  return jnp.exp(p_mean + p_std * jax.random.normal(key, (n,)))


def edm_loss(denoised, x, sigma, sigma_data: float = EDM_SIGMA_DATA):
  """Per example: lambda(sigma) times the mean over dimensions of (D(x + sigma n) - x)^2; sigma is [B]."""
  return edm_loss_weight(sigma, sigma_data) * eps_mse(denoised, x)


# ---------------------------------------------------------- the variational bound


def gaussian_kl(mean_q, var_q, mean_p, var_p):
  """KL(N(mean_q, var_q) || N(mean_p, var_p)), elementwise, nats."""
  return 0.5 * (jnp.log(var_p) - jnp.log(var_q) + (var_q + jnp.square(mean_q - mean_p)) / var_p - 1.0)


def prior_kl(x, alpha_T, sigma_T):
  """KL(q(z_T | x) || N(0, I)) per example, nats (the bound's L_T)."""
  kl = gaussian_kl(alpha_T * x, sigma_T**2, 0.0, 1.0)
  return jnp.sum(kl.reshape(x.shape[0], -1), axis=-1)


def _standard_normal_cdf(x):
  return 0.5 * (1.0 + jax.scipy.special.erf(x / jnp.sqrt(2.0)))


def discretized_gaussian_log_likelihood(x, mean, log_scale, bins: int = 256):
  """log P(x) per element, x on the grid of `bins` levels spread over [-1, 1], under N(mean, exp(log_scale)^2)
  integrated over each level's bin, the edge bins extended to infinity (Ho et al. 2020, section 3.3)."""
  half = 1.0 / (bins - 1)  # half a bin: the levels are 2 / (bins - 1) apart
  inv = jnp.exp(-log_scale)
  upper = _standard_normal_cdf(inv * (x - mean + half))
  lower = _standard_normal_cdf(inv * (x - mean - half))
  log_upper = jnp.log(jnp.maximum(upper, 1e-12))
  log_one_minus_lower = jnp.log(jnp.maximum(1.0 - lower, 1e-12))
  log_mid = jnp.log(jnp.maximum(upper - lower, 1e-12))
  return jnp.where(x < -1.0 + half, log_upper, jnp.where(x > 1.0 - half, log_one_minus_lower, log_mid))


def nats_to_bits_per_dim(nats, dims: int):
  return nats / (dims * jnp.log(2.0))


def diffusion_kl_terms(denoise, x, alphas, sigmas, key: jax.Array):
  """sum_{i=2..N} KL(q(z_{i-1} | z_i, x) || p(z_{i-1} | z_i)) per example, nats: the bound's L_1..L_{N-1}.

  p(z_{i-1} | z_i) is q's posterior with x replaced by x_hat = denoise(z_i, alpha_i, sigma_i) and the same
  variance ("fixed small"), so each term is c_i^2 |x - x_hat|^2 / (2 var_i) with c_i = alpha_{i-1}
  sigma_{i|i-1}^2 / sigma_i^2. z_i ~ q(z_i | x) is drawn once per level from `fold_in(key, i)`: an unbiased
  estimate of the sum of expectations. The levels run in one `lax.scan`.

  With the exact denoiser the sum is a Riemann sum of (1/2) int mmse(snr) dsnr = I(x; z_1) - I(x; z_N)
  (the I-MMSE relation, Guo et al. 2005) taken at each step's noisier end, so it exceeds that integral by
  about a quarter of sum (delta snr)(delta mmse): small where log-SNR moves little per step. The linear
  schedule's first steps halve the SNR each, which leaves about a nat at any number of steps.
  """
  alphas, sigmas = jnp.asarray(alphas, jnp.float32), jnp.asarray(sigmas, jnp.float32)

  def term(total, inputs):
    i, alpha_s, sigma_s, alpha_t, sigma_t = inputs
    z_t = diffuse(x, alpha_t, sigma_t, jax.random.normal(jax.random.fold_in(key, i), x.shape))
    _, var_ts = transition(alpha_s, sigma_s, alpha_t, sigma_t)
    coef = alpha_s * var_ts / sigma_t**2
    var = var_ts * sigma_s**2 / sigma_t**2
    sq = jnp.square(x - denoise(z_t, alpha_t, sigma_t))
    return total + 0.5 * coef**2 / var * jnp.sum(sq.reshape(x.shape[0], -1), axis=-1), None

  levels = jnp.arange(1, alphas.shape[0])
  total, _ = jax.lax.scan(term, jnp.zeros((x.shape[0],), jnp.float32),
                          (levels, alphas[:-1], sigmas[:-1], alphas[1:], sigmas[1:]))
  return total
