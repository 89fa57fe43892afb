"""The autoregressive family: a Gated PixelCNN (van den Oord et al. 2016) with an exact likelihood.

p(x) = prod_i p(x_i | x_<i) over the positions of an image in raster order, the channels of a pixel in order
(genjax/nets/pixelcnn.py's masks make the net's output at position i depend on x_<i alone). So the exact
negative log-likelihood of an image is one pass of the net: the sum over positions of -log p(x_i | x_<i), in
nats per image ('nll', the number binarised digits are compared by) and in bits per dimension ('bits_per_dim',
the number of 8-bit images).

Three likelihoods (`likelihood`), each with its own range of the net's input, which is also the canvas the
samplers fill:

- 'bernoulli': binarised digits, x in {0, 1}, one logit per position. `scale` maps uint8 0..255 to intensities
  in [0, 1]; training binarises them afresh at every step (dynamic binarisation, a Bernoulli draw per pixel
  from the example's key), and `evaluate` binarises held-out example i with the key of its global index
  (`random.held_out_keys`, `random.binarize`): the VAE's binarisation of the same digits, so that the two
  families' held-out NLLs compare.
- 'softmax': 8-bit images, x = v / 127.5 - 1 on the 256 levels, a 256-way softmax per channel (van den Oord et
  al. 2016, "Pixel Recurrent Neural Networks"); a pixel's channels in order R, G, B.
- 'logistic_mixture': 8-bit images on the same grid, PixelCNN++'s discretised mixture of `num_mixtures`
  logistics per pixel (Salimans et al. 2017): the net reads every channel of the earlier pixels and none of
  the current one (per_pixel_features), and the mixture couples the pixel's channels itself.

Sampling (`sample`, `complete`) uses the cached sampler: the vertical stack once per row, the horizontal stack
and the head once per position (nets.pixelcnn.complete_cached); `sample_naive` runs the whole net per position,
the reference the cached one reproduces bit for bit. Position p of example b is drawn with
fold_in(key_b, p), so an example's draws depend on its key alone, never on the batch it shares. T is the
temperature of every likelihood's sampler.

Inpainting (`inpaint`, any mask): a known position keeps its value (bit for bit), an unknown one is drawn from
p(x_i | x_<i), reading every earlier position, known or drawn, and nothing later: exact for a mask that knows a
raster prefix (the upper half, the completion); any other (a centre box, random pixels) is conditioned only on
its known positions before each drawn one (never on a box's lower rim). On digits the evaluation scores both
(genjax.evaluation.inpainting_numbers, through `inpaint_held_out`).

Class conditioning (`num_classes` > 0; 0: the unconditional model as before): p(x | c) = prod_i p(x_i | x_<i, c),
c entering both halves of every gate of both stacks as V^T h, h = one_hot(c) (van den Oord et al. 2016, eq. 4).
Every method reads each example's label; `complete_lower_half` given none draws c from p(c | x_upper) (uniform
prior): a draw from p(x_lower | x_upper) = sum_c p(c | x_upper) p(x_lower | x_upper, c) for balanced classes.

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
from genjax import options, parallel, precision
from genjax import random as grandom
from genjax.losses import pixelcnn as pixel_losses
from genjax.models import family, update
from genjax.nets import pixelcnn as pixelcnn_nets

LIKELIHOODS = ("bernoulli", "softmax", "logistic_mixture")
ARCHS = ("gated",)


def out_features(likelihood: str, num_mixtures: int, channels: int) -> int:
  """The net's outputs per channel (per pixel for the mixture) for `likelihood`."""
  if likelihood == "bernoulli":
    return 1
  if likelihood == "softmax":
    return pixel_losses.NUM_VALUES
  return pixel_losses.mixture_num_params(num_mixtures, channels)


def _grid(v):
  """uint8 values 0..255 -> the levels v / 127.5 - 1 in [-1, 1]."""
  return v.astype(jnp.float32) / 127.5 - 1.0


def _levels(x):
  """Levels in [-1, 1] -> int32 values 0..255."""
  return jnp.round((jnp.clip(x, -1.0, 1.0) + 1.0) * 127.5).astype(jnp.int32)


class PixelCNNState(struct.PyTreeNode):
  """Everything a PixelCNN training step reads and writes."""

  step: jax.Array  # int32 scalar: number of updates applied
  params: Any  # the net's parameters
  opt_state: Any


@dataclasses.dataclass(frozen=True)
class PixelCNN:
  """An autoregressive model of images with an exact likelihood.

  Attributes:
    net: a GatedPixelCNN with out_features (and per_pixel_features) as `likelihood` needs them.
    optimizer: the optax transformation applied to the gradient of the mean NLL.
    image_shape: (H, W, C).
    likelihood, temperature, num_mixtures: the options of the config's 'model' block, declared below.
    axis_name: pmap's device axis; None under jit or on one device.
  """

  net: nn.Module
  optimizer: optax.GradientTransformation
  image_shape: tuple[int, int, int]
  likelihood: str = options.choice(
      "bernoulli", LIKELIHOODS, "'bernoulli': binarised images, one logit per position; 'softmax': 8-bit, 256 "
      "logits per channel; 'logistic_mixture': 8-bit, PixelCNN++'s discretised logistic mixture per pixel").field()
  num_mixtures: int = options.count(10, "K, the logistics of the mixture (likelihood='logistic_mixture')",
                                    most=100).field()
  # Free: it only shapes sampling.
  temperature: float = options.number(1.0, "sampling temperature T (bernoulli: sigmoid(logit / T); softmax: "
                                      "softmax(logits / T); mixture: its logits / T and spread T s)", "> 0",
                                      free=True).field()
  num_classes: int = family.num_classes_option().field()
  axis_name: str | None = None

  def __post_init__(self):
    if self.likelihood not in LIKELIHOODS:
      raise ValueError(f"likelihood: unknown {self.likelihood!r}; allowed: {', '.join(LIKELIHOODS)}")
    if not self.temperature > 0:
      raise ValueError(f"temperature: must be > 0, got {self.temperature}")
    want = out_features(self.likelihood, self.num_mixtures, self.image_shape[-1])
    per_pixel = self.likelihood == "logistic_mixture"
    if (self.net.out_features, self.net.per_pixel_features) != (want, per_pixel):
      raise ValueError(f"net: likelihood {self.likelihood!r} needs out_features={want} and per_pixel_features="
                       f"{per_pixel}, got {self.net.out_features} and {self.net.per_pixel_features}")

  @property
  def binary(self) -> bool:
    return self.likelihood == "bernoulli"

  # ----------------------------------------------------------------- ranges

  def scale(self, image_BxHxWxC: jax.Array) -> jax.Array:
    """uint8 0..255 -> float32: intensities in [0, 1] (binarised where they are scored) for 'bernoulli', the
    levels v / 127.5 - 1 otherwise."""
    if self.binary:
      return image_BxHxWxC.astype(jnp.float32) / 255.0
    return _grid(image_BxHxWxC)

  def unscale(self, x_BxHxWxC: jax.Array) -> jax.Array:
    """The model's range -> uint8 0..255 (clipped, rounded)."""
    if self.binary:
      return jnp.round(jnp.clip(x_BxHxWxC, 0.0, 1.0) * 255.0).astype(jnp.uint8)
    return _levels(x_BxHxWxC).astype(jnp.uint8)

  # ------------------------------------------------------------ the model

  def init(self, key: jax.Array) -> PixelCNNState:
    """Fresh parameters and optimizer state (the class projections too where the model is conditional)."""
    cond = jnp.zeros((1, self.num_classes), jnp.float32) if self.num_classes else None
    params = self.net.init(key, jnp.zeros((1, *self.image_shape), jnp.float32), cond)["params"]
    return PixelCNNState(step=jnp.zeros((), jnp.int32), params=params, opt_state=self.optimizer.init(params))

  def cond(self, labels_B: jax.Array | None) -> jax.Array | None:
    """The net's cond, eq. 4's h = one_hot(label) [B, num_classes]; None where unconditional (labels ignored)."""
    if not self.num_classes:
      return None
    if labels_B is None:
      raise ValueError("labels: a class-conditional PixelCNN (num_classes > 0) needs the class of every example")
    return jax.nn.one_hot(jnp.asarray(labels_B, jnp.int32), self.num_classes, dtype=jnp.float32)

  def outputs(self, params, x_BxHxWxC: jax.Array, labels_B: jax.Array | None = None) -> jax.Array:
    """The net's outputs given the positions before each (and the class): [B, H, W, C, out]; mixture: [B, H, W, P]."""
    return self.net.apply({"params": params}, x_BxHxWxC, self.cond(labels_B))

  def logits(self, params, x_BxHxWxC: jax.Array, labels_B: jax.Array | None = None) -> jax.Array:
    """'bernoulli': the logit of every position given the positions before it, [B, H, W, C]."""
    return self.outputs(params, x_BxHxWxC, labels_B)[..., 0]

  def log_probs(self, params, x_BxHxWxC: jax.Array, labels_B: jax.Array | None = None) -> jax.Array:
    """log p(x_i | x_<i) of every position of images in the model's range: [B, H, W, C], or [B, H, W] (a whole
    pixel's) for the mixture; one pass of the net."""
    out = self.outputs(params, x_BxHxWxC, labels_B)
    if self.binary:
      return pixel_losses.bernoulli_pixel_log_prob(x_BxHxWxC, out[..., 0])
    if self.likelihood == "softmax":
      return pixel_losses.categorical_log_prob(_levels(x_BxHxWxC), out)
    return pixel_losses.discretized_mix_logistic_log_prob(x_BxHxWxC, out)

  def nll(self, params, x_BxHxWxC: jax.Array, labels_B: jax.Array | None = None) -> jax.Array:
    """The exact -log p(x) (-log p(x | c) where conditional) in nats [B] of images in the model's range: one pass."""
    log_probs = self.log_probs(params, x_BxHxWxC, labels_B)
    return -jnp.sum(log_probs.reshape(log_probs.shape[0], -1), axis=-1)

  def observe(self, image_BxHxWxC: jax.Array, keys_B: jax.Array) -> jax.Array:
    """uint8 images -> what the likelihood scores: binarised with one key per example for 'bernoulli'."""
    x_BxHxWxC = self.scale(image_BxHxWxC)
    return grandom.binarize(x_BxHxWxC, keys_B) if self.binary else x_BxHxWxC

  # -------------------------------------------------------------- training

  def loss(self, params, image_BxHxWxC: jax.Array, key: jax.Array, labels_B=None) -> tuple[jax.Array, dict]:
    """The mean exact NLL of the batch (of its labels where conditional), binarised afresh by global index."""
    batch = image_BxHxWxC.shape[0]
    keys_B = grandom.example_keys(key, batch, parallel.batch_offset(batch, self.axis_name))
    loss = jnp.mean(self.nll(params, self.observe(image_BxHxWxC, keys_B), labels_B))
    return loss, {"loss": loss, "nll": loss}

  def train_step(self, state: PixelCNNState, batch: dict, key: jax.Array) -> tuple[PixelCNNState, dict]:
    """One optimizer step on the mean NLL of `batch['image']` (uint8), of `batch['label']` where conditional."""
    labels_B = batch["label"] if self.num_classes else None
    new = update.apply_gradients(self.loss, state.params, state.opt_state, self.optimizer, self.axis_name,
                                 batch["image"], key, labels_B)
    metrics = {**parallel.mean_over(new.aux, self.axis_name), "grad_norm": new.grad_norm}
    return state.replace(step=state.step + 1, params=new.params, opt_state=new.opt_state), metrics

  def eval_params(self, state: PixelCNNState, key: jax.Array, weights: str = "raw"):
    """The trained parameters (no EMA; no key needed)."""
    del key, weights
    return state.params

  # -------------------------------------------------------------- sampling

  def _draw(self, keys_N: jax.Array):
    """draw(p, out) for the samplers: position p of example b from fold_in(keys_N[b], p), at temperature T."""
    channels, temperature = self.image_shape[-1], self.temperature

    def one(key, out):
      if self.binary:
        return (jax.random.uniform(key, ()) < jax.nn.sigmoid(out[0] / temperature)).astype(jnp.float32)
      if self.likelihood == "softmax":
        return _grid(pixel_losses.sample_categorical(key, out, temperature))
      return pixel_losses.sample_discretized_mix_logistic(key, out, channels, temperature)

    def draw(p, out):
      return jax.vmap(lambda k, o: one(jax.random.fold_in(k, p), o))(keys_N, out)

    return draw

  def complete(self, params, keys_N: jax.Array, canvas_NxHxWxC: jax.Array, start=0, cached: bool = True,
               labels_N: jax.Array | None = None, known=None):
    """Draws positions start onwards (raster, then channel order; pixels for the mixture) of `canvas` given those
    before, example b from keys_N[b] (of class labels_N[b] where conditional); the positions before `start` and
    those `known` marks (`inpaint`) are kept. One compiled loop: n and `start` change only shapes and bounds."""
    fill = ((lambda *a: pixelcnn_nets.complete_cached(*a, dtype=precision.compute_dtype(self.net))) if cached
            else pixelcnn_nets.complete_naive)
    return fill(self.net, params, canvas_NxHxWxC.astype(jnp.float32), self._draw(keys_N), start,
                self.cond(labels_N), known)

  def _labels(self, key: jax.Array, n: int, labels: jax.Array | None):
    """(n labels, None where unconditional; the images' key): given none, uniform from a key split off `key`."""
    if not self.num_classes:
      return None, key
    if labels is None:
      label_key, key = jax.random.split(key)
      return family.labels_or_uniform(label_key, n, self.num_classes, None), key
    return family.labels_or_uniform(key, n, self.num_classes, labels), key

  def sample(self, params, key: jax.Array, n: int, labels: jax.Array | None = None, cached: bool = True):
    """n images in the model's range by the cached sampler (`cached=False`: the naive one, the same images); of the
    classes `labels` (int32 [n]) where conditional (uniform when none are given), ignored where not."""
    labels, key = self._labels(key, n, labels)
    canvas = jnp.zeros((n, *self.image_shape), jnp.float32)
    return self.complete(params, grandom.example_keys(key, n), canvas, cached=cached, labels_N=labels)

  def sample_naive(self, params, key: jax.Array, n: int, labels: jax.Array | None = None) -> jax.Array:
    """`sample` by the naive loop: the whole net per position."""
    return self.sample(params, key, n, labels, cached=False)

  def inpaint(self, params, images_NxHxWxC: jax.Array, known, key: jax.Array, labels: jax.Array | None = None,
              cached: bool = True) -> jax.Array:
    """The images (in the model's range, binarised for 'bernoulli') with their unknown positions drawn in raster
    order given the positions before them (the module docstring) and the known ones (`known`: bool, [H, W, C] or
    [N, H, W, C], True = given) returned bit for bit; example b from the b-th key of `key`, of its class where
    conditional (uniform without labels). The mixture draws whole pixels: give it masks alike across channels."""
    n = images_NxHxWxC.shape[0]
    labels, key = self._labels(key, n, labels)
    return self.complete(params, grandom.example_keys(key, n), images_NxHxWxC, cached=cached, labels_N=labels,
                         known=known)

  # ------------------------------------------------------------ evaluation

  def held_out(self, image_BxHxWxC: jax.Array, key: jax.Array, offset: int = 0) -> jax.Array:
    """The images that `evaluate` scores: for 'bernoulli', example i binarised as the VAE's evaluation does."""
    return self.observe(image_BxHxWxC, grandom.held_out_keys(key, image_BxHxWxC.shape[0], offset)[:, 0])

  def inpaint_held_out(self, params, image_BxHxWxC: jax.Array, known, key: jax.Array, offset: int = 0, labels=None):
    """(held-out images as `evaluate` scores them, the same drawn where `known` is False given `labels`), example
    i's draws from its second held-out key: what evaluation.inpainting_numbers scores."""
    keys_Bx2 = grandom.held_out_keys(key, image_BxHxWxC.shape[0], offset)
    x_BxHxWxC = self.observe(image_BxHxWxC, keys_Bx2[:, 0])
    return x_BxHxWxC, self.complete(params, keys_Bx2[:, 1], x_BxHxWxC, labels_N=labels, known=known)

  def complete_lower_half(self, params, keys_N: jax.Array, x_NxHxWxC: jax.Array, labels_N=None) -> jax.Array:
    """The images with rows H // 2 onwards (never read) drawn given the rows above and, where conditional, the
    class labels_N[b] (given none: a class drawn from p(c | x_upper), `class_log_posterior`, by a key split off
    keys_N[b])."""
    height, width, channels = self.image_shape
    if self.num_classes and labels_N is None:
      keys_Nx2 = jax.vmap(jax.random.split)(keys_N)
      keys_N, log_post_NxK = keys_Nx2[:, 1], self.class_log_posterior(params, x_NxHxWxC, height // 2)
      labels_N = jax.vmap(jax.random.categorical)(keys_Nx2[:, 0], log_post_NxK).astype(jnp.int32)
    start = (height // 2) * width * (1 if self.likelihood == "logistic_mixture" else channels)
    return self.complete(params, keys_N, x_NxHxWxC.at[:, height // 2:].set(0.0), start=start, labels_N=labels_N)

  def class_log_posterior(self, params, x_NxHxWxC: jax.Array, rows: int) -> jax.Array:
    """log p(c | the first `rows` rows) [N, num_classes] under a uniform prior: log p(x_<rows | c), the sum of
    log p(x_i | x_<i, c) over those rows (a raster prefix: exact), normalised over c. A pass of the net per class."""
    n, k = x_NxHxWxC.shape[0], self.num_classes
    labels_KN = jnp.repeat(jnp.arange(k, dtype=jnp.int32), n)
    log_probs = self.log_probs(params, jnp.tile(x_NxHxWxC, (k, 1, 1, 1)), labels_KN)[:, :rows]
    log_lik_KxN = jnp.sum(log_probs.reshape(k, n, -1), axis=-1)
    return jax.nn.log_softmax(log_lik_KxN.T, axis=-1)

  def evaluate(self, params, image_BxHxWxC: jax.Array, key: jax.Array, offset: int = 0,
               labels: jax.Array | None = None) -> dict[str, jax.Array]:
    """Per-example exact NLL in nats ('nll') and in bits per dimension of the held-out images (given their
    classes `labels` where the model is conditional: -log p(x | c)), binarised with their global indices' keys
    for 'bernoulli' (the VAE's binarisation of the same examples, so its IWAE NLL and this compare)."""
    x_BxHxWxC = self.held_out(image_BxHxWxC, key, offset)
    nll_B = self.nll(params, x_BxHxWxC, labels if self.num_classes else None)
    numbers = {"nll": nll_B, "bits_per_dim": pixel_losses.nats_to_bits_per_dim(nll_B, x_BxHxWxC[0].size)}
    return numbers

  def visuals(self, params, key: jax.Array, image_NxHxWxC: jax.Array,
              labels: jax.Array | None = None) -> dict[str, jax.Array]:
    """Picture grids as uint8 [rows, cols, H, W, C]: 64 samples (8x8) and, given held-out images, completions:
    a row of up to 8 held-out images (binarised for 'bernoulli'), then 3 rows of their lower halves drawn given
    their upper halves.

    A conditional model: column j of the samples of class labels[j % len(labels)] (uniform without labels), the
    completions of their own classes, and 'samples_by_class', row c 8 samples of class c."""
    key, class_key = jax.random.split(key) if self.num_classes else (key, None)  # unconditional: keys as before
    sample_key, complete_key, observe_key = jax.random.split(key, 3)
    sample_labels = None if labels is None or not self.num_classes else jnp.resize(jnp.asarray(labels), 64)
    samples = self.sample(params, sample_key, 64, sample_labels)
    images = {"samples": self.unscale(samples).reshape(8, 8, *self.image_shape)}
    n = min(8, image_NxHxWxC.shape[0])
    if n:
      x_NxHxWxC = self.held_out(image_NxHxWxC[:n], observe_key)
      given = None if labels is None or not self.num_classes else jnp.tile(jnp.asarray(labels)[:n], 3)
      completed = self.complete_lower_half(params, grandom.example_keys(complete_key, 3 * n),
                                           jnp.tile(x_NxHxWxC, (3, 1, 1, 1)), given)
      rows = jnp.concatenate([x_NxHxWxC, completed]).reshape(4, n, *self.image_shape)
      images["completions"] = self.unscale(rows)
    if self.num_classes:
      by_class = jnp.repeat(jnp.arange(self.num_classes, dtype=jnp.int32), 8)
      images["samples_by_class"] = self.unscale(self.sample(params, class_key, 8 * self.num_classes, by_class)
                                                ).reshape(self.num_classes, 8, *self.image_shape)
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
  model = config.model
  if model.likelihood == "logistic_mixture":
    checks.require(channels in (1, 3), f"model.likelihood: the logistic mixture models 1 or 3 channels; dataset "
                                       f"{dataset!r} has {channels}")
  else:
    checks.require(model.features % channels == 0,
                   f"model.features: must be a multiple of the {channels} channels of dataset {dataset!r}'s images"
                   f" (each channel its own group of features), got {model.features}")


def from_config(config, example_shape: tuple[int, ...], axis_name: str | None, optimizer_for) -> PixelCNN:
  """The PixelCNN of a validated config."""
  model = config.model
  values = options.values(model, options.of(PixelCNN))
  net = pixelcnn_nets.GatedPixelCNN(
      features=model.features, num_layers=model.num_layers, first_kernel_size=model.first_kernel_size,
      kernel_size=model.kernel_size, per_pixel_features=model.likelihood == "logistic_mixture",
      out_features=out_features(model.likelihood, model.num_mixtures, example_shape[-1]))
  return PixelCNN(net=precision.wrap(net, config.precision), optimizer=optimizer_for(config.optim.learning_rate), image_shape=tuple(example_shape),
                  axis_name=axis_name, **values)


# The smallest net of the arch: the conformance suite runs it, and its class-conditional variant on the digits.
SMOKE = {"model.arch": "gated", "model.features": 4, "model.num_layers": 2, "model.first_kernel_size": 3,
         "model.kernel_size": 3}

family.register(family.FamilySpec(
    name="pixelcnn", archs=ARCHS, options={"model": {**NETS, **options.of(PixelCNN)}},
    validate_config=validate_config, from_config=from_config,
    units={"nll": "nats", "bits_per_dim": "bits/dim"},
    labels={"nll": "exact NLL", "bits_per_dim": "exact NLL per dimension"},
    smoke={"gated": SMOKE, "gated_class": {**SMOKE, "dataset.name": "mnist5k", "model.num_classes": 10}}))
