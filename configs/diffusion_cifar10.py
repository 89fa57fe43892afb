"""DDPM on CIFAR-10 (Ho et al. 2020): the paper's U-Net and recipe. Written for accelerators; not trained here.

The CIFAR-10 model of the paper: ch 128, channel multipliers (1, 2, 2, 2), 2
residual blocks per level, self-attention at 16x16, dropout 0.1 (35.7M
parameters, counted in tests/test_unet.py); eps-prediction on the linear
schedule (beta 1e-4 to 0.02, T = 1,000), Adam 2e-4, batches of 128, gradients
clipped to norm 1, an EMA of decay 0.9999, 800k steps; samples from the EMA
weights with the ancestral sampler on all 1,000 steps, as the paper's FID
3.17 was measured, or DDIM on 50-100 (--config.diffusion.sampler=ddim
--config.diffusion.sample_steps=100; Song et al. report FID 4.16 at 100).

What differs from the paper: no random horizontal flips (augmentation is a
later issue) and no learning-rate warm-up (the shared optimizer has none);
the EMA ramps up (diffusion.ema_warmup='rampup') rather than starting at
0.9999. The bound in bits/dim is that of the model on `eval_steps` = 1,000
levels, the paper's own (3.70 bits/dim reported; it costs 1,000 net
evaluations per image: set eval.num_examples with care).

FID needs Inception weights from a local file (genjax/convert_inception.py);
TFDS must have cifar10 prepared (or be able to download it).

Command (a TPU VM or GPU): python train.py --config=configs/diffusion_cifar10.py --workdir=runs/diffusion_cifar10
  --config.eval.inception_weights=fid_inception.npz
Runtime: not trained here: it is written for accelerators (benchmarks/diffusion_speed.py --model=cifar10
times its step; docs/speed.md keeps measured times with their machine and date). The DDPM paper took 10.6
hours for 800k steps on a TPU v3-8.
Result: not measured here; the paper's FID 3.17 (Inception score 9.46) is the target.
"""

from configs import base


def get_config():
  c = base.get_config("diffusion")
  c.dataset.name = "cifar10"
  c.model.arch = "unet"
  c.model.ch = 128
  c.model.ch_mult = (1, 2, 2, 2)
  c.model.num_res_blocks = 2
  c.model.attn_resolutions = (16,)
  c.model.dropout = 0.1
  c.diffusion.objective = "eps"
  c.diffusion.schedule = "linear"
  c.diffusion.num_timesteps = 1000
  c.diffusion.sampler = "ancestral"
  c.diffusion.sample_steps = 1000
  c.diffusion.eval_steps = 1000
  c.diffusion.ema_decay = 0.9999
  c.optim.learning_rate = 2e-4
  c.optim.grad_clip_norm = 1.0
  c.batch_size = 128
  c.num_steps = 800_000
  c.log_every = 1000
  c.eval_every = 50_000
  c.checkpoint_every = 10_000
  c.eval.num_examples = 1000
  c.eval.quality_samples = 50_000
  return c
