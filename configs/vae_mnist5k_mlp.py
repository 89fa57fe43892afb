"""The Flax VAE example's MLP (784-500-20) on the embedded MNIST digits.

Command: python train.py --config=configs/vae_mnist5k_mlp.py --workdir=runs/vae_mnist5k_mlp
Runtime: about 1 minute on a 2-core CPU (3,000 steps of 128).
Result: the baseline that the conv VAE of configs/vae_mnist5k.py is compared with
at the same number of steps; see README.md for the measured figures.
"""

from configs import base


def get_config():
  c = base.get_config()
  c.model.arch = "mlp"
  c.model.hidden = (500,)
  return c
