"""Conv VAE on TFDS MNIST (60,000 digits, dynamically binarised). Needs network once.

Command: python train.py --config=configs/vae_mnist.py --workdir=runs/vae_mnist
Runtime: about 20 minutes on a 2-core CPU (30,000 steps of 128); minutes on a GPU.
Result: not yet measured here (no network on the build machine); the same
network reaches about 99 nats negative ELBO on 4,500 digits in 3,000 steps.
"""

from configs import base


def get_config():
  c = base.get_config()
  c.dataset.name = "mnist"
  c.num_steps = 30_000
  c.eval_every = 5000
  c.checkpoint_every = 2000
  return c
