"""The class-conditional diffusion model of the offline digits: configs/diffusion_mnist5k.py's recipe with the
label's embedding beside the noise level's, 10% of the labels dropped in training (the null label that
classifier-free guidance needs), and guidance when sampling (`diffusion.guidance`, its interval
`guidance_lo`/`guidance_hi`; sample.py's --guidance, --guidance_lo, --guidance_hi change them without
retraining).
"""

from configs import diffusion_mnist5k


def get_config():
  c = diffusion_mnist5k.get_config()
  c.model.num_classes = 10
  return c
