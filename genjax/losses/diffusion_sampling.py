"""Diffusion samplers, each one compiled loop (`lax.scan`) over its steps: ancestral (DDPM), DDIM with eta,
EDM's Heun sampler with optional churn, and inpainting by the replacement method and by RePaint.

Every sampler takes a denoiser that predicts the data, `denoise(z, alpha, sigma) -> x_hat` for the VP
samplers (genjax.losses.diffusion converts eps- and v-predictions), and `D(x, sigma) -> x_hat` in EDM's
form (x = data + sigma n) for Heun; `edm_denoiser_from_vp` turns the first into the second, and
`heun_sample_vp` runs Heun on a VP denoiser, its path in the VP scale. Steps are the
schedule's (alpha_i, sigma_i), i = 0..N-1, noisiest last; a respaced sampler passes any subsequence of a
schedule (Nichol & Dhariwal 2021), and the step from i to i - 1 is the exact Gaussian q(z_{i-1} | z_i, x) of
genjax.losses.diffusion.posterior whatever the gap. Scalars such as eta and the churn are arrays, so
changing them does not recompile.

With `path=True` a sampler also returns its path: the state after every step and the denoiser's prediction
of the data at every step, stacked on a leading axis of steps (noisiest first), for pictures of the
denoising trajectory.
"""

import jax
import jax.numpy as jnp
import numpy as np

from genjax.losses import diffusion as dm


def _steps(alphas, sigmas):
  """(alpha_t, sigma_t, alpha_s, sigma_s) of every step, noisiest first; s of the last step is the data (1, 0)."""
  alphas, sigmas = jnp.asarray(alphas, jnp.float32), jnp.asarray(sigmas, jnp.float32)
  alpha_s = jnp.concatenate([jnp.ones((1,), jnp.float32), alphas[:-1]])
  sigma_s = jnp.concatenate([jnp.zeros((1,), jnp.float32), sigmas[:-1]])
  return alphas[::-1], sigmas[::-1], alpha_s[::-1], sigma_s[::-1]


def _run(step, z_T, alphas, sigmas, key, path):
  steps = _steps(alphas, sigmas)
  z, trajectory = jax.lax.scan(step, z_T, (*steps, jax.random.split(key, steps[0].shape[0])))
  return (z, trajectory) if path else z


def ddim_sample(denoise, z_T, alphas, sigmas, key: jax.Array, eta=0.0, path: bool = False):
  """DDIM (Song et al. 2021) from z_T down the steps: z_s = alpha_s x_hat + sqrt(sigma_s^2 - c^2) eps_hat + c n,
  with c^2 = eta^2 Var q(z_s | z_t, x) (eta = 0: deterministic; eta = 1: the ancestral sampler's
  distribution). The step to the data returns x_hat."""
  eta = jnp.asarray(eta, jnp.float32)

  def step(z, inputs):
    alpha_t, sigma_t, alpha_s, sigma_s, k = inputs
    z_s, x_hat = _ddim_step(denoise, z, alpha_t, sigma_t, alpha_s, sigma_s, eta, k)
    return z_s, ((z_s, x_hat) if path else None)

  return _run(step, z_T, alphas, sigmas, key, path)


def _ddim_step(denoise, z, alpha_t, sigma_t, alpha_s, sigma_s, eta, key):
  """(z_s, x_hat): one step of `ddim_sample` from level t to level s, shared with the inpainting samplers."""
  x_hat = denoise(z, alpha_t, sigma_t)
  eps_hat = dm.eps_from_x(z, x_hat, alpha_t, sigma_t)
  _, var = dm.posterior(x_hat, z, alpha_s, sigma_s, alpha_t, sigma_t)
  c2 = jnp.minimum(eta**2 * var, sigma_s**2)
  z_s = alpha_s * x_hat + jnp.sqrt(sigma_s**2 - c2) * eps_hat + jnp.sqrt(c2) * jax.random.normal(key, z.shape)
  return jnp.where(sigma_s > 0, z_s, x_hat), x_hat


def ancestral_sample(denoise, z_T, alphas, sigmas, key: jax.Array, path: bool = False):
  """DDPM's ancestral sampler (Ho et al. 2020): z_s ~ q(z_s | z_t, x = x_hat) with its posterior variance
  ("fixed small"); the step to the data returns x_hat."""

  def step(z, inputs):
    alpha_t, sigma_t, alpha_s, sigma_s, k = inputs
    x_hat = denoise(z, alpha_t, sigma_t)
    mean, var = dm.posterior(x_hat, z, alpha_s, sigma_s, alpha_t, sigma_t)
    z_s = jnp.where(sigma_s > 0, mean + jnp.sqrt(var) * jax.random.normal(k, z.shape), x_hat)
    return z_s, ((z_s, x_hat) if path else None)

  return _run(step, z_T, alphas, sigmas, key, path)


def ddim_encode(denoise, x, alphas, sigmas):
  """DDIM's deterministic encoder (eta = 0 run upwards): x -> z_T, which `ddim_sample(eta=0)` decodes back.

  Each step keeps the predicted (x_hat, eps_hat) of its start and moves them to the next level; the first
  step, from the data, takes eps_hat from the denoiser at the first level with z = alpha_1 x.
  """
  alphas, sigmas = jnp.asarray(alphas, jnp.float32), jnp.asarray(sigmas, jnp.float32)
  probe = alphas[0] * x
  eps0 = dm.eps_from_x(probe, denoise(probe, alphas[0], sigmas[0]), alphas[0], sigmas[0])

  def step(z, inputs):
    alpha_s, sigma_s, alpha_t, sigma_t = inputs
    x_hat = denoise(z, alpha_s, sigma_s)
    return alpha_t * x_hat + sigma_t * dm.eps_from_x(z, x_hat, alpha_s, sigma_s), None

  z, _ = jax.lax.scan(step, alphas[0] * x + sigmas[0] * eps0, (alphas[:-1], sigmas[:-1], alphas[1:], sigmas[1:]))
  return z


# ------------------------------------------------------------------ inpainting
# `known` is a boolean mask that broadcasts against the images (True where a pixel is given) and `x_known` the
# image whose known pixels are kept; both are arrays, so one compiled sampler serves every image and every mask
# (boxes, halves, random pixels). Level k = 0..N-1 below is the schedule's step k (alphas[k], sigmas[k]) and
# level -1 the data (alpha = 1, sigma = 0).


def _replace_known(z_s, x_known, known, alpha_s, sigma_s, key):
  """z_s with its known region replaced by a fresh draw of q(z_s | x_known) = N(alpha_s x_known, sigma_s^2 I)."""
  return jnp.where(known, dm.diffuse(x_known, alpha_s, sigma_s, jax.random.normal(key, z_s.shape)), z_s)


def _inpaint_step(denoise, z, x_known, known, alpha_t, sigma_t, alpha_s, sigma_s, eta, key):
  """One denoising step of inpainting: DDIM's step (eta = 1: DDPM's) on the whole image, then the known region
  at the new level drawn afresh from x_known. The step to the data leaves x_known there exactly."""
  model_key, known_key = jax.random.split(key)
  z_s, _ = _ddim_step(denoise, z, alpha_t, sigma_t, alpha_s, sigma_s, eta, model_key)
  return _replace_known(z_s, x_known, known, alpha_s, sigma_s, known_key)


def inpaint_replacement(denoise, x_known, known, z_T, alphas, sigmas, key: jax.Array, eta=1.0):
  """The replacement method (Song et al. 2021, "Score-Based Generative Modeling through SDEs", appendix I.2;
  score_sde's inpainter): every step is `ddim_sample`'s on the whole image, after which the known region is
  replaced by a fresh draw of q(z_s | x_known) at the new level; N denoiser evaluations.

  It is an approximation: the known region's noisy values are drawn independently of the unknown region's
  trajectory, so the denoiser is asked E[x | z_t] at a z_t whose two regions disagree, and the unknown region
  follows the known pixels only as far as each step's prediction carries them (Lugmayr et al. 2022, section
  4.2; Ho et al. 2022, "Video Diffusion Models", section 3.1). `inpaint_repaint` resamples to harmonise them.
  eta is DDIM's (1: the ancestral step, as the paper's; 0: deterministic in the unknown region) and an array.
  The output's known pixels are x_known's, bit for bit.
  """
  eta = jnp.asarray(eta, jnp.float32)

  def step(z, inputs):
    alpha_t, sigma_t, alpha_s, sigma_s, k = inputs
    return _inpaint_step(denoise, z, x_known, known, alpha_t, sigma_t, alpha_s, sigma_s, eta, k), None

  return jnp.where(known, x_known, _run(step, z_T, alphas, sigmas, key, False))


def _check_jumps(jump_length, jump_count) -> tuple[int, int]:
  values = {}
  for name, value in (("jump_length", jump_length), ("jump_count", jump_count)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"{name} = {value!r}: RePaint's {name} is a static int >= 1 (it shapes the schedule)")
    values[name] = int(value)
  return values["jump_length"], values["jump_count"]


def repaint_schedule(num_steps: int, jump_length: int, jump_count: int) -> np.ndarray:
  """The levels RePaint visits, from z_T's (num_steps - 1) down to the data (-1), one level per move (Lugmayr
  et al. 2022, section 4.2, the authors' `get_schedule_jump`).

  It steps down one level at a time; on reaching a jump point (every `jump_length`-th level from 0 that is at
  least `jump_length` below the top) for one of its first `jump_count` - 1 times, it goes back up
  `jump_length` levels, one level per move, and steps down again. jump_count = 1 (or jump_length >=
  num_steps) is the plain schedule. Numpy, from static ints: the sampler's scan is laid out from it at trace
  time.
  """
  jump_length, jump_count = _check_jumps(jump_length, jump_count)
  jumps_left = {j: jump_count - 1 for j in range(0, num_steps - jump_length, jump_length)}
  levels, t = [], num_steps - 1
  levels.append(t)
  while t >= 1:
    t -= 1
    levels.append(t)
    if jumps_left.get(t, 0) > 0:
      jumps_left[t] -= 1
      levels.extend(range(t + 1, t + jump_length + 1))
      t += jump_length
  levels.append(-1)
  return np.asarray(levels, np.int64)


def repaint_evaluations(num_steps: int, jump_length: int, jump_count: int) -> int:
  """Denoiser evaluations of `inpaint_repaint`: one per move down (moves up draw the forward process only);
  num_steps + (jump points) (jump_count - 1) jump_length."""
  return int(np.sum(np.diff(repaint_schedule(num_steps, jump_length, jump_count)) < 0))


def inpaint_repaint(denoise, x_known, known, z_T, alphas, sigmas, key: jax.Array, jump_length: int = 10,
                    jump_count: int = 10):
  """RePaint (Lugmayr et al. 2022, Algorithm 1 with the jumps of section 4.2): the replacement method's step
  (DDPM's ancestral step on the whole image, the known region drawn afresh from q(z_s | x_known)), and at
  the jump points of `repaint_schedule` the whole image sent back up `jump_length` levels by the forward
  process, q(z_t | z_s) = N(alpha_{t|s} z_s, sigma_{t|s}^2 I) one level at a time, and denoised again. Going
  back lets the unknown region be redrawn from a z_t whose known region it has already been fitted to, which
  harmonises the two regions; `repaint_evaluations` counts the cost. Neither method samples the exact
  conditional: on strongly correlated Gaussian data with the exact denoiser RePaint removes most of the
  replacement method's bias, not all, and with this step's "fixed small" variance more resampling trades the
  mean's error for the covariance's (measured in tests/test_diffusion_inpainting.py).

  The moves run in one `lax.scan` whose each move is a `lax.cond` between the two kinds, so a move up calls no
  denoiser. jump_length and jump_count are static ints (they set the number of moves: a new value traces
  anew); x_known, known and the schedule are arrays. With jump_count = 1 this is `inpaint_replacement`
  with eta = 1, draw for draw. The output's known pixels are x_known's, bit for bit.
  """
  alphas, sigmas = jnp.asarray(alphas, jnp.float32), jnp.asarray(sigmas, jnp.float32)
  levels = repaint_schedule(alphas.shape[0], jump_length, jump_count)
  # Index 0 is the data, so level k is entry k + 1.
  level_alphas = jnp.concatenate([jnp.ones((1,), jnp.float32), alphas])
  level_sigmas = jnp.concatenate([jnp.zeros((1,), jnp.float32), sigmas])
  start, end = levels[:-1] + 1, levels[1:] + 1
  down = jnp.asarray(levels[1:] < levels[:-1])
  eta = jnp.float32(1.0)  # DDPM's step, as the paper's

  def denoise_move(z, alpha_t, sigma_t, alpha_s, sigma_s, k):
    return _inpaint_step(denoise, z, x_known, known, alpha_t, sigma_t, alpha_s, sigma_s, eta, k)

  def renoise_move(z, alpha_s, sigma_s, alpha_t, sigma_t, k):
    alpha_ts, var_ts = dm.transition(alpha_s, sigma_s, alpha_t, sigma_t)
    return alpha_ts * z + jnp.sqrt(var_ts) * jax.random.normal(k, z.shape)

  def move(z, inputs):
    is_down, *levels_and_key = inputs
    return jax.lax.cond(is_down, denoise_move, renoise_move, z, *levels_and_key), None

  moves = (down, level_alphas[start], level_sigmas[start], level_alphas[end], level_sigmas[end],
           jax.random.split(key, len(start)))
  z, _ = jax.lax.scan(move, z_T, moves)
  return jnp.where(known, x_known, z)


def guided(denoise_cond, denoise_uncond, scale, interval=(0.0, float("inf"))):
  """Classifier-free guidance (Ho & Salimans 2022) in the data prediction: x_u + scale (x_c - x_u).

  The convention: scale = 1 is the conditional denoiser and 0 the unconditional one; scale = 1 + w is Ho &
  Salimans' (1 + w) eps_c - w eps_u (x_hat is affine in eps_hat at a given z), and it is the guidance scale of
  EDM2 and diffusers as they write it. `interval` = (lo, hi) applies guidance only at noise levels
  lo < sigma / alpha <= hi (EDM's sigma; Kynkäänniemi et al. 2024), the conditional denoiser elsewhere; the
  default, (0, inf), guides everywhere. Scale and interval are arrays (or traced scalars): a sampler compiled
  once serves every scale and interval.
  """
  def denoise(z, alpha, sigma):
    return guide(denoise_cond(z, alpha, sigma), denoise_uncond(z, alpha, sigma), sigma / alpha, scale, interval)
  return denoise


def guide(x_cond, x_uncond, level, scale, interval=(0.0, float("inf"))):
  """`guided`'s mix of the two predictions at noise level `level` = sigma / alpha: x_u + scale (x_c - x_u)
  where lo < level <= hi, x_c elsewhere; for a caller that computes both predictions in one batch."""
  lo, hi = (jnp.asarray(v, jnp.float32) for v in interval)
  s = jnp.where((level > lo) & (level <= hi), jnp.asarray(scale, jnp.float32), 1.0)
  return x_uncond + s * (x_cond - x_uncond)


def edm_denoiser_from_vp(denoise):
  """D(x, sigma) of EDM's form from a VP denoiser: x = data + sigma n is z / alpha with alpha = 1 / sqrt(1 +
  sigma^2), sigma_vp = sigma alpha (Karras et al. 2022, section 2 and appendix C)."""
  def d(x, sigma):
    alpha = 1.0 / jnp.sqrt(1.0 + sigma**2)
    return denoise(alpha * x, alpha, sigma * alpha)
  return d


def heun_sample(d, x_T, sigmas, key: jax.Array, s_churn=0.0, s_tmin=0.0, s_tmax=float("inf"), s_noise=1.0,
                path: bool = False):
  """EDM's stochastic sampler (Karras et al. 2022, Algorithm 2) with Heun's second-order correction, from
  x_T ~ N(0, sigma_0^2) (sigmas decreasing, e.g. `edm_sigmas`) to sigma = 0. s_churn = 0 is the deterministic
  Algorithm 1: N - 1 Heun steps and a last Euler step, 2N - 1 denoiser calls. The path's predictions are
  each step's first denoiser output."""
  sigmas = jnp.asarray(sigmas, jnp.float32)
  n = sigmas.shape[0]
  s_churn, s_noise = jnp.asarray(s_churn, jnp.float32), jnp.asarray(s_noise, jnp.float32)
  gamma_max = jnp.minimum(s_churn / n, jnp.sqrt(2.0) - 1.0)
  sigma_next = jnp.concatenate([sigmas[1:], jnp.zeros((1,), jnp.float32)])

  def euler(x, sigma, nxt, k):
    gamma = jnp.where((sigma >= s_tmin) & (sigma <= s_tmax), gamma_max, 0.0)
    sigma_hat = sigma * (1.0 + gamma)
    x_hat = x + jnp.sqrt(jnp.maximum(sigma_hat**2 - sigma**2, 0.0)) * s_noise * jax.random.normal(k, x.shape)
    denoised = d(x_hat, sigma_hat)
    slope = (x_hat - denoised) / sigma_hat
    return x_hat, sigma_hat, denoised, slope, x_hat + (nxt - sigma_hat) * slope

  def heun(x, inputs):  # every step but the last, which ends at sigma = 0 where the slope is not defined
    sigma, nxt, k = inputs
    x_hat, sigma_hat, denoised, slope, x_next = euler(x, sigma, nxt, k)
    slope_next = (x_next - d(x_next, nxt)) / nxt
    x_next = x_hat + (nxt - sigma_hat) * 0.5 * (slope + slope_next)
    return x_next, ((x_next, denoised) if path else None)

  keys = jax.random.split(key, n)
  x, trajectory = jax.lax.scan(heun, x_T, (sigmas[:-1], sigma_next[:-1], keys[:-1]))
  *_, denoised, _, x = euler(x, sigmas[-1], sigma_next[-1], keys[-1])
  if path:
    trajectory = jax.tree.map(lambda steps, last: jnp.concatenate([steps, last[None]]), trajectory, (x, denoised))
  return (x, trajectory) if path else x


def heun_sample_vp(denoise, noise, sigmas, key: jax.Array, s_churn=0.0, path: bool = False):
  """`heun_sample` of a VP denoiser on EDM's levels `sigmas` (numpy, decreasing), from x_T = sigmas[0] noise.

  The path's states are in the VP form's scale, z = x / sqrt(1 + s^2) at the level s each step ends at (0 for
  the last), as the VP samplers' paths are, so pictures of any sampler's trajectory look alike.
  """
  out = heun_sample(edm_denoiser_from_vp(denoise), float(sigmas[0]) * noise, sigmas, key, s_churn=s_churn, path=path)
  if not path:
    return out
  x, (states, predictions) = out
  after = np.concatenate([sigmas[1:], [0.0]])
  return x, (states / jnp.sqrt(1.0 + jnp.asarray(after, jnp.float32) ** 2).reshape(-1, *[1] * x.ndim), predictions)
