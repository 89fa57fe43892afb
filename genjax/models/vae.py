"""The VAE family (Kingma & Welling 2014), with IWAE evaluation (Burda et al. 2016), and the class-conditional
VAE (CVAE, Sohn et al. 2015) where `num_classes` > 0.

`VAE` is a frozen description of one model: its nets, optimizer and
likelihood. Its methods are pure functions of (state or params, data, key);
the caller compiles them, e.g. `jax.jit(vae.train_step, donate_argnums=0)`.

Ranges: images arrive as uint8 in 0..255; `scale` maps them to [0, 1], where
a Bernoulli decoder models them after dynamic binarisation (a fresh
Bernoulli draw of every pixel at every step, Salakhutdinov & Murray 2008);
`unscale` maps decoder means back to uint8.

Class-conditional (`num_classes` > 0): the CVAE of Sohn et al. (2015,
Sec. 3; their condition x and output y are our class y and image x): the
encoder is q(z|x, y), the decoder p(x|z, y), and the prior stays
p(z) = N(0, I), independent of y, the relaxation they allow (as Kingma et
al. 2014's M2). Training maximises the conditional ELBO of log p(x|y) (their
Eq. 4 with that prior); `evaluate` bounds log p(x|y) of each
held-out example given its own label; `sample` decodes z ~ N(0, I) with the
asked classes. The nets read the class as its one-hot row (genjax.nets.vae).
With `num_classes` = 0 nothing of this runs: the parameters, numbers and
samples are the unconditional VAE's, bit for bit.

Devices (`genjax.parallel`): under pmap (`axis_name` set) each device sees
its rows of the global batch, draws with the keys of their global indices,
and averages gradients and metrics over the axis: the same numbers as one
device with the whole batch.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from genjax import config_checks as checks
from genjax import losses, options, parallel, precision
from genjax import random as grandom
from genjax.models import family, update
from genjax.nets import vae as vae_nets

LIKELIHOODS = ("bernoulli", "gaussian")
ARCHS = ("conv", "mlp")


class VAEState(struct.PyTreeNode):
  """Everything a VAE training step reads and writes."""

  step: jax.Array  # int32 scalar: number of updates applied
  params: Any  # {'encoder': ..., 'decoder': ...}
  opt_state: Any


@dataclasses.dataclass(frozen=True)
class VAE:
  """A VAE with a diagonal-Gaussian posterior and a standard-normal prior.

  Attributes:
    encoder: module mapping x_BxHxWxC (and, conditional, the class's one-hot
      row y_BxK) to (mean_BxZ, logvar_BxZ).
    decoder: module mapping z_BxZ (and y_BxK) to per-pixel Bernoulli logits
      or Gaussian means, shaped like x. Both nets' `num_classes` are the VAE's.
    optimizer: the optax transformation applied to the ELBO's gradient.
    image_shape: (H, W, C).
    latent_dim ... iwae_k: the options of the config's 'model' block, each declared (and commented) on its
      field below. A Bernoulli decoder outputs logits, a Gaussian one means (variance exp(obs_logvar));
      `binarize` draws x ~ Bernoulli(pixel intensity) per example, the evaluation with a fixed key; `beta`
      weighs the KL term of the training loss (Higgins et al. 2017), reported ELBOs use 1. `num_classes`:
      0, or the classes of a CVAE (Sohn et al. 2015), whose train_step reads batch['label'].
    eval_chunk: importance samples decoded at once by `evaluate`; bounds
      memory, does not change the numbers.
    axis_name: pmap's device axis; None under jit or on one device.
  """

  encoder: nn.Module
  decoder: nn.Module
  optimizer: optax.GradientTransformation
  image_shape: tuple[int, int, int]
  # The options of the config's 'model' block (genjax.options): default, check and comment, declared once.
  latent_dim: int = options.count(20, "Z, size of the latent code", most=checks.MAX_WIDTH).field()
  likelihood: str = options.choice("bernoulli", LIKELIHOODS,
                                   "'bernoulli' (logits; binarised or [0,1] data) or 'gaussian'").field()
  binarize: bool = options.flag(True, "dynamic binarisation of the inputs (needs likelihood='bernoulli')").field()
  beta: float = options.number(1.0, "weight of the KL term in the training loss (1 = the ELBO)", ">= 0").field()
  obs_logvar: float = options.number(0.0, "gaussian only: log-variance of every pixel of p(x|z), x in [0, 1]",
                                     "any").field()
  # Free: only the evaluation's bound; sample.py evaluates with 1,000 (64 while training, for its time).
  iwae_k: int = options.count(64, "importance samples per held-out example of the evaluation",
                              most=checks.MAX_IWAE_K, free=True, sample=1000, moved_from="eval.iwae_k",
                              flag="iwae_k").field()
  num_classes: int = family.num_classes_option().field()
  eval_chunk: int = 100
  axis_name: str | None = None

  def __post_init__(self):
    if self.likelihood not in LIKELIHOODS:
      raise ValueError(f"likelihood: unknown {self.likelihood!r}; allowed: {', '.join(LIKELIHOODS)}")
    if self.binarize and self.likelihood != "bernoulli":
      raise ValueError("binarize: True needs likelihood='bernoulli'")
    for name in ("encoder", "decoder"):
      # Nets that disagree with the VAE would fail only at init, or read classes the model never gives.
      if getattr(getattr(self, name), "num_classes", 0) != self.num_classes:
        raise ValueError(f"{name}: its num_classes ({getattr(getattr(self, name), 'num_classes', 0)}) must be the"
                         f" VAE's ({self.num_classes})")

  def one_hot(self, labels_B: jax.Array | None) -> jax.Array | None:
    """The nets' class input y_BxK: each label's one-hot row; None for an unconditional VAE (labels ignored)."""
    if not self.num_classes:
      return None
    if labels_B is None:
      raise ValueError(f"labels: a class-conditional VAE ({self.num_classes} classes) needs the class of every"
                       " example")
    return jax.nn.one_hot(labels_B, self.num_classes, dtype=jnp.float32)

  # ----------------------------------------------------------------- ranges

  def scale(self, image_BxHxWxC: jax.Array) -> jax.Array:
    """uint8 0..255 -> float32 [0, 1]."""
    return image_BxHxWxC.astype(jnp.float32) / 255.0

  def unscale(self, x_BxHxWxC: jax.Array) -> jax.Array:
    """[0, 1] -> uint8 0..255 (clipped, rounded)."""
    return jnp.round(jnp.clip(x_BxHxWxC, 0.0, 1.0) * 255.0).astype(jnp.uint8)

  def observe(self, x_BxHxWxC: jax.Array, keys_B: jax.Array) -> jax.Array:
    """The data the likelihood scores: binarised per example when asked."""
    if not self.binarize:
      return x_BxHxWxC
    return grandom.binarize(x_BxHxWxC, keys_B)

  # ------------------------------------------------------------ the model

  def init(self, key: jax.Array) -> VAEState:
    """Fresh parameters and optimizer state."""
    encoder_key, decoder_key = jax.random.split(key)
    x_1xHxWxC = jnp.zeros((1, *self.image_shape), jnp.float32)
    z_1xZ = jnp.zeros((1, self.latent_dim), jnp.float32)
    y_1xK = () if not self.num_classes else (self.one_hot(jnp.zeros((1,), jnp.int32)),)
    params = {
        "encoder": self.encoder.init(encoder_key, x_1xHxWxC, *y_1xK)["params"],
        "decoder": self.decoder.init(decoder_key, z_1xZ, *y_1xK)["params"],
    }
    return VAEState(step=jnp.zeros((), jnp.int32), params=params, opt_state=self.optimizer.init(params))

  def encode(self, params, x_BxHxWxC: jax.Array, y_BxK: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Mean and log-variance of q(z|x), or q(z|x, y) given the classes' one-hot rows (`one_hot`)."""
    # An unconditional VAE calls its nets with x (z) alone, so that any module of one argument serves.
    return self.encoder.apply({"params": params["encoder"]}, x_BxHxWxC, *(() if y_BxK is None else (y_BxK,)))

  def decode(self, params, z_BxZ: jax.Array, y_BxK: jax.Array | None = None) -> jax.Array:
    """Parameters of p(x|z), or p(x|z, y): logits (Bernoulli) or means (Gaussian)."""
    return self.decoder.apply({"params": params["decoder"]}, z_BxZ, *(() if y_BxK is None else (y_BxK,)))

  def log_likelihood(self, x_BxHxWxC: jax.Array, out_BxHxWxC: jax.Array) -> jax.Array:
    """log p(x|z) per example, in nats."""
    if self.likelihood == "bernoulli":
      return losses.bernoulli_log_prob(x_BxHxWxC, out_BxHxWxC, event_ndims=3)
    logvar = jnp.full_like(out_BxHxWxC, self.obs_logvar)
    return losses.gaussian_log_prob(x_BxHxWxC, out_BxHxWxC, logvar, event_ndims=3)

  def mean_image(self, out_BxHxWxC: jax.Array) -> jax.Array:
    """E[x|z] in [0, 1]: what pictures show."""
    if self.likelihood == "bernoulli":
      return jax.nn.sigmoid(out_BxHxWxC)
    return jnp.clip(out_BxHxWxC, 0.0, 1.0)

  # -------------------------------------------------------------- training

  def loss(self, params, image_BxHxWxC: jax.Array, key: jax.Array,
           labels_B: jax.Array | None = None) -> tuple[jax.Array, dict]:
    """Negative beta-ELBO, averaged over the batch, with its parts; a CVAE's is of log p(x|y), y = `labels_B`
    (Sohn et al. 2015, Eq. 4 with p(z) = N(0, I): E_q(z|x,y)[log p(x|z,y)] - KL(q(z|x,y) || p(z)))."""
    batch = image_BxHxWxC.shape[0]
    keys_B = grandom.example_keys(key, batch, parallel.batch_offset(batch, self.axis_name))
    keys_Bx2 = jax.vmap(jax.random.split)(keys_B)
    x_BxHxWxC = self.observe(self.scale(image_BxHxWxC), keys_Bx2[:, 0])
    y_BxK = self.one_hot(labels_B)
    mean_BxZ, logvar_BxZ = self.encode(params, x_BxHxWxC, y_BxK)
    z_BxZ = jax.vmap(losses.reparameterize)(keys_Bx2[:, 1], mean_BxZ, logvar_BxZ)
    log_px_B = self.log_likelihood(x_BxHxWxC, self.decode(params, z_BxZ, y_BxK))
    kl_B = losses.kl_normal_standard(mean_BxZ, logvar_BxZ)
    loss = -jnp.mean(losses.elbo(log_px_B, kl_B, self.beta))
    metrics = {
        "loss": loss,
        "neg_elbo": -jnp.mean(losses.elbo(log_px_B, kl_B)),
        "recon": -jnp.mean(log_px_B),
        "kl": jnp.mean(kl_B),
    }
    return loss, metrics

  def train_step(self, state: VAEState, batch: dict, key: jax.Array) -> tuple[VAEState, dict]:
    """One optimizer step on the negative ELBO of `batch['image']` (uint8), given `batch['label']` (int32) where
    the VAE is conditional."""
    labels = (batch["label"],) if self.num_classes else ()
    new = update.apply_gradients(self.loss, state.params, state.opt_state, self.optimizer, self.axis_name,
                                 batch["image"], key, *labels)
    metrics = {**parallel.mean_over(new.aux, self.axis_name), "grad_norm": new.grad_norm}
    return state.replace(step=state.step + 1, params=new.params, opt_state=new.opt_state), metrics

  def eval_params(self, state: VAEState, key: jax.Array, weights: str = "raw"):
    """The parameters that sampling and evaluation use: the trained ones (a VAE keeps no EMA; no key needed)."""
    del key, weights
    return state.params

  # -------------------------------------------------------------- sampling

  def sample(self, params, key: jax.Array, n: int, labels: jax.Array | None = None) -> jax.Array:
    """n decoder means E[x|z], z ~ N(0, I), in [0, 1]; a CVAE's E[x|z, y] of the classes `labels` (int32 [n]),
    drawn uniformly where none are given (unconditional: `labels` are ignored).

    Given labels, z is drawn from `key` as the unconditional VAE draws it: the same key and other classes give
    the same z decoded as other classes (one style in every class, as Kingma et al. 2014's analogies)."""
    y_NxK = None
    if self.num_classes:
      label_key = None
      if labels is None:  # a key of its own, split off only here, so that given labels leave z's key as it is
        key, label_key = jax.random.split(key)
      y_NxK = self.one_hot(family.labels_or_uniform(label_key, n, self.num_classes, labels))
    z_NxZ = jax.random.normal(key, (n, self.latent_dim))
    return self.mean_image(self.decode(params, z_NxZ, y_NxK))

  def reconstruct(self, params, x_BxHxWxC: jax.Array, labels_B: jax.Array | None = None) -> jax.Array:
    """E[x|z] at the posterior mean of z, in [0, 1]; a CVAE's E[x|z, y], z the mean of q(z|x, y), y = `labels_B`."""
    y_BxK = self.one_hot(labels_B)
    mean_BxZ, _ = self.encode(params, x_BxHxWxC, y_BxK)
    return self.mean_image(self.decode(params, mean_BxZ, y_BxK))

  def evaluate(self, params, image_BxHxWxC: jax.Array, key: jax.Array, offset: int = 0,
               labels: jax.Array | None = None) -> dict[str, jax.Array]:
    """Per-example negative ELBO and IWAE negative log-likelihood, in nats; a CVAE's of log p(x|y), each
    example given its class `labels` (int32 [B]).

    Both come from the same K = `iwae_k` importance weights
    log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x), z_k ~ q(z|x)
    (a CVAE's: p(x|z_k, y) and q(z_k|x, y), the prior N(0, I) alike):
    -ELBO ~ -mean_k log w_k and NLL ~ -(logsumexp_k log w_k - log K), so
    NLL <= -ELBO for every example. Example i of the held-out set (global
    index offset + i) is binarised and sampled with keys derived from its
    index alone, so the numbers do not depend on the evaluation batch size.
    """
    keys_Bx2 = grandom.held_out_keys(key, image_BxHxWxC.shape[0], offset)
    x_BxHxWxC = self.observe(self.scale(image_BxHxWxC), keys_Bx2[:, 0])
    y_BxK = self.one_hot(labels)
    mean_BxZ, logvar_BxZ = self.encode(params, x_BxHxWxC, y_BxK)

    def log_weights(k):
      keys_B = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys_Bx2[:, 1], k)
      z_BxZ = jax.vmap(losses.reparameterize)(keys_B, mean_BxZ, logvar_BxZ)
      return losses.importance_log_weights(
          self.log_likelihood(x_BxHxWxC, self.decode(params, z_BxZ, y_BxK)),
          losses.standard_normal_log_prob(z_BxZ),
          losses.gaussian_log_prob(z_BxZ, mean_BxZ, logvar_BxZ))

    log_w_KxB = jax.lax.map(log_weights, jnp.arange(self.iwae_k), batch_size=min(self.eval_chunk, self.iwae_k))
    return {"neg_elbo": -jnp.mean(log_w_KxB, axis=0), "nll": -losses.iwae_bound(log_w_KxB, axis=0)}

  def visuals(self, params, key: jax.Array, image_NxHxWxC: jax.Array,
              labels: jax.Array | None = None) -> dict[str, jax.Array]:
    """Picture grids as uint8 [rows, cols, H, W, C]: samples, reconstructions, interpolations.

    `image_NxHxWxC` are held-out uint8 images; N >= 32 gives every grid.

    A CVAE's grids are of the examples' classes `labels` (int32 [N], required): the 64 samples ask for them in
    turn, each reconstruction is given its example's class, and each interpolation walks the straight line
    between the decoder's inputs [z; y] of its two ends (z the posterior mean given the end's class, y its
    one-hot row), so that its ends are the two reconstructions. 'samples_by_class' adds one row per class:
    row c decodes the same 8 z as class c, so a column holds one z (Kingma et al. 2014's analogies).
    """
    images = {}
    labels_N = None
    if self.num_classes:
      if labels is None:
        raise ValueError(f"labels: a class-conditional VAE ({self.num_classes} classes) pictures each example"
                         " given its class")
      labels_N = jnp.asarray(labels, jnp.int32)
      key, class_key = jax.random.split(key)  # only here: an unconditional VAE's samples keep their key
      classes_K = jnp.arange(self.num_classes, dtype=jnp.int32)
      z_8xZ = jax.random.normal(class_key, (8, self.latent_dim))
      z_Kx8xZ = jnp.broadcast_to(z_8xZ, (self.num_classes, 8, self.latent_dim))
      y_Kx8xK = self.one_hot(jnp.repeat(classes_K, 8))
      by_class = self.mean_image(self.decode(params, z_Kx8xZ.reshape(-1, self.latent_dim), y_Kx8xK))
      images["samples_by_class"] = self.unscale(by_class).reshape(self.num_classes, 8, *self.image_shape)
    sample_labels = None if labels_N is None else jnp.resize(labels_N, (64,))
    images["samples"] = self.unscale(self.sample(params, key, 64, sample_labels)).reshape(8, 8, *self.image_shape)
    x_NxHxWxC = self.scale(image_NxHxWxC)
    n = min(32, x_NxHxWxC.shape[0]) // 8 * 8
    if n:
      # Rows alternate: 8 originals, then their reconstructions.
      originals = x_NxHxWxC[:n].reshape(-1, 1, 8, *self.image_shape)
      recons = self.reconstruct(params, x_NxHxWxC[:n], None if labels_N is None else labels_N[:n])
      recons = recons.reshape(-1, 1, 8, *self.image_shape)
      pairs = jnp.concatenate([originals, recons], axis=1).reshape(-1, 8, *self.image_shape)
      images["reconstructions"] = self.unscale(pairs)
    pairs = min(8, x_NxHxWxC.shape[0] // 2)
    if pairs:
      # Linear paths between posterior means (and a CVAE's one-hot classes), the two originals at the ends.
      y_NxK = None if labels_N is None else self.one_hot(labels_N[:2 * pairs])
      mean_NxZ, _ = self.encode(params, x_NxHxWxC[:2 * pairs], y_NxK)
      start, end = mean_NxZ[:pairs], mean_NxZ[pairs:]
      t_T = jnp.linspace(0.0, 1.0, 10)
      z_PxTxZ = start[:, None] + t_T[None, :, None] * (end - start)[:, None]
      y_PTxK = None
      if y_NxK is not None:
        y_PxTxK = y_NxK[:pairs, None] + t_T[None, :, None] * (y_NxK[pairs:] - y_NxK[:pairs])[:, None]
        y_PTxK = y_PxTxK.reshape(-1, self.num_classes)
      path = self.mean_image(self.decode(params, z_PxTxZ.reshape(-1, self.latent_dim), y_PTxK))
      path = path.reshape(pairs, 10, *self.image_shape)
      row = jnp.concatenate([x_NxHxWxC[:pairs, None], path, x_NxHxWxC[pairs:2 * pairs, None]], axis=1)
      images["interpolations"] = self.unscale(row)
    return images


# ------------------------------------------------------------------ the seam: config -> VAE


# The nets' options; the VAE's own are its fields' (options.of(VAE)).
NETS = {
    "arch": options.choice("conv", ARCHS, "'conv' (stride-2 conv encoder, mirrored decoder) or 'mlp' (the Flax VAE"
                           " example's)"),
    "conv_widths": options.counts((32, 64), "conv only: channels of each stride-2 layer; image size must divide by"
                                  " 2**len", most=checks.MAX_WIDTH),
    "hidden": options.counts((256,), "widths of the dense layers between features and latent (mlp: the hidden"
                             " layers)", allow_empty=True, most=checks.MAX_WIDTH),
}


def validate_config(config, dataset: str, example_shape: tuple[int, ...]) -> None:
  """Refuses, in one line naming the field, a VAE config that cannot model `dataset` (examples `example_shape`)."""
  checks.require(len(example_shape) == 3,
                 f"dataset.name: {dataset!r} holds {example_shape[0]}-D points; the vae family models images")
  model = config.model
  checks.require(not (model.binarize and model.likelihood != "bernoulli"),
                 f"model.binarize: True needs model.likelihood='bernoulli', got {model.likelihood!r}")
  if model.arch == "conv":
    widths = tuple(model.conv_widths)
    height, width, _ = example_shape
    most = min(vae_nets.max_conv_layers(height), vae_nets.max_conv_layers(width))
    checks.require(len(widths) <= most,
                   f"model.conv_widths: {len(widths)} stride-2 layers cannot produce the"
                   f" {height}x{width} images of dataset {dataset!r}; allowed: 1 to {most} layers")


def from_config(config, example_shape: tuple[int, ...], axis_name: str | None, optimizer_for) -> VAE:
  """The VAE of a validated config."""
  model = config.model
  hidden = tuple(model.hidden)
  classes = model.num_classes
  if model.arch == "conv":
    widths = tuple(model.conv_widths)
    encoder = vae_nets.ConvEncoder(model.latent_dim, widths, hidden, config.conv_impl, num_classes=classes)
    decoder = vae_nets.ConvDecoder(example_shape, widths, hidden, config.conv_impl, num_classes=classes)
  else:
    encoder = vae_nets.MLPEncoder(model.latent_dim, hidden, num_classes=classes)
    decoder = vae_nets.MLPDecoder(example_shape, hidden, num_classes=classes)
  return VAE(encoder=precision.wrap(encoder, config.precision), decoder=precision.wrap(decoder, config.precision),
             optimizer=optimizer_for(config.optim.learning_rate),
             image_shape=example_shape, axis_name=axis_name, **options.values(model, options.of(VAE)))


family.register(family.FamilySpec(
    name="vae", archs=ARCHS, options={"model": {**NETS, **options.of(VAE)}}, validate_config=validate_config,
    from_config=from_config,
    units={"neg_elbo": "nats", "nll": "nats"},
    labels={"neg_elbo": "negative ELBO", "nll": "IWAE NLL (k={iwae_k})"},
    smoke={"conv": {"model.arch": "conv", "model.conv_widths": (4, 8), "model.hidden": (16,), "model.latent_dim": 4,
                    "model.iwae_k": 2},
           "mlp": {"model.arch": "mlp", "model.hidden": (16,), "model.latent_dim": 4, "model.iwae_k": 2},
           # The CVAE: the conv case's small nets, conditioned on mnist5k's 10 digit classes.
           "conv_class": {"dataset.name": "mnist5k", "model.arch": "conv", "model.conv_widths": (4, 8),
                          "model.hidden": (16,), "model.latent_dim": 4, "model.iwae_k": 2, "model.num_classes": 10}}))
