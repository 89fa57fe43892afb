"""DCGAN on TFDS CelebA, 64x64 centre crops: the PyTorch DCGAN example's own setting.

Four stride-2 layers, ngf = ndf = 64, z of 100, Adam 2e-4 (b1 = 0.5), the
non-saturating loss, EMA 0.999; batches of 128 for 5 epochs of the 162,770
training faces. The crop is the example's: resize the short side to 64,
centre-crop 64x64 (genjax.data.pipeline.resize_and_center_crop).

Command: python train.py --config=configs/dcgan_celeba64.py --workdir=runs/dcgan_celeba64
Runtime: not measured (the build machine has no network and no accelerator).
Result: not measured.
"""

from configs import dcgan_mnist5k


def get_config():
  c = dcgan_mnist5k.classic()
  c.dataset.name = "celeb_a"
  c.model.g_width = 64
  c.model.d_width = 64
  c.num_steps = 6_400  # 5 epochs of 1,271 batches
  c.eval_every = 1000
  c.checkpoint_every = 1000
  c.eval.num_examples = 256
  return c
