"""The diffusion family's seam: its nets' options, the checks across fields, construction from a config, and its
registration (the model's own options are declared on the fields of `genjax.models.diffusion.Diffusion`)."""

from genjax import config_checks as checks
from genjax import options, precision
from genjax.models import family, update
from genjax.models.diffusion import Diffusion
from genjax.nets import mlp_denoiser
from genjax.nets import unet as unet_nets

ARCHS = ("unet", "mlp")


# The nets' options; the process's are the Diffusion's fields (options.of(Diffusion)).
NETS = {
    "arch": options.choice("unet", ARCHS, "'unet' (images, DDPM's U-Net) or 'mlp' (2-D points)"),
    "ch": options.count(32, "unet: channels of the first level (a multiple of 32: GroupNorm's groups)",
                        most=checks.MAX_WIDTH),
    "ch_mult": options.counts((1, 2, 2), "unet: channel multiplier of each level; the image size must divide by"
                              " 2**(levels - 1)", most=checks.MAX_WIDTH),
    # Per level: DDPM's 2, EDM's 4; each block is compiled, so 100 already compiles for long.
    "num_res_blocks": options.count(1, "unet: residual blocks per level", most=100),
    "attn_resolutions": options.counts((7,), "unet: image sizes whose levels have self-attention (each must be a"
                                       " level's size)", allow_empty=True),
    "dropout": options.number(0.1, "unet: dropout rate in [0, 1) of the residual blocks", "[0, 1)"),
    "hidden": options.counts((256, 256, 256), "mlp: widths of the hidden layers", most=checks.MAX_WIDTH),
    "emb_dim": options.count(64, "mlp: width of the noise level's embedding", most=checks.MAX_WIDTH),
}
OPTIONS = {"model": {**NETS, **options.of(Diffusion, "model")}, "diffusion": options.of(Diffusion)}


def validate_config(config, dataset: str, example_shape: tuple[int, ...]) -> None:
  """Refuses, in one line naming the field, a diffusion config that cannot model `dataset`."""
  model = config.model
  points = len(example_shape) == 1
  checks.require(points == (model.arch == "mlp"),
                 f"model.arch: {model.arch!r} cannot model dataset {dataset!r}; allowed: 'mlp' for 2-D points"
                 " (the mixtures ring8, grid25), 'unet' for images")
  d = config.diffusion
  checks.require(model.num_classes or (d.guidance == 1.0 and d.guidance_lo == 0.0 and d.guidance_hi is None),
                 f"diffusion.guidance: only a conditional model (model.num_classes > 0) is guided; leave guidance at"
                 f" 1.0 and its interval unset, got guidance {d.guidance}, interval ({d.guidance_lo}, {d.guidance_hi}]")
  checks.require(d.guidance_hi is None or d.guidance_hi > d.guidance_lo,
                 f"diffusion.guidance_hi: the interval's top must be above guidance_lo = {d.guidance_lo}, got"
                 f" {d.guidance_hi}")
  # One level would be t = 1 alone for a VP schedule (pure noise returned as data) and 0 / 0 for EDM's grid.
  for field in ("sample_steps", "inpaint_steps"):
    checks.require(d[field] >= 2, f"diffusion.{field}: the samplers need at least 2 levels (the noisiest and the"
                                  f" data's), got {d[field]}")
  checks.require(d.eval_steps >= 2, f"diffusion.eval_steps: must be at least 2, got {d.eval_steps}")
  if d.objective != "edm":
    for field in ("sample_steps", "eval_steps"):
      checks.require(d[field] <= d.num_timesteps or (field == "sample_steps" and d.sampler == "heun"),
                     f"diffusion.{field}: {d[field]} levels of a schedule of num_timesteps={d.num_timesteps}"
                     f" steps; allowed: 2 to {d.num_timesteps}")
  checks.require(d.sigma_max > d.sigma_min,
                 f"diffusion.sigma_max: must exceed sigma_min={d.sigma_min}, got {d.sigma_max}")
  if points:
    return
  widths = [model.ch * m for m in model.ch_mult]
  checks.require(max(widths) <= checks.MAX_WIDTH,
                 f"model.ch_mult: each level's channels (ch x ch_mult = {widths}) must be an integer in"
                 f" [1, {checks.MAX_WIDTH}]")
  checks.require(all(w % 32 == 0 for w in widths),
                 f"model.ch: every level's channels (ch x ch_mult = {widths}) must be a multiple of 32,"
                 " GroupNorm's groups")
  height, width, _ = example_shape
  factor = 2 ** (len(model.ch_mult) - 1)
  checks.require(height % factor == 0 and width % factor == 0,
                 f"model.ch_mult: {len(model.ch_mult)} levels halve the size {len(model.ch_mult) - 1} times,"
                 f" which the {height}x{width} images of dataset {dataset!r} do not divide into")
  sizes = [height // 2**i for i in range(len(model.ch_mult))]
  for r in model.attn_resolutions:
    checks.require(r in sizes, f"model.attn_resolutions: {r} is not the size of a level; allowed: {sizes}")


def from_config(config, example_shape: tuple[int, ...], axis_name: str | None, optimizer_for) -> Diffusion:
  """The diffusion model of a validated config."""
  model = config.model
  if model.arch == "mlp":
    net = mlp_denoiser.MLPDenoiser(tuple(model.hidden), model.emb_dim, num_classes=model.num_classes)
  else:
    net = unet_nets.UNet(ch=model.ch, out_ch=example_shape[-1], ch_mult=tuple(model.ch_mult),
                         num_res_blocks=model.num_res_blocks, attn_resolutions=tuple(model.attn_resolutions),
                         dropout=model.dropout, num_classes=model.num_classes)
  return Diffusion(net=precision.wrap(net, config.precision), optimizer=optimizer_for(config.optim.learning_rate), data_shape=example_shape,
                   points=len(example_shape) == 1, axis_name=axis_name, num_classes=model.num_classes,
                   **options.values(config.diffusion, OPTIONS["diffusion"]))


family.register(family.FamilySpec(
    name="diffusion", archs=ARCHS, options=OPTIONS, validate_config=validate_config,
    from_config=from_config, units={"bpd": "bits/dim"}, labels={"bpd": "variational bound"},
    weights=update.EMA_WEIGHTS,
    # The smoke U-Net takes small steps (optim.learning_rate 2e-6). Its biases before a GroupNorm or a
    # residual sum get gradients that are sums of cancelling terms, whose last digits depend on the order of
    # float sums (jit against eager, one device against eight); Adam divides each by its own size, which
    # turns those digits into differences of about 1e-4 of each update. With small steps they stay far below
    # the weights' scale; a missing mean over devices still moves every weight by about the step.
    smoke={"unet": {"optim.learning_rate": 2e-6, "model.ch": 64, "model.ch_mult": (1, 1), "model.num_res_blocks": 1,
                    "model.dropout": 0.0,
                    "model.attn_resolutions": (14,), "diffusion.sample_steps": 3, "diffusion.eval_steps": 3,
                    "diffusion.inpaint_steps": 3, "diffusion.jump_length": 1, "diffusion.jump_count": 2},
           "mlp": {"dataset.name": "ring8", "model.arch": "mlp", "model.hidden": (16, 16), "model.emb_dim": 8,
                   "diffusion.sample_steps": 3, "diffusion.eval_steps": 3},
           # Conditional and guided (the guided sampler's batch of 2n, within an interval). 32 channels: its
           # checks are of labels and guidance, on one device (a 32-channel 'unet' moves a bias past the
           # device suite's tolerance on 2 devices, by the cancelling sums above).
           "unet_class": {"optim.learning_rate": 2e-6, "model.ch": 32, "model.ch_mult": (1,),
                          "model.num_res_blocks": 1, "model.dropout": 0.0, "model.attn_resolutions": (),
                          "model.num_classes": 10, "diffusion.guidance": 2.0, "diffusion.guidance_hi": 5.0,
                          "diffusion.sample_steps": 3, "diffusion.eval_steps": 3, "diffusion.inpaint_steps": 3,
                          "diffusion.jump_length": 1, "diffusion.jump_count": 2}}))
