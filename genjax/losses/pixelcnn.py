"""The likelihoods of autoregressive pixel models: binary pixels, 256-way categoricals, PixelCNN++'s logistic mixture.

An autoregressive model writes p(x) = prod_i p(x_i | x_<i) over pixels in raster order, so its exact negative
log-likelihood in nats per image is the sum over pixels (and channels) of -log p(x_i | x_<i) under the per-pixel
distribution its net outputs. This module holds those per-pixel distributions, their per-image NLLs and their
samplers; the net that produces the parameters and the family built on it live elsewhere.

  * Binary pixels (binarised MNIST): x_i ~ Bern(sigmoid(l_i)), the VAE's `distributions.bernoulli_log_prob`.
  * 256-way categoricals per channel (van den Oord et al. 2016, "Pixel Recurrent Neural Networks", section 5.3):
    logits [..., 256] over the uint8 values.
  * The discretised logistic mixture (Salimans et al. 2017, "PixelCNN++", section 2.1-2.2; their reference code is
    openai/pixel-cnn `discretized_mix_logistic_loss`): x in [-1, 1] on the grid x = v / 127.5 - 1, v = 0..255 (the
    families' `to_signed_unit`), each channel's value a logistic integrated over its bin of width 2/255, the
    outermost bins extended to -inf and +inf, K components shared by a pixel's channels, and G's and B's means
    moved linearly by the same pixel's R (and G).

Every function is pure `jax.numpy`, float32, and finite for any finite input. Per-pixel functions keep all leading
axes; the `*_nll` functions take a batch of images [B, H, W, C] and return nats per image [B]. Bits per dimension:
`nats_to_bits_per_dim` (the one `genjax.losses.diffusion` defines), with num_dims = H W C.

Shape letters: B batch (any leading axes unless an image batch is said), H, W, C image, K mixture components,
P packed mixture parameters (see `unpack_mixture_params`).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from genjax.losses.diffusion import nats_to_bits_per_dim
from genjax.losses.distributions import bernoulli_log_prob

__all__ = [
    "bernoulli_pixel_log_prob",
    "bernoulli_nll",
    "categorical_log_prob",
    "categorical_nll",
    "sample_categorical",
    "MixtureParams",
    "mixture_num_params",
    "unpack_mixture_params",
    "discretized_logistic_log_prob",
    "discretized_mix_logistic_log_prob",
    "discretized_mix_logistic_nll",
    "sample_discretized_mix_logistic",
    "nats_to_bits_per_dim",
]

NUM_VALUES = 256
# The 256 levels of [-1, 1] are 2/255 apart: each level's bin is that wide.
BIN_WIDTH = 2.0 / 255.0
# The reference clamps log-scales from below. At s = e^-7, a ninth of a bin, a logistic centred on a level already
# puts 97% of its mass there: a narrower one would change the likelihood little while log s ran off unbounded.
MIN_LOG_SCALE = -7.0


def _image_sum(x_BxR):
  """Sums all axes but the first: per-pixel values of a batch of images -> one value per image."""
  return jnp.sum(x_BxR.reshape(x_BxR.shape[0], -1), axis=-1)


def _check_temperature(temperature):
  """Refuses a known T < 0, which samples no distribution this module names; a traced T cannot be read."""
  try:
    value = float(temperature)
  except TypeError:  # a tracer (jax's ConcretizationTypeError is a TypeError)
    return
  if value < 0:
    raise ValueError(f"temperature must be >= 0; got {value}.")


# ------------------------------------------------------------------ binary pixels


def bernoulli_pixel_log_prob(x_BxHxWxC, logits_BxHxWxC):
  """log Bern(x; sigmoid(l)) = x l - softplus(l), per pixel (no axis summed); finite for any finite logit.

  `distributions.bernoulli_log_prob` with no event axes; x in {0, 1} (binarised MNIST).
  """
  return bernoulli_log_prob(x_BxHxWxC, logits_BxHxWxC, event_ndims=0)


def bernoulli_nll(x_BxHxWxC, logits_BxHxWxC):
  """-sum_{h,w,c} (x l - softplus(l)): the exact NLL of binary images in nats per image, shape [B]."""
  return -_image_sum(bernoulli_pixel_log_prob(x_BxHxWxC, logits_BxHxWxC))


# ------------------------------------------------------------ 256-way categoricals


def categorical_log_prob(v_BxC, logits_BxCx256):
  """log softmax(l)[v]: the log-probability of each uint8 value v under its own 256 logits.

  van den Oord et al. 2016 ("Pixel Recurrent Neural Networks", section 5.3). In an autoregressive net the logits
  of a channel see the earlier channels of the pixel; this function only reads them.

  Args:
    v_BxC: integer values in 0..255, shape [...] broadcastable against the logits' (any integer dtype).
    logits_BxCx256: logits over the 256 values, shape [..., 256].

  Returns:
    log p(v) in nats, shape [...] (one value per channel).
  """
  log_probs_BxCx256 = jax.nn.log_softmax(logits_BxCx256.astype(jnp.float32), axis=-1)
  shape = jnp.broadcast_shapes(v_BxC.shape, logits_BxCx256.shape[:-1])
  log_probs_BxCx256 = jnp.broadcast_to(log_probs_BxCx256, shape + (NUM_VALUES,))
  index_BxCx1 = jnp.broadcast_to(v_BxC.astype(jnp.int32), shape)[..., None]
  return jnp.take_along_axis(log_probs_BxCx256, index_BxCx1, axis=-1)[..., 0]


def categorical_nll(v_BxHxWxC, logits_BxHxWxCx256):
  """-sum_{h,w,c} log softmax(l_hwc)[v_hwc]: the exact NLL of uint8 images in nats per image, shape [B]."""
  return -_image_sum(categorical_log_prob(v_BxHxWxC, logits_BxHxWxCx256))


def sample_categorical(key, logits_Bx256, temperature=1.0):
  """v = argmax(l + T g), g ~ Gumbel(0, 1): a draw from softmax(l / T) as uint8, shape [...].

  The Gumbel-max trick (Gumbel 1954; Maddison et al. 2014) with the temperature moved onto the noise:
  argmax(l / T + g) = argmax(l + T g) for T > 0, so nothing is divided by T. T = 1 samples the model; T -> 0
  sharpens it, and T = 0 returns argmax(l) (the noise drops out; ties go to the lowest value). A number T < 0 raises
  ValueError; a traced one is not checked (it would pick argmax(l - |T| g), not a distribution named here).

  Args:
    key: a `jax.random` key, used once.
    logits_Bx256: logits, shape [..., 256]; -inf masks a value.
    temperature: T >= 0, a number or a scalar array.

  Returns:
    uint8 values, shape [...].
  """
  _check_temperature(temperature)
  gumbel_Bx256 = jax.random.gumbel(key, logits_Bx256.shape, jnp.float32)
  return jnp.argmax(logits_Bx256 + temperature * gumbel_Bx256, axis=-1).astype(jnp.uint8)


# ----------------------------------------------------- the discretised logistic mixture


class MixtureParams(NamedTuple):
  """The mixture of K discretised logistics of one pixel (`unpack_mixture_params` makes it from P numbers).

  logit_probs_BxK: component logits, pi = softmax(logit_probs).
  means_BxCxK: each channel's mean before the coupling to earlier channels.
  log_scales_BxCxK: log s, already clamped at MIN_LOG_SCALE.
  coeffs_BxCxK: tanh of the coupling coefficients (alpha, beta, gamma at channel slots 0, 1, 2), for C = 3; an empty
    [..., 0, K] array for C = 1.
  """
  logit_probs_BxK: jax.Array
  means_BxCxK: jax.Array
  log_scales_BxCxK: jax.Array
  coeffs_BxCxK: jax.Array


def mixture_num_params(num_mixtures, num_channels):
  """P, the length of the packed parameter axis: 10 K for C = 3 (the reference's), 3 K for C = 1."""
  if num_channels == 3:
    return num_mixtures * 10
  if num_channels == 1:
    return num_mixtures * 3
  raise ValueError(f"the logistic mixture models 1 or 3 channels; got {num_channels}.")


def unpack_mixture_params(params_BxP, num_channels):
  """Splits the net's P = `mixture_num_params(K, C)` outputs per pixel into a `MixtureParams`.

  The layout is the reference's (openai/pixel-cnn: a head ported from it needs no reshuffling), generalised to
  C = 1 by leaving the coefficients out:
    params[..., :K]                      component logits;
    params[..., K:].reshape(..., C, S K) per channel c, S blocks of K: means, log-scales and, for C = 3 (S = 3),
                                         the raw coefficients; for C = 1, S = 2 (no coefficients).
  The coefficients of C = 3 sit at channel slots 0, 1, 2 but are not that channel's: slot 0 is alpha (G on R),
  slot 1 beta (B on R), slot 2 gamma (B on G), as the reference reads them. P alone does not say C (30 is K = 3
  for C = 3 or K = 10 for C = 1): the caller's C decides.

  Args:
    params_BxP: the net's outputs for one or more pixels, shape [..., P].
    num_channels: C, 1 or 3.

  Returns:
    A MixtureParams; log-scales clamped at MIN_LOG_SCALE and coefficients through tanh, as the reference does.
  """
  num_params = params_BxP.shape[-1]
  per_component = mixture_num_params(1, num_channels)
  if num_params % per_component:
    raise ValueError(f"{num_channels} channel(s) need {per_component} parameters per mixture component; the last "
                     f"axis has {num_params}.")
  k = num_params // per_component
  blocks = 3 if num_channels == 3 else 2
  params_BxP = params_BxP.astype(jnp.float32)
  per_channel_BxCxSK = params_BxP[..., k:].reshape(params_BxP.shape[:-1] + (num_channels, blocks * k))
  coeffs_BxCxK = (jnp.tanh(per_channel_BxCxSK[..., 2 * k:]) if blocks == 3
                  else jnp.zeros(per_channel_BxCxSK.shape[:-2] + (0, k), jnp.float32))
  return MixtureParams(
      logit_probs_BxK=params_BxP[..., :k],
      means_BxCxK=per_channel_BxCxSK[..., :k],
      log_scales_BxCxK=jnp.maximum(per_channel_BxCxSK[..., k:2 * k], MIN_LOG_SCALE),
      coeffs_BxCxK=coeffs_BxCxK)


def _coupled_means(x_BxC, means_BxCxK, coeffs_BxCxK):
  """The means given the pixel's earlier channels: mu_G + alpha x_R, mu_B + beta x_R + gamma x_G (C = 3)."""
  if means_BxCxK.shape[-2] == 1:
    return means_BxCxK
  x_r_Bx1, x_g_Bx1 = x_BxC[..., 0:1], x_BxC[..., 1:2]
  alpha_BxK, beta_BxK, gamma_BxK = coeffs_BxCxK[..., 0, :], coeffs_BxCxK[..., 1, :], coeffs_BxCxK[..., 2, :]
  return jnp.stack([
      means_BxCxK[..., 0, :],
      means_BxCxK[..., 1, :] + alpha_BxK * x_r_Bx1,
      means_BxCxK[..., 2, :] + beta_BxK * x_r_Bx1 + gamma_BxK * x_g_Bx1,
  ], axis=-2)


def discretized_logistic_log_prob(x, mean, log_scale):
  """log P(x) of a logistic L(mean, s = e^log_scale) integrated over the bin of x, elementwise (broadcasting).

  x is read as its level v = round(127.5 (x + 1)), clipped to 0..255, whose bin is [x - 1/255, x + 1/255]. With
  a = (x + 1/255 - mean) / s, b = (x - 1/255 - mean) / s and sigma the logistic CDF:
    v = 0   (x = -1): P = sigma(a),      log P = -softplus(-a);
    v = 255 (x =  1): P = 1 - sigma(b),  log P = -softplus(b);
    otherwise:        P = sigma(a) - sigma(b),
                      log P = -softplus(-a) - softplus(b) + log(1 - e^-d),  d = a - b = 2 / (255 s),
  the last from sigma(a) - sigma(b) = sigma(a) sigma(-b) (1 - e^(b - a)). Salimans et al. 2017, eq. 2.

  What is kept of the reference (openai/pixel-cnn) and what is not:
    * kept: the bins, the two edge cases, and (in `unpack_mixture_params`) the clamp of log s at -7 and the tanh
      of the coefficients: they define the model, so a head trained against either code scores the same under the
      other wherever the reference takes its exact branch.
    * not kept: its stand-in for bins of P < 1e-5, the density at the bin's centre times the bin's width,
      log pdf(x) - log 127.5. It is there because log(sigma(a) - sigma(b)) cancels in float32 once both CDFs round
      to the same value; it is off by nats where the bin is wider than the scale (s = e^-7 is a ninth of a bin:
      two levels from the mean it gives -19.35 for the exact -17.20), which is the NLL of an observed value. The
      product form above never cancels, so it serves every bin; the two agree wherever the reference takes its
      exact branch.
    * the edges are computed from the level, (v +- 1/2) / 127.5 - 1, rather than as x +- 1/255: then a bin's upper
      edge is bit for bit the next bin's lower edge and the 256 masses add up to one in float32 too, even for a
      logistic far narrower than a bin. On the grid this is the reference's formula; off it, x is rounded.
    * d enters as 2 / (255 s), not as a - b, which loses digits when |a| >> d; below d = e^-10,
      log(1 - e^-d) is taken as log d - d / 2 (exact to float32 there), finite even where d underflows (s > e^82).

  Args:
    x: values on the grid v / 127.5 - 1, shape broadcastable against the others.
    mean: logistic means.
    log_scale: logistic log-scales (clamp them at MIN_LOG_SCALE first to have the reference's model).

  Returns:
    log P(x) in nats, the broadcast shape; at most 0 and finite for finite inputs.
  """
  level = jnp.clip(jnp.round((x + 1.0) * 127.5), 0.0, NUM_VALUES - 1.0)
  inv_scale = jnp.exp(-log_scale)
  plus_in = inv_scale * ((level + 0.5) / 127.5 - 1.0 - mean)
  min_in = inv_scale * ((level - 0.5) / 127.5 - 1.0 - mean)
  log_cdf_plus = -jax.nn.softplus(-plus_in)
  log_one_minus_cdf_min = -jax.nn.softplus(min_in)
  log_d = jnp.log(BIN_WIDTH) - log_scale
  small = log_d < -10.0
  # Each branch is fed only inputs where it is finite: jnp.where passes a NaN gradient from the unused one.
  log_mass_wide = jnp.log(-jnp.expm1(-jnp.exp(jnp.where(small, 0.0, log_d))))
  log_mass_narrow = jnp.where(small, log_d, 0.0) - 0.5 * jnp.exp(jnp.minimum(log_d, -10.0))
  log_delta = log_cdf_plus + log_one_minus_cdf_min + jnp.where(small, log_mass_narrow, log_mass_wide)
  return jnp.where(level == 0, log_cdf_plus, jnp.where(level == NUM_VALUES - 1, log_one_minus_cdf_min, log_delta))


def discretized_mix_logistic_log_prob(x_BxC, params_BxP):
  """log p(x) = logsumexp_k(log pi_k + sum_c log P(x_c | mu_ck(x_<c), s_ck)), per pixel: shape [...].

  Salimans et al. 2017, eqs. 2-3: the channels of one component are the logistics of `discretized_logistic_log_prob`
  with G's and B's means moved by the pixel's own R (and G) values (`unpack_mixture_params` gives the layout).

  Args:
    x_BxC: pixels on the grid v / 127.5 - 1 in [-1, 1], shape [..., C], C = 1 or 3.
    params_BxP: the net's outputs, shape [..., P], P = `mixture_num_params(K, C)`; the leading axes broadcast.

  Returns:
    The log-probability of each pixel (all its channels) in nats, shape [...].
  """
  batch = jnp.broadcast_shapes(x_BxC.shape[:-1], params_BxP.shape[:-1])
  x_BxC = jnp.broadcast_to(x_BxC.astype(jnp.float32), batch + x_BxC.shape[-1:])
  mix = unpack_mixture_params(jnp.broadcast_to(params_BxP, batch + params_BxP.shape[-1:]), x_BxC.shape[-1])
  means_BxCxK = _coupled_means(x_BxC, mix.means_BxCxK, mix.coeffs_BxCxK)
  log_probs_BxCxK = discretized_logistic_log_prob(x_BxC[..., None], means_BxCxK, mix.log_scales_BxCxK)
  log_joint_BxK = jnp.sum(log_probs_BxCxK, axis=-2) + jax.nn.log_softmax(mix.logit_probs_BxK, axis=-1)
  return jax.nn.logsumexp(log_joint_BxK, axis=-1)


def discretized_mix_logistic_nll(x_BxHxWxC, params_BxHxWxP):
  """-sum_{h,w} log p(x_hw): the exact NLL in nats per image [B] (the reference's loss with sum_all=False)."""
  return -_image_sum(discretized_mix_logistic_log_prob(x_BxHxWxC, params_BxHxWxP))


def _round_to_grid(x):
  """The nearest of the 256 levels v / 127.5 - 1 (x already in [-1, 1])."""
  return jnp.round((x + 1.0) * 127.5) / 127.5 - 1.0


def sample_discretized_mix_logistic(key, params_BxP, num_channels, temperature=1.0, round_to_grid=True):
  """A draw of each pixel from the mixture, channels in order R, G, B: x in [-1, 1], shape [..., C].

  The component is k = argmax(logit_probs + T g), g ~ Gumbel(0, 1) (Gumbel-max, as the reference); each channel is
  x_c = clip(mu_c(x_<c) + T s_c L, -1, 1), L ~ Logistic(0, 1) by its inverse CDF log u - log(1 - u), with G's and B's
  means moved by the R (and G) just drawn. T = 1 is the model; T scales both the component logits (as 1 / T) and
  the logistic's spread, so T = 0 returns the most probable component's means. A number T < 0 raises ValueError.

  With `round_to_grid` (the default) each channel is rounded to the nearest level before the next channel reads
  it: clipping and rounding the logistic puts mass sigma(a) - sigma(b) on each inner level and the tails on the
  ends, so the draw is exactly the distribution `discretized_mix_logistic_log_prob` scores, the coupled means
  included. The reference (openai/pixel-cnn `sample_from_discretized_mix_logistic`) does not round, and draws u
  from [1e-5, 1 - 1e-5]; `round_to_grid=False` gives its continuous values (u from (0, 1)).

  Args:
    key: a `jax.random` key, split here for the component and the logistic noise.
    params_BxP: the net's outputs, shape [..., P], P = `mixture_num_params(K, C)`.
    num_channels: C, 1 or 3.
    temperature: T >= 0, a number or a scalar array.
    round_to_grid: whether to return (and condition on) grid values.

  Returns:
    float32 pixels in [-1, 1], shape [..., C]; with `round_to_grid`, on the grid v / 127.5 - 1.
  """
  _check_temperature(temperature)
  mix = unpack_mixture_params(params_BxP, num_channels)
  key_component, key_logistic = jax.random.split(key)
  gumbel_BxK = jax.random.gumbel(key_component, mix.logit_probs_BxK.shape, jnp.float32)
  one_hot_Bx1xK = jax.nn.one_hot(jnp.argmax(mix.logit_probs_BxK + temperature * gumbel_BxK, axis=-1),
                                 mix.logit_probs_BxK.shape[-1])[..., None, :]
  means_BxC = jnp.sum(mix.means_BxCxK * one_hot_Bx1xK, axis=-1)
  scales_BxC = jnp.exp(jnp.sum(mix.log_scales_BxCxK * one_hot_Bx1xK, axis=-1))
  coeffs_BxC = jnp.sum(mix.coeffs_BxCxK * one_hot_Bx1xK, axis=-1)
  noise_BxC = temperature * scales_BxC * jax.random.logistic(key_logistic, means_BxC.shape, jnp.float32)

  finish = _round_to_grid if round_to_grid else (lambda x: x)
  x_r = finish(jnp.clip(means_BxC[..., 0] + noise_BxC[..., 0], -1.0, 1.0))
  if num_channels == 1:
    return x_r[..., None]
  x_g = finish(jnp.clip(means_BxC[..., 1] + coeffs_BxC[..., 0] * x_r + noise_BxC[..., 1], -1.0, 1.0))
  x_b = finish(jnp.clip(means_BxC[..., 2] + coeffs_BxC[..., 1] * x_r + coeffs_BxC[..., 2] * x_g + noise_BxC[..., 2],
                        -1.0, 1.0))
  return jnp.stack([x_r, x_g, x_b], axis=-1)
