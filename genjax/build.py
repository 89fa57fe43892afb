"""From a config to typed objects: validation, the family, the optimizer.

This is the only library module that reads a whole config; everything it
builds receives typed fields. `validate` runs before any compilation or data
loading, so a bad field costs the user a second, not a compile.
"""

import math

import ml_collections
import optax

from genjax import data, parallel
from genjax.errors import UserError
from genjax.losses import gan as gan_losses
from genjax.models import gan as gan_lib
from genjax.models import vae as vae_lib
from genjax.nets import dcgan as dcgan_nets
from genjax.nets import layers
from genjax.nets import mlp_gan
from genjax.nets import vae as vae_nets

FAMILIES = ("vae", "gan")
VAE_ARCHS = ("conv", "mlp")
GAN_ARCHS = ("dcgan", "mlp")
SCHEDULES = ("constant", "cosine")


def _require(ok: bool, message: str) -> None:
  if not ok:
    raise UserError(message)


def _get(config, field: str):
  """The value of a dotted field; UserError naming it when it (or a block above it) is missing."""
  node = config
  for depth, part in enumerate(field.split(".")):
    if not isinstance(node, (dict, ml_collections.ConfigDict)) or part not in node:
      block = ".".join(field.split(".")[:depth]) or "the config"
      raise UserError(f"{field}: missing from {block}; every config starts from configs/base.py, which has it")
    node = node[part]
  return node


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_int(config, field: str) -> None:
  value = _get(config, field)
  _require(_is_int(value) and value > 0, f"{field}: must be a positive integer, got {value!r}")


def _number(config, field: str, rule: str, optional: bool = False):
  """Checks a float field against `rule` ('> 0', '>= 0', '[0, 1)' or 'any'); returns it.

  Non-numbers are refused by name (a config.json edited by hand), and so is
  every NaN or infinity whatever the rule: `learning_rate=inf` trains to NaN.
  """
  value = _get(config, field)
  allowed = {"> 0": "> 0", ">= 0": ">= 0", "[0, 1)": "in [0, 1)", "any": "a finite number"}[rule]
  allowed += " or None" if optional else ""
  if optional and value is None:
    return value
  _require(_is_number(value), f"{field}: must be {allowed}, got {value!r}")
  _require(math.isfinite(value), f"{field}: must be {allowed} (finite), got {value!r}")
  ok = {"> 0": value > 0, ">= 0": value >= 0, "[0, 1)": 0 <= value < 1, "any": True}[rule]
  _require(ok, f"{field}: must be {allowed}, got {value!r}")
  return value


def _bool(config, field: str) -> None:
  value = _get(config, field)
  _require(isinstance(value, bool), f"{field}: must be True or False, got {value!r}")


def _one_of(config, field: str, allowed: tuple) -> None:
  value = _get(config, field)
  _require(isinstance(value, str) and value in allowed,
           f"{field}: unknown {value!r}; allowed: {', '.join(map(str, allowed))}")


def _non_finite_field(config, prefix: str = "") -> str | None:
  """The first field anywhere in the config that holds a float NaN or infinity (in a tuple too), or None."""
  for key, value in config.items():
    name = f"{prefix}{key}"
    if isinstance(value, (dict, ml_collections.ConfigDict)):
      found = _non_finite_field(value, name + ".")
      if found:
        return found
    values = value if isinstance(value, (tuple, list)) else (value,)
    if any(isinstance(v, float) and not math.isfinite(v) for v in values):
      return f"{name}: must be a finite number, got {value!r}"
  return None


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises UserError naming the first bad field and its allowed values.

  Every field a family reads is checked for presence and type as well as
  range, so a `config.json` edited by hand is refused as a command-line
  override is; no float anywhere may be NaN or infinite.
  """
  non_finite = _non_finite_field(config)
  _require(non_finite is None, str(non_finite))
  _one_of(config, "family", FAMILIES)
  for block in ("dataset", "model", "optim", "eval") + (("gan",) if config.family == "gan" else ()):
    _require(isinstance(_get(config, block), (dict, ml_collections.ConfigDict)),
             f"{block}: must be a block of fields, got {_get(config, block)!r}")
  _one_of(config, "dataset.name", data.DATASETS)
  data_dir = _get(config, "dataset.data_dir")
  _require(data_dir is None or isinstance(data_dir, str),
           f"dataset.data_dir: must be a directory name or None, got {data_dir!r}")
  _bool(config, "dataset.download")
  for field in ("batch_size", "num_steps", "steps_per_call", "log_every", "eval_every", "checkpoint_every",
                "keep_checkpoints", "eval.num_examples", "eval.batch_size", "eval.iwae_k"):
    _positive_int(config, field)
  seed = _get(config, "seed")
  _require(_is_int(seed), f"seed: must be an integer, got {seed!r}")
  _one_of(config, "parallel", parallel.PATHS)
  _one_of(config, "conv_impl", layers.IMPLS)
  if _get(config, "num_devices") is not None:
    _positive_int(config, "num_devices")

  _number(config, "optim.learning_rate", "> 0")
  _number(config, "optim.d_learning_rate", "> 0", optional=True)
  _one_of(config, "optim.schedule", SCHEDULES)
  for name in ("b1", "b2"):
    _number(config, f"optim.{name}", "[0, 1)")
  _number(config, "optim.grad_clip_norm", "> 0", optional=True)

  if config.family == "vae":
    _validate_vae(config)
  elif config.family == "gan":
    _validate_gan(config)


def _positive_ints(config, field: str, allow_empty: bool = False) -> None:
  values = _get(config, field)
  ok = isinstance(values, (tuple, list)) and (allow_empty or len(values) > 0)
  _require(ok and all(_is_int(w) and w > 0 for w in values),
           f"{field}: must be {'' if allow_empty else 'one or more '}positive integers, got {values!r}")


def _validate_gan(config) -> None:
  model = config.model
  name = config.dataset.name
  points = name in data.POINT_DATASETS
  _one_of(config, "model.arch", GAN_ARCHS)
  _require(points == (model.arch == "mlp"),
           f"model.arch: {model.arch!r} cannot model dataset {name!r}; allowed: 'mlp' for the 2-D mixtures"
           f" ({', '.join(data.POINT_DATASETS)}), 'dcgan' for images")
  _positive_int(config, "model.latent_dim")
  _positive_int(config, "model.pack")
  _require(config.batch_size % model.pack == 0,
           f"model.pack: {model.pack} must divide batch_size {config.batch_size}")
  _one_of(config, "gan.loss", tuple(gan_losses.LOSSES))
  _positive_int(config, "gan.d_steps")
  for field in ("gp_weight", "r1_gamma", "r2_gamma"):
    _number(config, f"gan.{field}", ">= 0")
  _number(config, "gan.ema_decay", "[0, 1)")
  if points:
    _positive_ints(config, "model.g_hidden")
    _positive_ints(config, "model.d_hidden")
    _bool(config, "model.g_batchnorm")
    return
  _positive_int(config, "model.g_width")
  _positive_int(config, "model.d_width")
  _one_of(config, "model.d_norm", dcgan_nets.D_NORMS)
  gan = config.gan
  penalised = [f"gan.{f}" for f in ("gp_weight", "r1_gamma", "r2_gamma") if gan[f] > 0]
  if penalised:
    _require(model.d_norm != "batch",
             f"model.d_norm: 'batch' couples the examples of a batch, so the gradient penalty of {penalised[0]}"
             f" is not per example; allowed with penalties: 'layer', 'none'")
  height, width, _ = data.image_shape(name)
  try:
    dcgan_nets.num_stride2_layers(height)
    ok = height == width
  except ValueError:
    ok = False
  _require(ok, f"dataset.name: the DCGAN needs square images whose size halves to a base of 4 to 7 pixels"
               f" (28, 32, 64, ...), dataset {name!r} has {height}x{width}")


def _validate_vae(config) -> None:
  model = config.model
  _require(config.dataset.name not in data.POINT_DATASETS,
           f"dataset.name: {config.dataset.name!r} holds 2-D points; the vae family models images"
           f" ({', '.join(d for d in data.DATASETS if d not in data.POINT_DATASETS)})")
  _one_of(config, "model.arch", VAE_ARCHS)
  _one_of(config, "model.likelihood", vae_lib.LIKELIHOODS)
  _positive_int(config, "model.latent_dim")
  _number(config, "model.beta", ">= 0")
  _number(config, "model.obs_logvar", "any")
  hidden = _get(config, "model.hidden")
  _require(isinstance(hidden, (tuple, list)) and all(_is_int(w) and w > 0 for w in hidden),
           f"model.hidden: must be positive integers, got {hidden!r}")
  _bool(config, "model.binarize")
  _require(not (model.binarize and model.likelihood != "bernoulli"),
           f"model.binarize: True needs model.likelihood='bernoulli', got {model.likelihood!r}")
  if model.arch == "conv":
    _positive_ints(config, "model.conv_widths")
    widths = tuple(model.conv_widths)
    height, width, _ = data.image_shape(config.dataset.name)
    most = min(vae_nets.max_conv_layers(height), vae_nets.max_conv_layers(width))
    _require(len(widths) <= most,
             f"model.conv_widths: {len(widths)} stride-2 layers cannot produce the"
             f" {height}x{width} images of dataset {config.dataset.name!r}; allowed: 1 to {most} layers")


def learning_rate(value: float, schedule: str, num_steps: int) -> optax.ScalarOrSchedule:
  """A constant step size, or a cosine decay from `value` to 0 over `num_steps` (Loshchilov & Hutter 2017)."""
  if schedule == "cosine":
    return optax.cosine_decay_schedule(value, num_steps)
  return value


def optimizer(learning_rate: optax.ScalarOrSchedule, b1: float, b2: float,
              grad_clip_norm: float | None) -> optax.GradientTransformation:
  """Adam, after global-norm clipping when `grad_clip_norm` is set."""
  adam = optax.adam(learning_rate, b1=b1, b2=b2)
  if grad_clip_norm is None:
    return adam
  return optax.chain(optax.clip_by_global_norm(grad_clip_norm), adam)


def family(config: ml_collections.ConfigDict):
  """The model family described by a validated config, built for its `parallel` path."""
  axis_name = parallel.AXIS if config.parallel == "pmap" else None
  builders = {"vae": _vae, "gan": _gan}
  if config.family not in builders:
    raise UserError(f"family: unknown {config.family!r}; allowed: {', '.join(FAMILIES)}")
  return builders[config.family](config, axis_name)


def _gan(config, axis_name: str | None) -> gan_lib.GAN:
  optim, model, gan = config.optim, config.model, config.gan
  shape = data.image_shape(config.dataset.name)

  def opt(value):
    return optimizer(learning_rate(value, optim.schedule, config.num_steps), optim.b1, optim.b2,
                     optim.grad_clip_norm)

  if model.arch == "mlp":
    generator = mlp_gan.MLPGenerator(shape[0], tuple(model.g_hidden), model.g_batchnorm, axis_name)
    discriminator = mlp_gan.MLPDiscriminator(tuple(model.d_hidden))
  else:
    generator = dcgan_nets.DCGANGenerator(shape, model.g_width, axis_name, config.conv_impl)
    discriminator = dcgan_nets.DCGANDiscriminator(model.d_width, model.d_norm, axis_name, config.conv_impl)
  name = config.dataset.name
  return gan_lib.GAN(
      generator=generator, discriminator=discriminator, g_optimizer=opt(optim.learning_rate),
      d_optimizer=opt(optim.d_learning_rate or optim.learning_rate), data_shape=shape,
      latent_dim=model.latent_dim, loss=gan.loss, d_steps=gan.d_steps, gp_weight=gan.gp_weight,
      r1_gamma=gan.r1_gamma, r2_gamma=gan.r2_gamma, ema_decay=gan.ema_decay, pack=model.pack,
      points=name in data.POINT_DATASETS, axis_name=axis_name)


def _vae(config, axis_name: str | None) -> vae_lib.VAE:
  image_shape = data.image_shape(config.dataset.name)
  optim = config.optim
  opt = optimizer(learning_rate(optim.learning_rate, optim.schedule, config.num_steps), optim.b1, optim.b2,
                  optim.grad_clip_norm)
  model = config.model
  hidden = tuple(model.hidden)
  if model.arch == "conv":
    widths = tuple(model.conv_widths)
    encoder = vae_nets.ConvEncoder(model.latent_dim, widths, hidden, config.conv_impl)
    decoder = vae_nets.ConvDecoder(image_shape, widths, hidden, config.conv_impl)
  else:
    encoder = vae_nets.MLPEncoder(model.latent_dim, hidden)
    decoder = vae_nets.MLPDecoder(image_shape, hidden)
  return vae_lib.VAE(
      encoder=encoder, decoder=decoder, optimizer=opt, image_shape=image_shape,
      latent_dim=model.latent_dim, likelihood=model.likelihood, binarize=model.binarize,
      beta=model.beta, obs_logvar=model.obs_logvar, axis_name=axis_name)
