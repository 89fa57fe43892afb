"""The diffusion family's parametrisations: what its net is trained on and how its output becomes x_hat.

Every diffusion model is used through one denoiser, x_hat(z; alpha, sigma), the prediction of the data x
from z = alpha x + sigma eps at any (alpha, sigma) of the variance-preserving (VP) form, so every sampler
runs on every model. A parametrisation is the small frozen object that holds the math behind that denoiser,
one per objective, as score_sde's SDE classes and EDM's VPPrecond / EDMPrecond hold theirs:

  * `EpsilonVP` ('eps', Ho et al. 2020) and `VelocityVP` ('v', Salimans & Ho 2022): the net predicts eps or
    v = alpha eps - sigma x on a discrete VP schedule of `num_timesteps` steps ('linear' or 'cosine'),
    trained with t uniform in 1..T on the plain MSE to that target; its noise input is DDPM's step index
    t - 1, and between the schedule's steps the fractional index at the same log-SNR.
  * `EDM` ('edm', Karras et al. 2022): the net F is preconditioned (Table 1), D(y; s) = c_skip y + c_out
    F(c_in y, c_noise) with y = z / alpha = x + s eps and s = sigma / alpha, trained with ln s ~
    N(p_mean, p_std^2) on lambda(s) |D - x|^2, lambda = 1 / c_out^2. Its noise input is 1000 c_noise =
    250 ln s, so that the sinusoidal embedding resolves it as it resolves DDPM's indices.

Each has levels for a sampler of N steps in both forms: `vp_levels`, (alpha, sigma) least noisy first, for
DDIM, the ancestral sampler and the bound; `edm_levels`, s noisiest first, for Heun. A VP model's own are
its schedule respaced evenly (t = 1 and t = T included); its EDM levels are Karras et al.'s eq. 5 levels
between sigma_min and sigma_max, clipped to the s its schedule trained on. An EDM model's own are those
levels unclipped; its VP levels are the same as alpha = 1 / sqrt(1 + s^2), sigma = s alpha.

The net enters as a callable net(x_in, c_B) -> an output shaped like x_in, which the model binds to its
weights, mode and dropout keys, so these objects hold numbers only. The fields of each are the
`genjax.models.diffusion.Diffusion` fields of the same names.
"""

import abc
import dataclasses
import functools
from typing import Callable, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from genjax.losses import diffusion as dm

SCHEDULES = ("linear", "cosine")

Net = Callable[[jax.Array, jax.Array], jax.Array]  # net(x_in_B..., c_B) -> output shaped like x_in


@functools.lru_cache(maxsize=8)
def vp_schedule(schedule: str, num_timesteps: int, linear_per_1000: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """(alpha_t, sigma_t), float64 [T], of a discrete VP schedule; `linear_per_1000`: the linear schedule's betas
  scaled to T (`genjax.losses.diffusion.linear_betas`), as every run since config version 5."""
  if schedule == "linear":
    return dm.linear_schedule(num_timesteps, per_1000=linear_per_1000)
  if schedule == "cosine":
    return dm.cosine_schedule(num_timesteps)
  raise ValueError(f"schedule: unknown {schedule!r}; allowed: {', '.join(SCHEDULES)}")


def vp_from_edm(sigma_edm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(alpha, sigma) of the VP form of EDM's noise levels: alpha = 1 / sqrt(1 + s^2), sigma = s alpha."""
  alpha = 1.0 / np.sqrt(1.0 + np.square(sigma_edm))
  return alpha, sigma_edm * alpha


def column(v, x):
  """A scalar or [B] array as [B, 1, ...], broadcastable against x."""
  v = jnp.broadcast_to(jnp.asarray(v, jnp.float32), (x.shape[0],))
  return v.reshape((-1,) + (1,) * (x.ndim - 1))


@dataclasses.dataclass(frozen=True)
class Parametrisation(abc.ABC):
  """What every objective provides; EDM's levels (Karras et al. 2022, eq. 5) are common to all."""

  sigma_min: float
  sigma_max: float
  rho: float
  vp: ClassVar[bool]  # whether the net was trained on a discrete VP schedule

  def edm_range(self) -> tuple[float, float]:
    """The (lowest, highest) s of `edm_levels`."""
    return self.sigma_min, self.sigma_max

  def edm_levels(self, steps: int) -> np.ndarray:
    """EDM's `steps` levels s, float64, noisiest first."""
    low, high = self.edm_range()
    return dm.edm_sigmas(steps, low, high, self.rho)

  @abc.abstractmethod
  def vp_levels(self, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, sigma), float64 [N], least noisy first, of the VP samplers and the bound on `steps` levels."""

  @abc.abstractmethod
  def noise_input(self, alpha_B: jax.Array, sigma_B: jax.Array) -> jax.Array:
    """The net's noise input c_B at (alpha, sigma)."""

  @abc.abstractmethod
  def denoise(self, net: Net, z, alpha, sigma) -> jax.Array:
    """x_hat(z) at z = alpha x + sigma eps (alpha, sigma scalars or [B])."""

  @abc.abstractmethod
  def loss(self, net: Net, x, noise, level_keys_B: jax.Array) -> tuple[jax.Array, dict]:
    """(loss averaged over the batch, metrics) with example i at the level drawn from level_keys_B[i] and
    noise[i]; `net` in training mode."""


@dataclasses.dataclass(frozen=True)
class DiscreteVP(Parametrisation):
  """A net trained on a discrete VP schedule's steps t = 1..T at the noise input t - 1 (Ho et al. 2020)."""

  schedule: str
  num_timesteps: int
  linear_per_1000: bool
  vp: ClassVar[bool] = True

  @property
  def schedule_arrays(self) -> tuple[np.ndarray, np.ndarray]:
    return vp_schedule(self.schedule, self.num_timesteps, self.linear_per_1000)

  @abc.abstractmethod
  def target(self, x, eps, alpha, sigma):
    """What the net learns to predict from z = alpha x + sigma eps."""

  @abc.abstractmethod
  def x_from_output(self, z, out, alpha, sigma):
    """x_hat from the net's prediction `out` of the target at z."""

  def edm_range(self) -> tuple[float, float]:
    """EDM's range within the s = sigma / alpha the schedule trained on, where the net knows its input."""
    alphas, sigmas = self.schedule_arrays
    s = sigmas / alphas
    return max(self.sigma_min, float(s[0])), min(self.sigma_max, float(s[-1]))

  def vp_levels(self, steps):
    """The schedule's steps respaced evenly, t = 1 and t = T included (repeats dropped when steps > T)."""
    alphas, sigmas = self.schedule_arrays
    t = np.unique(np.round(np.linspace(1, self.num_timesteps, steps)).astype(np.int64))
    return alphas[t - 1], sigmas[t - 1]

  def noise_input(self, alpha_B, sigma_B):
    """The step index t - 1 at a step of the schedule; in between, the fractional index at the same log-SNR."""
    alphas, sigmas = self.schedule_arrays
    table = np.log(np.square(alphas)) - np.log(np.square(sigmas))  # log-SNR, decreasing in t
    lam_B = 2.0 * (jnp.log(alpha_B) - jnp.log(sigma_B))
    index = np.arange(self.num_timesteps, dtype=np.float32)
    return jnp.interp(lam_B, jnp.asarray(table[::-1], jnp.float32), jnp.asarray(index[::-1]))

  def denoise(self, net, z, alpha, sigma):
    a, s = column(alpha, z), column(sigma, z)
    return self.x_from_output(z, net(z, self.noise_input(a.reshape(-1), s.reshape(-1))), a, s)

  def loss(self, net, x, noise, level_keys_B):
    """Ho et al.'s simple loss on the target: its MSE at t ~ U{1..T}, the net's input z_t and index t - 1."""
    alphas, sigmas = (jnp.asarray(v, jnp.float32) for v in self.schedule_arrays)
    t_B = jax.vmap(lambda k: jax.random.randint(k, (), 0, self.num_timesteps))(level_keys_B)
    a, s = column(alphas[t_B], x), column(sigmas[t_B], x)
    out = net(dm.diffuse(x, a, s, noise), t_B.astype(jnp.float32))
    loss = jnp.mean(dm.eps_mse(out, self.target(x, noise, a, s)))
    return loss, {"loss": loss}


@dataclasses.dataclass(frozen=True)
class EpsilonVP(DiscreteVP):
  """'eps': the net predicts the noise (Ho et al. 2020); x_hat = (z - sigma eps_hat) / alpha."""

  def target(self, x, eps, alpha, sigma):
    return eps

  def x_from_output(self, z, out, alpha, sigma):
    return dm.x_from_eps(z, out, alpha, sigma)


@dataclasses.dataclass(frozen=True)
class VelocityVP(DiscreteVP):
  """'v': the net predicts v = alpha eps - sigma x (Salimans & Ho 2022); x_hat = alpha z - sigma v_hat."""

  def target(self, x, eps, alpha, sigma):
    return dm.v_from_eps_x(eps, x, alpha, sigma)

  def x_from_output(self, z, out, alpha, sigma):
    return dm.x_from_v(z, out, alpha, sigma)


@dataclasses.dataclass(frozen=True)
class EDM(Parametrisation):
  """'edm': Karras et al. (2022)'s preconditioned net, trained at ln s ~ N(p_mean, p_std^2) on its own levels."""

  sigma_data: float
  p_mean: float
  p_std: float
  vp: ClassVar[bool] = False

  def vp_levels(self, steps):
    """EDM's levels in the VP form, least noisy first."""
    return vp_from_edm(self.edm_levels(steps)[::-1])

  def noise_input(self, alpha_B, sigma_B):
    """1000 c_noise = 250 ln(s) at s = sigma / alpha."""
    return 250.0 * (jnp.log(sigma_B) - jnp.log(alpha_B))

  def precondition(self, net, y, s):
    """D(y; s) = c_skip y + c_out F(c_in y, 1000 c_noise) at y = x + s n, s scalar or [B] (Table 1)."""
    c_skip, c_out, c_in, c_noise = dm.edm_preconditioning(column(s, y), self.sigma_data)
    # 1000 c_noise: ln(s) / 4 on the scale of the VP nets' step index (0..1000)
    return c_skip * y + c_out * net(c_in * y, 1000.0 * c_noise.reshape(-1))

  def denoise(self, net, z, alpha, sigma):
    """D(z / alpha; sigma / alpha): z / alpha is the data plus noise of standard deviation s."""
    a, s = column(alpha, z), column(sigma, z)
    return self.precondition(net, z / a, (s / a).reshape(-1))

  def loss(self, net, x, noise, level_keys_B):
    """EDM's loss lambda(s) |D(x + s n; s) - x|^2 (Table 1's lambda), and 'mse' its unweighted mean of |D - x|^2."""
    s_B = jax.vmap(lambda k: dm.edm_training_sigmas(k, 1, self.p_mean, self.p_std)[0])(level_keys_B)
    denoised = self.precondition(net, x + column(s_B, x) * noise, s_B)
    per_example = dm.edm_loss(denoised, x, s_B, self.sigma_data)
    return jnp.mean(per_example), {"loss": jnp.mean(per_example), "mse": jnp.mean(dm.eps_mse(denoised, x))}


# The objectives' names, in the order error messages list them.
BY_OBJECTIVE: dict[str, type[Parametrisation]] = {"eps": EpsilonVP, "v": VelocityVP, "edm": EDM}
