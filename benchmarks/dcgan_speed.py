"""DCGAN training speed: genjax's step against the same network and update in PyTorch, in one run.

Command: python benchmarks/dcgan_speed.py [--rounds=5 --steps=3 --impls=fast,products,xla --device=cpu
         --precision=float32 --torch_compile --profile_dir=DIR]
(PyTorch: pip install -e '.[bench]', the CPU build. --precision=bfloat16: genjax's bfloat16 policy, PyTorch's
forward passes under bfloat16 autocast; --torch_compile adds torch.compile over channels-last modules.)

The network is the PyTorch DCGAN example's (pytorch/examples dcgan/main.py):
64x64x3 images, batch 64, nz 100, ngf = ndf = 64, BatchNorm, Adam 2e-4 with
betas (0.5, 0.999), the non-saturating loss (BCE on D's logits). One step is
genjax's GAN update, written out the same way in PyTorch: D on a real batch
and on G(z1) (G in training mode, no gradient to G), one D step; then G(z2)
scored by D, one G step. No EMA (the example has none), no metric fetched per
step on either side (no `.item()`), the same synthetic uint8 batch, the same
threads. The contenders alternate, round by round; the table gives the median
round, the ratio to eager PyTorch, the FLOP/s the step achieves (XLA's FLOP
count of the model with the reference layers) and its fraction of the measured
matmul peak (of --precision's dtype), and genjax's first step (compile and run).
"""

import os
import sys

from absl import app

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import speed  # noqa: E402

_ARGS = speed.define_flags(steps=3, batch=64)

IMAGE_SHAPE = (64, 64, 3)
NZ = 100


def torch_contender(images, device: str, precision: str = "float32", compiled: bool = False) -> speed.Contender:
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top

  torch.manual_seed(0)
  dev = torch.device("cuda" if device == "gpu" else "cpu")
  torch.backends.cudnn.benchmark = True  # as the example sets it (it matters only on a GPU)
  prepare, autocast = speed.torch_options(dev, precision, compiled)

  def bn(c):
    return nn.BatchNorm2d(c, momentum=0.1, eps=1e-5)

  ngf = ndf = 64
  generator = nn.Sequential(
      nn.ConvTranspose2d(NZ, ngf * 8, 4, 1, 0, bias=False), bn(ngf * 8), nn.ReLU(True),
      nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), bn(ngf * 4), nn.ReLU(True),
      nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), bn(ngf * 2), nn.ReLU(True),
      nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), bn(ngf), nn.ReLU(True),
      nn.ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False), nn.Tanh()).to(dev)
  discriminator = nn.Sequential(
      nn.Conv2d(3, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
      nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), bn(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
      nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), bn(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
      nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), bn(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
      nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Flatten(0)).to(dev)
  for module in list(generator) + list(discriminator):  # the example's weights_init
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
      nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
      nn.init.normal_(module.weight, 1.0, 0.02)
      nn.init.zeros_(module.bias)
  opt_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
  opt_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
  generator, discriminator = prepare(generator), prepare(discriminator)  # the optimizers hold the same tensors
  bce = nn.BCEWithLogitsLoss()
  batch = images.shape[0]
  # NHWC uint8 -> NCHW float in [-1, 1], once: the conversion is not what is timed.
  real = prepare((torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0).contiguous().to(dev))
  ones, zeros = torch.ones(batch, device=dev), torch.zeros(batch, device=dev)

  def step():
    # D: real and G(z1) (G in training mode, no gradient), one step.
    with torch.no_grad(), autocast():
      fake = generator(torch.randn(batch, NZ, 1, 1, device=dev))
    opt_d.zero_grad(set_to_none=True)
    with autocast():
      d_loss = bce(discriminator(real), ones) + bce(discriminator(fake), zeros)
    d_loss.backward()
    opt_d.step()
    # G: G(z2) scored by the new D, one step.
    opt_g.zero_grad(set_to_none=True)
    with autocast():
      g_loss = bce(discriminator(generator(torch.randn(batch, NZ, 1, 1, device=dev))), ones)
    g_loss.backward()
    opt_g.step()
    return d_loss, g_loss

  def run(n):
    for _ in range(n):
      losses = step()
    if dev.type == "cuda":
      torch.cuda.synchronize()
    del losses

  return speed.Contender(speed.torch_name(precision, compiled), lambda: run(1), run)


def make_config(batch: int, impl: str):
  from configs import dcgan_celeba64  # pylint: disable=g-import-not-at-top
  config = dcgan_celeba64.get_config()
  config.batch_size = batch
  config.model.latent_dim = NZ
  config.gan.ema_decay = 0.0  # the example keeps no EMA
  config.conv_impl = impl
  return config


def main(argv):
  del argv
  args = _ARGS()
  speed.main(f"DCGAN 64x64, batch {args['batch']}, one D+G update", make_config, torch_contender, IMAGE_SHAPE,
             **args)


if __name__ == "__main__":
  app.run(main)
