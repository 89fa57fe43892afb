"""Diffusion on the embedded MNIST digits, for CPU minutes: a small DDPM U-Net with EDM's loss and sampler.

DDPM's U-Net at a CPU's size (ch 32, channel multipliers (1, 2, 2) for
28 -> 14 -> 7, one residual block per level, self-attention at 7x7, no
dropout) trained with EDM's preconditioned loss (sigma_data 0.5 for digits
in [-1, 1]), Adam 1e-3, batches of 32; sampling uses the EMA of the weights
(decay 0.999 with EDM's ramp-up) and EDM's deterministic Heun sampler on 10
levels (19 net evaluations).

Command: python train.py --config=configs/diffusion_mnist5k.py --workdir=runs/diffusion_mnist5k
Runtime: 2,000 steps; on the 2-core Zen 5 (AVX-512) 2.6 steps/s while other work shared it, so 4.3 min of
training to step 500 and 14.5 min to step 1,750; the evaluation at the end samples 2 x 1,000 images for
FID (19 net evaluations each) and the bound of 100 held-out digits on 20 levels (a few minutes).
Result (benchmarks/diffusion_steps.py --samplers=heun --steps=10 --num_samples=5000 --step=N, EMA weights,
the loop's FID protocol): FID 275.5 at step 500 and 140.5 at step 1,750. The DCGAN of
configs/dcgan_mnist5k.py trained 13,000 steps on the idle machine is ahead: 150.7 at 4.7 min, 101.4 at 14.1.
"""

from configs import base


def get_config():
  c = base.get_config("diffusion")
  c.model.arch = "unet"
  c.model.ch = 32
  c.model.ch_mult = (1, 2, 2)
  c.model.num_res_blocks = 1
  c.model.attn_resolutions = (7,)
  c.model.dropout = 0.0
  c.diffusion.objective = "edm"
  c.diffusion.sampler = "heun"
  c.diffusion.sample_steps = 10
  c.diffusion.eval_steps = 20
  c.diffusion.ema_decay = 0.999
  c.optim.learning_rate = 1e-3
  c.batch_size = 32
  c.num_steps = 2000
  c.log_every = 100
  c.eval_every = 2000
  c.checkpoint_every = 500
  c.eval.num_examples = 100
  c.eval.quality_samples = 1000
  return c
