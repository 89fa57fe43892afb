"""The bounds of variational autoencoders: the (beta-)ELBO, importance weights and the IWAE bound.

The Gaussian KL terms and log-densities they combine are shared with other
families and live in `genjax.losses.distributions` (re-exported here, where
they were first defined). Every function returns one value per example;
averaging over the batch is the caller's step.

Shape letters used in the names below: B batch (any number of leading axes),
K importance samples.

References:
  Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
  Higgins et al., "beta-VAE: Learning Basic Visual Concepts with a Constrained
    Variational Framework", ICLR 2017.
  Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
"""

import math

import jax

from genjax.losses.distributions import (bernoulli_log_prob, gaussian_log_prob, kl_normal, kl_normal_standard,
                                         reparameterize, standard_normal_log_prob)

__all__ = [
    "kl_normal_standard",
    "kl_normal",
    "bernoulli_log_prob",
    "gaussian_log_prob",
    "standard_normal_log_prob",
    "reparameterize",
    "elbo",
    "iwae_bound",
    "importance_log_weights",
]


def elbo(log_likelihood_B, kl_B, beta=1.0):
  """ELBO_beta = E_q[log p(x | z)] - beta * KL(q(z | x) || p(z)).

  beta = 1 is the evidence lower bound of Kingma & Welling 2014 (eq. 3);
  other values give the beta-VAE objective of Higgins et al. 2017 (eq. 4).
  Maximise it (minimise its negative, averaged over the batch).

  Args:
    log_likelihood_B: per-example (estimate of) E_q[log p(x | z)], shape [B].
    kl_B: per-example KL(q(z | x) || p(z)), shape [B].
    beta: weight of the KL term, a float >= 0.

  Returns:
    The per-example bound in nats, shape [B].
  """
  return log_likelihood_B - beta * kl_B


def importance_log_weights(log_px_given_z_KxB, log_pz_KxB, log_qz_KxB):
  """log w = log p(x | z) + log p(z) - log q(z | x), with z ~ q(z | x).

  The log importance weights log p(x, z) / q(z | x) of the samples z;
  Burda et al. 2016, Section 3. Their mean is an ELBO estimate; their
  log-mean-exp is the IWAE bound (see `iwae_bound`).

  Args:
    log_px_given_z_KxB: log p(x_b | z_kb), shape [K, B] (or any shape).
    log_pz_KxB: log p(z_kb), same shape.
    log_qz_KxB: log q(z_kb | x_b), same shape.

  Returns:
    The log-weights, elementwise, shape [K, B].
  """
  return log_px_given_z_KxB + log_pz_KxB - log_qz_KxB


def iwae_bound(log_weights_KxB, axis=0):
  """L_K = log (1/K) sum_k w_k = logsumexp_k(log w_k) - log K.

  The importance-weighted bound of Burda et al. 2016, eq. 8: a lower bound
  on log p(x) that increases with K and equals the ELBO for K = 1.
  Computed with logsumexp, so it is finite for any finite log-weights.

  Args:
    log_weights_KxB: log w[k, b] = log p(x_b, z_kb) - log q(z_kb | x_b),
      shape [K, B] (K along `axis`).
    axis: the axis of the K samples.

  Returns:
    The per-example bound in nats, shape [B] (`axis` removed).
  """
  num_samples = log_weights_KxB.shape[axis]
  return (jax.nn.logsumexp(log_weights_KxB, axis=axis)
          - math.log(num_samples))
