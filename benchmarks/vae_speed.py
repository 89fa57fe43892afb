"""Conv VAE training speed: genjax's step against the same network and update in PyTorch, in one run.

Command: python benchmarks/vae_speed.py [--rounds=5 --steps=20 --impls=fast,products,xla --device=cpu
         --precision=float32 --torch_compile --profile_dir=DIR]
(PyTorch: pip install -e '.[bench]', the CPU build. --precision=bfloat16: genjax's bfloat16 policy, PyTorch's
forward passes under bfloat16 autocast; --torch_compile adds torch.compile over channels-last modules.)

The network is genjax's default (`python train.py`, configs/vae_mnist5k.py):
28x28x1 images, batch 128, two 4x4 stride-2 convolutions (32, 64 channels,
'SAME') and a dense layer of 256 to a 20-d Gaussian code, mirrored by the
decoder with 4x4 stride-2 transposed convolutions; Bernoulli likelihood of
the dynamically binarised image, closed-form KL, Adam 1e-3. One step draws
the binarisation and the reparameterisation noise, computes the negative
ELBO and its gradient and takes one Adam step, on both sides; no metric is
fetched per step. The table is the same as benchmarks/dcgan_speed.py's.
"""

import os
import sys

from absl import app

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import speed  # noqa: E402

_ARGS = speed.define_flags(steps=20, batch=128)

IMAGE_SHAPE = (28, 28, 1)


def make_config(batch: int, impl: str):
  from configs import vae_mnist5k  # pylint: disable=g-import-not-at-top
  config = vae_mnist5k.get_config()
  config.batch_size = batch
  config.conv_impl = impl
  return config


def torch_contender(images, device: str, precision: str = "float32", compiled: bool = False) -> speed.Contender:
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top

  torch.manual_seed(0)
  dev = torch.device("cuda" if device == "gpu" else "cpu")
  torch.backends.cudnn.benchmark = True  # as the example sets it (it matters only on a GPU)
  prepare, autocast = speed.torch_options(dev, precision, compiled)
  latent = 20

  class VAE(nn.Module):

    def __init__(self):
      super().__init__()
      # 'SAME' for 4x4 stride 2 on 28 and 14 pads (1, 1): PyTorch's padding=1.
      self.enc = nn.Sequential(nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
                               nn.Flatten(), nn.Linear(7 * 7 * 64, 256), nn.ReLU())
      self.mean, self.logvar = nn.Linear(256, latent), nn.Linear(256, latent)
      self.dec = nn.Sequential(nn.Linear(latent, 256), nn.ReLU(), nn.Linear(256, 7 * 7 * 64), nn.ReLU(),
                               nn.Unflatten(1, (64, 7, 7)),
                               nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
                               nn.ConvTranspose2d(32, 1, 4, 2, 1))

    def forward(self, x):  # the loss: what a step differentiates, compiled whole with --torch_compile
      x = torch.bernoulli(x)  # dynamic binarisation
      h = self.enc(x)
      mean, logvar = self.mean(h), self.logvar(h)
      z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
      logits = self.dec(z)
      recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
      kl = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).sum(1)
      return (recon + kl).mean()

  model = VAE().to(dev)
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  loss_of = prepare(model)
  x = prepare((torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0).contiguous().to(dev))

  def run(n):
    for _ in range(n):
      opt.zero_grad(set_to_none=True)
      with autocast():
        loss = loss_of(x)
      loss.backward()
      opt.step()
    if dev.type == "cuda":
      torch.cuda.synchronize()
    del loss

  return speed.Contender(speed.torch_name(precision, compiled), lambda: run(1), run)


def main(argv):
  del argv
  args = _ARGS()
  speed.main(f"Conv VAE 28x28, batch {args['batch']}, one ELBO step", make_config, torch_contender, IMAGE_SHAPE,
             **args)


if __name__ == "__main__":
  app.run(main)
