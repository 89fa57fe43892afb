"""Gated PixelCNN on the embedded offline MNIST digits, binarised: exact NLL in nats, comparable with the VAE's.

Command: python train.py --config=configs/pixelcnn_mnist5k.py --workdir=runs/pixelcnn_mnist5k
A first size, not yet tuned: a small net (F=16, 4 layers) and 2,000 steps of 64, meant for CPU minutes. Its
numbers, and how they compare with configs/vae_mnist5k.py's IWAE NLL at equal CPU time, are still to be
measured. Sampling is the naive loop (the whole net per pixel: 784 passes for 64 digits); at F=32, L=5 it took
126 s for 64 digits on 2 busy CPU cores, hence F=16 here.
"""

from configs import base


def get_config():
  c = base.get_config("pixelcnn")
  c.batch_size = 64
  c.num_steps = 2000
  c.eval_every = 1000
  c.checkpoint_every = 1000
  c.optim.learning_rate = 1e-3
  c.model.features = 16
  c.model.num_layers = 4
  return c
