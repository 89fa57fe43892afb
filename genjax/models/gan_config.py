"""The GAN family's seam: its nets' options, the checks across fields, construction from a config, and its
registration (the GAN's own options are declared on the fields of `genjax.models.gan.GAN`)."""

from genjax import ada as adaptive
from genjax import config_checks as checks
from genjax import options, precision
from genjax.models import family, update
from genjax.models.gan import GAN
from genjax.nets import dcgan as dcgan_nets
from genjax.nets import layers
from genjax.nets import mlp_gan


ARCHS = ("dcgan", "mlp")
_PENALTIES = ("gp_weight", "r1_gamma", "r2_gamma")


# The nets' options; the GAN's own are its fields' (options.of(GAN), options.of(GAN, "model")).
NETS = {
    "arch": options.choice("dcgan", ARCHS, "'dcgan' (images) or 'mlp' (2-D points)"),
    "g_width": options.count(64, "dcgan: ngf, channels of G's last hidden layer (earlier layers double it)",
                             most=checks.MAX_WIDTH),
    "d_width": options.count(64, "dcgan: ndf, channels of D's first layer (later layers double it)",
                             most=checks.MAX_WIDTH),
    "d_norm": options.choice("batch", dcgan_nets.D_NORMS, "dcgan: D's normalisation, 'batch', 'layer' or 'none'"
                             " (penalties need 'layer'/'none')"),
    # Runs before it existed had none.
    "d_spectral_norm": options.flag(False, "spectral normalisation of every weight of D (Miyato et al. 2018), its"
                                    " power iteration's state in D's statistics", added=(3, False)),
    "g_hidden": options.counts((128, 128, 128), "mlp: widths of G's hidden layers", most=checks.MAX_WIDTH),
    "d_hidden": options.counts((128, 128, 128), "mlp: widths of D's hidden layers", most=checks.MAX_WIDTH),
    "g_batchnorm": options.flag(False, "mlp: BatchNorm after each of G's hidden layers"),
}
OPTIONS = {"model": {**NETS, **options.of(GAN, "model")}, "gan": options.of(GAN)}


def validate_config(config, dataset: str, example_shape: tuple[int, ...]) -> None:
  """Refuses, in one line naming the field, a GAN config that cannot model `dataset` (examples `example_shape`)."""
  model = config.model
  points = len(example_shape) == 1
  checks.require(points == (model.arch == "mlp"),
                 f"model.arch: {model.arch!r} cannot model dataset {dataset!r}; allowed: 'mlp' for 2-D points"
                 " (the mixtures ring8, grid25), 'dcgan' for images")
  checks.require(config.batch_size % model.pack == 0,
                 f"model.pack: {model.pack} must divide batch_size {config.batch_size}")
  checks.require(not model.num_classes or model.pack == 1,
                 f"model.pack: a projection discriminator scores one class per input, so a conditional GAN"
                 f" (model.num_classes {model.num_classes}) packs 1 example, got {model.pack}")
  checks.require(not (config.gan.diffaugment and config.gan.ada_target),
                 f"gan.ada_target: one augmentation of what D sees; with gan.diffaugment {config.gan.diffaugment!r}"
                 f" set, allowed: 0.0, got {config.gan.ada_target}")
  checks.require(not config.gan.ada_target or config.gan.loss in adaptive.SIGN_LOSSES,
                 f"gan.ada_target: ADA reads the sign of D on reals, which tells real from fake only for the losses"
                 f" {', '.join(map(repr, adaptive.SIGN_LOSSES))}; with gan.loss {config.gan.loss!r} allowed: 0.0,"
                 f" got {config.gan.ada_target}")
  penalised = [f"gan.{f}" for f in _PENALTIES if config.gan[f] > 0]
  checks.require(config.gan.loss != "wasserstein" or penalised or model.d_spectral_norm,
                 "gan.gp_weight: gan.loss 'wasserstein' needs D kept Lipschitz, and this config has no gradient"
                 " penalty, no spectral norm (and genjax clips no weights), so D's outputs would grow without"
                 " bound; allowed: > 0 (WGAN-GP's 10), or a gan.r1_gamma or gan.r2_gamma > 0, or"
                 " model.d_spectral_norm=True")
  if points:
    checks.require(not config.gan.ada_target, f"gan.ada_target: transforms images, and dataset {dataset!r} has"
                                              f" 2-D points; allowed: 0.0, got {config.gan.ada_target}")
    checks.require(not config.gan.diffaugment, f"gan.diffaugment: transforms images, and dataset {dataset!r} has"
                                               f" 2-D points; allowed: '', got {config.gan.diffaugment!r}")
    return
  if penalised:
    checks.require(model.d_norm != "batch",
                   f"model.d_norm: 'batch' couples the examples of a batch, so the gradient penalty of"
                   f" {penalised[0]} is not per example; allowed with penalties: 'layer', 'none'")
  height, width, _ = example_shape
  try:
    dcgan_nets.num_stride2_layers(height)
    ok = height == width
  except ValueError:
    ok = False
  checks.require(ok, f"dataset.name: the DCGAN needs square images whose size halves to a base of 4 to 7 pixels"
                     f" (28, 32, 64, ...), dataset {dataset!r} has {height}x{width}")


def from_config(config, example_shape: tuple[int, ...], axis_name: str | None, optimizer_for) -> GAN:
  """The GAN of a validated config."""
  model, optim = config.model, config.optim
  classes = model.num_classes  # the GAN's own field too (options.of(GAN, "model")); 0: unconditional nets
  if model.arch == "mlp":
    generator = mlp_gan.MLPGenerator(example_shape[0], tuple(model.g_hidden), model.g_batchnorm, axis_name,
                                     num_classes=classes)
    discriminator = mlp_gan.MLPDiscriminator(tuple(model.d_hidden), num_classes=classes,
                                             spectral_norm=model.d_spectral_norm)
  else:
    generator = dcgan_nets.DCGANGenerator(example_shape, model.g_width, axis_name, config.conv_impl,
                                          num_classes=classes)
    # A penalty on D's input gradient (R1, R2, WGAN-GP) differentiates D twice: its strided layers then stay
    # products on a CPU, whose second derivatives are products too ('fast''s convolutions' would leave the
    # layout XLA:CPU's kernels take inside a loop, such as the D updates' scan: genjax.nets.convolution).
    penalised = any(config.gan[name] > 0 for name in _PENALTIES)
    d_impl = "products" if penalised and layers.resolve_impl(config.conv_impl) == "fast" else config.conv_impl
    discriminator = dcgan_nets.DCGANDiscriminator(model.d_width, model.d_norm, axis_name, d_impl,
                                                  num_classes=classes, spectral_norm=model.d_spectral_norm)
  return GAN(
      generator=precision.wrap(generator, config.precision),
      discriminator=precision.wrap(discriminator, config.precision), g_optimizer=optimizer_for(optim.learning_rate),
      d_optimizer=optimizer_for(optim.d_learning_rate or optim.learning_rate, config.gan.d_steps),
      data_shape=example_shape,
      points=len(example_shape) == 1, axis_name=axis_name, **options.values(model, options.of(GAN, "model")),
      **options.values(config.gan, OPTIONS["gan"]))


family.register(family.FamilySpec(
    name="gan", archs=ARCHS, options=OPTIONS, validate_config=validate_config, from_config=from_config,
    weights=update.EMA_WEIGHTS, truncation=True,
    smoke={"dcgan": {"model.arch": "dcgan", "model.g_width": 4, "model.d_width": 4, "model.latent_dim": 8},
           "dcgan_class": {"dataset.name": "mnist5k", "model.arch": "dcgan", "model.g_width": 4, "model.d_width": 4,
                           "model.latent_dim": 8, "model.num_classes": 10},
           # Issue 28's D: spectral norm and DiffAugment with R1 through the transforms.
           "dcgan_diffaugment_sn": {"dataset.name": "mnist5k", "model.arch": "dcgan", "model.g_width": 4,
                                    "model.d_width": 4, "model.latent_dim": 8, "model.d_norm": "none",
                                    "model.d_spectral_norm": True, "gan.diffaugment": "color,translation,cutout",
                                    "gan.r1_gamma": 1.0},
           "dcgan_ada": {"dataset.name": "mnist5k", "model.arch": "dcgan", "model.g_width": 4, "model.d_width": 4,
                         "model.latent_dim": 8, "gan.ada_target": 0.6, "gan.ada_interval": 1, "gan.ada_kimg": 0.1},
           "mlp": {"dataset.name": "ring8", "model.arch": "mlp", "model.latent_dim": 2, "model.g_hidden": (16, 16),
                   "model.d_hidden": (16, 16)}}))
