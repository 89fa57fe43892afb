"""The autoregressive family: a Gated PixelCNN (van den Oord et al. 2016) with an exact likelihood.

p(x) = prod_i p(x_i | x_<i) over the H W C values of an image in raster order, the channels of a pixel in
order (genjax/nets/pixelcnn.py's masks make the net's output at position i depend on x_<i alone). So the
exact negative log-likelihood of an image is one pass of the net: the sum over positions of
-log p(x_i | x_<i), in nats per image.

This first increment models binarised digits with a Bernoulli per position:

- Ranges: `scale` maps uint8 0..255 to intensities in [0, 1], as the VAE's does; training binarises them
  afresh at every step (dynamic binarisation, a Bernoulli draw per pixel from the example's key), and
  `evaluate` binarises held-out example i with the key of its global index, the VAE's own helper and key
  derivation (`vae.binarize`, `vae.held_out_keys`): the two families' held-out NLLs score the same binary
  digits. `unscale` maps {0, 1} (or [0, 1]) to uint8 0..255.
- Sampling is the naive loop: one `jax.lax.fori_loop` over the H W C positions, each iteration running the
  whole net on the canvas so far and drawing its position from its conditional, Bernoulli(sigmoid(l / T)) at
  the temperature T. One compiled loop for every n; a cached sampler (issue 26) is to come.

Devices: under pmap each device binarises its rows with the keys of their global indices and averages
gradients and metrics over the axis, as the VAE does.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from genjax import config_checks as checks
from genjax import losses, options, parallel
from genjax import random as grandom
from genjax.models import family, update
from genjax.models import vae as vae_lib
from genjax.nets import pixelcnn as pixelcnn_nets

LIKELIHOODS = ("bernoulli",)
ARCHS = ("gated",)


class PixelCNNState(struct.PyTreeNode):
  """Everything a PixelCNN training step reads and writes."""

  step: jax.Array  # int32 scalar: number of updates applied
  params: Any  # the net's parameters
  opt_state: Any


@dataclasses.dataclass(frozen=True)
class PixelCNN:
  """An autoregressive model of binarised images.

  Attributes:
    net: maps x_BxHxWxC in {0, 1} to logits [B, H, W, C, 1], causal in raster and channel order.
    optimizer: the optax transformation applied to the gradient of the mean NLL.
    image_shape: (H, W, C).
    likelihood, temperature: the options of the config's 'model' block, declared (and commented) below.
    axis_name: pmap's device axis; None under jit or on one device.
  """

  net: nn.Module
  optimizer: optax.GradientTransformation
  image_shape: tuple[int, int, int]
  likelihood: str = options.choice("bernoulli", LIKELIHOODS,
                                   "'bernoulli': binarised images, one logit per position (the only one yet)").field()
  # Free: it only shapes sampling.
  temperature: float = options.number(1.0, "sampling temperature T: each position ~ Bernoulli(sigmoid(logit / T))",
                                      "> 0", free=True).field()
  axis_name: str | None = None
  num_classes: int = 0  # unconditional: labels are ignored

  def __post_init__(self):
    if self.likelihood not in LIKELIHOODS:
      raise ValueError(f"likelihood: unknown {self.likelihood!r}; allowed: {', '.join(LIKELIHOODS)}")
    if not self.temperature > 0:
      raise ValueError(f"temperature: must be > 0, got {self.temperature}")

  # ----------------------------------------------------------------- ranges

  def scale(self, image_BxHxWxC: jax.Array) -> jax.Array:
    """uint8 0..255 -> float32 intensities in [0, 1] (binarised where the likelihood scores them)."""
    return image_BxHxWxC.astype(jnp.float32) / 255.0

  def unscale(self, x_BxHxWxC: jax.Array) -> jax.Array:
    """{0, 1} (or [0, 1]) -> uint8 0..255 (clipped, rounded)."""
    return jnp.round(jnp.clip(x_BxHxWxC, 0.0, 1.0) * 255.0).astype(jnp.uint8)

  # ------------------------------------------------------------ the model

  def init(self, key: jax.Array) -> PixelCNNState:
    """Fresh parameters and optimizer state."""
    params = self.net.init(key, jnp.zeros((1, *self.image_shape), jnp.float32))["params"]
    return PixelCNNState(step=jnp.zeros((), jnp.int32), params=params, opt_state=self.optimizer.init(params))

  def logits(self, params, x_BxHxWxC: jax.Array) -> jax.Array:
    """The logit of every position given the positions before it: [B, H, W, C]."""
    return self.net.apply({"params": params}, x_BxHxWxC)[..., 0]

  def nll(self, params, x_BxHxWxC: jax.Array) -> jax.Array:
    """The exact -log p(x) of binary images, nats per image [B]: one pass of the net."""
    return losses.pixelcnn.bernoulli_nll(x_BxHxWxC, self.logits(params, x_BxHxWxC))

  # -------------------------------------------------------------- training

  def loss(self, params, image_BxHxWxC: jax.Array, key: jax.Array) -> tuple[jax.Array, dict]:
    """The mean exact NLL of the batch, binarised afresh with the keys of the examples' global indices."""
    batch = image_BxHxWxC.shape[0]
    keys_B = grandom.example_keys(key, batch, parallel.batch_offset(batch, self.axis_name))
    x_BxHxWxC = vae_lib.binarize(self.scale(image_BxHxWxC), keys_B)
    loss = jnp.mean(self.nll(params, x_BxHxWxC))
    return loss, {"loss": loss, "nll": loss}

  def train_step(self, state: PixelCNNState, batch: dict, key: jax.Array) -> tuple[PixelCNNState, dict]:
    """One optimizer step on the mean NLL of `batch['image']` (uint8)."""
    new = update.apply_gradients(self.loss, state.params, state.opt_state, self.optimizer, self.axis_name,
                                 batch["image"], key)
    metrics = {**parallel.mean_over(new.aux, self.axis_name), "grad_norm": new.grad_norm}
    return state.replace(step=state.step + 1, params=new.params, opt_state=new.opt_state), metrics

  def eval_params(self, state: PixelCNNState, key: jax.Array, weights: str = "raw"):
    """The trained parameters (no EMA; no key needed)."""
    del key, weights
    return state.params

  # -------------------------------------------------------------- sampling

  def complete(self, params, key: jax.Array, canvas_NxHxWxC: jax.Array, start: int = 0) -> jax.Array:
    """Draws positions start .. H W C - 1 (raster, then channel order) of `canvas` given those before: the
    naive sampler. Position p is drawn with fold_in(key, p) for every example at once; one fori_loop whose
    body runs the whole net, so n and `start` change only the traced shapes and bounds, never per pixel."""
    _, width, channels = self.image_shape
    total = self.image_shape[0] * width * channels

    def draw(p, canvas):
      i, j, c = p // (width * channels), (p // channels) % width, p % channels
      logit_N = self.logits(params, canvas)[:, i, j, c]
      u_N = jax.random.uniform(jax.random.fold_in(key, p), logit_N.shape)
      value_N = (u_N < jax.nn.sigmoid(logit_N / self.temperature)).astype(canvas.dtype)
      return canvas.at[:, i, j, c].set(value_N)

    return jax.lax.fori_loop(start, total, draw, canvas_NxHxWxC.astype(jnp.float32))

  def sample(self, params, key: jax.Array, n: int, labels: jax.Array | None = None) -> jax.Array:
    """n binary images in {0, 1} (float32), drawn position by position (unconditional: `labels` are ignored)."""
    del labels
    return self.complete(params, key, jnp.zeros((n, *self.image_shape), jnp.float32))

  # ------------------------------------------------------------ evaluation

  def held_out(self, image_BxHxWxC: jax.Array, key: jax.Array, offset: int = 0) -> jax.Array:
    """The binary digits that `evaluate` scores: example i binarised as the VAE's evaluation binarises it."""
    keys_B = vae_lib.held_out_keys(key, image_BxHxWxC.shape[0], offset)[:, 0]
    return vae_lib.binarize(self.scale(image_BxHxWxC), keys_B)

  def evaluate(self, params, image_BxHxWxC: jax.Array, key: jax.Array, offset: int = 0,
               labels: jax.Array | None = None) -> dict[str, jax.Array]:
    """Per-example exact NLL in nats ('nll'), of the held-out digits binarised with their global indices' keys
    (the VAE's binarisation of the same examples, so its IWAE NLL and this compare)."""
    del labels  # unconditional
    return {"nll": self.nll(params, self.held_out(image_BxHxWxC, key, offset))}

  def visuals(self, params, key: jax.Array, image_NxHxWxC: jax.Array,
              labels: jax.Array | None = None) -> dict[str, jax.Array]:
    """Picture grids as uint8 [rows, cols, H, W, C]: 64 samples (8x8) and, given held-out images, completions:
    a row of up to 8 binarised digits, then 3 rows of their bottom halves drawn given their top halves."""
    del labels  # unconditional
    sample_key, complete_key, binarize_key = jax.random.split(key, 3)
    images = {"samples": self.unscale(self.sample(params, sample_key, 64)).reshape(8, 8, *self.image_shape)}
    n = min(8, image_NxHxWxC.shape[0])
    if n:
      height, width, channels = self.image_shape
      top = height // 2
      x_NxHxWxC = self.held_out(image_NxHxWxC[:n], binarize_key)
      canvas = jnp.tile(x_NxHxWxC, (3, 1, 1, 1)).at[:, top:].set(0.0)
      completed = self.complete(params, complete_key, canvas, start=top * width * channels)
      rows = jnp.concatenate([x_NxHxWxC, completed]).reshape(4, n, *self.image_shape)
      images["completions"] = self.unscale(rows)
    return images


# ------------------------------------------------------------------ the seam: config -> PixelCNN


def _odd(config, field):
  value = checks.positive_int(config, field, most=99)
  checks.require(value % 2 == 1, f"{field}: must be odd, got {value}")


# The net's options; the family's own are its fields' (options.of(PixelCNN)).
NETS = {
    "arch": options.choice("gated", ARCHS, "'gated': the Gated PixelCNN of van den Oord et al. 2016 (no blind spot)"),
    "features": options.count(32, "F, the width of each stack (vertical and horizontal)", most=checks.MAX_WIDTH),
    "num_layers": options.count(5, "L, gated layers (the receptive field grows by kernel_size // 2 per layer)",
                                most=64),
    "first_kernel_size": options.Option(7, "k of the first layer's convolutions (odd)", _odd),
    "kernel_size": options.Option(3, "k of the later layers' convolutions (odd)", _odd),
}


def validate_config(config, dataset: str, example_shape: tuple[int, ...]) -> None:
  """Refuses, in one line naming the field, a PixelCNN config that cannot model `dataset` (examples `example_shape`)."""
  checks.require(len(example_shape) == 3,
                 f"dataset.name: {dataset!r} holds {example_shape[0]}-D points; the pixelcnn family models images")
  channels = example_shape[-1]
  checks.require(config.model.features % channels == 0,
                 f"model.features: must be a multiple of the {channels} channels of dataset {dataset!r}'s images"
                 f" (each channel its own group of features), got {config.model.features}")


def from_config(config, example_shape: tuple[int, ...], axis_name: str | None, optimizer_for) -> PixelCNN:
  """The PixelCNN of a validated config."""
  model = config.model
  net = pixelcnn_nets.GatedPixelCNN(features=model.features, num_layers=model.num_layers,
                                    first_kernel_size=model.first_kernel_size, kernel_size=model.kernel_size,
                                    out_features=1)
  return PixelCNN(net=net, optimizer=optimizer_for(config.optim.learning_rate), image_shape=tuple(example_shape),
                  axis_name=axis_name, **options.values(model, options.of(PixelCNN)))


family.register(family.FamilySpec(
    name="pixelcnn", archs=ARCHS, options={"model": {**NETS, **options.of(PixelCNN)}},
    validate_config=validate_config, from_config=from_config,
    units={"nll": "nats"}, labels={"nll": "exact NLL"},
    smoke={"gated": {"model.arch": "gated", "model.features": 4, "model.num_layers": 2,
                     "model.first_kernel_size": 3, "model.kernel_size": 3}}))
