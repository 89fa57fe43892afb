"""DCGAN on TFDS MNIST (60,000 digits) at the PyTorch example's width. Needs network once.

ngf = ndf = 64, z of 100, Adam 2e-4 (b1 = 0.5), batches of 128, the
non-saturating loss, EMA 0.999; 25 epochs as in the PyTorch example.

Command: python train.py --config=configs/dcgan_mnist.py --workdir=runs/dcgan_mnist
Runtime: not measured (the build machine has no network and no accelerator). Measured wall times belong to one
machine on one day, so they live in docs/speed.md ("Runtimes of the configs"), beside the speed of this
recipe's step at 64x64 on a CPU and a GPU (benchmarks/dcgan_speed.py).
Result: not measured; configs/dcgan_mnist5k.py is the offline run of this recipe.
"""

from configs import dcgan_mnist5k


def get_config():
  c = dcgan_mnist5k.classic()
  c.dataset.name = "mnist"
  c.model.g_width = 64
  c.model.d_width = 64
  c.num_steps = 12_000  # 25 epochs of 469 batches
  c.eval_every = 2000
  c.checkpoint_every = 1000
  return c
