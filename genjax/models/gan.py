"""The GAN family (Goodfellow et al. 2014): one compiled step of D updates, then a G update.

`GAN` is a frozen description of one model: its two nets, two optimizers (separate learning rates give TTUR,
Heusel et al. 2017), the loss pair of `genjax.losses.gan.LOSSES`, the gradient penalties' weights, and the EMA of
the generator's weights (sampling uses the EMA weights, Yazici et al. 2019). Its methods are pure; the caller
compiles them, e.g. `jax.jit(gan.train_step, donate_argnums=0)`.

BatchNorm policy. D's running statistics change only in the D update, G's only in the G update:
  * D update: G generates in training mode (batch statistics) and its new running statistics are discarded; D
    scores the real batch, then the fake batch, in two calls as the PyTorch DCGAN example does, so each batch is
    normalised by its own statistics and D's running averages take both.
  * G update: D runs in training mode and its new statistics are discarded.
Gradient penalties differentiate D with its running statistics held fixed (`use_running_average`), the only
BatchNorm under which each example's score depends on that example alone; the DCGAN configs use them with a
'layer' or 'none' discriminator, where the question does not arise.

Ranges: images arrive as uint8 0..255 and `scale` maps them to [-1, 1], the range of the tanh generator;
`unscale` maps back. Points of a 2-D mixture (`points` set) are used as they are.

PacGAN (Lin et al. 2018): with `pack` = m > 1, D scores m examples at once, concatenated along their last axis
(channels of an image, coordinates of a point); the batch must divide by m. DiffAugment (Zhao et al. 2020) or ADA
(Karras et al. 2020, its p in `GANState.ada`): D scores reals and fakes after the same random transforms.

Devices (`genjax.parallel`): under jit the step sees the global batch. Under pmap (`axis_name` set) each device sees its
rows; gradients and metrics are averaged over the axis, BatchNorm statistics are the global batch's, each example's
latent code is its row of the global batch's draw, and each example's WGAN-GP interpolation weight and DiffAugment
transforms are drawn with fold_in(key, its global index), so the numbers do not depend on the device count.

Class-conditional (`num_classes` > 0): class-conditional BatchNorm in G (BigGAN) or a label embedding beside z (MLP),
and a projection D (Miyato & Koyama 2018). D scores reals with their labels; a step's fakes (D and G updates) are
generated for the real batch's labels, as StyleGAN2-ADA's: each class has as many fakes as reals, in the data's class
frequencies (as the loop's FID samples); the WGAN-GP interpolate of real_i and fake_i is of one class, y_i, as every
term's example i (R1, R2); no key is drawn for labels, so the unconditional step is as it was. A projection scores one
class per input, so a conditional GAN packs 1."""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from genjax import ada as adaptive
from genjax import augment
from genjax import config_checks as checks
from genjax import options, parallel
from genjax import random as grandom
from genjax.losses import gan as gan_losses
from genjax.losses.gan import slerp
from genjax.models import family, update


class GANState(struct.PyTreeNode):
  """Everything a GAN training step reads and writes."""

  step: jax.Array  # int32 scalar: number of generator updates applied
  g_params: Any
  d_params: Any
  g_stats: Any  # G's BatchNorm running statistics; {} without BatchNorm
  d_stats: Any  # D's BatchNorm running statistics; {} without BatchNorm
  g_opt_state: Any
  d_opt_state: Any
  ema_params: Any  # exponential moving average of g_params
  ada: Any = None  # ADA's state (genjax.ada.ADA); None without ADA, so that other checkpoints are unchanged

  @property
  def ada_p(self) -> jax.Array | None:
    return None if self.ada is None else self.ada["p"]


def _variables(params, stats) -> dict:
  return {"params": params, "batch_stats": stats} if stats else {"params": params}


@dataclasses.dataclass(frozen=True)
class GAN:
  """A GAN with a standard-normal latent prior.

  Attributes:
    generator: module mapping (z_BxZ, train) to examples shaped `data_shape`.
    discriminator: module mapping (x, train) to logits [B]; with `pack` > 1 it sees [B / pack, ..., pack * C].
    g_optimizer, d_optimizer: optax transformations of each net's gradient (clipping, if any, is part of them).
    data_shape: shape of one example: (H, W, C) images or (2,) points.
    latent_dim ... pack: the options, each declared (and commented) on its field below; `ema` is the EMA of
      G's weights, ema <- d_n ema + (1 - d_n) params after G update n (`genjax.models.update.EMA`).
    standing_latents: latents of the EMA generator's BatchNorm statistics.
    points: the examples are float32 points (a 2-D mixture), used as they are, rather than uint8 images.
    axis_name: pmap's device axis (the nets' BatchNorm must use the same); None under jit or on one device.
  """

  generator: nn.Module
  discriminator: nn.Module
  g_optimizer: optax.GradientTransformation
  d_optimizer: optax.GradientTransformation
  data_shape: tuple[int, ...]
  # The options of the config's 'gan' block (and two of 'model'), declared once (genjax.options).
  latent_dim: int = options.count(100, "Z, size of the latent code", most=checks.MAX_WIDTH, block="model").field()
  loss: str = options.choice("non_saturating", tuple(gan_losses.LOSSES),
                             "'minimax', 'non_saturating', 'hinge', 'wasserstein' or 'least_squares'"
                             " (genjax.losses.gan.LOSSES)").field()
  # n_critic: WGAN's 5; each one a D update per G update.
  d_steps: int = options.count(1, "discriminator updates per generator update (n_critic)", most=100).field()
  gp_weight: float = options.number(0.0, "lambda of the WGAN-GP penalty on interpolates (10 in the paper)",
                                    ">= 0").field()
  r1_gamma: float = options.number(0.0, "gamma of the R1 penalty on real data, added as gamma/2 * R1",
                                   ">= 0").field()
  r2_gamma: float = options.number(0.0, "gamma of the R2 penalty on generated data, added as gamma/2 * R2",
                                   ">= 0").field()
  # The EMA of G's weights; a short run that still improves fast wants a smaller ema_rampup
  # (configs/dcgan_mnist5k.py: 0.005, measured by benchmarks/ema_gan.py). Runs before the warm-up rules
  # existed used the constant decay.
  ema: update.EMA = update.ema_options(0.999, added={"warmup": (1, "none"), "rampup": (1, 0.05)}).field()
  standing_latents: int = 1024
  # Bounded by batch_size (at most 2**20): a pack that divides it is at most it (validate_config).
  pack: int = options.count(1, "PacGAN's m: examples D scores together (must divide batch_size)",
                            block="model").field()
  num_classes: int = family.num_classes_option(block="model").field()
  # Augmentation of what D sees (genjax.augment); runs before they existed had none.
  diffaugment: str = augment.diffaugment_option().field()
  ada: adaptive.ADA = adaptive.ada_options().field()
  points: bool = False
  axis_name: str | None = None

  def __post_init__(self):
    if self.loss not in gan_losses.LOSSES:
      raise ValueError(f"loss: unknown {self.loss!r}; allowed: {', '.join(gan_losses.LOSSES)}")
    if self.d_steps < 1 or self.pack < 1:
      raise ValueError(f"d_steps and pack must be >= 1, got {self.d_steps} and {self.pack}")
    if {getattr(net, "num_classes", 0) for net in (self.generator, self.discriminator)} != {self.num_classes}:
      raise ValueError(f"num_classes: G's and D's must be the GAN's, {self.num_classes}")
    if not augment.is_policy(self.diffaugment):
      raise ValueError(augment.policy_error("diffaugment", self.diffaugment))
    self.ada.check_gan(self.loss, self.diffaugment)
    if self.num_classes and self.pack > 1:
      raise ValueError(f"pack: a projection D scores one class per input; a conditional GAN packs 1, got {self.pack}")

  # ----------------------------------------------------------------- ranges

  def scale(self, data: jax.Array) -> jax.Array:
    """uint8 0..255 -> float32 [-1, 1]; points unchanged."""
    return family.to_signed_unit(data, self.points)

  def unscale(self, x: jax.Array) -> jax.Array:
    """[-1, 1] -> uint8 0..255 (clipped, rounded); points unchanged."""
    return family.from_signed_unit(x, self.points)

  def pack_examples(self, x_BxD: jax.Array) -> jax.Array:
    """[B, ..., C] -> [B / pack, ..., pack * C]: consecutive examples side by side (gan_losses.pack)."""
    return gan_losses.pack(x_BxD, self.pack)

  def unpack_examples(self, packed: jax.Array) -> jax.Array:
    """The inverse of `pack_examples`."""
    return gan_losses.unpack(packed, self.pack)

  def d_input(self, x_BxD: jax.Array, aug_key: jax.Array, ada_p: jax.Array | None = None) -> jax.Array:
    """What D scores of examples x: DiffAugment's transforms (`diffaugment`) or ADA's at probability `ada_p`,
    example i drawing from fold_in(aug_key, its global index), then packed."""
    if (self.diffaugment or ada_p is not None) and not self.points:
      keys_B = grandom.example_keys(aug_key, x_BxD.shape[0], parallel.batch_offset(x_BxD.shape[0], self.axis_name))
      x_BxD = (adaptive.ada_augment(keys_B, x_BxD, ada_p) if ada_p is not None
               else augment.diffaugment(keys_B, x_BxD, tuple(self.diffaugment.split(","))))
    return self.pack_examples(x_BxD)

  # ------------------------------------------------------------- the nets

  def latents(self, key: jax.Array, n: int, truncation: float | None = None) -> jax.Array:
    """n codes z ~ N(0, I); with `truncation` t, each coordinate from N(0, 1) cut to [-t, t] (BigGAN)."""
    if truncation is None:
      return jax.random.normal(key, (n, self.latent_dim))
    return jax.random.truncated_normal(key, -truncation, truncation, (n, self.latent_dim))

  def batch_latents(self, key: jax.Array, batch_size: int) -> jax.Array:
    """The codes of a training batch: this device's rows of the global batch's `latents(key, .)`."""
    return parallel.global_rows(self.latents, key, batch_size, self.axis_name)

  def _apply(self, net: nn.Module, params, stats, x: jax.Array, train: bool, labels_B) -> tuple[jax.Array, Any]:
    """net(x), of classes `labels_B` where conditional, and its statistics after the call (unchanged unless `train`)."""
    labels = {"labels_B": labels_B} if self.num_classes else {}  # an unconditional GAN ignores labels
    if train and stats:
      out, updates = net.apply(_variables(params, stats), x, train=True, mutable=["batch_stats"], **labels)
      return out, updates["batch_stats"]
    return net.apply(_variables(params, stats), x, train=train, **labels), stats

  def generate(self, params, stats, z_BxZ: jax.Array, train: bool, labels_B=None) -> tuple[jax.Array, Any]:
    """G(z) (of classes `labels_B`) and G's running statistics after the call (unchanged unless `train`)."""
    return self._apply(self.generator, params, stats, z_BxZ, train, labels_B)

  def discriminate(self, params, stats, packed: jax.Array, train: bool, labels_B=None) -> tuple[jax.Array, Any]:
    """D's logits of already packed inputs (of classes `labels_B`) and its statistics after the call."""
    return self._apply(self.discriminator, params, stats, packed, train, labels_B)

  def standing_stats(self, params, stats, key: jax.Array, n: int):
    """G's BatchNorm statistics of its own activations on n latents from `key`, with weights `params`.

    G runs in training mode on one batch of n codes, with its running averages' decay set to 0, so that each
    layer's statistics are exactly the batch's (each layer normalised by the statistics of the layers before it,
    as training mode does), on this device alone ("standing statistics", Brock et al. 2019). `stats` gives only
    the structure (G's running statistics); {} for a generator without BatchNorm. A conditional G's statistics,
    shared by its classes, are of classes and codes drawn as `sample(params, key, n)` draws them (uniformly).
    """
    if not stats:
      return {}
    label_key, key = jax.random.split(key) if self.num_classes else (None, key)  # the classes' (as `sample`'s)
    labels_B = family.labels_or_uniform(label_key, n, self.num_classes, None) if self.num_classes else None
    own = self.generator.clone(bn_momentum=0.0, axis_name=None)
    return self._apply(own, params, stats, self.latents(key, n), True, labels_B)[1]

  def init(self, key: jax.Array) -> GANState:
    """Fresh weights, statistics and optimizer states; the EMA starts at G's weights."""
    g_key, d_key = jax.random.split(key)
    labels = {"labels_B": jnp.zeros((1,), jnp.int32)} if self.num_classes else {}  # (pack is 1 then)
    g_vars = self.generator.init(g_key, jnp.zeros((1, self.latent_dim), jnp.float32), train=False, **labels)
    x = self.pack_examples(jnp.zeros((self.pack, *self.data_shape), jnp.float32))
    d_vars = self.discriminator.init(d_key, x, train=False, **labels)
    g_params, d_params = g_vars["params"], d_vars["params"]
    return GANState(
        step=jnp.zeros((), jnp.int32), g_params=g_params, d_params=d_params,
        g_stats=g_vars.get("batch_stats", {}), d_stats=d_vars.get("batch_stats", {}),
        g_opt_state=self.g_optimizer.init(g_params), d_opt_state=self.d_optimizer.init(d_params),
        ema_params=jax.tree.map(jnp.copy, g_params), ada=self.ada.init())

  # -------------------------------------------------------------- training

  def discriminator_loss(self, d_params, d_stats, real: jax.Array, fake: jax.Array, key: jax.Array,
                         labels_B: jax.Array | None = None, ada_p=None) -> tuple[jax.Array, tuple[Any, dict]]:
    """D's loss plus its penalties, each example scored with its class labels_B[i] (real_i's, fake_i's), D's
    new statistics and the parts as metrics. With DiffAugment, D scores augmented reals and fakes, and each
    penalty differentiates through the augmentation with respect to the images before it (as DiffAugment's and
    StyleGAN2-ADA's R1)."""
    d_loss_fn, _ = gan_losses.LOSSES[self.loss]
    real_key, fake_key = (jax.random.fold_in(jax.random.fold_in(key, augment.AUGMENT), i) for i in (0, 1))
    real_packed, fake_packed = self.pack_examples(real), self.pack_examples(fake)
    real_logits, new_stats = self.discriminate(d_params, d_stats, self.d_input(real, real_key, ada_p), train=True,
                                               labels_B=labels_B)
    fake_logits, new_stats = self.discriminate(d_params, new_stats, self.d_input(fake, fake_key, ada_p), train=True,
                                               labels_B=labels_B)
    loss = d_loss_fn(real_logits, fake_logits)
    metrics = {"d_loss": loss, "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
               "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits)), "d_real_sign": jnp.mean(jnp.sign(real_logits))}

    def critic_of(aug_key):
      def critic(x_packed):
        if self.diffaugment or ada_p is not None:
          x_packed = self.d_input(self.unpack_examples(x_packed), aug_key, ada_p)
        return self.discriminate(d_params, d_stats, x_packed, train=False, labels_B=labels_B)[0]
      return critic

    total = loss
    if self.gp_weight:
      # One key per (packed) example, from its global index: eps_i does not depend on the device count.
      keys_B = grandom.example_keys(key, real_packed.shape[0],
                                    parallel.batch_offset(real_packed.shape[0], self.axis_name))
      metrics["gp"] = gan_losses.gradient_penalty(critic_of(real_key), real_packed, fake_packed, keys_B)
      total = total + self.gp_weight * metrics["gp"]
    if self.r1_gamma:
      metrics["r1"] = gan_losses.r1_penalty(critic_of(real_key), real_packed)
      total = total + 0.5 * self.r1_gamma * metrics["r1"]
    if self.r2_gamma:
      metrics["r2"] = gan_losses.r2_penalty(critic_of(fake_key), fake_packed)
      total = total + 0.5 * self.r2_gamma * metrics["r2"]
    return total, (new_stats, metrics)

  def generator_loss(self, g_params, g_stats, d_params, d_stats, z_BxZ: jax.Array,
                     labels_B=None, aug_key: jax.Array | None = None, ada_p=None) -> tuple[jax.Array, Any]:
    """G's loss against D in training mode (D's statistics discarded), fakes of `labels_B` (augmented from
    `aug_key` with DiffAugment); G's new statistics."""
    _, g_loss_fn = gan_losses.LOSSES[self.loss]
    fake, new_g_stats = self.generate(g_params, g_stats, z_BxZ, train=True, labels_B=labels_B)
    fake_logits, _ = self.discriminate(d_params, d_stats, self.d_input(fake, aug_key, ada_p), train=True,
                                       labels_B=labels_B)
    return g_loss_fn(fake_logits), new_g_stats

  def discriminator_update(self, state: GANState, real: jax.Array, key: jax.Array,
                           labels_B=None) -> tuple[GANState, dict]:
    """`d_steps` D updates against fresh fakes; G's weights and statistics are untouched. Every D update sees the
    same real batch (one batch per step keeps the data position exact on resume). G generates in training mode
    and its new statistics are dropped. Metrics are the last update's. Up to 8 updates are a Python loop (XLA's
    cost analysis counts a loop's body once; even unrolled, a scan is a loop XLA schedules apart from G's)."""
    batch_size, ada_p = real.shape[0], state.ada_p

    def one_update(carry, step_key):
      d_params, d_stats, d_opt_state = carry
      z_key, penalty_key = jax.random.split(step_key)
      fake, _ = self.generate(state.g_params, state.g_stats, self.batch_latents(z_key, batch_size), train=True,
                              labels_B=labels_B)
      new = update.apply_gradients(self.discriminator_loss, d_params, d_opt_state, self.d_optimizer, self.axis_name,
                                   d_stats, real, jax.lax.stop_gradient(fake), penalty_key, labels_B, ada_p)
      d_stats = update.unless_skipped(new.skipped, new.aux[0], d_stats)  # (new statistics, metrics)
      return (new.params, d_stats, new.opt_state), {**new.aux[1], "d_grad_norm": new.grad_norm}

    carry, step_keys = (state.d_params, state.d_stats, state.d_opt_state), jax.random.split(key, self.d_steps)
    for step_key in step_keys if self.d_steps <= 8 else ():
      carry, metrics = one_update(carry, step_key)
    if self.d_steps > 8:
      carry, metrics = jax.lax.scan(one_update, carry, step_keys)
      metrics = jax.tree.map(lambda m: m[-1], metrics)
    d_params, d_stats, d_opt_state = carry
    return state.replace(d_params=d_params, d_stats=d_stats, d_opt_state=d_opt_state), metrics

  def generator_update(self, state: GANState, batch_size: int, key: jax.Array, labels_B=None) -> tuple[GANState, dict]:
    """One G update of `batch_size` fakes (of classes `labels_B`) against the current D, then the EMA; D is untouched.

    D scores the fakes in training mode and its new statistics are dropped.
    """
    new = update.apply_gradients(self.generator_loss, state.g_params, state.g_opt_state, self.g_optimizer,
                                 self.axis_name, state.g_stats, state.d_params, state.d_stats,
                                 self.batch_latents(key, batch_size), labels_B,
                                 jax.random.fold_in(key, augment.AUGMENT), state.ada_p)
    ema_params = self.ema(state.ema_params, new.params, state.step + 1, new.skipped)  # n: G updates so far, this one
    new_state = state.replace(step=state.step + 1, g_params=new.params, g_opt_state=new.opt_state,
                              ema_params=ema_params, g_stats=update.unless_skipped(new.skipped, new.aux, state.g_stats))
    return new_state, {"g_loss": new.loss, "g_grad_norm": new.grad_norm}

  def train_step(self, state: GANState, batch: dict, key: jax.Array) -> tuple[GANState, dict]:
    """`discriminator_update` on `batch['image']`, then `generator_update` against the new D.

    Metrics: d_loss (of the last D update, without penalties), g_loss, d_real = mean D(x) and d_fake = mean
    D(G(z)) (sigmoids of the logits), d_real_sign (mean sign of D's logits on reals), the penalties, both gradient
    norms, loss = d_loss + g_loss, whose finiteness the loop checks, and ADA's p. A conditional GAN's classes:
    `batch['label']`.
    """
    real = self.scale(batch["image"])
    labels_B = jnp.asarray(batch["label"], jnp.int32) if self.num_classes else None
    d_key, g_key = jax.random.split(key)
    state, metrics = self.discriminator_update(state, real, d_key, labels_B)
    state, g_metrics = self.generator_update(state, real.shape[0], g_key, labels_B)
    metrics = parallel.mean_over({**metrics, **g_metrics, "loss": metrics["d_loss"] + g_metrics["g_loss"]},
                                 self.axis_name)
    if state.ada is not None:  # the global batch's mean sign (the mean of the devices' equal batches)
      state = state.replace(ada=self.ada.update(state.ada, metrics["d_real_sign"], real.shape[0], self.axis_name))
    return state, {**metrics, **({"ada_p": state.ada["p"]} if state.ada else {})}

  def eval_params(self, state: GANState, key: jax.Array, weights: str = "ema") -> dict:
    """The generator that samples: 'ema' (default) or 'raw' weights, each with statistics of its own.

    'raw' is G with its running statistics. 'ema' is the EMA weights with the standing statistics of their own
    activations on `standing_latents` latents from `key` (`standing_stats`): G's running statistics belong to
    other weights, and paired with the EMA they gave gray, mottled backgrounds early in training
    (benchmarks/ema_gan.py measures both).
    """
    return update.pick_weights(
        weights, lambda: {"params": state.g_params, "batch_stats": state.g_stats},
        lambda: {"params": state.ema_params,
                 "batch_stats": self.standing_stats(state.ema_params, state.g_stats, key, self.standing_latents)})

  # -------------------------------------------------------------- sampling

  def sample(self, params, key: jax.Array, n: int, labels: jax.Array | None = None,
             truncation: float | None = None) -> jax.Array:
    """n examples G(z) in data space ([-1, 1] images or points), G in inference mode; a conditional GAN's of
    classes `labels` (int32 [n]), drawn uniformly from `key` where none are given (family.labels_or_uniform)."""
    if self.num_classes:  # a key for the classes only where none are given: given labels leave z as it was
      label_key, key = jax.random.split(key) if labels is None else (None, key)
      labels = family.labels_or_uniform(label_key, n, self.num_classes, labels)
    x, _ = self.generate(params["params"], params["batch_stats"], self.latents(key, n, truncation), train=False,
                         labels_B=labels)
    return x

  def evaluate(self, params, image_BxHxWxC: jax.Array, key: jax.Array, offset: int = 0, labels=None) -> dict:
    """A GAN has no per-example held-out number (no likelihood): its numbers are its samples' (FID, modes)."""
    del params, image_BxHxWxC, key, offset, labels
    return {}

  def visuals(self, params, key: jax.Array, image_NxHxWxC: jax.Array, labels: jax.Array | None = None,
              truncation: float | None = None) -> dict[str, jax.Array]:
    """Grids as uint8 [rows, cols, H, W, C] from `key`: samples, interpolations, truncated samples.

    Points have no grid: pictures of them belong to their dataset (a 2-D
    mixture's scatter plot, `genjax.metrics.mode_coverage.scatter`, drawn by
    the loop and sample.py for any family that samples points).
    `image_NxHxWxC` (held-out data) is not needed.
    A conditional GAN's are of the pictured examples' `labels` (uniform where none are given): sample i of
    labels[i mod N], path p of labels[p]; 'samples_by_class' [num_classes, 8] is a row per class, the same 8 codes
    in every row.
    """
    del image_NxHxWxC
    if self.points:
      return {}
    shape = self.data_shape
    labels_64, by_class = None, {}
    if self.num_classes:  # keys of their own for the class grid and the classes, on the conditional path only
      key, class_key, label_key = jax.random.split(key, 3)
      labels_64 = jnp.resize(family.labels_or_uniform(label_key, 64, self.num_classes, labels), 64)
      z_8CxZ = jnp.tile(self.latents(class_key, 8), (self.num_classes, 1))  # row c: the 8 codes, of class c
      rows, _ = self.generate(params["params"], params["batch_stats"], z_8CxZ, train=False,
                              labels_B=jnp.repeat(jnp.arange(self.num_classes, dtype=jnp.int32), 8))
      by_class = {"samples_by_class": self.unscale(rows).reshape(self.num_classes, 8, *shape)}
    sample_key, path_key = jax.random.split(key)
    grids = {"samples": self.unscale(self.sample(params, sample_key, 64, labels_64)).reshape(8, 8, *shape)}
    z_2PxZ = self.latents(path_key, 16)
    z_PxTxZ = slerp(z_2PxZ[:8], z_2PxZ[8:], jnp.linspace(0.0, 1.0, 10))
    path, _ = self.generate(params["params"], params["batch_stats"], z_PxTxZ.reshape(80, -1), train=False,
                            labels_B=None if labels_64 is None else jnp.repeat(labels_64[:8], 10))
    grids["interpolations"] = self.unscale(path).reshape(8, 10, *shape)
    if truncation is not None:
      truncated = self.sample(params, sample_key, 64, labels_64, truncation=truncation)
      grids[f"truncated_{truncation:g}"] = self.unscale(truncated).reshape(8, 8, *shape)
    return {**grids, **by_class}
