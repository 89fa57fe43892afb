"""Distributions that no single family owns: Gaussian KL terms, log-densities and reparameterised draws.

The VAE's bounds, and a diffusion model's variational bound, are built from
these. Every function is a pure `jax.numpy` function of arrays; likelihoods
take logits, Gaussians take log-variances (never probabilities or
variances), and every reduction is explicit: one value per example (the
batch axes are kept), averaging over the batch is the caller's step.

Shape letters used in the names below: B batch (any number of leading axes),
Z latent size, D data size (any number of event axes).

References:
  Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
"""

import math

import jax
import jax.numpy as jnp

__all__ = [
    "kl_normal_standard",
    "kl_normal",
    "bernoulli_log_prob",
    "gaussian_log_prob",
    "standard_normal_log_prob",
    "reparameterize",
]

_LOG_2PI = math.log(2.0 * math.pi)


def _sum_event(x, event_ndims):
  """Sums the last `event_ndims` axes of `x` (none when `event_ndims == 0`)."""
  if event_ndims < 0 or event_ndims > x.ndim:
    raise ValueError(
        f"event_ndims must be in [0, {x.ndim}] for an array of shape "
        f"{x.shape}; got {event_ndims}.")
  if event_ndims == 0:
    return x
  return jnp.sum(x, axis=tuple(range(x.ndim - event_ndims, x.ndim)))


def kl_normal_standard(mean_BxZ, logvar_BxZ):
  """KL(N(m, diag e^v) || N(0, I)) = 0.5 * sum_z(e^v + m^2 - 1 - v).

  Kingma & Welling 2014, Appendix B.

  Args:
    mean_BxZ: posterior means, shape [..., Z].
    logvar_BxZ: posterior log-variances, shape [..., Z] (broadcastable).

  Returns:
    The KL divergence in nats, summed over the last axis: shape [...].
  """
  return 0.5 * jnp.sum(
      jnp.exp(logvar_BxZ) + jnp.square(mean_BxZ) - 1.0 - logvar_BxZ, axis=-1)


def kl_normal(mean_q_BxZ, logvar_q_BxZ, mean_p_BxZ, logvar_p_BxZ):
  """KL(N_q || N_p) = 0.5 * sum_z(v_p - v_q + (e^v_q + (m_q - m_p)^2) e^-v_p - 1).

  The KL divergence between two diagonal Gaussians, written in log-variance
  form so that no variance is ever divided by: e^(v_q - v_p) and
  (m_q - m_p)^2 e^(-v_p). The Gaussian case of Kullback & Leibler 1951;
  Kingma & Welling 2014, Appendix B, derive the special case p = N(0, I).

  Args:
    mean_q_BxZ: means of q, shape [..., Z].
    logvar_q_BxZ: log-variances of q, shape [..., Z].
    mean_p_BxZ: means of p, shape [..., Z] (broadcastable).
    logvar_p_BxZ: log-variances of p, shape [..., Z] (broadcastable).

  Returns:
    The KL divergence in nats, summed over the last axis: shape [...].
  """
  logvar_diff_BxZ = logvar_q_BxZ - logvar_p_BxZ
  mean_diff_sq_BxZ = jnp.square(mean_q_BxZ - mean_p_BxZ)
  return 0.5 * jnp.sum(
      jnp.exp(logvar_diff_BxZ)
      + mean_diff_sq_BxZ * jnp.exp(-logvar_p_BxZ)
      - 1.0
      - logvar_diff_BxZ,
      axis=-1)


def bernoulli_log_prob(x_BxD, logits_BxD, event_ndims=1):
  """log Bern(x; sigmoid(l)) = sum_d(x l - softplus(l)).

  Equal to x log sigmoid(l) + (1 - x) log sigmoid(-l); the softplus form is
  finite for any finite logit. x may be any value in [0, 1] (the continuous
  relaxation used with grey-level images), not only {0, 1}.
  Kingma & Welling 2014, Appendix C.1.

  Args:
    x_BxD: observations in [0, 1], shape [..., *event] (broadcastable).
    logits_BxD: decoder logits, shape [..., *event].
    event_ndims: how many trailing axes form one event and are summed.

  Returns:
    The log-likelihood in nats, shape [...] (the event axes summed).
  """
  log_prob_BxD = x_BxD * logits_BxD - jax.nn.softplus(logits_BxD)
  return _sum_event(log_prob_BxD, event_ndims)


def gaussian_log_prob(x_BxD, mean_BxD, logvar_BxD, event_ndims=1):
  """log N(x; m, diag e^v) = sum_d -0.5 (log 2 pi + v + (x - m)^2 e^-v).

  Kingma & Welling 2014, Appendix C.2.

  Args:
    x_BxD: observations, shape [..., *event] (broadcastable).
    mean_BxD: means, shape [..., *event] (broadcastable).
    logvar_BxD: log-variances, shape [..., *event] (broadcastable).
    event_ndims: how many trailing axes form one event and are summed.

  Returns:
    The log-density in nats, shape [...] (the event axes summed).
  """
  log_prob_BxD = -0.5 * (
      _LOG_2PI + logvar_BxD + jnp.square(x_BxD - mean_BxD) * jnp.exp(-logvar_BxD))
  return _sum_event(log_prob_BxD, event_ndims)


def standard_normal_log_prob(z_BxZ, event_ndims=1):
  """log N(z; 0, I) = sum_z -0.5 (log 2 pi + z^2).

  The VAE prior p(z). Kingma & Welling 2014, Section 3.

  Args:
    z_BxZ: latents, shape [..., *event].
    event_ndims: how many trailing axes form one event and are summed.

  Returns:
    The log-density in nats, shape [...] (the event axes summed).
  """
  log_prob_BxZ = -0.5 * (_LOG_2PI + jnp.square(z_BxZ))
  return _sum_event(log_prob_BxZ, event_ndims)


def reparameterize(key, mean_BxZ, logvar_BxZ):
  """z = m + e^(v / 2) * eps, eps ~ N(0, I): a differentiable draw from q.

  The reparameterisation trick, Kingma & Welling 2014, Section 2.4. The key
  is the caller's; this function never splits or stores one.

  Args:
    key: a `jax.random` key, used once.
    mean_BxZ: means, shape [..., Z]; its shape and dtype set those of eps.
    logvar_BxZ: log-variances, shape [..., Z] (broadcastable to the mean).

  Returns:
    A sample z of shape and dtype of `mean_BxZ`.
  """
  eps_BxZ = jax.random.normal(key, mean_BxZ.shape, mean_BxZ.dtype)
  return mean_BxZ + jnp.exp(0.5 * logvar_BxZ) * eps_BxZ
