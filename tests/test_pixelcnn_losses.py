"""The PixelCNN likelihoods (genjax.losses.pixelcnn) against independent float64 references and their own sums.

Each distribution must sum to one over the 256 values of a channel (the logistic mixture over all 256^3 values of a
pixel too), match numpy/scipy (quadrature where float64's CDFs underflow) written from the papers' formulas and
openai/pixel-cnn's code, and its sampler must reproduce it: chi-square on 20,000 seeded draws, bins with fewer than
five expected draws pooled, rejected below p = 1e-4.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate
from scipy import special
from scipy import stats

from genjax.losses import diffusion
from genjax.losses import pixelcnn as px

GRID = np.arange(256) / 127.5 - 1.0  # the 256 levels x = v / 127.5 - 1
NUM_DRAWS = 20_000
MIN_P_VALUE = 1e-4

# Compiled once per shape, as a training step would call them (eager dispatch costs seconds on 2 cores).
log_prob_1 = jax.jit(px.discretized_logistic_log_prob)
mix_log_prob = jax.jit(px.discretized_mix_logistic_log_prob)
sample_mix = jax.jit(px.sample_discretized_mix_logistic, static_argnames=("num_channels", "round_to_grid"))
sample_cat = jax.jit(px.sample_categorical)


def _pack(logit_probs_K, means_CxK, log_scales_CxK, coeffs_CxK=None):
  """The reference's layout, written out: [logits | per channel: means, log-scales (, raw coefficients)]."""
  blocks = [means_CxK, log_scales_CxK] + ([] if coeffs_CxK is None else [coeffs_CxK])
  return np.concatenate([logit_probs_K, np.concatenate(blocks, axis=-1).reshape(-1)]).astype(np.float32)


def _exact_log_mass(x, mean, log_scale):
  """float64 log of the logistic's mass on x's bin, subtracting on whichever side of the mean keeps the CDFs small."""
  x, mean, s = np.broadcast_arrays(np.float64(x), np.float64(mean), np.exp(np.float64(log_scale)))
  a, b = (x + 1 / 255 - mean) / s, (x - 1 / 255 - mean) / s
  with np.errstate(divide="ignore"):
    inner = np.where(x - mean > 0, np.log(special.expit(-b) - special.expit(-a)),
                     np.log(special.expit(a) - special.expit(b)))
  return np.where(x < -0.999, special.log_expit(a), np.where(x > 0.999, special.log_expit(-b), inner))


def _np_reference(x_BxC, l_BxP, exact=False):
  """openai/pixel-cnn's discretized_mix_logistic_loss before its sum and sign, in float64 numpy (C = 1: no
  coefficients): (log p per pixel, whether any of its bins took the reference's density stand-in). `exact` puts
  the float64 bin masses of `_exact_log_mass` in place of the reference's four-way choice."""
  c = x_BxC.shape[-1]
  k = l_BxP.shape[-1] // (10 if c == 3 else 3)
  logit_probs = l_BxP[..., :k]
  rest = l_BxP[..., k:].reshape(x_BxC.shape + (-1,))
  means, log_scales = rest[..., :k], np.maximum(rest[..., k:2 * k], -7.0)
  x = x_BxC[..., None] + np.zeros(k)
  if c == 3:
    coeffs = np.tanh(rest[..., 2 * k:3 * k])
    m2 = means[..., 1, :] + coeffs[..., 0, :] * x[..., 0, :]
    m3 = means[..., 2, :] + coeffs[..., 1, :] * x[..., 0, :] + coeffs[..., 2, :] * x[..., 1, :]
    means = np.stack([means[..., 0, :], m2, m3], axis=-2)
  centered_x = x - means
  inv_stdv = np.exp(-log_scales)
  plus_in = inv_stdv * (centered_x + 1.0 / 255.0)
  min_in = inv_stdv * (centered_x - 1.0 / 255.0)
  cdf_delta = special.expit(plus_in) - special.expit(min_in)
  log_cdf_plus = plus_in - np.logaddexp(0.0, plus_in)
  log_one_minus_cdf_min = -np.logaddexp(0.0, min_in)
  mid_in = inv_stdv * centered_x
  log_pdf_mid = mid_in - log_scales - 2.0 * np.logaddexp(0.0, mid_in)
  stand_in = (x >= -0.999) & (x <= 0.999) & (cdf_delta <= 1e-5)
  log_probs = np.where(x < -0.999, log_cdf_plus, np.where(
      x > 0.999, log_one_minus_cdf_min,
      np.where(cdf_delta > 1e-5, np.log(np.maximum(cdf_delta, 1e-12)), log_pdf_mid - np.log(127.5))))
  if exact:
    log_probs = _exact_log_mass(x, means, log_scales)
  log_probs = log_probs.sum(axis=-2) + special.log_softmax(logit_probs, axis=-1)
  return special.logsumexp(log_probs, axis=-1), stand_in.any(axis=(-2, -1))


def _assert_draws_follow(draws, probs):
  """Chi-square of integer draws 0..len(probs)-1 against probs, bins under 5 expected draws pooled into one."""
  probs = np.asarray(probs, np.float64)
  assert abs(probs.sum() - 1.0) < 1e-5
  counts = np.bincount(np.asarray(draws).reshape(-1), minlength=len(probs)).astype(np.float64)
  assert len(counts) == len(probs), "a draw outside the support"
  expected = probs * counts.sum()
  big = expected >= 5
  observed = np.append(counts[big], counts[~big].sum())
  expected = np.append(expected[big], expected[~big].sum())
  if expected[-1] == 0:
    observed, expected = observed[:-1], expected[:-1]
  assert big.sum() > 5
  p_value = stats.chisquare(observed, expected * observed.sum() / expected.sum()).pvalue
  assert p_value > MIN_P_VALUE, (p_value, observed, expected)


def _to_levels(x):
  return np.rint((np.asarray(x, np.float64) + 1.0) * 127.5).astype(np.int64)


# ------------------------------------------------------------------ binary pixels


def test_bernoulli_matches_scipy_and_is_finite_at_large_logits():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 4, 4, 1)) * 5.0
  logits[0, 0, :, 0] = [1e4, -1e4, 90.0, -90.0]
  logits[1, 0, :, 0] = [3e38, -3e38, 17.0, -17.0]
  x = rng.integers(0, 2, size=logits.shape).astype(np.float64)
  x[0, 0, :, 0] = [0.0, 1.0, 1.0, 0.0]  # the improbable value at each large logit
  expected = x * special.log_expit(logits) + (1 - x) * special.log_expit(-logits)
  got = px.bernoulli_pixel_log_prob(jnp.asarray(x, jnp.float32), jnp.asarray(logits, jnp.float32))
  assert np.all(np.isfinite(np.asarray(got)))
  np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-5)
  np.testing.assert_allclose(px.bernoulli_nll(jnp.asarray(x, jnp.float32), jnp.asarray(logits, jnp.float32)),
                             -expected.sum(axis=(1, 2, 3)), rtol=1e-6)


# ------------------------------------------------------------ 256-way categoricals


def test_categorical_sums_to_one_and_matches_scipy():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(2, 3, 256)) * 30.0  # [batch, channel, value]
  logits[0, 0, :128] = -1e30  # masked values
  logits[1, 2] += 1e6  # a far shift changes nothing
  logits = logits.astype(np.float32).astype(np.float64)  # what float32 holds of them
  every_value = np.broadcast_to(np.arange(256)[:, None, None], (256, 2, 3))
  got = np.asarray(px.categorical_log_prob(jnp.asarray(every_value, jnp.uint8), jnp.asarray(logits, jnp.float32)),
                   np.float64)  # [value, batch, channel]
  np.testing.assert_allclose(np.exp(got).sum(axis=0), 1.0, atol=1e-5)
  np.testing.assert_allclose(got, np.moveaxis(special.log_softmax(logits, -1), -1, 0), rtol=1e-5, atol=1e-4)

  image_logits = rng.normal(size=(2, 4, 4, 3, 256)) * 5.0
  images = rng.integers(0, 256, size=(2, 4, 4, 3))
  want = np.take_along_axis(special.log_softmax(image_logits, -1), images[..., None], -1)[..., 0]
  nll = px.categorical_nll(jnp.asarray(images, jnp.uint8), jnp.asarray(image_logits, jnp.float32))
  np.testing.assert_allclose(nll, -want.sum(axis=(1, 2, 3)), rtol=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_categorical_draws_follow_softmax_of_logits_over_t(temperature):
  logits = np.random.default_rng(2).normal(size=256) * 2.0
  draws = sample_cat(jax.random.key(3), jnp.broadcast_to(jnp.asarray(logits, jnp.float32), (NUM_DRAWS, 256)),
                     temperature)
  assert draws.dtype == jnp.uint8
  _assert_draws_follow(draws, special.softmax(logits / temperature))


def test_categorical_sampling_is_the_keys_and_t0_is_argmax():
  logits = jnp.asarray(np.random.default_rng(4).normal(size=(500, 256)), jnp.float32)
  first, again = sample_cat(jax.random.key(5), logits, 1.0), sample_cat(jax.random.key(5), logits, 1.0)
  np.testing.assert_array_equal(first, again)
  assert np.mean(np.asarray(first) != np.asarray(sample_cat(jax.random.key(6), logits, 1.0))) > 0.9
  np.testing.assert_array_equal(sample_cat(jax.random.key(5), logits, 0.0), np.argmax(np.asarray(logits), -1))
  with pytest.raises(ValueError, match="temperature"):
    px.sample_categorical(jax.random.key(5), logits, -1.0)


# ----------------------------------------------------- the discretised logistic mixture

EXTREME_MEANS = [-3.0, -1.0, -1.0 + 1 / 255, -0.3, 0.0, 0.5, 1.0 - 1 / 255, 1.0, 2.5]
EXTREME_LOG_SCALES = [-7.0, -6.0, -4.0, -2.0, 0.0, 3.0, 8.0, 40.0, 100.0]


def test_one_logistic_sums_to_one_over_the_256_levels():
  mean, log_scale = np.meshgrid(EXTREME_MEANS, EXTREME_LOG_SCALES, indexing="ij")
  got = log_prob_1(jnp.asarray(GRID, jnp.float32)[:, None, None], jnp.asarray(mean, jnp.float32),
                   jnp.asarray(log_scale, jnp.float32))
  assert np.all(np.isfinite(np.asarray(got))) and np.all(np.asarray(got) <= 0.0)
  np.testing.assert_allclose(np.exp(np.asarray(got, np.float64)).sum(axis=0), 1.0, atol=2e-6)


def test_one_logistic_matches_float64_and_quadrature_in_the_tails():
  rng = np.random.default_rng(7)
  x = rng.choice(GRID, size=2000)
  mean = rng.uniform(-1.5, 1.5, size=2000)
  log_scale = rng.uniform(-3.0, 2.0, size=2000)  # float64 needs no more than |x - mean| / s < 700 here
  got = log_prob_1(jnp.asarray(x, jnp.float32), jnp.asarray(mean, jnp.float32), jnp.asarray(log_scale, jnp.float32))
  want = _exact_log_mass(np.float32(x), np.float32(mean), np.float32(log_scale))
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)

  # Where float64's CDFs underflow (a scale of e^-7, means two units off) or cannot resolve a bin (s = e^100):
  # scipy's quadrature of the density over the bin, in z = (t - mean) / s, scaled by its largest value in the bin.
  cases = [(0.5, -1.5, -7.0), (-0.4, 1.6, -7.0), (0.2, 0.2 + 3 / 255, -7.0), (-1.0, 2.0, -7.0), (1.0, -2.0, -7.0),
           (1 / 127.5, 0.0, 100.0), (-1 / 127.5, 0.3, 30.0)]
  for x_v, mean_v, log_scale_v in cases:
    x_v = np.float32(np.rint((x_v + 1) * 127.5) / 127.5 - 1)  # the level the function reads x as
    mean_v, log_scale_v = np.float32(mean_v), np.float32(log_scale_v)
    value = float(log_prob_1(jnp.float32(x_v), jnp.float32(mean_v), jnp.float32(log_scale_v)))
    np.testing.assert_allclose(value, _quad_log_mass(x_v, mean_v, log_scale_v), rtol=1e-5, atol=1e-4,
                               err_msg=str((x_v, mean_v, log_scale_v)))


def _quad_log_mass(x, mean, log_scale):
  """log of the integral of the logistic density over x's bin (to +-inf at the ends), by quadrature in float64."""
  x, mean, s = float(x), float(mean), math.exp(float(log_scale))
  lo = -math.inf if x == -1.0 else (x - 1 / 255 - mean) / s
  hi = math.inf if x == 1.0 else (x + 1 / 255 - mean) / s
  log_pdf = lambda z: -np.logaddexp(0.0, z) - np.logaddexp(0.0, -z)  # log sigma(z) sigma(-z)
  peak = log_pdf(min(max(0.0, lo), hi))
  area, _ = integrate.quad(lambda z: math.exp(log_pdf(z) - peak), lo, hi, epsabs=0.0, epsrel=1e-10, limit=200)
  return peak + math.log(area)


def test_the_edge_bins_are_the_tails_of_the_cdf():
  """x = -1 has sigmoid((-1 + 1/255 - mu) / s); x = 1 has 1 - sigmoid((1 - 1/255 - mu) / s) (one component)."""
  mean, log_scale = (np.float32(v) for v in np.meshgrid(EXTREME_MEANS, EXTREME_LOG_SCALES[:-2], indexing="ij"))
  mean, log_scale = mean.reshape(-1), log_scale.reshape(-1)
  s = np.exp(log_scale.astype(np.float64))
  params = np.stack([np.zeros_like(mean), mean, log_scale], axis=-1)  # K = 1, C = 1
  z_low, z_high = (-1 + 1 / 255 - mean) / s, (1 - 1 / 255 - mean) / s
  # float32 places an edge near +-1 to within two ulps, 1.2e-7: z to within 1.2e-7 / s, which for s = e^-7 moves
  # the CDF by up to 3e-5 near its middle. That is the resolution any float32 version has; beyond it, rtol 1e-5.
  z_resolution = 1.2e-7 / s
  for edge, want, log_want in [(-1.0, special.expit(z_low), special.log_expit(z_low)),
                               (1.0, 1.0 - special.expit(z_high), special.log_expit(-z_high))]:
    got = np.asarray(mix_log_prob(jnp.full((mean.size, 1), edge, jnp.float32), jnp.asarray(params)), np.float64)
    # 1 - expit keeps its digits down to ~1e-6; the log form (log_expit) checks the far tail.
    sure = want > 1e-6
    assert sure.sum() > 20
    assert np.all(np.abs(np.exp(got) - want)[sure] <= (1e-5 * want + 0.25 * z_resolution)[sure])
    assert np.all(np.abs(got - log_want) <= 1e-5 * np.abs(log_want) + 1e-6 + z_resolution)


def _random_params(rng, k, c, size):
  """Mixture parameters with log-scales from -20 (clamped to -7) to 4 and means past both edges."""
  logits = rng.normal(size=size + (k,)) * 3.0
  means = rng.uniform(-1.5, 1.5, size=size + (c, k))
  log_scales = rng.uniform(-20.0, 4.0, size=size + (c, k))
  blocks = [means, log_scales] + ([rng.normal(size=size + (c, k)) * 2.0] if c == 3 else [])
  return np.concatenate([logits, np.concatenate(blocks, axis=-1).reshape(size + (-1,))], axis=-1).astype(np.float32)


def test_one_channel_mixture_sums_to_one():
  params = _random_params(np.random.default_rng(8), 5, 1, (64,))
  got = mix_log_prob(jnp.asarray(GRID, jnp.float32)[:, None, None], jnp.asarray(params)[None])  # [256, 64]
  np.testing.assert_allclose(np.exp(np.asarray(got, np.float64)).sum(axis=0), 1.0, atol=1e-5)


def test_each_channel_of_a_coupled_component_sums_to_one_given_the_earlier_channels():
  """Per component: R sums to one; G to one at any R; B to one at any R, G (the means they move are then fixed)."""
  rng = np.random.default_rng(9)
  mix = px.unpack_mixture_params(jnp.asarray(_random_params(rng, 4, 3, (16,))), 3)
  earlier = rng.choice(GRID, size=(16, 3)).astype(np.float32)  # R and G the later channels see (B unused)
  means = px._coupled_means(jnp.asarray(earlier), mix.means_BxCxK, mix.coeffs_BxCxK)  # pylint: disable=protected-access
  got = log_prob_1(jnp.asarray(GRID, jnp.float32)[:, None, None, None], means[None], mix.log_scales_BxCxK[None])
  np.testing.assert_allclose(np.exp(np.asarray(got, np.float64)).sum(axis=0), 1.0, atol=1e-5)


@jax.jit
def _total_mass(params_P):
  """sum over all 256^3 RGB values of p(r, g, b), one R level at a time."""
  g, b = jnp.meshgrid(jnp.asarray(GRID, jnp.float32), jnp.asarray(GRID, jnp.float32), indexing="ij")

  def per_r(r):
    x = jnp.stack([jnp.full(g.shape, r), g, b], axis=-1)
    return jnp.sum(jnp.exp(px.discretized_mix_logistic_log_prob(x, params_P)))

  return jax.lax.map(per_r, jnp.asarray(GRID, jnp.float32))


def test_three_channel_mixture_sums_to_one_over_all_256_cubed_pixels():
  params = _random_params(np.random.default_rng(10), 2, 3, ())
  # R's block: means at and near the bottom edge, log-scales at and under the clamp, then alpha's raw values.
  params[2:8] = [-1.0, -0.99, -7.0, -20.0, 3.0, -0.5]
  total = np.asarray(_total_mass(jnp.asarray(params)), np.float64).sum()
  assert abs(total - 1.0) < 1e-5, total


def test_mixture_matches_numpy_reference():
  rng = np.random.default_rng(11)
  params = rng.normal(size=(4, 8, 8, 50)).astype(np.float32)  # K = 5, log-scales ~ N(0, 1)
  x = rng.choice(GRID, size=(4, 8, 8, 3)).astype(np.float32)
  x[:, 0] = -1.0
  x[:, 1] = 1.0  # whole rows on each edge
  want, stand_in = _np_reference(np.float64(x), np.float64(params))
  got = np.asarray(mix_log_prob(jnp.asarray(x), jnp.asarray(params)))
  assert (~stand_in).sum() > 150 and stand_in.sum() > 10
  np.testing.assert_allclose(got[~stand_in], want[~stand_in], rtol=1e-5, atol=1e-5)
  # Where the reference's stand-in entered, the exact masses it stands in for (the module's docstring says why).
  np.testing.assert_allclose(got, _np_reference(np.float64(x), np.float64(params), exact=True)[0], rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(px.discretized_mix_logistic_nll(jnp.asarray(x), jnp.asarray(params)),
                             -np.where(stand_in, got, want).sum(axis=(1, 2)), rtol=1e-5)
  assert px.nats_to_bits_per_dim is diffusion.nats_to_bits_per_dim  # one definition
  np.testing.assert_allclose(px.nats_to_bits_per_dim(1.0, 8 * 8 * 3), 1.0 / (8 * 8 * 3 * np.log(2.0)), rtol=1e-6)

  one = rng.normal(size=(300, 15)).astype(np.float32)  # C = 1, K = 5
  x1 = rng.choice(GRID, size=(300, 1)).astype(np.float32)
  want1, stand_in1 = _np_reference(np.float64(x1), np.float64(one))
  np.testing.assert_allclose(np.asarray(mix_log_prob(jnp.asarray(x1), jnp.asarray(one)))[~stand_in1],
                             want1[~stand_in1], rtol=1e-5, atol=1e-5)


def test_mixture_log_prob_and_gradients_are_finite_at_extremes():
  params = _random_params(np.random.default_rng(12), 3, 3, (8, 8))
  u = np.random.default_rng(13).random(params[..., 3:].shape)
  params[..., 3:] = np.where(u < 0.15, 1e4, np.where(u < 0.3, -1e4, params[..., 3:]))  # means, scales, coefficients
  x = jnp.asarray(np.random.default_rng(14).choice(GRID, size=(1, 8, 8, 3)), jnp.float32)
  nll, grad = jax.value_and_grad(lambda p: jnp.sum(px.discretized_mix_logistic_nll(x, p)))(jnp.asarray(params)[None])
  assert np.isfinite(float(nll)) and np.all(np.isfinite(np.asarray(grad)))


def test_unpack_reads_the_reference_layout_and_refuses_other_lengths():
  logits, means, log_scales, coeffs = np.arange(2.0), np.full((3, 2), 0.3), np.full((3, 2), -9.0), np.eye(3, 2)
  mix = px.unpack_mixture_params(jnp.asarray(_pack(logits, means, log_scales, coeffs)), 3)
  np.testing.assert_allclose(mix.logit_probs_BxK, logits)
  np.testing.assert_allclose(mix.means_BxCxK, means)
  np.testing.assert_allclose(mix.log_scales_BxCxK, -7.0)
  np.testing.assert_allclose(mix.coeffs_BxCxK, np.tanh(coeffs), rtol=1e-6)
  assert px.mixture_num_params(10, 3) == 100 and px.mixture_num_params(10, 1) == 30
  assert px.unpack_mixture_params(jnp.zeros((7, 30)), 1).coeffs_BxCxK.shape == (7, 0, 10)
  with pytest.raises(ValueError, match="parameters per mixture component"):
    px.unpack_mixture_params(jnp.zeros((31,)), 1)
  with pytest.raises(ValueError, match="1 or 3 channels"):
    px.unpack_mixture_params(jnp.zeros((40,)), 2)


# ------------------------------------------------------------------------- sampling


def _mixture_probs(params_P, x_Nx1):
  """p(x) of a one-channel mixture at each of the N levels."""
  return np.exp(np.asarray(mix_log_prob(x_Nx1, jnp.asarray(params_P)[None]), np.float64))


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_one_logistic_draws_follow_its_bins(temperature):
  """K = 1, C = 1, mean near the top edge so that the clipped tail carries mass; T scales s."""
  params = _pack(np.zeros(1), np.array([[0.85]]), np.array([[np.log(0.08)]]))
  draws = sample_mix(jax.random.key(15), jnp.broadcast_to(jnp.asarray(params), (NUM_DRAWS, 3)), num_channels=1,
                     temperature=temperature)
  tempered = _pack(np.zeros(1), np.array([[0.85]]), np.array([[np.log(0.08 * temperature)]]))
  _assert_draws_follow(_to_levels(draws), _mixture_probs(tempered, jnp.asarray(GRID, jnp.float32)[:, None]))


def test_one_channel_mixture_draws_follow_it():
  params = _pack(np.array([0.0, 1.0, -0.5]), np.array([[-0.6, 0.2, 0.95]]), np.array([[-2.5, -3.5, -4.0]]))
  draws = sample_mix(jax.random.key(16), jnp.broadcast_to(jnp.asarray(params), (NUM_DRAWS, 9)), num_channels=1)
  _assert_draws_follow(_to_levels(draws), _mixture_probs(params, jnp.asarray(GRID, jnp.float32)[:, None]))


def test_coupled_draws_follow_r_and_g_given_r():
  """K = 1, C = 3: R's levels follow R's bins, G's follow sum_r P(r) P(g | r) with G's mean moved by alpha r."""
  params = _pack(np.zeros(1), np.array([[0.1], [-0.2], [0.0]]), np.array([[-2.0], [-3.0], [-3.0]]),
                 np.array([[1.2], [0.5], [-0.7]]))
  draws = np.asarray(sample_mix(jax.random.key(17), jnp.broadcast_to(jnp.asarray(params), (NUM_DRAWS, 10)),
                                num_channels=3))
  mix = px.unpack_mixture_params(jnp.asarray(params), 3)
  p_r = np.exp(np.asarray(log_prob_1(jnp.asarray(GRID, jnp.float32), mix.means_BxCxK[0, 0],
                                     mix.log_scales_BxCxK[0, 0]), np.float64))
  g_means = mix.means_BxCxK[1, 0] + mix.coeffs_BxCxK[0, 0] * jnp.asarray(GRID, jnp.float32)  # [r]
  p_g_given_r = np.exp(np.asarray(log_prob_1(jnp.asarray(GRID, jnp.float32)[None, :], g_means[:, None],
                                             mix.log_scales_BxCxK[1, 0]), np.float64))  # [r, g]
  _assert_draws_follow(_to_levels(draws[:, 0]), p_r)
  _assert_draws_follow(_to_levels(draws[:, 1]), p_r @ p_g_given_r)
  assert np.all(np.abs(draws) <= 1.0)


def test_coupled_draws_follow_b_given_r_and_g():
  """K = 2, C = 3: R and G narrow (s = e^-7, centred on levels 200 and 60), so that most draws share one (r, g);
  B's draws there follow p(r, g, b) / sum_b p(r, g, b), the scoring function's conditional, which beta r + gamma g
  moves differently in each component."""
  r, g = GRID[200], GRID[60]
  params = _pack(np.array([0.3, -0.2]), np.array([[r, r], [g - 0.4 * r, g + 0.2 * r], [0.1, -0.3]]),
                 np.array([[-7.0, -7.0], [-7.0, -7.0], [-2.5, -3.0]]),
                 np.arctanh(np.array([[0.4, -0.2], [0.7, -0.5], [-0.6, 0.9]])))
  draws = np.asarray(sample_mix(jax.random.key(21), jnp.broadcast_to(jnp.asarray(params), (NUM_DRAWS, 20)),
                                num_channels=3))
  levels = _to_levels(draws)
  at_rg = (levels[:, 0] == 200) & (levels[:, 1] == 60)
  assert at_rg.mean() > 0.8
  every_b = np.stack([np.full(256, r), np.full(256, g), GRID], axis=-1).astype(np.float32)
  joint = np.exp(np.asarray(mix_log_prob(jnp.asarray(every_b), jnp.asarray(params)[None]), np.float64))
  _assert_draws_follow(levels[at_rg, 2], joint / joint.sum())


def test_mixture_sampling_is_the_keys_grid_and_t0_mode():
  params = jnp.asarray(_random_params(np.random.default_rng(18), 4, 3, (300,)))
  first = sample_mix(jax.random.key(19), params, num_channels=3)
  np.testing.assert_array_equal(first, sample_mix(jax.random.key(19), params, num_channels=3))
  assert np.mean(np.asarray(first) != np.asarray(sample_mix(jax.random.key(20), params, num_channels=3))) > 0.5
  np.testing.assert_allclose(first, _to_levels(first) / 127.5 - 1.0, atol=1e-6)
  continuous = np.asarray(sample_mix(jax.random.key(19), params, num_channels=3, round_to_grid=False))
  assert np.all(np.abs(continuous) <= 1.0)
  np.testing.assert_allclose(continuous[:, 0], first[:, 0], atol=1.001 / 255)  # the same R draw, not rounded
  assert np.mean(np.abs(continuous - _to_levels(continuous) / 127.5 + 1.0) > 1e-4) > 0.3

  mode = np.asarray(sample_mix(jax.random.key(19), params, num_channels=3, temperature=0.0))
  mix = px.unpack_mixture_params(params, 3)
  best = np.argmax(np.asarray(mix.logit_probs_BxK), -1)
  mu = np.take_along_axis(np.asarray(mix.means_BxCxK), best[:, None, None], -1)[..., 0]
  np.testing.assert_allclose(mode[:, 0], _to_levels(np.clip(mu[:, 0], -1, 1)) / 127.5 - 1.0, atol=1e-6)
  with pytest.raises(ValueError, match="temperature"):
    px.sample_discretized_mix_logistic(jax.random.key(19), params, 3, temperature=-0.5)
