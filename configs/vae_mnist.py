"""Conv VAE on TFDS MNIST (60,000 digits, dynamically binarised). Needs network once.

Command: python train.py --config=configs/vae_mnist.py --workdir=runs/vae_mnist
Runtime: 30,000 steps of 128, ten times configs/vae_mnist5k.py's; not measured yet. Measured wall times belong
to one machine on one day, so they live in docs/speed.md ("Runtimes of the configs").
Result: not measured yet (the build machine has no network); the same network
reaches 100.9 nats held-out negative ELBO training on 4,500 digits for 3,000
steps (configs/vae_mnist5k.py), and 60,000 digits should overfit far less.
"""

from configs import base


def get_config():
  c = base.get_config()
  c.dataset.name = "mnist"
  c.num_steps = 30_000
  c.eval_every = 5000
  c.checkpoint_every = 2000
  return c
