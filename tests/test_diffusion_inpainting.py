"""Diffusion inpainting (the replacement method and RePaint) on Gaussian data, whose exact denoiser and
conditionals are in closed form.

For x ~ N(mu, Sigma) and z = alpha x + sigma eps, E[x | z] = mu + G (z - alpha mu), G = alpha Sigma (alpha^2 Sigma
+ sigma^2 I)^-1, so with that denoiser every move of either sampler is an affine map of z plus independent
Gaussian noise, and the moments of its output follow exactly from z_T ~ N(0, I) by propagating a mean and a
covariance in float64 (`_exact_moments`, written from the papers' equations independently of the library). The
samplers' Monte-Carlo moments must match that propagation; the propagation and the samples are then compared
with the true conditional N(mu_u + S_uk S_kk^-1 (x_k - mu_k), S_uu - S_uk S_kk^-1 S_ku) of the unknown
coordinates given the known ones.

What that comparison shows (measured, and asserted below): neither sampler reproduces the conditional of strongly
correlated data. Replacement is biased by more than a conditional standard deviation: the known region's noisy
values are drawn independently of the unknown region's trajectory, so each step conditions on a noisy copy of
the known pixels, never on the pixels. RePaint's resampling removes most of that bias at the paper's settings
but not all of it, and it is not exact either: with DDPM's "fixed small" step variance (the only one a denoiser
that predicts x defines) more resampling keeps shrinking the mean's error while the covariance's grows.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.losses import diffusion as dm
from genjax.losses import diffusion_sampling as ds

D = 4
MU = np.asarray([0.3, -0.2, 0.1, 0.4])
_STD = np.asarray([0.5, 0.4, 0.6, 0.5])
# An AR(1) correlation, 0.9 between neighbours: each unknown coordinate is mostly its known neighbours.
SIGMA = 0.9 ** np.abs(np.subtract.outer(np.arange(D), np.arange(D))) * np.outer(_STD, _STD)
KNOWN = np.asarray([True, False, True, False])
# The known values 1.4 and 1.5 standard deviations from the mean, so that conditioning moves the unknown ones far;
# the unknown entries are placeholders that no sampler may read.
X_KNOWN = np.asarray([1.0, 0.0, -0.8, 0.0])
N_SAMPLES = 5_000


def denoiser(z, alpha, sigma):
  """E[x | z] of x ~ N(MU, SIGMA), z = alpha x + sigma eps (float32, through Sigma's eigenbasis)."""
  s, u = np.linalg.eigh(SIGMA)
  s, u = jnp.asarray(s, jnp.float32), jnp.asarray(u, jnp.float32)
  mu = jnp.asarray(MU, jnp.float32)
  return mu + (z - alpha * mu) @ ((u * (alpha * s / (alpha**2 * s + sigma**2))) @ u.T)


def respaced(n: int):
  """n of the linear schedule's 1,000 steps, evenly spaced (Nichol & Dhariwal's respacing)."""
  alpha, sigma = dm.linear_schedule()
  idx = np.round(np.linspace(0, 999, n)).astype(int)
  return alpha[idx], sigma[idx]


def conditional(x_known=X_KNOWN, known=KNOWN):
  """Mean and covariance of the unknown coordinates given the known ones (the Gaussian conditional)."""
  k, u = known, ~known
  gain = SIGMA[np.ix_(u, k)] @ np.linalg.inv(SIGMA[np.ix_(k, k)])
  return MU[u] + gain @ (x_known[k] - MU[k]), SIGMA[np.ix_(u, u)] - gain @ SIGMA[np.ix_(k, u)]


def _exact_moments(levels, alphas, sigmas, eta=1.0, x_known=X_KNOWN, known=KNOWN, exact_variance=False):
  """Mean and covariance (float64) of the unknown coordinates at the end of the moves through `levels` (k: the
  schedule's step k, -1: the data), from z_T ~ N(0, I).

  A move down from t to s is DDIM's step (Song et al. 2021, eq. 12) with c^2 = eta^2 sigma_s^2 sigma_{t|s}^2 /
  sigma_t^2: z_s = alpha_s x_hat + sqrt(sigma_s^2 - c^2) (z - alpha_t x_hat) / sigma_t + c n, affine in z
  through x_hat; the known coordinates are then replaced by N(alpha_s x_k, sigma_s^2), independent of all else.
  A move up is the forward process, z_t = (alpha_t / alpha_s) z_s + sqrt(sigma_t^2 - (alpha_t / alpha_s)^2
  sigma_s^2) n.

  exact_variance = True adds to each move down (eta = 1) the variance that DDPM's "fixed small" step leaves out,
  b^2 Cov[x | z_t] with b = alpha_s sigma_{t|s}^2 / sigma_t^2 the posterior mean's weight on x: the step is then
  the exact reverse kernel q(z_s | z_t) of the Gaussian data, which no x-predicting denoiser defines.
  """
  a, sg = np.r_[1.0, alphas], np.r_[0.0, sigmas]
  a3, s3 = a[:, None, None], sg[:, None, None]
  gains = a3 * SIGMA @ np.linalg.inv(a3**2 * SIGMA + s3**2 * np.eye(D))  # the denoiser's G at every level
  mean, cov = np.zeros(D), np.eye(D)
  keep, fill = np.diag((~known).astype(float)), np.diag(known.astype(float))
  for f, t in zip(np.asarray(levels[:-1]) + 1, np.asarray(levels[1:]) + 1):
    if t < f:
      alpha_t, sigma_t, alpha_s, sigma_s = a[f], sg[f], a[t], sg[t]
      gain = gains[f]
      offset = MU - alpha_t * gain @ MU  # x_hat = offset + gain z
      var_ts = sigma_t**2 - (alpha_t / alpha_s) ** 2 * sigma_s**2
      c2 = eta**2 * sigma_s**2 * var_ts / sigma_t**2
      eps_weight = np.sqrt(sigma_s**2 - c2) / sigma_t
      linear = alpha_s * gain + eps_weight * (np.eye(D) - alpha_t * gain)
      noise = c2 * np.eye(D)
      if exact_variance:
        noise = noise + (alpha_s * var_ts / sigma_t**2) ** 2 * (SIGMA - alpha_t * gain @ SIGMA)
      mean = keep @ (linear @ mean + (alpha_s - eps_weight * alpha_t) * offset) + fill @ (alpha_s * x_known)
      cov = keep @ (linear @ cov @ linear.T + noise) @ keep + sigma_s**2 * fill
    else:
      alpha_s, sigma_s, alpha_t, sigma_t = a[f], sg[f], a[t], sg[t]
      alpha_ts = alpha_t / alpha_s
      mean, cov = alpha_ts * mean, alpha_ts**2 * cov + (sigma_t**2 - alpha_ts**2 * sigma_s**2) * np.eye(D)
  return mean[~known], cov[np.ix_(~known, ~known)]


def _plain_levels(num_steps: int):
  return np.arange(num_steps - 1, -2, -1)


# The settings measured: the replacement method (eta = 1, the paper's; eta = 0, DDIM's) and RePaint at the
# paper's jump length and count (10, 10), all on the same 250 respaced steps; and both on 10 steps, where one
# level is far from the next, so that a step that used the wrong level would show.
STEPS = 250
RUNS = {
    "replacement": dict(steps=STEPS, eta=1.0, jumps=None),
    "replacement-ddim": dict(steps=STEPS, eta=0.0, jumps=None),
    "repaint": dict(steps=STEPS, eta=1.0, jumps=(10, 10)),
    "replacement-10-steps": dict(steps=10, eta=1.0, jumps=None),
    "repaint-10-steps": dict(steps=10, eta=1.0, jumps=(3, 3)),
}
PAPER_RUNS = ("replacement", "replacement-ddim", "repaint")
_SAMPLES = {}


def _levels(run: str):
  cfg = RUNS[run]
  return _plain_levels(cfg["steps"]) if cfg["jumps"] is None else ds.repaint_schedule(cfg["steps"], *cfg["jumps"])


def _exact_run(run: str):
  """`_exact_moments` of a run."""
  return _exact_moments(_levels(run), *respaced(RUNS[run]["steps"]), RUNS[run]["eta"])


def _samples(run: str) -> np.ndarray:
  """The unknown coordinates of N_SAMPLES inpaintings of X_KNOWN (float64), each run once per session."""
  if run not in _SAMPLES:
    cfg = RUNS[run]
    alphas, sigmas = respaced(cfg["steps"])
    z_T = jax.random.normal(jax.random.key(0), (N_SAMPLES, D))
    args = (denoiser, jnp.asarray(X_KNOWN, jnp.float32), jnp.asarray(KNOWN), z_T, alphas, sigmas, jax.random.key(1))
    if cfg["jumps"] is not None:
      x = jax.jit(ds.inpaint_repaint, static_argnums=(0, 7, 8))(*args, *cfg["jumps"])
    else:
      x = jax.jit(ds.inpaint_replacement, static_argnums=0)(*args, cfg["eta"])
    _SAMPLES[run] = np.asarray(x, np.float64)[:, ~KNOWN]
  return _SAMPLES[run]


def _assert_moments(x, mean, cov, what: str):
  """Sample mean and covariance of x within 5 standard errors of (mean, cov) (Gaussian: Var s_ij = (C_ii C_jj +
  C_ij^2) / n)."""
  n = x.shape[0]
  mean_se = np.sqrt(np.diag(cov) / n)
  cov_se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
  assert np.all(np.abs(x.mean(0) - mean) <= 5 * mean_se), (what, x.mean(0), mean)
  assert np.all(np.abs(np.cov(x.T) - cov) <= 5 * cov_se), (what, np.cov(x.T), cov)


# ------------------------------------------------------------------ RePaint's schedule


def test_the_repaint_schedule_is_the_papers_jumps_worked_by_hand():
  """Six steps, jump length 2, two passes at each jump point: the jump points are levels 0 and 2 (4 would go
  past the top); at each, once, up two levels and down again."""
  assert ds.repaint_schedule(6, 2, 2).tolist() == [5, 4, 3, 2, 3, 4, 3, 2, 1, 0, 1, 2, 1, 0, -1]
  assert ds.repaint_evaluations(6, 2, 2) == 10
  assert ds.repaint_schedule(6, 2, 1).tolist() == [5, 4, 3, 2, 1, 0, -1]  # one pass: no jumps


@pytest.mark.parametrize("num_steps,jump_length,jump_count", [(250, 10, 10), (100, 5, 3), (37, 4, 2), (20, 1, 4),
                                                              (10, 10, 5), (10, 3, 1)])
def test_the_repaint_schedule_moves_one_level_at_a_time_and_counts_its_evaluations(num_steps, jump_length,
                                                                                  jump_count):
  levels = ds.repaint_schedule(num_steps, jump_length, jump_count)
  assert levels[0] == num_steps - 1 and levels[-1] == -1 and levels[-2] == 0
  assert np.all(np.abs(np.diff(levels)) == 1) and levels.min() == -1 and levels.max() == num_steps - 1
  ups = np.flatnonzero(np.diff(levels) > 0)
  jump_points = len(range(0, num_steps - jump_length, jump_length))
  assert len(ups) == jump_points * (jump_count - 1) * jump_length
  for start in ups[::jump_length]:  # each jump: jump_length moves up from a multiple of jump_length
    assert levels[start] % jump_length == 0 and np.all(np.diff(levels[start:start + jump_length + 1]) == 1)
  want = num_steps + jump_points * (jump_count - 1) * jump_length
  assert ds.repaint_evaluations(num_steps, jump_length, jump_count) == want
  if (num_steps, jump_length, jump_count) == (250, 10, 10):
    assert want == 2410  # the paper's setting: about ten times the plain schedule's 250


@pytest.mark.parametrize("jump_length,jump_count", [(0, 10), (10, 0), (2.0, 3), (True, 3), (np.float32(3), 2)])
def test_bad_jump_settings_are_refused(jump_length, jump_count):
  with pytest.raises(ValueError, match="static int >= 1"):
    ds.repaint_schedule(50, jump_length, jump_count)


# ------------------------------------------------------------------ the samplers are the algorithms


@pytest.mark.parametrize("run", list(RUNS))
def test_each_sampler_draws_what_its_algorithm_does(run):
  """The unknown coordinates' mean and covariance equal the float64 propagation of the algorithm's affine
  Gaussian moves, within Monte-Carlo error: this proves the samplers, whatever the algorithms' bias."""
  mean, cov = _exact_run(run)
  _assert_moments(_samples(run), mean, cov, run)


def test_repaint_removes_most_of_the_replacement_methods_bias_but_is_not_exact():
  """The measured truth on strongly correlated data (the propagation, float64, and the samples agreeing with it).

  Errors of the unknown coordinates against the conditional, in conditional standard deviations (mean) and
  relative to the largest conditional covariance entry (covariance), at 250 steps:
    replacement (eta = 1)   mean 1.38 sd, covariance 34%  (250 evaluations);
    replacement (eta = 0)   mean 1.88 sd, covariance 92%  (250 evaluations);
    RePaint (10, 10)        mean 0.39 sd, covariance  7%  (2,410 evaluations).
  All exceed the Monte-Carlo error of N_SAMPLES (0.014 sd) many times over: none is the conditional. RePaint's
  error is below a third of replacement's. (The first coordinate, between two known ones, is within 0.11 sd in
  all three: the bias is in the coordinate with one known neighbour.)
  """
  want_mean, want_cov = conditional()
  sd = np.sqrt(np.diag(want_cov))

  def errors(mean, cov):
    return float(np.max(np.abs(mean - want_mean) / sd)), float(np.abs(cov - want_cov).max() / np.abs(want_cov).max())

  exact = {run: errors(*_exact_run(run)) for run in PAPER_RUNS}
  measured = {run: errors(_samples(run).mean(0), np.cov(_samples(run).T)) for run in PAPER_RUNS}
  se = 1 / np.sqrt(N_SAMPLES)  # a sample mean's standard error, in conditional sds (about: the samples' sds differ)
  for run in PAPER_RUNS:
    assert abs(measured[run][0] - exact[run][0]) <= 6 * se, (run, measured[run], exact[run])
  assert exact["replacement"][0] > 1.3 and exact["replacement-ddim"][0] > 1.3, exact
  assert 0.3 < exact["repaint"][0] < exact["replacement"][0] / 3, exact
  assert measured["repaint"][0] < measured["replacement"][0] / 3, measured
  assert exact["repaint"][1] < 0.1 < exact["replacement"][1], exact
  assert min(m[0] for m in measured.values()) > 20 * se, measured  # no setting is within Monte-Carlo error


def test_more_resampling_shrinks_repaints_mean_error_and_grows_its_covariance_error():
  """RePaint is a heuristic, not a sampler of the conditional, with DDPM's "fixed small" step variance:
  resampling each level (jump length 1, 1,000 steps) r times, the mean's error falls towards zero while the
  covariance's rises (float64 propagation; the samplers are proven against it above). The covariance's error is
  the step's: each extra move down leaves out b^2 Cov[x | z_t] from its variance, and with that variance
  restored (a step no x-predicting denoiser defines) both errors fall with r."""
  alphas, sigmas = respaced(1000)
  want_mean, want_cov = conditional()
  sd = np.sqrt(np.diag(want_cov))
  errors = {False: [], True: []}
  for exact_variance in (False, True):
    for r in (1, 5, 20, 50):
      mean, cov = _exact_moments(ds.repaint_schedule(1000, 1, r), alphas, sigmas, exact_variance=exact_variance)
      errors[exact_variance].append((float(np.max(np.abs(mean - want_mean) / sd)),
                                     float(np.abs(cov - want_cov).max() / np.abs(want_cov).max())))
  # measured, (mean in sds, covariance) at r = 1, 5, 20, 50:
  #   fixed small: (1.35, 40%), (0.40, 2.7%), (0.11, 11%), (0.05, 16%)
  #   exact:       (1.35, 44%), (0.39, 6.6%), (0.11, 1.7%), (0.05, 0.8%)
  small_mean, small_cov = zip(*errors[False])
  exact_mean, exact_cov = zip(*errors[True])
  assert all(a > b for a, b in zip(small_mean, small_mean[1:])) and small_mean[-1] < 0.1, errors
  assert small_cov[1] < small_cov[2] < small_cov[3] and small_cov[3] > 0.1, errors
  assert all(a > b for a, b in zip(exact_cov, exact_cov[1:])) and exact_cov[-1] < 0.02, errors


# ------------------------------------------------------------------ invariants


def _small():
  """A batch of 64 on 10 steps, each example with its own known values and its own random mask of pixels."""
  alphas, sigmas = respaced(10)
  k1, k2, k3 = jax.random.split(jax.random.key(5), 3)
  x_known = jax.random.normal(k1, (64, D))
  known = jax.random.bernoulli(k2, 0.5, (64, D))
  return x_known, known, jax.random.normal(k3, (64, D)), alphas, sigmas


def _replacement(x_known, known, z_T, alphas, sigmas, key, eta=1.0):
  return jax.jit(ds.inpaint_replacement, static_argnums=0)(denoiser, x_known, known, z_T, alphas, sigmas, key, eta)


def _repaint(x_known, known, z_T, alphas, sigmas, key, jump_length=3, jump_count=3):
  return jax.jit(ds.inpaint_repaint, static_argnums=(0, 7, 8))(denoiser, x_known, known, z_T, alphas, sigmas, key,
                                                               jump_length, jump_count)


@pytest.mark.parametrize("sampler", [_replacement, _repaint], ids=["replacement", "repaint"])
def test_known_pixels_are_kept_bit_for_bit_and_the_unknown_ones_of_x_known_are_never_read(sampler):
  x_known, known, z_T, alphas, sigmas = _small()
  out = np.asarray(sampler(x_known, known, z_T, alphas, sigmas, jax.random.key(6)))
  np.testing.assert_array_equal(out[np.asarray(known)], np.asarray(x_known)[np.asarray(known)])
  assert np.all(np.isfinite(out)) and not np.any(out[~np.asarray(known)] == np.asarray(x_known)[~np.asarray(known)])
  other = jnp.where(known, x_known, 1e3)  # different values where the pixels are unknown
  np.testing.assert_array_equal(np.asarray(sampler(other, known, z_T, alphas, sigmas, jax.random.key(6))), out)


@pytest.mark.parametrize("sampler", [_replacement, _repaint], ids=["replacement", "repaint"])
def test_the_same_key_gives_the_same_inpainting_and_another_key_another(sampler):
  args = _small()
  a, b = sampler(*args, jax.random.key(7)), sampler(*args, jax.random.key(7))
  c = sampler(*args, jax.random.key(8))
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not np.allclose(np.asarray(a)[~np.asarray(args[1])], np.asarray(c)[~np.asarray(args[1])])


def test_repaint_with_one_pass_is_the_replacement_method_draw_for_draw():
  """jump_count = 1 has no jumps: RePaint is then the replacement method with DDPM's step (eta = 1), and
  with the same key it draws the same noise in the same order."""
  args = _small()
  one_pass = _repaint(*args, jax.random.key(9), 3, 1)
  np.testing.assert_array_equal(np.asarray(one_pass), np.asarray(_replacement(*args, jax.random.key(9), 1.0)))
  assert not np.array_equal(np.asarray(one_pass), np.asarray(_repaint(*args, jax.random.key(9), 3, 2)))


@pytest.mark.parametrize("jump_length,jump_count", [(3, 3), (1, 4), (4, 1)])
def test_repaint_calls_the_denoiser_once_per_move_down_and_never_on_the_way_up(jump_length, jump_count):
  calls = []

  def counted(z, alpha, sigma):
    jax.debug.callback(lambda: calls.append(1))
    return denoiser(z, alpha, sigma)

  x_known, known, z_T, alphas, sigmas = _small()
  out = jax.jit(ds.inpaint_repaint, static_argnums=(0, 7, 8))(counted, x_known, known, z_T, alphas, sigmas,
                                                              jax.random.key(10), jump_length, jump_count)
  jax.block_until_ready(out)
  want = ds.repaint_evaluations(10, jump_length, jump_count)
  jump_points = len(range(0, 10 - jump_length, jump_length))
  assert len(calls) == want == 10 + jump_points * (jump_count - 1) * jump_length


def test_one_trace_serves_every_image_mask_and_eta_and_the_jump_settings_are_static():
  """x_known, the mask and eta are arrays (one compiled sampler for all); jump_length and jump_count are static
  ints, since they set the number of moves: each new pair traces once, and only once."""
  x_known, known, z_T, alphas, sigmas = _small()
  traces = []

  def replacement(x_known, known, eta):
    traces.append("replacement")
    return ds.inpaint_replacement(denoiser, x_known, known, z_T, alphas, sigmas, jax.random.key(11), eta)

  def repaint(x_known, known, jump_length, jump_count):
    traces.append((jump_length, jump_count))
    return ds.inpaint_repaint(denoiser, x_known, known, z_T, alphas, sigmas, jax.random.key(11), jump_length,
                              jump_count)

  replacement, repaint = jax.jit(replacement), jax.jit(repaint, static_argnums=(2, 3))
  half = jnp.broadcast_to(jnp.arange(D) < D // 2, known.shape)  # a "lower half" mask beside the random pixels
  outs = [replacement(x_known, known, 1.0), replacement(-x_known, half, 0.0), replacement(x_known, ~known, 0.5)]
  assert traces == ["replacement"] and not np.array_equal(np.asarray(outs[0]), np.asarray(outs[1]))
  traces.clear()
  outs = [repaint(x_known, known, 3, 2), repaint(-x_known, half, 3, 2), repaint(x_known, ~known, 3, 2)]
  assert traces == [(3, 2)] and not np.array_equal(np.asarray(outs[0]), np.asarray(outs[1]))
  repaint(x_known, known, 2, 2), repaint(x_known, half, 2, 2), repaint(x_known, known, 3, 2)
  assert traces == [(3, 2), (2, 2)]
