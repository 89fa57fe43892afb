"""The diffusion family: DDPM (Ho et al. 2020), DDIM (Song et al. 2021) and EDM (Karras et al. 2022) on one core.

`Diffusion` is a frozen description of one model: its net, optimizer, the training objective and the sampler. Its
methods are pure functions of (state or params, data, key); the caller compiles them. The math lives in
`genjax.losses.diffusion` (schedules, losses, the bound), `genjax.losses.diffusion_sampling` (the samplers, each
one `lax.scan`) and `genjax.models.diffusion_param` (the objectives); the config seam in `diffusion_config`.

One denoiser, whatever the objective. Every model is used through `denoise(params, z, alpha, sigma) -> x_hat`,
the prediction of the data from z = alpha x + sigma eps at any (alpha, sigma) of the variance-preserving form, so
every sampler runs on every model. The objective ('eps', Ho et al.; 'v', Salimans & Ho 2022; 'edm', Karras et
al.'s preconditioning) is a parametrisation object of `genjax.models.diffusion_param`, which holds its training
loss, its noise input, how the net's output becomes x_hat and its levels; the model picks it in one place
(`parametrisation`). The samplers ('ddim' with `eta`, 'ancestral', 'heun' with `churn`) run on `sample_steps` of
those levels: Heun on EDM's, the others on the VP form's.

Classes (`num_classes` > 0): the net embeds the label beside the noise level, with a null label that training
puts in place of `label_dropout` of the labels; sampling guides with classifier-free guidance (Ho & Salimans
2022) at `guidance` within (`guidance_lo`, `guidance_hi`] of sigma / alpha (Kynkäänniemi et al. 2024), the
conditional and null-label passes in one batch. Inpainting (`inpaint`, any mask): RePaint or the replacement
method (`genjax.losses.diffusion_sampling`).

Weights: the trained weights and their EMA (`genjax.losses.ema`'s warm-up); sampling and evaluation use the EMA
('ema', the default) or the trained weights ('raw'). The nets have no BatchNorm: the EMA needs no statistics.

Evaluation: the variational bound in bits per dimension of the model run on `eval_steps` levels (the prior term,
the diffusion terms as Gaussian KLs, and Ho et al.'s discretised decoder at the first level), an upper bound of
that model's negative log-likelihood on 8-bit data; pictures of the samples, the denoising trajectory of a few of
them and the predictions of the data along it.

Ranges: uint8 images <-> [-1, 1] (`scale`, `unscale`: the decoder's grid of 256 levels 2/255 apart); points as
they are. Devices (`genjax.parallel`): each example's level, noise, dropout and dropped label come from the key of
its global index, so the numbers do not depend on the device count; gradients and metrics average over pmap's axis.
"""

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from genjax import options, parallel
from genjax import random as grandom
from genjax.losses import diffusion as dm
from genjax.losses import diffusion_sampling as sampling
from genjax.models import diffusion_param as dp
from genjax.models import family, update

OBJECTIVES = tuple(dp.BY_OBJECTIVE)
SCHEDULES = dp.SCHEDULES
SAMPLERS = ("ddim", "ancestral", "heun")
INPAINT_METHODS = ("repaint", "replacement")
TRAJECTORY_ROWS, TRAJECTORY_COLS = 8, 10
vp_schedule = dp.vp_schedule  # the schedules' (alpha, sigma), read here by the tests


class DiffusionState(struct.PyTreeNode):
  """Everything a diffusion training step reads and writes."""

  step: jax.Array  # int32 scalar: number of updates applied
  params: Any  # the net's trained weights
  opt_state: Any
  ema_params: Any  # exponential moving average of params, which sampling uses


@dataclasses.dataclass(frozen=True)
class Diffusion:
  """A diffusion model; see the module docstring.

  Attributes:
    net: module mapping (x_B..., c_B, train) to an output shaped like x (a
      U-Net for images, an MLP for points); c is the noise input.
    optimizer: the optax transformation of the loss's gradient.
    data_shape: shape of one example: (H, W, C) images or (2,) points.
    objective ... ema: the options of the config's 'diffusion' block, each declared (and commented) on its
      field below; `ema` is the EMA of the weights, which samples (`genjax.models.update.EMA`).
    points: the examples are float32 points, not uint8 images.
    axis_name: pmap's device axis; None under jit or on one device.
  """

  net: nn.Module
  optimizer: optax.GradientTransformation
  data_shape: tuple[int, ...]
  # The options of the config's 'diffusion' block, declared once (genjax.options). Free: the samplers' and the
  # bound's levels, which a resume or sample.py may change; training draws its own (the schedule's steps, or
  # EDM's p_mean, p_std).
  objective: str = options.choice("eps", OBJECTIVES, "'eps' (DDPM), 'v' (Salimans & Ho) or 'edm' (Karras et al.'s"
                                  " preconditioned loss)").field()
  schedule: str = options.choice("linear", SCHEDULES, "eps/v: 'linear' (DDPM's betas 1e-4..0.02 at T = 1000) or"
                                 " 'cosine' (Nichol & Dhariwal)").field()
  num_timesteps: int = options.count(1000, "eps/v: T of the schedule", most=100_000).field()  # DDPM's 1,000; 100x
  linear_per_1000: bool = options.flag(True, "linear: its betas scaled by 1000 / T, so that any T ends near pure"
                                       " noise (runs before config version 5: unscaled)", added=(5, False)).field()
  sampler: str = options.choice("ddim", SAMPLERS, "'ddim', 'ancestral' (DDPM) or 'heun' (EDM's; 2 N - 1 net"
                                " evaluations)", free=True).field()
  # Each level is a net evaluation per sample (DDPM samples with 1,000).
  sample_steps: int = options.count(50, "the sampler's noise levels N (>= 2)", most=10_000, free=True).field()
  eta: float = options.number(0.0, "DDIM's eta (0: deterministic, 1: the ancestral sampler's variance)", ">= 0",
                              free=True).field()
  churn: float = options.number(0.0, "Heun's S_churn (0: deterministic)", ">= 0", free=True).field()
  sigma_min: float = options.number(0.002, "EDM's lowest noise level (heun; every sampler of 'edm')", "> 0",
                                    free=True).field()
  sigma_max: float = options.number(80.0, "EDM's highest noise level (> sigma_min)", "> 0", free=True).field()
  rho: float = options.number(7.0, "EDM's spacing of the levels", "> 0", free=True).field()
  sigma_data: float = options.number(dm.EDM_SIGMA_DATA, "edm: the data's standard deviation in the"
                                     " preconditioning (0.5: images in [-1, 1])", "> 0").field()
  p_mean: float = options.number(dm.EDM_P_MEAN, "edm: mean of ln(sigma) of the training levels (EDM's -1.2)",
                                 "any").field()
  p_std: float = options.number(dm.EDM_P_STD, "edm: standard deviation of ln(sigma) of the training levels"
                                " (EDM's 1.2)", "> 0").field()
  clip_denoised: bool = options.flag(True, "clip predicted images to [-1, 1] while sampling", free=True).field()
  eval_steps: int = options.count(100, "levels of the model whose bound (bits/dim) the evaluation reports (>= 2)",
                                  most=10_000, free=True).field()
  ema: update.EMA = update.ema_options(0.9999).field()
  label_dropout: float = options.number(0.1, "conditional: the share of training labels replaced by the null"
                                        " label (Ho & Salimans' p_uncond)", "[0, 1)", added=(2, 0.1)).field()
  guidance: float = options.number(1.0, "conditional: classifier-free guidance scale s, sampling x_u + s (x_c -"
                                   " x_u) (1: the conditional model, 0: the unconditional one; Ho & Salimans' w"
                                   " is s - 1)", ">= 0", free=True, added=(2, 1.0), flag="guidance").field()
  guidance_lo: float = options.number(0.0, "conditional: guidance only at sigma / alpha above this (Kynkäänniemi"
                                      " et al.'s interval)", ">= 0", free=True, added=(2, 0.0),
                                      flag="guidance_lo").field()
  guidance_hi: float | None = options.number(None, "conditional: ... and at or below this; None: no upper limit",
                                             "> 0", optional=True, free=True, added=(2, None),
                                             flag="guidance_hi").field()
  inpaint_method: str = options.choice("repaint", INPAINT_METHODS, "'repaint' (Lugmayr et al. 2022: resampling"
                                       " jumps) or 'replacement' (score_sde's: the known region noised afresh)",
                                       free=True, added=(2, "repaint")).field()
  inpaint_steps: int = options.count(50, "inpainting's levels N (>= 2)", most=10_000, free=True, added=(2, 50)).field()
  jump_length: int = options.count(5, "repaint: levels each jump goes back up", most=10_000, free=True,
                                   added=(2, 5)).field()
  jump_count: int = options.count(5, "repaint: passes over each jump's levels (1: the replacement method with"
                                  " DDPM's steps)", most=1_000, free=True, added=(2, 5)).field()
  num_classes: int = family.num_classes_option(block="model").field()
  points: bool = False
  axis_name: str | None = None

  def __post_init__(self):
    for field, allowed in (("objective", OBJECTIVES), ("schedule", SCHEDULES), ("sampler", SAMPLERS)):
      if getattr(self, field) not in allowed:
        raise ValueError(f"{field}: unknown {getattr(self, field)!r}; allowed: {', '.join(allowed)}")

  @functools.cached_property
  def parametrisation(self) -> dp.Parametrisation:
    """The objective's math, chosen here and nowhere else; its fields are this model's of the same names."""
    kind = dp.BY_OBJECTIVE[self.objective]
    return kind(**{f.name: getattr(self, f.name) for f in dataclasses.fields(kind)})

  # ----------------------------------------------------------------- ranges

  def scale(self, data: jax.Array) -> jax.Array:
    """uint8 0..255 -> float32 [-1, 1]; points unchanged."""
    return family.to_signed_unit(data, self.points)

  def unscale(self, x: jax.Array) -> jax.Array:
    """[-1, 1] -> uint8 0..255 (clipped, rounded); points unchanged."""
    return family.from_signed_unit(x, self.points)

  # ------------------------------------------------------------ the denoiser

  @property
  def vp(self) -> bool:
    """Whether the net was trained on a discrete VP schedule ('eps', 'v')."""
    return self.parametrisation.vp

  def noise_input(self, alpha_B: jax.Array, sigma_B: jax.Array) -> jax.Array:
    """The net's noise input c_B at (alpha, sigma): the (fractional) step index, or EDM's 1000 ln(s) / 4."""
    return self.parametrisation.noise_input(alpha_B, sigma_B)

  def apply_net(self, params, x, c_B: jax.Array, dropout_key: jax.Array | None = None,
                labels_B: jax.Array | None = None) -> jax.Array:
    """The net on x at noise inputs c_B (and labels, the null label included, of a conditional net); with
    `dropout_key` (keys [B]) in training mode.

    Each example's dropout is drawn from its own key (the net runs vmapped over the examples), so it does
    not depend on the batch or device it is in. That costs: 22% of a training step of the mnist5k U-Net on
    CPU, measured against one draw for the whole batch, so a net without dropout runs unvmapped.
    """
    labels = {} if labels_B is None else {"labels_B": labels_B}
    if dropout_key is None or not getattr(self.net, "dropout", 0.0):
      return self.net.apply({"params": params}, x, c_B, train=dropout_key is not None, **labels)

    def one(x_i, c_i, key_i, labels_i):
      return self.net.apply({"params": params}, x_i[None], c_i[None], train=True, rngs={"dropout": key_i},
                            **jax.tree.map(lambda v: v[None], labels_i))[0]

    return jax.vmap(one)(x, c_B, dropout_key, labels)

  def denoise(self, params, z, alpha, sigma, labels_B: jax.Array | None = None) -> jax.Array:
    """x_hat(z) at z = alpha x + sigma eps (scalars or [B]), from the net in inference mode; a conditional
    model's given labels_B (`num_classes`: the null label, the unconditional prediction)."""
    net = functools.partial(self.apply_net, params, labels_B=labels_B)
    return self.parametrisation.denoise(net, z, alpha, sigma)

  def guided_denoiser(self, params, labels_B: jax.Array, scale, interval):
    """The classifier-free guided `denoise(z, alpha, sigma)` of a conditional model at labels_B: the
    conditional and the unconditional (null label) predictions in one batch of 2B, mixed by
    `genjax.losses.diffusion_sampling.guide` (scale and interval may be traced: one compile serves all)."""
    null_B = jnp.full_like(labels_B, self.num_classes)

    def denoise(z, alpha, sigma):
      b = z.shape[0]
      both = lambda v: jnp.tile(jnp.broadcast_to(jnp.asarray(v, jnp.float32), (b,)), 2)  # noqa: E731
      x_both = self.denoise(params, jnp.concatenate([z, z]), both(alpha), both(sigma),
                            jnp.concatenate([labels_B, null_B]))
      return sampling.guide(x_both[:b], x_both[b:], sigma / alpha, scale, interval)
    return denoise

  def sampling_denoiser(self, params, labels_B: jax.Array | None = None, guidance=None, interval=None):
    """`denoise` as the samplers call it, clipped to [-1, 1] for images when `clip_denoised`: unconditional, or
    at labels_B with classifier-free guidance at `guidance` (default: the model's) within `interval` = (lo, hi)
    of sigma / alpha (default: the model's). At the model's scale of exactly 1 the unconditional pass is
    skipped (the guided prediction is the conditional one)."""
    if labels_B is None:
      predict = functools.partial(self.denoise, params)
    elif guidance is None and self.guidance == 1.0:
      predict = functools.partial(self.denoise, params, labels_B=labels_B)
    else:
      if interval is None:
        interval = (self.guidance_lo, float("inf") if self.guidance_hi is None else self.guidance_hi)
      predict = self.guided_denoiser(params, labels_B, self.guidance if guidance is None else guidance, interval)

    def denoise(z, alpha, sigma):
      x_hat = predict(z, alpha, sigma)
      return jnp.clip(x_hat, -1.0, 1.0) if self.clip_denoised and not self.points else x_hat
    return denoise

  # -------------------------------------------------------------- training

  def init(self, key: jax.Array) -> DiffusionState:
    """Fresh weights and optimizer state; the EMA starts at the weights."""
    x = jnp.zeros((1, *self.data_shape), jnp.float32)
    labels = {"labels_B": jnp.zeros((1,), jnp.int32)} if self.num_classes else {}
    params = self.net.init(key, x, jnp.zeros((1,), jnp.float32), train=False, **labels)["params"]
    return DiffusionState(step=jnp.zeros((), jnp.int32), params=params, opt_state=self.optimizer.init(params),
                          ema_params=jax.tree.map(jnp.copy, params))

  def loss(self, params, x, key: jax.Array, labels_B: jax.Array | None = None) -> tuple[jax.Array, dict]:
    """The objective's loss over the batch; example i draws (level, noise, dropout) from split(its key, 3), and a
    conditional model's whether its label is dropped (replaced by the null label) from fold_in(its key, 3)."""
    batch = x.shape[0]
    keys_B = grandom.example_keys(key, batch, parallel.batch_offset(batch, self.axis_name))
    keys_Bx3 = jax.vmap(lambda k: jax.random.split(k, 3))(keys_B)
    noise = jax.vmap(lambda k: jax.random.normal(k, x.shape[1:]))(keys_Bx3[:, 1])
    if labels_B is not None:
      labels_B = self.training_labels(labels_B, keys_B)
    net = functools.partial(self.apply_net, params, dropout_key=keys_Bx3[:, 2], labels_B=labels_B)
    return self.parametrisation.loss(net, x, noise, keys_Bx3[:, 0])

  def training_labels(self, labels_B: jax.Array, keys_B: jax.Array) -> jax.Array:
    """The labels the net trains on: each replaced by the null label (`num_classes`) with probability
    `label_dropout`, drawn from fold_in(its example's key, 3), so that the same examples are dropped on any
    device count."""
    dropped = jax.vmap(lambda k: jax.random.bernoulli(jax.random.fold_in(k, 3), self.label_dropout))(keys_B)
    return jnp.where(dropped, self.num_classes, jnp.asarray(labels_B, jnp.int32))

  def train_step(self, state: DiffusionState, batch: dict, key: jax.Array) -> tuple[DiffusionState, dict]:
    """One optimizer step on the loss of `batch['image']` (given `batch['label']` where conditional), then the
    EMA."""
    new = update.apply_gradients(self.loss, state.params, state.opt_state, self.optimizer, self.axis_name,
                                 self.scale(batch["image"]), key, batch["label"] if self.num_classes else None)
    ema_params = self.ema(state.ema_params, new.params, state.step + 1, new.skipped)  # n: updates so far, this one
    metrics = {**parallel.mean_over(new.aux, self.axis_name), "grad_norm": new.grad_norm}
    return state.replace(step=state.step + 1, params=new.params, opt_state=new.opt_state,
                         ema_params=ema_params), metrics

  def eval_params(self, state: DiffusionState, key: jax.Array, weights: str = "ema"):
    """The weights that sample and evaluate: 'ema' (default) or 'raw' (no key needed: no statistics)."""
    del key
    return update.pick_weights(weights, lambda: state.params, lambda: state.ema_params)

  # -------------------------------------------------------------- sampling

  def sample(self, params, key: jax.Array, n: int, labels: jax.Array | None = None, sampler: str | None = None,
             steps: int | None = None, path: bool = False, guidance=None, interval=None,
             noise: jax.Array | None = None):
    """n examples in the model's range from `sampler` (default: the model's) on `steps` levels; a conditional
    model's of `labels` (uniform from `key` where None; an unconditional model ignores them), guided at
    `guidance` within `interval` (defaults: the model's; arrays, so that changing them does not recompile).

    With `path`, also (states, predictions) along the way, each [steps, n, ...] noisiest first, the states
    in the VP form's scale. `noise`: the start [n, ...] instead of a draw from `key` (the class grid's rows start
    from the same noise).
    """
    sampler = sampler or self.sampler
    steps = steps or self.sample_steps
    if sampler not in SAMPLERS:
      raise ValueError(f"sampler: unknown {sampler!r}; allowed: {', '.join(SAMPLERS)}")
    labels = self._labels(key, n, labels)
    key = jax.random.fold_in(key, 1) if self.num_classes else key
    start_key, loop_key = jax.random.split(key)
    noise = jax.random.normal(start_key, (n, *self.data_shape)) if noise is None else noise
    denoise = self.sampling_denoiser(params, labels, guidance, interval)
    if sampler == "heun":
      return sampling.heun_sample_vp(denoise, noise, self.parametrisation.edm_levels(steps), loop_key,
                                     s_churn=self.churn, path=path)
    alphas, sigmas = self.parametrisation.vp_levels(steps)
    if sampler == "ddim":
      return sampling.ddim_sample(denoise, noise, alphas, sigmas, loop_key, eta=self.eta, path=path)
    return sampling.ancestral_sample(denoise, noise, alphas, sigmas, loop_key, path=path)

  def inpaint(self, params, x, known, key: jax.Array, labels: jax.Array | None = None,
              method: str | None = None) -> jax.Array:
    """x (the model's range) with its unknown pixels (`known` False, bool like x) drawn by `method` (default:
    the model's `inpaint_method`) on `inpaint_steps` levels, of `labels` where conditional (uniform from `key`
    where None), guided as `sample`; the known pixels are x's, bit for bit. Any mask: every pixel sees every
    other through the denoiser."""
    method = method or self.inpaint_method
    if method not in INPAINT_METHODS:
      raise ValueError(f"method: unknown {method!r}; allowed: {', '.join(INPAINT_METHODS)}")
    labels = self._labels(key, x.shape[0], labels)
    key = jax.random.fold_in(key, 1) if self.num_classes else key
    start_key, loop_key = jax.random.split(key)
    z_T = jax.random.normal(start_key, x.shape)
    denoise = self.sampling_denoiser(params, labels)
    alphas, sigmas = self.parametrisation.vp_levels(self.inpaint_steps)
    if method == "replacement":
      return sampling.inpaint_replacement(denoise, x, known, z_T, alphas, sigmas, loop_key)
    return sampling.inpaint_repaint(denoise, x, known, z_T, alphas, sigmas, loop_key, self.jump_length,
                                    self.jump_count)

  def inpaint_held_out(self, params, image_BxHxWxC: jax.Array, known, key: jax.Array, offset: int = 0,
                       labels: jax.Array | None = None):
    """(held-out images in the model's range, the same inpainted where `known` is False): what
    genjax.evaluation.inpainting_numbers scores, drawn from fold_in(key, offset)."""
    x = self.scale(image_BxHxWxC)
    return x, self.inpaint(params, x, known, jax.random.fold_in(key, offset), labels)

  def _labels(self, key: jax.Array, n: int, labels: jax.Array | None) -> jax.Array | None:
    """A conditional model's labels, uniform from fold_in(key, 0) where None; None for an unconditional one."""
    if not self.num_classes:
      return None
    return family.labels_or_uniform(jax.random.fold_in(key, 0), n, self.num_classes, labels)

  # ------------------------------------------------------------ evaluation

  def evaluate(self, params, image_BxHxWxC: jax.Array, key: jax.Array, offset: int = 0,
               labels: jax.Array | None = None) -> dict[str, jax.Array]:
    """Per-example bits/dim of the variational bound of the model on `eval_steps` levels.

    -log p(x) <= L_N + sum_{i=2..N} L_{i-1} + L_0: the prior term KL(q(z_N | x) || N(0, I)), the diffusion
    terms (`genjax.losses.diffusion.diffusion_kl_terms`) and the discretised decoder -log p(x | z_1) with
    mean x_hat(z_1) and standard deviation sigma_1 / alpha_1 (Ho et al. 2020, eq. 5 and section 3.3). Each
    example's noise comes from the key of its global index offset + i. Points are continuous: their decoder
    is the density N(x; x_hat, (sigma_1 / alpha_1)^2), and their bound, of a density, can be negative. A
    conditional model's is the bound of -log p(x | label), from the conditional denoiser (no guidance).
    """
    if self.num_classes and labels is None:
      raise ValueError("labels: a conditional model's bound is of each example given its class")
    x = self.scale(image_BxHxWxC)
    alphas, sigmas = (jnp.asarray(v, jnp.float32) for v in self.parametrisation.vp_levels(self.eval_steps))
    labels = {"labels_i": jnp.asarray(labels, jnp.int32)} if self.num_classes else {}

    def nats(x_i, key_i, labels_i=None):
      x_1 = x_i[None]
      denoise = functools.partial(self.denoise, params, labels_B=None if labels_i is None else labels_i[None])
      terms_key, decoder_key = jax.random.split(key_i)
      z_1 = dm.diffuse(x_1, alphas[0], sigmas[0], jax.random.normal(decoder_key, x_1.shape))
      log_scale = jnp.log(sigmas[0] / alphas[0])
      x_hat = denoise(z_1, alphas[0], sigmas[0])
      if self.points:  # a density on R^D: the decoder is the Gaussian itself
        decoder = 0.5 * jnp.sum(jnp.square((x_1 - x_hat) / jnp.exp(log_scale)) + 2.0 * log_scale + jnp.log(2 * jnp.pi))
      else:
        decoder = -jnp.sum(dm.discretized_gaussian_log_likelihood(x_1, x_hat, log_scale))
      terms = dm.diffusion_kl_terms(denoise, x_1, alphas, sigmas, terms_key)[0]
      return dm.prior_kl(x_1, alphas[-1], sigmas[-1])[0] + terms + decoder

    total = jax.vmap(nats)(x, grandom.example_keys(key, x.shape[0], offset), **labels)
    return {"bpd": dm.nats_to_bits_per_dim(total, int(np.prod(self.data_shape)))}

  def visuals(self, params, key: jax.Array, image_NxHxWxC: jax.Array,
              labels: jax.Array | None = None) -> dict[str, jax.Array]:
    """Grids as uint8 [rows, cols, H, W, C]: 64 samples; the denoising trajectory of 8 samples and the
    predictions of the data along it, each at 10 steps from the noisiest to the last; a conditional model's of
    the pictured examples' `labels` (repeated), and a row of 8 samples per class, each row from the same 8 starts.
    {} for points (the loop draws their scatter)."""
    del image_NxHxWxC
    if self.points:
      return {}
    if self.num_classes and labels is None:
      raise ValueError("labels: a conditional model's pictures are of the pictured examples' classes")
    sample_key, path_key, class_key = jax.random.split(key, 3)
    shape = self.data_shape
    take = lambda n: None if not self.num_classes else jnp.resize(jnp.asarray(labels, jnp.int32), (n,))  # noqa: E731
    grids = {"samples": self.unscale(self.sample(params, sample_key, 64, take(64))).reshape(8, 8, *shape)}
    _, (states, predictions) = self.sample(params, path_key, TRAJECTORY_ROWS, take(TRAJECTORY_ROWS), path=True)
    cols = np.unique(np.round(np.linspace(0, states.shape[0] - 1, TRAJECTORY_COLS)).astype(np.int64))
    grids["trajectory"] = self.unscale(jnp.swapaxes(states[cols], 0, 1))
    grids["predictions"] = self.unscale(jnp.swapaxes(predictions[cols], 0, 1))
    if self.num_classes:
      # Row c is class c from the same 8 starts: a column shows what the class changes.
      start = jax.random.normal(jax.random.fold_in(class_key, 0), (8, *shape))
      rows = self.sample(params, class_key, 8 * self.num_classes, jnp.repeat(jnp.arange(self.num_classes), 8),
                         noise=jnp.tile(start, (self.num_classes,) + (1,) * len(shape)))
      grids["samples_by_class"] = self.unscale(rows).reshape(self.num_classes, 8, *shape)
    return grids
