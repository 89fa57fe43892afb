"""DCGAN on TFDS CIFAR-10 (50,000 32x32 colour images). Needs network once.

The PyTorch DCGAN example's recipe at 32 pixels: three stride-2 layers,
ngf = ndf = 64, z of 100, Adam 2e-4 (b1 = 0.5), batches of 128, the
non-saturating loss, EMA 0.999, 25 epochs.

Command: python train.py --config=configs/dcgan_cifar10.py --workdir=runs/dcgan_cifar10
Runtime: not measured (the build machine has no network and no accelerator).
Result: not measured.
"""

from configs import dcgan_mnist5k


def get_config():
  c = dcgan_mnist5k.classic()
  c.dataset.name = "cifar10"
  c.model.g_width = 64
  c.model.d_width = 64
  c.num_steps = 10_000  # 25 epochs of 390 batches
  c.eval_every = 2000
  c.checkpoint_every = 1000
  return c
