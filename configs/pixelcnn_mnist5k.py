"""Gated PixelCNN on the embedded offline MNIST digits, binarised: exact NLL in nats, comparable with the VAE's.

Command: python train.py --config=configs/pixelcnn_mnist5k.py --workdir=runs/pixelcnn_mnist5k
Sized for CPU minutes: F=16, 6 gated layers (a receptive field of 8 pixels to each side), batch 32, Adam 3e-3,
2,500 steps (about 5 minutes on a 2-core CPU). Against larger nets (F=32 or kernels of 5) and batch 64 or a
learning rate of 1e-3, this one reached the lowest held-out NLL in the same 90 seconds of training. Its NLL
against configs/vae_mnist5k.py's IWAE NLL at equal training time: benchmarks/pixelcnn_vs_vae.py, in
docs/results.md. Sampling 64 digits takes the cached sampler under a second.
"""

from configs import base


def get_config():
  c = base.get_config("pixelcnn")
  c.batch_size = 32
  c.num_steps = 2500
  c.eval_every = 1250
  c.checkpoint_every = 1250
  c.optim.learning_rate = 3e-3
  c.model.features = 16
  c.model.num_layers = 6
  return c
