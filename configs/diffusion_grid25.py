"""Diffusion on the grid of 25 Gaussians (std 0.05): every mode, sharp.

EDM's preconditioned loss (sigma_data 2.8, the data's standard deviation per
coordinate) on an MLP denoiser of 3 x 256 with the noise level added to every
layer, Adam 1e-3 decayed to 0 by a cosine schedule, batches of 256; sampling
uses the EMA of the weights and DDPM's ancestral sampler on 200 of EDM's
levels. On one trained model (seed 0), 2,500 samples, mean of 3 keys, the
samplers compared: ancestral 200 levels 99.0% HQ; Heun 32 / 64 levels
(deterministic) 95.5% / 96.2% HQ (98.6% with S_churn 30 at 64); DDIM 200 95.2% HQ. The deterministic samplers
spread each mode a little more; the ancestral sampler's fresh noise corrects it.

Command: python train.py --config=configs/diffusion_grid25.py --workdir=runs/diffusion_grid25
Benchmark over 10 seeds: python benchmarks/toy2d.py --variants=diffusion
Runtime: 10,000 steps, sampling and evaluation included. Wall times belong to one machine on one day, so they
live in docs/speed.md ("Runtimes of the configs"), with their machine and date; benchmarks/toy2d.py
--variants=diffusion measures them (each seed's seconds, the slowest printed).
Result (10 seeds, benchmarks/toy2d.py --variants=diffusion): all 25 modes on every seed, 98.8% high-quality
samples (worst seed 98.4%), reverse KL 0.0051 (worst 0.0090).
"""

from configs import diffusion_ring8


def get_config():
  """configs/diffusion_ring8.py on the grid, with the grid's standard deviation in EDM's preconditioning."""
  c = diffusion_ring8.get_config()
  c.dataset.name = "grid25"
  c.diffusion.sigma_data = 2.8
  return c
