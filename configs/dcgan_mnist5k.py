"""DCGAN on the embedded offline MNIST digits (4,500 training images).

The PyTorch DCGAN example's recipe (Radford et al. 2016): z of 100, Adam
2e-4 with b1 = 0.5, batches of 128, the non-saturating loss; samples come
from the EMA of the generator (decay 0.999). The networks are narrower
(ngf = ndf = 32) so that a 2-core CPU trains it in minutes.

Command: python train.py --config=configs/dcgan_mnist5k.py --workdir=runs/dcgan_mnist5k
Runtime: 3,000 steps, about 45 min on a 2-core 2 GHz Zen 1 (1.1 steps/s; first step 6.3 s with compilation).
Result: the README's grid of EMA samples (samples/samples_0003000.png in the workdir):
mostly recognisable digits, a fair share of them malformed (4,500 training images, 3,000 steps).
"""

from configs import base


def get_config():
  c = base.get_config("gan")
  c.dataset.name = "mnist5k"
  c.model.arch = "dcgan"
  c.model.latent_dim = 100
  c.model.g_width = 32
  c.model.d_width = 32
  c.gan.loss = "non_saturating"
  c.gan.ema_decay = 0.999
  c.optim.learning_rate = 2e-4
  c.optim.b1 = 0.5
  c.optim.b2 = 0.999
  c.batch_size = 128
  c.num_steps = 3000
  c.eval_every = 1000
  c.checkpoint_every = 500
  return c
