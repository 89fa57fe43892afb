"""Exponential moving averages of weights, with the warm-ups that keep an early average off the initialisation.

After update n (n = 1, 2, ...) the average moves to

    ema_n = d_n ema_{n-1} + (1 - d_n) params_n,    ema_0 = params_0,

so ema_n = sum_k w_k params_k with weights that sum to one. With a constant
d the initial weights keep d^n of the average: 0.999^1000 = 37% after 1,000
updates, which is why an EMA generator without warm-up samples worse than
the generator it averages early in training. The rules (`decay`):

  * 'none': d_n = d (Polyak averaging with a fixed horizon).
  * 'num_updates': d_n = min(d, (1 + n) / (10 + n)), TensorFlow's
    `tf.train.ExponentialMovingAverage(decay, num_updates)`: a horizon of
    about n / 10 updates early on, d once n > (10 d - 1) / (1 - d).
  * 'rampup': the half-life, counted in updates, is at most `rampup` times
    the updates so far: h_n = min(h, rampup n) with h = ln(1/2) / ln(d), and
    d_n = (1/2)^(1 / h_n) (Karras et al. 2020, StyleGAN2-ADA's
    `ema_rampup`, and EDM, Karras et al. 2022, which count images; with a
    fixed batch size the ratio is the same counted in updates).

Every rule gives d_n = 0 where d = 0: the average is then the weights.
"""

import jax
import jax.numpy as jnp
import optax

RULES = ("none", "num_updates", "rampup")


def decay(rule: str, max_decay: float, n: jax.Array, rampup: float = 0.05) -> jax.Array:
  """d_n of `rule` at update n >= 1 (float32 scalar); see the module docstring."""
  n = jnp.asarray(n, jnp.float32)
  d = jnp.float32(max_decay)
  if rule == "none":
    return d
  if rule == "num_updates":
    return jnp.minimum(d, (1.0 + n) / (10.0 + n))
  if rule == "rampup":
    if max_decay == 0.0:
      return d
    half_life = jnp.minimum(jnp.log(0.5) / jnp.log(d), rampup * n)
    return jnp.where(half_life > 0, 0.5 ** (1.0 / jnp.maximum(half_life, 1e-30)), 0.0)
  raise ValueError(f"ema rule: unknown {rule!r}; allowed: {', '.join(RULES)}")


def update(ema, params, decay_n: jax.Array):
  """ema <- d_n ema + (1 - d_n) params, leaf by leaf."""
  return optax.incremental_update(params, ema, 1.0 - decay_n)
