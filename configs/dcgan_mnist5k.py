"""DCGAN on the embedded offline MNIST digits (4,500 training images).

The PyTorch DCGAN example's recipe (Radford et al. 2016): z of 100, Adam
2e-4 with b1 = 0.5, batches of 128, the non-saturating loss; samples come
from the EMA of the generator (decay 0.999) with BatchNorm statistics of its
own. The networks are narrower (ngf = ndf = 32) so that a 2-core CPU trains
it in minutes. The EMA's half-life ramps up as 0.005 x the updates so far
(30 updates at 3,000; genjax.losses.ema): the generator still improves fast
here, and a longer average lags behind it (benchmarks/ema_gan.py measured
0.005, 0.01, 0.02 and StyleGAN2-ADA's 0.05: the shorter, the closer to the
raw generator while it improves, and each one at a FID of 285-299 where the
raw generator spiked to 453 at step 1,500).

Command: python train.py --config=configs/dcgan_mnist5k.py --workdir=runs/dcgan_mnist5k
Runtime: 3,000 steps, with an evaluation of the EMA and of the raw generator at steps 1,000, 2,000 and 3,000.
Wall times belong to one machine on one day, so they live in docs/speed.md ("Runtimes of the configs"), with
their machine and date; benchmarks/ema_gan.py trains this config and prints its training time at every
evaluation (train.py logs steps/s as it runs).
Result: FID 206.9 (EMA) and 206.5 (raw generator) on 5,000 samples against the training digits
(genjax.quality), the grid of EMA samples in docs/results.md (samples/samples_0003000.png in the workdir):
digits on black, some malformed (4,500 training images, 3,000 steps).
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
  c.gan.ema_warmup = "rampup"
  c.gan.ema_rampup = 0.005
  c.optim.learning_rate = 2e-4
  c.optim.b1 = 0.5
  c.optim.b2 = 0.999
  c.batch_size = 128
  c.num_steps = 3000
  c.eval_every = 1000
  c.checkpoint_every = 500
  return c
