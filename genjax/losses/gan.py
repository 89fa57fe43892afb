"""The math of generative adversarial networks: losses and gradient penalties.

Every function is a pure `jax.numpy` function of arrays. The losses take the
discriminator's LOGITS l (pre-sigmoid outputs; D = sigmoid(l)), never
probabilities: log D = -softplus(-l) and log(1 - D) = -softplus(l) are finite
for every finite logit. Unlike `genjax.losses.vae`, each loss here returns the
batch MEAN (a scalar), ready to be minimised by the network it names; real and
fake batches are averaged separately, so their sizes may differ.

The gradient penalties take the critic as a function `critic_fn` mapping a
batch [B, ...] to one output per example ([B] or [B, 1]). They differentiate
sum_i critic_fn(x)_i with respect to x, which equals the per-example gradient
d critic_fn(x)_i / d x_i only when the critic treats examples independently:
no BatchNorm in training mode, no minibatch discrimination or other
cross-example layer (use LayerNorm, or BatchNorm with fixed statistics).

Shape letters used in the names below: B batch, D data (any number of axes).

References:
  Goodfellow et al., "Generative Adversarial Nets", NeurIPS 2014.
  Arjovsky, Chintala & Bottou, "Wasserstein GAN", ICML 2017.
  Gulrajani et al., "Improved Training of Wasserstein GANs", NeurIPS 2017.
  Lim & Ye, "Geometric GAN", arXiv:1705.02894, 2017.
  Mao et al., "Least Squares Generative Adversarial Networks", ICCV 2017.
  Miyato et al., "Spectral Normalization for Generative Adversarial
    Networks", ICLR 2018.
  Mescheder, Geiger & Nowozin, "Which Training Methods for GANs do actually
    Converge?", ICML 2018.
"""

import jax
import jax.numpy as jnp

__all__ = [
    "pack",
    "slerp",
    "unpack",
    "minimax_discriminator_loss",
    "minimax_generator_loss",
    "non_saturating_generator_loss",
    "hinge_discriminator_loss",
    "hinge_generator_loss",
    "wasserstein_discriminator_loss",
    "wasserstein_generator_loss",
    "least_squares_discriminator_loss",
    "least_squares_generator_loss",
    "gradient_penalty",
    "zero_centered_gradient_penalty",
    "r1_penalty",
    "r2_penalty",
    "LOSSES",
]


def minimax_discriminator_loss(real_logits_B, fake_logits_B):
  """-E[log D(x)] - E[log(1 - D(G(z)))] = mean(softplus(-l_r)) + mean(softplus(l_f)).

  The discriminator's side of the GAN value function V(D, G), negated so it
  is minimised; its minimum over D is log 4 - 2 JSD(p_data || p_g), reached at
  D* = p_data / (p_data + p_g). Goodfellow et al. 2014, eq. 1, Proposition 1
  and Theorem 1.

  Args:
    real_logits_B: discriminator logits on real data, shape [B] or [B, 1].
    fake_logits_B: discriminator logits on generated data, shape [B'] or
      [B', 1].

  Returns:
    The loss in nats, a scalar (each term averaged over its batch).
  """
  return (jnp.mean(jax.nn.softplus(-real_logits_B))
          + jnp.mean(jax.nn.softplus(fake_logits_B)))


def minimax_generator_loss(fake_logits_B):
  """E[log(1 - D(G(z)))] = -mean(softplus(l_f)).

  The saturating generator loss, the generator's side of the minimax game of
  Goodfellow et al. 2014, eq. 1, which G minimises. Its gradient,
  -sigmoid(l_f) / B per logit, vanishes when D confidently rejects the fakes
  (l_f -> -inf), early in training; see `non_saturating_generator_loss`.

  Args:
    fake_logits_B: discriminator logits on generated data, shape [B] or [B, 1].

  Returns:
    The loss in nats, a scalar (at most 0).
  """
  return -jnp.mean(jax.nn.softplus(fake_logits_B))


def non_saturating_generator_loss(fake_logits_B):
  """-E[log D(G(z))] = mean(softplus(-l_f)).

  The heuristic generator loss of Goodfellow et al. 2014, Section 3: it has
  the same fixed point as the minimax loss but a gradient of about -1 / B
  per logit when D confidently rejects the fakes.

  Args:
    fake_logits_B: discriminator logits on generated data, shape [B] or [B, 1].

  Returns:
    The loss in nats, a scalar (at least 0).
  """
  return jnp.mean(jax.nn.softplus(-fake_logits_B))


def hinge_discriminator_loss(real_logits_B, fake_logits_B):
  """mean(relu(1 - l_r)) + mean(relu(1 + l_f)).

  Lim & Ye 2017, Section 3; Miyato et al. 2018, eq. 16.

  Args:
    real_logits_B: discriminator outputs on real data, shape [B] or [B, 1].
    fake_logits_B: discriminator outputs on generated data, shape [B'] or
      [B', 1].

  Returns:
    The loss, a scalar (at least 0).
  """
  return (jnp.mean(jax.nn.relu(1.0 - real_logits_B))
          + jnp.mean(jax.nn.relu(1.0 + fake_logits_B)))


def hinge_generator_loss(fake_logits_B):
  """-mean(l_f): the Wasserstein generator loss, paired with the hinge D loss.

  Lim & Ye 2017, Section 3; Miyato et al. 2018, eq. 17.

  Args:
    fake_logits_B: discriminator outputs on generated data, shape [B] or [B, 1].

  Returns:
    The loss, a scalar.
  """
  return wasserstein_generator_loss(fake_logits_B)


def wasserstein_discriminator_loss(real_logits_B, fake_logits_B):
  """mean(f(G(z))) - mean(f(x)).

  The negated Kantorovich-Rubinstein estimate of W1(p_data, p_g), minimised
  by the critic f (whose Lipschitz constant the caller bounds: weight
  clipping, or `gradient_penalty`). Arjovsky et al. 2017, Section 3 and
  Algorithm 1.

  Args:
    real_logits_B: critic outputs on real data, shape [B] or [B, 1].
    fake_logits_B: critic outputs on generated data, shape [B'] or [B', 1].

  Returns:
    The loss, a scalar.
  """
  return jnp.mean(fake_logits_B) - jnp.mean(real_logits_B)


def wasserstein_generator_loss(fake_logits_B):
  """-mean(f(G(z))).

  Arjovsky et al. 2017, Algorithm 1.

  Args:
    fake_logits_B: critic outputs on generated data, shape [B] or [B, 1].

  Returns:
    The loss, a scalar.
  """
  return -jnp.mean(fake_logits_B)


def least_squares_discriminator_loss(real_logits_B, fake_logits_B):
  """0.5 mean((D(x) - 1)^2) + 0.5 mean(D(G(z))^2).

  Mao et al. 2017, eq. 2 with the 0-1 coding a = 0, b = c = 1, applied to
  the raw (linear, not sigmoid) discriminator outputs.

  Args:
    real_logits_B: discriminator outputs on real data, shape [B] or [B, 1].
    fake_logits_B: discriminator outputs on generated data, shape [B'] or
      [B', 1].

  Returns:
    The loss, a scalar (at least 0).
  """
  return (0.5 * jnp.mean(jnp.square(real_logits_B - 1.0))
          + 0.5 * jnp.mean(jnp.square(fake_logits_B)))


def least_squares_generator_loss(fake_logits_B):
  """0.5 mean((D(G(z)) - 1)^2).

  Mao et al. 2017, eq. 2 with c = 1, on the raw discriminator outputs.

  Args:
    fake_logits_B: discriminator outputs on generated data, shape [B] or [B, 1].

  Returns:
    The loss, a scalar (at least 0).
  """
  return 0.5 * jnp.mean(jnp.square(fake_logits_B - 1.0))


def _input_gradients(critic_fn, x_BxD):
  """grad_x sum_i critic_fn(x)_i: row i is d critic_fn(x)_i / d x_i.

  Exact only for a critic that treats examples independently (see the module
  docstring); checks that the critic gives one output per example.
  """
  batch = x_BxD.shape[0]

  def total(x):
    out = critic_fn(x)
    if out.shape not in ((batch,), (batch, 1)):
      raise ValueError(
          f"critic_fn must map a batch of {batch} examples to shape "
          f"({batch},) or ({batch}, 1); got {out.shape}.")
    return jnp.sum(out)

  return jax.grad(total)(x_BxD)


def _squared_norms(grad_BxD):
  """sum of squares over every axis but the first: shape [B]."""
  return jnp.sum(jnp.square(grad_BxD), axis=tuple(range(1, grad_BxD.ndim)))


def gradient_penalty(critic_fn, real_BxD, fake_BxD, key):
  """mean_i (||grad_x f(x_hat_i)||_2 - 1)^2, x_hat = eps x + (1 - eps) G(z).

  The WGAN-GP penalty of Gulrajani et al. 2017, Algorithm 1, with one
  eps ~ U[0, 1] per example, drawn from `key` (the caller's; used once, never
  split or stored), or from each example's own key when `key` holds one per
  example (a slice of a batch then draws what the whole batch would). Multiply by lambda (10 in the paper) at the call site.
  The norm is taken over all non-batch axes; its gradient is defined as 0 at
  a zero input-gradient, so the penalty can be differentiated with respect to
  the critic's parameters everywhere. `critic_fn` must treat examples
  independently (BatchNorm in training mode does not; see the module
  docstring).

  Args:
    critic_fn: maps a batch [B, ...] to critic outputs, shape [B] or [B, 1].
    real_BxD: real data, shape [B, ...], floating point.
    fake_BxD: generated data, shape of `real_BxD`.
    key: a `jax.random` key, used once to draw eps, or keys [B], one per example.

  Returns:
    The penalty, a scalar (at least 0).
  """
  if real_BxD.shape != fake_BxD.shape:
    raise ValueError(
        f"real and fake must have the same shape; got {real_BxD.shape} and "
        f"{fake_BxD.shape}.")
  ones = (1,) * (real_BxD.ndim - 1)
  if key.shape == ():
    eps_Bx1 = jax.random.uniform(key, (real_BxD.shape[0], *ones), dtype=real_BxD.dtype)
  elif key.shape == real_BxD.shape[:1]:
    eps_Bx1 = jax.vmap(lambda k: jax.random.uniform(k, ones, dtype=real_BxD.dtype))(key)
  else:
    raise ValueError(f"key: one key or one per example ({real_BxD.shape[0]}), got keys of shape {key.shape}")
  x_hat_BxD = eps_Bx1 * real_BxD + (1.0 - eps_Bx1) * fake_BxD
  sq_norm_B = _squared_norms(_input_gradients(critic_fn, x_hat_BxD))
  # sqrt has an infinite derivative at 0 (e.g. a critic flat at x_hat); the
  # double `where` keeps the value exact and the derivative finite.
  nonzero_B = sq_norm_B > 0
  norm_B = jnp.where(
      nonzero_B, jnp.sqrt(jnp.where(nonzero_B, sq_norm_B, 1.0)), 0.0)
  return jnp.mean(jnp.square(norm_B - 1.0))


def zero_centered_gradient_penalty(critic_fn, x_BxD):
  """mean_i ||grad_x f(x_i)||_2^2.

  The zero-centred penalty of Mescheder et al. 2018, eq. 9 (R1) and
  eq. 10 (R2), without its gamma / 2 factor: multiply by gamma / 2 at the
  call site. `critic_fn` must treat examples independently (see the module
  docstring).

  Args:
    critic_fn: maps a batch [B, ...] to critic outputs, shape [B] or [B, 1].
    x_BxD: the points where the gradient is taken, shape [B, ...].

  Returns:
    The penalty, a scalar (at least 0).
  """
  return jnp.mean(_squared_norms(_input_gradients(critic_fn, x_BxD)))


def r1_penalty(critic_fn, real_BxD):
  """R1 = mean_i ||grad_x f(x_i)||^2 at real data x_i ~ p_data.

  Mescheder et al. 2018, eq. 9, without gamma / 2 (multiply by gamma / 2 at
  the call site). See `zero_centered_gradient_penalty`.

  Args:
    critic_fn: maps a batch [B, ...] to critic outputs, shape [B] or [B, 1].
    real_BxD: real data, shape [B, ...].

  Returns:
    The penalty, a scalar (at least 0).
  """
  return zero_centered_gradient_penalty(critic_fn, real_BxD)


def r2_penalty(critic_fn, fake_BxD):
  """R2 = mean_i ||grad_x f(x_i)||^2 at generated data x_i ~ p_g.

  Mescheder et al. 2018, eq. 10, without gamma / 2 (multiply by gamma / 2
  at the call site). See `zero_centered_gradient_penalty`.

  Args:
    critic_fn: maps a batch [B, ...] to critic outputs, shape [B] or [B, 1].
    fake_BxD: generated data, shape [B, ...].

  Returns:
    The penalty, a scalar (at least 0).
  """
  return zero_centered_gradient_penalty(critic_fn, fake_BxD)


# name -> (discriminator loss, generator loss). 'non_saturating' keeps the
# minimax discriminator loss and changes only the generator's.
LOSSES = {
    "minimax": (minimax_discriminator_loss, minimax_generator_loss),
    "non_saturating": (minimax_discriminator_loss,
                       non_saturating_generator_loss),
    "hinge": (hinge_discriminator_loss, hinge_generator_loss),
    "wasserstein": (wasserstein_discriminator_loss,
                    wasserstein_generator_loss),
    "least_squares": (least_squares_discriminator_loss,
                      least_squares_generator_loss),
}


def pack(x_BxD, m: int):
  """PacGAN's packing (Lin et al. 2018): [B, ..., C] -> [B / m, ..., m * C], consecutive examples side by side
  on the last axis, so that D scores m examples at once."""
  if m == 1:
    return x_BxD
  batch = x_BxD.shape[0]
  if batch % m:
    raise ValueError(f"batch of {batch} examples does not divide into packs of {m}")
  grouped = jnp.moveaxis(x_BxD.reshape(batch // m, m, *x_BxD.shape[1:]), 1, -2)  # [B/m, ..., m, C]
  return grouped.reshape(*grouped.shape[:-2], m * x_BxD.shape[-1])


def unpack(packed, m: int):
  """The inverse of `pack`: [B / m, ..., m * C] -> [B, ..., C]."""
  if m == 1:
    return packed
  grouped = jnp.moveaxis(packed.reshape(*packed.shape[:-1], m, packed.shape[-1] // m), -2, 1)  # [B/m, m, ..., C]
  return grouped.reshape(-1, *grouped.shape[2:])


def slerp(z0_PxZ, z1_PxZ, t_T):
  """Spherical interpolation [P, T, Z] between rows of z0 and z1 (Shoemake 1985; White 2016).

  sin((1-t)w)/sin(w) z0 + sin(tw)/sin(w) z1 with w the angle between z0 and
  z1; the straight line where w is 0 (parallel codes).
  """
  n0 = z0_PxZ / jnp.linalg.norm(z0_PxZ, axis=-1, keepdims=True)
  n1 = z1_PxZ / jnp.linalg.norm(z1_PxZ, axis=-1, keepdims=True)
  omega_Px1x1 = jnp.arccos(jnp.clip(jnp.sum(n0 * n1, axis=-1), -1.0, 1.0))[:, None, None]
  t_1xTx1 = t_T[None, :, None]
  sin_omega = jnp.sin(omega_Px1x1)
  safe = sin_omega > 1e-6
  denom = jnp.where(safe, sin_omega, 1.0)
  w0 = jnp.where(safe, jnp.sin((1.0 - t_1xTx1) * omega_Px1x1) / denom, 1.0 - t_1xTx1)
  w1 = jnp.where(safe, jnp.sin(t_1xTx1 * omega_Px1x1) / denom, t_1xTx1)
  return w0 * z0_PxZ[:, None] + w1 * z1_PxZ[:, None]
