"""GAN on the grid of 25 Gaussians (std 0.05): every mode, sharp, in well under a minute.

Command: python train.py --config=configs/gan_grid25.py --workdir=runs/gan_grid25
Benchmark over 10 seeds: python benchmarks/toy2d.py
Runtime: RUNTIME
Result: RESULT
"""

from configs import base


def get_config():
  c = base.get_config()
  c.family = "gan"
  c.dataset.name = "grid25"
  c.model.arch = "mlp"
  c.model.latent_dim = 2
  c.model.g_hidden = (128, 128, 128, 128)
  c.model.d_hidden = (128, 128, 128, 128)
  c.gan.loss = "non_saturating"
  c.gan.r1_gamma = 0.1
  c.gan.ema_decay = 0.999
  c.optim.learning_rate = 1e-3
  c.optim.schedule = "cosine"
  c.optim.b1 = 0.5
  c.optim.b2 = 0.9
  c.batch_size = 256
  c.num_steps = 10_000
  c.log_every = 1000
  c.eval_every = 5000
  c.checkpoint_every = 5000
  c.eval.num_examples = 100
  return c
