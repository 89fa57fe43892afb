"""The diffusion family's glue (genjax/models/diffusion.py) against numbers computed by hand, not against
genjax.losses.

tests/test_diffusion_math.py and tests/test_diffusion_samplers.py prove the formulas and the samplers on their
own; these tests prove that the family calls them with the right levels, noise inputs, keys, scales and
weights. The net is replaced by a known function that is neither linear nor scale-equivariant,

    F(x, c) = A tanh(x W + b + u sin(c / 30) + v c / 1000)  (+ S in training mode, + p n with dropout p),

so a wrong noise input c (one step off, a wrong EDM c_noise), a wrong input scale (EDM's c_in, z / alpha) or
a wrong level moves every number. Each reference below is numpy float64 written from the papers: DDPM (Ho
et al. 2020: the schedule, the eps loss, the ancestral step, the bound with its discretised decoder), the
cosine schedule (Nichol & Dhariwal 2021), DDIM with eta (Song et al. 2021, eqs. 12 and 16), v-prediction
(Salimans & Ho 2022), EDM (Karras et al. 2022: Table 1's preconditioning and loss weight, eq. 5's levels,
Algorithm 2 with churn). Three tiny models cover the options:

  * 'eps': 2-D points, linear schedule of T = 50 steps, no dropout (the net runs unvmapped), Heun's levels
    clipped at both ends to the s = sigma / alpha the schedule trained on (0.01 to 0.82);
  * 'v': 2x2 uint8 images, cosine schedule of T = 50 steps, dropout, predictions clipped to [-1, 1], Heun's
    levels clipped below (at s = 0.042);
  * 'edm': 2x2 uint8 images, EDM's preconditioning with sigma_data 0.6, p_mean -0.4, p_std 0.9, levels from
    0.2 to 5 with rho 5, dropout, clipped predictions.

Noise settings sit strictly between the special cases: DDIM's eta = 0.5, Heun's churn 1 on 4 levels (gamma
= 0.25 < sqrt(2) - 1). As in tests/test_model_glue.py, the references draw their noise with jax.random from
keys they derive themselves (fold_in, split) as the family documents; all other arithmetic is theirs.
"""

import dataclasses
import functools
import math
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

from genjax import build, errors, parallel
from genjax.models import diffusion as diffusion_lib
from genjax.models import diffusion_param
from genjax.models import family as family_lib
from genjax.models import update
from genjax.models.diffusion import Diffusion, DiffusionState
from genjax.nets import mlp_denoiser
from tests import conformance

T = 50  # steps of the VP schedules
STEPS = 4  # levels of the samplers
VP_STEPS = np.array([1, 17, 34, 50])  # round(linspace(1, T, 4)): T's 4 evenly respaced steps, t = 1 and T included
EDM_EVAL_STEPS = 6  # levels of an 'edm' model's bound; a VP model's bound runs on all T steps
AMPLITUDE = 2.0  # A: the x_hat of images leaves [-1, 1], so clipping matters
TRAIN_SHIFT = 0.1  # S: training mode is not inference mode
DROPOUT = 0.1  # p
LEARNING_RATE = 0.1
N = 5  # samples per sampler

# ------------------------------------------------------------------ the known net


class KnownNet(nn.Module):
  """F(x, c) above; with `dropout` > 0 in training mode it adds dropout * normal(make_rng('dropout'), x's shape)."""

  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, c_B, train=False):
    x_BxD = x.reshape(x.shape[0], -1)
    d = x_BxD.shape[1]
    init = nn.initializers.normal(0.5)
    w, b, u, v = (self.param(name, init, shape) for name, shape in (("w", (d, d)), ("b", (d,)), ("u", (d,)),
                                                                     ("v", (d,))))
    c = c_B[:, None]
    out = AMPLITUDE * jnp.tanh(x_BxD @ w + b + u * jnp.sin(c / 30.0) + v * c / 1000.0)
    if train:
      out = out + TRAIN_SHIFT
      if self.dropout:
        out = out + self.dropout * jax.random.normal(self.make_rng("dropout"), out.shape)
    return out.reshape(x.shape)


class DropoutNoise(nn.Module):
  """The draw KnownNet makes from its 'dropout' rng (the same top-level make_rng), for the references."""

  @nn.compact
  def __call__(self, shape):
    return jax.random.normal(self.make_rng("dropout"), shape)


def net_params(d: int, seed: int) -> dict:
  """Fixed float64 parameters of F for data of d dimensions."""
  rng = np.random.default_rng(seed)
  return {"w": rng.normal(0.0, 0.6, (d, d)), "b": rng.normal(0.0, 0.3, d), "u": rng.normal(0.0, 1.0, d),
          "v": rng.normal(0.0, 1.0, d)}


def as_params(params64: dict) -> dict:
  return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params64)


def hand_net(p, x, c_B, train=False, drop=None, xp=np):
  """F by hand, on numpy (float64) or jax.numpy arrays; `drop` is the dropout draw, shaped like x."""
  x_BxD = x.reshape(x.shape[0], -1)
  c = c_B[:, None]
  out = AMPLITUDE * xp.tanh(x_BxD @ p["w"] + p["b"] + p["u"] * xp.sin(c / 30.0) + p["v"] * c / 1000.0)
  out = out.reshape(x.shape)
  if train:
    out = out + TRAIN_SHIFT
    if drop is not None:
      out = out + DROPOUT * drop
  return out


# ------------------------------------------------------------------ the models

MODELS = {
    "eps": dict(objective="eps", schedule="linear", data_shape=(2,), points=True, sampler="heun", dropout=0.0,
                eval_steps=T),
    "v": dict(objective="v", schedule="cosine", data_shape=(2, 2, 1), sampler="ancestral", dropout=DROPOUT,
              eval_steps=T),
    "edm": dict(objective="edm", data_shape=(2, 2, 1), sampler="ddim", dropout=DROPOUT, sigma_min=0.2, sigma_max=5.0,
                rho=5.0, sigma_data=0.6, p_mean=-0.4, p_std=0.9, eval_steps=EDM_EVAL_STEPS),
}


def model(name: str, **overrides) -> Diffusion:
  kw = {"num_timesteps": T, "sample_steps": STEPS, "eta": 0.5, "churn": 1.0,
        "ema": update.EMA(decay=0.99, warmup="num_updates"), **MODELS[name], **overrides}
  dropout = kw.pop("dropout")
  return Diffusion(net=KnownNet(dropout), optimizer=optax.sgd(LEARNING_RATE), **kw)


def dims(fam) -> int:
  return math.prod(fam.data_shape)


def params64(name: str) -> dict:
  return net_params(dims(model(name)), seed={"eps": 1, "v": 2, "edm": 3}[name])


def examples(fam, n: int, seed: int = 0) -> np.ndarray:
  """Points (float32) or uint8 images with both ends of the range (the decoder's edge bins) among them."""
  rng = np.random.default_rng(seed)
  if fam.points:
    return rng.normal(0.0, 1.0, (n, *fam.data_shape)).astype(np.float32)
  images = rng.integers(0, 256, (n, *fam.data_shape)).astype(np.uint8)
  images.reshape(-1)[:2] = (0, 255)
  return images


def scaled(fam, data) -> np.ndarray:
  """The data in the model's range, float64: images 0..255 -> [-1, 1] (2 / 255 apart), points as they are."""
  data = np.asarray(data, np.float64)
  return data if fam.points else data / 127.5 - 1.0


# ------------------------------------------------------------------ references: levels and the denoiser


def alpha_bar(schedule: str, per_1000: bool = True) -> np.ndarray:
  """alpha_bar_t, t = 1..T: Ho et al.'s betas 1e-4..0.02 for 1,000 steps scaled by 1,000 / T (improved-diffusion's:
  here 0.002..0.4; unscaled as runs before config version 5), or Nichol & Dhariwal's f(t) / f(0), betas <= 0.999."""
  if schedule == "linear":
    betas = np.linspace(1e-4, 0.02, T) * (1000 / T if per_1000 else 1.0)
  else:
    f = np.cos((np.arange(T + 1) / T + 0.008) / 1.008 * np.pi / 2) ** 2
    betas = np.minimum(1.0 - f[1:] / f[:-1], 0.999)
  return np.cumprod(1.0 - betas)


def edm_levels(fam, steps: int) -> np.ndarray:
  """Karras et al.'s eq. 5 between sigma_min and sigma_max (for a VP model within its s = sigma / alpha)."""
  low, high = fam.sigma_min, fam.sigma_max
  if fam.vp:
    s = np.sqrt((1.0 - alpha_bar(fam.schedule, fam.linear_per_1000)) / alpha_bar(fam.schedule, fam.linear_per_1000))
    low, high = max(low, s[0]), min(high, s[-1])
  i = np.arange(steps) / (steps - 1)
  return (high ** (1 / fam.rho) + i * (low ** (1 / fam.rho) - high ** (1 / fam.rho))) ** fam.rho


def vp_alpha_bars(fam, steps: int) -> np.ndarray:
  """alpha_bar of the VP samplers' and the bound's `steps` levels, least noisy first: the respaced schedule (4 or
  all T steps here), or EDM's levels s as alpha_bar = 1 / (1 + s^2)."""
  if fam.vp:
    return alpha_bar(fam.schedule, fam.linear_per_1000)[{STEPS: VP_STEPS, T: np.arange(1, T + 1)}[steps] - 1]
  return 1.0 / (1.0 + edm_levels(fam, steps)[::-1] ** 2)


def noise_input(fam, abar):
  """The net's c: the index t - 1 of the schedule's step at this log-SNR (fractional in between), or 1000 c_noise
  = 250 ln s."""
  abar = np.asarray(abar, np.float64)
  if not fam.vp:
    return 250.0 * np.log(np.sqrt((1.0 - abar) / abar))
  table = alpha_bar(fam.schedule, fam.linear_per_1000)
  lam = np.log(table / (1.0 - table))
  return np.interp(np.log(abar / (1.0 - abar)), lam[::-1], np.arange(T, dtype=np.float64)[::-1])


def edm_precondition(fam, s):
  """Karras et al.'s Table 1: (c_skip, c_out, c_in)."""
  total = s**2 + fam.sigma_data**2
  return fam.sigma_data**2 / total, s * fam.sigma_data / np.sqrt(total), 1.0 / np.sqrt(total)


def column(v, x):
  return np.broadcast_to(np.asarray(v, np.float64), (x.shape[0],)).reshape(-1, *[1] * (x.ndim - 1))


def hand_denoise(fam, p, z, abar, clip=False):
  """x_hat of z = sqrt(abar) x + sqrt(1 - abar) eps (abar a scalar or one per example), in inference mode."""
  abar = np.broadcast_to(np.asarray(abar, np.float64), (z.shape[0],))
  c = noise_input(fam, abar)
  a, s = column(np.sqrt(abar), z), column(np.sqrt(1.0 - abar), z)
  if fam.objective == "eps":
    x_hat = (z - s * hand_net(p, z, c)) / a
  elif fam.objective == "v":  # x = alpha z - sigma v
    x_hat = a * z - s * hand_net(p, z, c)
  else:  # EDM's D(y; s) at y = z / alpha and s = sigma / alpha
    y, level = z / a, s / a
    c_skip, c_out, c_in = edm_precondition(fam, level)
    x_hat = c_skip * y + c_out * hand_net(p, c_in * y, c)
  return np.clip(x_hat, -1.0, 1.0) if clip else x_hat


def hand_edm_d(fam, p, x, s, clip=False):
  """D(x; s) of EDM's form (x = data + s n): the model at z = x / sqrt(1 + s^2)."""
  abar = 1.0 / (1.0 + s**2)
  return hand_denoise(fam, p, x * np.sqrt(abar), abar, clip)


def normal(key, shape) -> np.ndarray:
  return np.asarray(jax.random.normal(key, shape), np.float64)


# ------------------------------------------------------------------ references: the training loss


def loss_draws(fam, batch: int, key) -> dict:
  """Example i's draws from split(fold_in(key, i), 3) = (level, noise, dropout): its step index t - 1 ~ U{0..T-1}
  (randint) or EDM's ln s = p_mean + p_std normal(shape (1,)); its noise; the net's dropout draw."""
  draws = {"noise": [], "level": [], "drop": []}
  for i in range(batch):
    level_key, noise_key, dropout_key = jax.random.split(jax.random.fold_in(key, i), 3)
    draws["noise"].append(normal(noise_key, fam.data_shape))
    if fam.vp:
      draws["level"].append(int(jax.random.randint(level_key, (), 0, T)))
    else:
      draws["level"].append(math.exp(fam.p_mean + fam.p_std * float(normal(level_key, (1,))[0])))
    draws["drop"].append(np.asarray(DropoutNoise().apply({}, (1, dims(fam)), rngs={"dropout": dropout_key}),
                                    np.float64).reshape(fam.data_shape))
  return {k: np.asarray(v) for k, v in draws.items()}


def hand_loss(fam, p, x, draws, xp=np):
  """(loss, mse): the mean over the batch of the eps or v MSE (Ho et al.; Salimans & Ho) at index t - 1, or EDM's
  lambda(s) |D(x + s n; s) - x|^2 / dims with lambda = (s^2 + sd^2) / (s sd)^2 (Karras et al.); mse is EDM's
  unweighted mean of (D - x)^2."""
  noise = draws["noise"]
  drop = draws["drop"] if fam.net.dropout else None
  mean = lambda a: xp.mean(a.reshape(a.shape[0], -1), axis=-1)  # noqa: E731
  if fam.vp:
    t = draws["level"]
    abar = column(alpha_bar(fam.schedule, fam.linear_per_1000)[t], x)
    a, s = np.sqrt(abar), np.sqrt(1.0 - abar)
    out = hand_net(p, a * x + s * noise, t.astype(np.float64), train=True, drop=drop, xp=xp)
    target = noise if fam.objective == "eps" else a * noise - s * x
    loss = xp.mean(mean(xp.square(out - target)))
    return loss, None
  s_B = draws["level"]
  s = column(s_B, x)
  y = x + s * noise
  c_skip, c_out, c_in = edm_precondition(fam, s)
  denoised = c_skip * y + c_out * hand_net(p, c_in * y, 250.0 * np.log(s_B), train=True, drop=drop, xp=xp)
  weight = (s_B**2 + fam.sigma_data**2) / (s_B * fam.sigma_data) ** 2
  per_example = mean(xp.square(denoised - x))
  return xp.mean(weight * per_example), xp.mean(per_example)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_train_step_is_sgd_on_the_objectives_loss_then_the_ema(name):
  """The step's loss (and EDM's mse) equal the objective's loss computed by hand from example i's documented
  draws: eps or v = alpha eps - sigma x at the net's noise input t - 1 (DDPM's index, the sampler's), or EDM's
  lambda(sigma)-weighted loss on x + sigma n through c_in, c_skip, c_out and c_noise; the net in training mode
  with example i's dropout key. The update is SGD on that loss (its gradient by hand, grad_norm its norm); the
  EMA moves by d_n = min(0.99, (1 + n) / (10 + n)) with n the updates so far, this one included.
  """
  fam = model(name)
  p64 = params64(name)
  params = as_params(p64)
  ema_start = jax.tree.map(lambda a: a + 0.25, params)
  state = DiffusionState(step=jnp.int32(3), params=params, opt_state=fam.optimizer.init(params), ema_params=ema_start)
  data = examples(fam, 6, seed=4)
  key = jax.random.key(7)
  new_state, metrics = jax.jit(fam.train_step)(state, {"image": data}, key)

  x = scaled(fam, data)
  draws = loss_draws(fam, len(data), key)
  loss, mse = hand_loss(fam, p64, x, draws)
  np.testing.assert_allclose(metrics["loss"], loss, rtol=2e-5)
  if mse is not None:
    np.testing.assert_allclose(metrics["mse"], mse, rtol=2e-5)
  p32 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  grads = jax.grad(lambda p: hand_loss(fam, p, jnp.asarray(x, jnp.float32),
                                       {**draws, "noise": jnp.asarray(draws["noise"], jnp.float32),
                                        "drop": jnp.asarray(draws["drop"], jnp.float32)}, xp=jnp)[0])(params)
  grads = jax.tree.map(lambda g: np.asarray(g, np.float64), grads)
  expected = jax.tree.map(lambda p, g: p - LEARNING_RATE * g, p32, grads)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), new_state.params, expected)
  norm = math.sqrt(sum(float(np.sum(g**2)) for g in jax.tree.leaves(grads)))
  np.testing.assert_allclose(metrics["grad_norm"], norm, rtol=1e-5)
  decay = min(0.99, 5.0 / 14.0)  # n = 4: the fourth update
  jax.tree.map(lambda e, e0, q: np.testing.assert_allclose(e, decay * np.asarray(e0) + (1 - decay) * q, rtol=1e-5,
                                                           atol=1e-6), new_state.ema_params, ema_start, expected)
  assert int(new_state.step) == 4
  # The test can fail: the step moves every weight by far more than the tolerance.
  assert min(float(np.max(np.abs(g))) for g in jax.tree.leaves(grads)) * LEARNING_RATE > 1e-3


def test_a_step_on_two_shards_is_the_step_on_the_whole_batch():
  """Two shards of 3 under a device axis (emulated by vmap): each example's level, noise and dropout come from
  its global index (the shard's offset), the gradients and metrics are averaged over the axis, so every shard
  takes the whole batch's step and reports its loss, the hand-computed one."""
  fam = model("v")
  p64 = params64("v")
  params = as_params(p64)
  state = DiffusionState(step=jnp.int32(0), params=params, opt_state=fam.optimizer.init(params),
                         ema_params=params)
  data = examples(fam, 6, seed=6)
  key = jax.random.key(8)
  whole, whole_metrics = jax.jit(fam.train_step)(state, {"image": data}, key)
  sharded = dataclasses.replace(fam, axis_name="devices")
  shards, shard_metrics = jax.jit(jax.vmap(lambda b: sharded.train_step(state, {"image": b}, key),
                                           axis_name="devices"))(data.reshape(2, 3, *fam.data_shape))
  loss, _ = hand_loss(fam, p64, scaled(fam, data), loss_draws(fam, len(data), key))
  np.testing.assert_allclose(shard_metrics["loss"], [loss, loss], rtol=2e-5)
  np.testing.assert_allclose(whole_metrics["loss"], loss, rtol=2e-5)
  np.testing.assert_allclose(shard_metrics["grad_norm"], [whole_metrics["grad_norm"]] * 2, rtol=1e-5)
  for i in range(2):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-6), shards.params, whole.params)


# ------------------------------------------------------------------ references: the samplers


def sampler_draws(fam, key, n: int, steps: int):
  """(start noise, the noise of each step, noisiest first): split(key) = (start, loop), the loop's split(steps)."""
  start_key, loop_key = jax.random.split(key)
  shape = (n, *fam.data_shape)
  return normal(start_key, shape), [normal(k, shape) for k in jax.random.split(loop_key, steps)]


def hand_vp_sampler(fam, p, key, n, sampler):
  """DDIM (Song et al. eq. 12, sigma_t(eta) of eq. 16) or DDPM's ancestral step (Ho et al. eqs. 6-7) from
  z_N ~ N(0, I) down the respaced levels; the step to the data returns x_hat. (final, states, predictions)."""
  abars = vp_alpha_bars(fam, fam.sample_steps)
  clip = fam.clip_denoised and not fam.points
  z, noises = sampler_draws(fam, key, n, len(abars))
  states, predictions = [], []
  for k, j in enumerate(range(len(abars) - 1, -1, -1)):
    a_t = abars[j]
    x_hat = hand_denoise(fam, p, z, a_t, clip)
    if j == 0:
      z = x_hat
    elif sampler == "ddim":
      a_s = abars[j - 1]
      eps_hat = (z - np.sqrt(a_t) * x_hat) / np.sqrt(1.0 - a_t)
      c = fam.eta * np.sqrt((1.0 - a_s) / (1.0 - a_t)) * np.sqrt(1.0 - a_t / a_s)
      z = np.sqrt(a_s) * x_hat + np.sqrt(1.0 - a_s - c**2) * eps_hat + c * noises[k]
    else:
      a_s = abars[j - 1]
      beta = 1.0 - a_t / a_s
      mean = (np.sqrt(a_s) * beta / (1.0 - a_t)) * x_hat + (np.sqrt(1.0 - beta) * (1.0 - a_s) / (1.0 - a_t)) * z
      z = mean + np.sqrt((1.0 - a_s) / (1.0 - a_t) * beta) * noises[k]
    states.append(z)
    predictions.append(x_hat)
  return z, np.stack(states), np.stack(predictions)


def hand_heun(fam, p, key, n):
  """Karras et al.'s Algorithm 2 (S_tmin = 0, S_tmax = inf, S_noise = 1) from x_0 ~ N(0, sigma_0^2) on the levels,
  the last step Euler's. The path's states in the VP scale x / sqrt(1 + s_next^2); its predictions the first D."""
  levels = edm_levels(fam, fam.sample_steps)
  clip = fam.clip_denoised and not fam.points
  noise, noises = sampler_draws(fam, key, n, len(levels))
  gamma = min(fam.churn / len(levels), math.sqrt(2.0) - 1.0)
  x = levels[0] * noise
  after = np.append(levels[1:], 0.0)
  states, predictions = [], []
  for i, (s, s_next) in enumerate(zip(levels, after)):
    s_hat = s * (1.0 + gamma)
    x_hat = x + math.sqrt(s_hat**2 - s**2) * noises[i]
    denoised = hand_edm_d(fam, p, x_hat, s_hat, clip)
    d = (x_hat - denoised) / s_hat
    x = x_hat + (s_next - s_hat) * d
    if s_next > 0:
      d_next = (x - hand_edm_d(fam, p, x, s_next, clip)) / s_next
      x = x_hat + (s_next - s_hat) * 0.5 * (d + d_next)
    states.append(x / math.sqrt(1.0 + s_next**2))
    predictions.append(denoised)
  return x, np.stack(states), np.stack(predictions)


@functools.cache
def sampled(name: str, sampler: str, clip: bool = True):
  """(model, its path, the reference path) of `sampler`, the model's default (the one `sample` runs unasked)."""
  fam = model(name, sampler=sampler, clip_denoised=clip)
  p64 = params64(name)
  key = jax.random.key(11)
  got = jax.jit(fam.sample, static_argnames=("n", "path"))(as_params(p64), key, n=N, path=True)
  want = hand_heun(fam, p64, key, N) if sampler == "heun" else hand_vp_sampler(fam, p64, key, N, sampler)
  return fam, got, want


SAMPLER_CASES = [(name, sampler) for name in sorted(MODELS) for sampler in ("ddim", "ancestral", "heun")]


@pytest.mark.parametrize("name,sampler", SAMPLER_CASES, ids=[f"{n}-{s}" for n, s in SAMPLER_CASES])
def test_every_sampler_of_every_model_follows_its_paper_step_by_step(name, sampler):
  """The states and predictions of the sampler's path, and the sample, equal the paper's sampler by hand:

  DDIM with eta = 0.5 (c^2 = eta^2 Var q(z_s | z_t, x)) and the ancestral sampler on the VP levels (the schedule's
  steps t = 1, 17, 34, 50; an EDM model's levels as alpha_bar = 1 / (1 + s^2), least noisy first), from N(0, I);
  Heun with churn (gamma = 0.25) from N(0, sigma_max^2) on EDM's levels (a VP model's within the s its
  schedule trained on), its path in the VP scale; images' predictions clipped to [-1, 1], points' not. The net
  in inference mode at its noise input: t - 1 at a schedule step, the fractional index at the same log-SNR in
  between, EDM's 250 ln s.
  """
  fam, (final, (states, predictions)), (want_final, want_states, want_predictions) = sampled(name, sampler)
  tol = {"rtol": 2e-4, "atol": 2e-5}
  np.testing.assert_allclose(predictions, want_predictions, **tol)
  np.testing.assert_allclose(states, want_states, **tol)
  np.testing.assert_allclose(final, want_final, **tol)
  # The test can fail: the samples spread, and images' predictions would leave [-1, 1] unclipped.
  assert np.ptp(want_final) > 0.5
  if not fam.points:
    assert np.all(np.abs(want_predictions) <= 1.0)


def test_unclipped_predictions_are_the_denoisers_own():
  """clip_denoised=False: the v model's ancestral sampler uses x_hat as it is, which leaves [-1, 1]."""
  _, (final, (states, predictions)), (want_final, want_states, want_predictions) = sampled("v", "ancestral", False)
  np.testing.assert_allclose(predictions, want_predictions, rtol=2e-4, atol=2e-5)
  np.testing.assert_allclose(states, want_states, rtol=2e-4, atol=2e-5)
  np.testing.assert_allclose(final, want_final, rtol=2e-4, atol=2e-5)
  assert np.max(np.abs(want_predictions)) > 1.1


def test_sample_takes_its_sampler_and_steps_from_the_call_over_the_models():
  """sample(sampler=..., steps=...) overrides the model's: the 'edm' model (DDIM on 4 levels) asked for Heun on 3
  levels gives Heun's 3-level path; sample without `path` gives its end."""
  fam = model("edm")
  p64 = params64("edm")
  key = jax.random.key(12)
  f = jax.jit(fam.sample, static_argnames=("n", "sampler", "steps", "path"))
  final, (states, _) = f(as_params(p64), key, n=N, sampler="heun", steps=3, path=True)
  want_final, want_states, _ = hand_heun(dataclasses.replace(fam, sample_steps=3), p64, key, N)
  np.testing.assert_allclose(states, want_states, rtol=2e-4, atol=2e-5)
  np.testing.assert_allclose(final, want_final, rtol=2e-4, atol=2e-5)
  np.testing.assert_allclose(f(as_params(p64), key, n=N, sampler="heun", steps=3), final, rtol=1e-6, atol=1e-6)
  with pytest.raises(ValueError, match="sampler: unknown 'euler'"):
    fam.sample(as_params(p64), key, N, sampler="euler")


def test_visuals_are_the_samples_and_the_path_of_the_documented_keys():
  """samples: 64 draws of the model's sampler with the first of split(key), as uint8 round((x + 1) 127.5) in an 8x8
  grid; trajectory and predictions: 8 paths with the second key, every step of the 4 (10 evenly spaced
  columns, repeats dropped), rows the samples."""
  fam = model("v")
  params = as_params(params64("v"))
  key = jax.random.key(13)
  grids = jax.jit(fam.visuals)(params, key, jnp.zeros((1, *fam.data_shape), jnp.uint8))
  sample_key, path_key = jax.random.split(key)
  sample = jax.jit(fam.sample, static_argnames=("n", "path"))
  to_uint8 = lambda x: np.round((np.clip(np.asarray(x, np.float64), -1, 1) + 1) * 127.5).astype(np.uint8)  # noqa: E731
  samples = sample(params, sample_key, n=64)
  np.testing.assert_array_equal(grids["samples"], to_uint8(samples).reshape(8, 8, *fam.data_shape))
  _, (states, predictions) = sample(params, path_key, n=8, path=True)
  np.testing.assert_array_equal(grids["trajectory"], to_uint8(np.swapaxes(states, 0, 1)))
  np.testing.assert_array_equal(grids["predictions"], to_uint8(np.swapaxes(predictions, 0, 1)))
  assert grids["trajectory"].shape == (8, STEPS, *fam.data_shape)
  assert model("eps").visuals(params, key, None) == {}  # points: the loop draws their scatter


# ------------------------------------------------------------------ references: the bound


def log_bin_probability(x, mean, scale):
  """log P(x) of N(mean, scale^2) over x's bin of the 256 levels 2 / 255 apart in [-1, 1], edge bins unbounded
  (Ho et al. section 3.3)."""
  half = 1.0 / 255.0
  upper, lower = (x - mean + half) / scale, (x - mean - half) / scale
  middle = np.where(lower > 0, np.log(np.maximum(stats.norm.sf(lower) - stats.norm.sf(upper), 1e-300)),
                    np.log(np.maximum(stats.norm.cdf(upper) - stats.norm.cdf(lower), 1e-300)))
  return np.where(x < -1.0 + half, stats.norm.logcdf(upper), np.where(x > 1.0 - half, stats.norm.logsf(lower), middle))


def hand_bound(fam, p, data, key, offset):
  """Per example (bits / dim, its terms in nats): L_N = KL(N(sqrt(abar_N) x, 1 - abar_N) || N(0, I)), the KLs
  between q(z_{j-1} | z_j, x) and the same Gaussian at x_hat(z_j) (Ho et al. eq. 7), z_j drawn once from
  fold_in(first key, j - 1), and the decoder -log p(x | z_1) with mean x_hat(z_1) and scale sigma_1 / alpha_1,
  z_1 from the second key; example i's keys split(fold_in(key, offset + i)). Images: the discretised decoder;
  points: the Gaussian density. No clipping."""
  abars = vp_alpha_bars(fam, fam.eval_steps)
  x_all = scaled(fam, data)
  out, parts = [], []
  for i, x_i in enumerate(x_all):
    x = x_i[None]
    terms_key, decoder_key = jax.random.split(jax.random.fold_in(key, offset + i))
    prior = 0.5 * np.sum(abars[-1] * x**2 + (1.0 - abars[-1]) - 1.0 - np.log(1.0 - abars[-1]))
    kl = 0.0
    for j in range(1, len(abars)):
      a_s, a_t = abars[j - 1], abars[j]
      z = np.sqrt(a_t) * x + np.sqrt(1.0 - a_t) * normal(jax.random.fold_in(terms_key, j), x.shape)
      beta = 1.0 - a_t / a_s
      var = (1.0 - a_s) / (1.0 - a_t) * beta
      coef = np.sqrt(a_s) * beta / (1.0 - a_t)  # of x in the posterior mean
      kl += np.sum((coef * (x - hand_denoise(fam, p, z, a_t))) ** 2) / (2.0 * var)
    z_1 = np.sqrt(abars[0]) * x + np.sqrt(1.0 - abars[0]) * normal(decoder_key, x.shape)
    mean = hand_denoise(fam, p, z_1, abars[0])
    scale = np.sqrt((1.0 - abars[0]) / abars[0])
    if fam.points:
      decoder = -np.sum(stats.norm.logpdf(x, mean, scale))
    else:
      decoder = -np.sum(log_bin_probability(x, mean, scale))
    total = prior + kl + decoder
    out.append(total / (dims(fam) * math.log(2.0)))
    parts.append((prior, kl, decoder))
  return np.asarray(out), np.asarray(parts)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_evaluate_is_the_variational_bound_of_the_models_levels(name):
  """bits/dim = (L_N + sum of the diffusion KLs + decoder) / (dims ln 2), each term by hand on eval_steps levels,
  not the sampler's (all T steps of a VP schedule; 6 of EDM's, least noisy first), with x_hat (unclipped,
  the net in inference mode) and example i's keys from its global index offset + i (offset 2 here). The 'eps'
  model keeps the linear schedule unscaled (as a run written before config version 5), whose t = T leaves signal,
  so that its prior term is large enough to check."""
  fam = model(name, **({"linear_per_1000": False} if name == "eps" else {}))
  p64 = params64(name)
  data = examples(fam, 4, seed=5)
  key = jax.random.key(17)
  got = jax.jit(fam.evaluate, static_argnames="offset")(as_params(p64), data, key, offset=2)["bpd"]
  want, parts = hand_bound(fam, p64, data, key, 2)
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
  # The test can fail: the diffusion terms and the decoder are 100 tolerances or more, and so is the prior term
  # of the unscaled linear schedule, which leaves signal at t = T (the cosine one leaves alpha_bar_T = 1e-6, EDM's
  # sigma_max = 5 leaves 1 / 26); per image, not per dimension, is dims times each.
  big = np.abs(parts) / (dims(fam) * math.log(2.0)) > 100 * (2e-5 + 2e-5 * np.abs(want))[:, None]
  assert np.all(big[:, 1:]) and (np.all(big[:, 0]) or fam.objective != "eps"), parts


# ------------------------------------------------------------------ the seam: config -> Diffusion, init, weights

FIELDS = {"objective": "v", "schedule": "cosine", "num_timesteps": 321, "sampler": "heun", "sample_steps": 7,
          "eta": 0.3, "churn": 0.7, "sigma_min": 0.011, "sigma_max": 13.0, "rho": 5.5, "sigma_data": 0.45,
          "p_mean": -0.7, "p_std": 0.8, "clip_denoised": False, "eval_steps": 9}
EMA_FIELDS = {"ema_decay": 0.95, "ema_warmup": "num_updates", "ema_rampup": 0.11}


@pytest.mark.parametrize("arch", ["mlp", "unet"])
def test_from_config_hands_every_field_to_the_model(arch):
  """Every 'diffusion.*' field, each set apart from its default and from the others, reaches the model as
  itself; the net is the arch's with the 'model.*' fields; images are (28, 28, 1) uint8, points (2,) floats; the
  optimizer is Adam at optim.learning_rate (its first step on a gradient g is -lr sign(g)); pmap's path gets
  its axis name."""
  model_fields = ({"model.hidden": (24, 40), "model.emb_dim": 12} if arch == "mlp" else
                  {"model.ch": 64, "model.ch_mult": (1, 2), "model.num_res_blocks": 2, "model.attn_resolutions": (14,),
                   "model.dropout": 0.25})
  config = conformance.config_of("diffusion", arch,
                                 **{f"diffusion.{k}": v for k, v in {**FIELDS, **EMA_FIELDS}.items()},
                                 **model_fields, **{"optim.learning_rate": 0.0125, "optim.grad_clip_norm": None,
                                                    "parallel": "pmap" if arch == "unet" else "jit"})
  build.validate(config)
  fam = build.family(config)
  assert isinstance(fam, Diffusion)
  assert fam.axis_name == (parallel.AXIS if arch == "unet" else None)
  for field, value in FIELDS.items():
    assert getattr(fam, field) == value, field
  assert fam.ema == update.EMA(decay=0.95, warmup="num_updates", rampup=0.11)
  for field, value in model_fields.items():
    assert getattr(fam.net, field.split(".")[1]) == value, field
  assert fam.points == (arch == "mlp") and fam.data_shape == ((2,) if arch == "mlp" else (28, 28, 1))
  if arch == "unet":
    assert fam.net.out_ch == 1
  grads = {"a": jnp.asarray([0.5, -2.0])}
  updates, _ = fam.optimizer.update(grads, fam.optimizer.init(grads), grads)
  np.testing.assert_allclose(updates["a"], [-0.0125, 0.0125], rtol=1e-4)


def test_a_configs_defaults_are_the_models():
  """The family's config blocks leave every 'diffusion.*' field at the Diffusion dataclass's default and the MLP's
  widths at MLPDenoiser's, so a field a config leaves alone means what the model's docstring says."""
  blocks = family_lib.get("diffusion").config_blocks()
  defaults = {f.name: f.default for f in dataclasses.fields(Diffusion) if f.default is not dataclasses.MISSING}
  ema = defaults.pop("ema")
  defaults.update(ema_decay=ema.decay, ema_warmup=ema.warmup, ema_rampup=ema.rampup)
  assert set(blocks["diffusion"]) <= set(defaults)
  for field, value in blocks["diffusion"].items():
    assert value == defaults[field], field
  mlp = mlp_denoiser.MLPDenoiser()
  assert tuple(blocks["model"].hidden) == tuple(mlp.hidden) and blocks["model"].emb_dim == mlp.emb_dim


def test_models_scale_the_linear_schedule_to_t_and_runs_written_before_keep_theirs(tmp_path):
  """Every model since config version 5 trains and samples on the linear schedule scaled to its T
  (`genjax.losses.diffusion.linear_betas`); a config.json of version 4 has no field and reads back unscaled, the
  schedule its weights were trained on."""
  import json  # pylint: disable=g-import-not-at-top
  from configs import base  # pylint: disable=g-import-not-at-top
  from genjax import options, workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  from genjax.losses import diffusion as dm  # pylint: disable=g-import-not-at-top
  model = build.family(conformance.config_of("diffusion", "mlp", **{"diffusion.num_timesteps": 100}))
  levels = model.parametrisation.vp_levels(100)
  np.testing.assert_array_equal(levels[0], dm.linear_schedule(100, per_1000=True)[0])
  old = dataclasses.replace(model, linear_per_1000=False)
  np.testing.assert_array_equal(old.parametrisation.vp_levels(100)[0], dm.linear_schedule(100)[0])
  config = base.get_config("diffusion")
  assert config.diffusion.linear_per_1000
  workdir_lib.save_config(str(tmp_path), config)
  path = tmp_path / "config.json"
  saved = json.loads(path.read_text())
  del saved["diffusion"]["linear_per_1000"]
  path.write_text(json.dumps({**saved, options.VERSION_KEY: 4}))
  assert workdir_lib.load_config(str(tmp_path)).diffusion.linear_per_1000 is False


VALIDATION = [  # (overrides, refused with this message or None: accepted), the conditional rules at their edges
    ({"diffusion.sampler": "heun", "diffusion.sample_steps": 2}, None),
    ({"diffusion.sampler": "heun", "diffusion.sample_steps": 1}, "diffusion.sample_steps: the samplers need at least"),
    ({"diffusion.sampler": "ddim", "diffusion.sample_steps": 1}, "diffusion.sample_steps: the samplers need at least"),
    ({"diffusion.inpaint_steps": 1}, "diffusion.inpaint_steps: the samplers need at least 2 levels"),
    ({"diffusion.inpaint_steps": 2}, None),
    ({"diffusion.eval_steps": 2}, None),
    ({"diffusion.eval_steps": 1}, "diffusion.eval_steps: must be at least 2, got 1"),
    ({"diffusion.objective": "eps", "diffusion.num_timesteps": 8, "diffusion.sample_steps": 8,
      "diffusion.eval_steps": 8}, None),
    ({"diffusion.objective": "v", "diffusion.num_timesteps": 8, "diffusion.sample_steps": 9},
     "diffusion.sample_steps: 9 levels of a schedule of num_timesteps=8 steps; allowed: 2 to 8"),
    ({"diffusion.objective": "eps", "diffusion.num_timesteps": 8, "diffusion.eval_steps": 9},
     "diffusion.eval_steps: 9 levels of a schedule of num_timesteps=8 steps; allowed: 2 to 8"),
    ({"diffusion.objective": "eps", "diffusion.num_timesteps": 8, "diffusion.sampler": "heun",
      "diffusion.sample_steps": 9}, None),
    ({"diffusion.objective": "eps", "diffusion.num_timesteps": 8, "diffusion.sampler": "heun",
      "diffusion.sample_steps": 9, "diffusion.eval_steps": 9}, "diffusion.eval_steps: 9 levels of a schedule"),
    ({"diffusion.objective": "edm", "diffusion.num_timesteps": 8, "diffusion.sample_steps": 9,
      "diffusion.eval_steps": 9}, None),
    ({"diffusion.eta": 0.0, "diffusion.churn": 0.0}, None),
    ({"diffusion.sigma_min": 0.5, "diffusion.sigma_max": 0.5}, "diffusion.sigma_max: must exceed sigma_min=0.5"),
    ({"diffusion.sigma_min": 0.5, "diffusion.sigma_max": 0.51}, None),
    ({"dataset.name": "mnist5k"}, "model.arch: 'mlp' cannot model dataset 'mnist5k'"),
]


@pytest.mark.parametrize("overrides,message", VALIDATION, ids=[str(i) for i in range(len(VALIDATION))])
def test_validate_config_draws_the_diffusion_rules_at_their_edges(overrides, message):
  """Every sampler needs 2 levels, the bound 2; an 'eps' / 'v' model's levels are at most its T steps (Heun's sampler
  excepted: its levels are EDM's), an 'edm' model's are not bounded by T; sigma_max > sigma_min; points need
  the MLP."""
  config = conformance.config_of("diffusion", "mlp", **overrides)
  if message is None:
    build.validate(config)
  else:
    with pytest.raises(errors.UserError, match=re.escape(message)):
      build.validate(config)


def test_init_eval_params_noise_input_and_unknown_options():
  """init: the net's own init at step 0 on zeros of one example, the EMA a copy of the weights; eval_params:
  'ema' the average, 'raw' the weights; an 'edm' model's noise input is 250 ln(sigma / alpha); unknown
  objectives, schedules, samplers and weights are refused."""
  fam = model("v")
  key = jax.random.key(19)
  state = fam.init(key)
  want = KnownNet(DROPOUT).init(key, jnp.zeros((1, *fam.data_shape)), jnp.zeros((1,)))["params"]
  jax.tree.map(np.testing.assert_array_equal, state.params, want)
  jax.tree.map(np.testing.assert_array_equal, state.ema_params, want)
  assert int(state.step) == 0 and state.step.dtype == jnp.int32
  moved = state.replace(ema_params=jax.tree.map(lambda a: a + 1.0, state.params))
  jax.tree.map(np.testing.assert_array_equal, fam.eval_params(moved, key, "ema"), moved.ema_params)
  jax.tree.map(np.testing.assert_array_equal, fam.eval_params(moved, key), moved.ema_params)
  jax.tree.map(np.testing.assert_array_equal, fam.eval_params(moved, key, "raw"), moved.params)
  with pytest.raises(ValueError, match="weights: unknown 'best'"):
    fam.eval_params(moved, key, "best")
  for field, value in (("objective", "x0"), ("schedule", "sigmoid"), ("sampler", "euler")):
    with pytest.raises(ValueError, match=f"{field}: unknown"):
      model("v", **{field: value})
  edm = model("edm")  # its net's noise input at (alpha, sigma): 1000 c_noise = 250 ln(sigma / alpha)
  np.testing.assert_allclose(edm.noise_input(jnp.asarray([0.8, 0.3]), jnp.asarray([0.6, 0.9])),
                             250.0 * np.log([0.75, 3.0]), rtol=1e-5)
  assert family_lib.get("diffusion").weights == ("ema", "raw")


def test_the_objective_picks_one_frozen_parametrisation_with_the_models_fields():
  """'eps', 'v' and 'edm' are EpsilonVP, VelocityVP and EDM of genjax.models.diffusion_param, frozen, each field the
  model's of the same name; a model replaced with another objective or level gets its own object, not the cached
  one of the model it came from."""
  for name, kind in (("eps", diffusion_param.EpsilonVP), ("v", diffusion_param.VelocityVP),
                     ("edm", diffusion_param.EDM)):
    fam = model(name)
    chosen = fam.parametrisation
    assert type(chosen) is kind and chosen.vp == fam.vp == (name != "edm")
    for field in dataclasses.fields(chosen):
      assert getattr(chosen, field.name) == getattr(fam, field.name), (name, field.name)
    with pytest.raises(dataclasses.FrozenInstanceError):
      chosen.rho = 1.0
  fam = model("edm")
  assert fam.parametrisation.sigma_max == 5.0  # cached before the replace
  other = dataclasses.replace(fam, objective="v", sigma_max=3.0)
  assert type(other.parametrisation) is diffusion_param.VelocityVP and other.parametrisation.sigma_max == 3.0
  assert type(fam.parametrisation) is diffusion_param.EDM and fam.parametrisation.sigma_max == 5.0
