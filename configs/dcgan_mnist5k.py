"""DCGAN on the embedded offline MNIST digits (4,500 training images).

The DCGAN's generator (Radford et al. 2016: z of 100, BatchNorm, Adam with b1 = 0.5) against SNGAN's
discriminator (Miyato et al. 2018): every weight of D spectrally normalised, no BatchNorm in D, the hinge loss;
Adam 4e-4 for both nets and batches of 64. benchmarks/gan_recipe.py chose it at equal CPU time, against the
PyTorch DCGAN example's recipe (`classic()`: BatchNorm D, the non-saturating loss, 2e-4, batches of 128, which
the DCGAN configs of the TFDS datasets keep) and eight single changes and five combinations of it; its FID at 5
minutes was about half the classic's. The networks are narrower (ngf = ndf = 32) so that a 2-core CPU trains
it in minutes. Samples come from the EMA of the generator (decay 0.999) with BatchNorm statistics of its own; the
EMA's half-life ramps up as 0.005 x the updates so far (genjax.losses.ema): the generator still improves fast
here, and a longer average lags behind it (benchmarks/ema_gan.py measured 0.005, 0.01, 0.02 and StyleGAN2-ADA's
0.05 on the classic recipe: the shorter, the closer to the raw generator while it improves).

Command: python train.py --config=configs/dcgan_mnist5k.py --workdir=runs/dcgan_mnist5k
Runtime: 6,000 steps of 64, with an evaluation of the EMA and of the raw generator every 2,000. Wall times
belong to one machine on one day, so they live in docs/speed.md ("Runtimes of the configs") and docs/results.md,
with their machine and date (train.py logs steps/s as it runs).
Result: FID at 5 and 15 minutes of training against the classic recipe and the diffusion model, trained in turns
in one process, in docs/results.md ("The DCGAN's recipe, at equal CPU time"); the grid of EMA samples there too.
"""

from configs import base


def classic():
  """The PyTorch DCGAN example's recipe at mnist5k's size, which the DCGAN configs of the TFDS datasets keep."""
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


def get_config():
  c = classic()
  # SNGAN's D (Miyato et al. 2018): spectral normalisation of every weight in place of BatchNorm, and the
  # hinge loss; then a step twice as large and half the batch, which doubles the steps a minute buys.
  # benchmarks/gan_recipe.py chose this from eight single changes and five of their combinations.
  c.gan.loss = "hinge"
  c.model.d_norm = "none"
  c.model.d_spectral_norm = True
  c.optim.learning_rate = 4e-4
  c.batch_size = 64
  c.num_steps = 6000  # the classic's 3,000 steps of 128 took about as long
  c.eval_every = 2000
  c.checkpoint_every = 1000
  return c
