"""Gated PixelCNN on CIFAR-10, 8-bit colour with PixelCNN++'s discretised logistic mixture. Written for
accelerators; not trained here.

The net: F=128, 15 gated layers (a receptive field of 17 pixels to each side: every pixel of a 32x32 image's
past), a mixture of 10 logistics per pixel whose G and B means depend linearly on the pixel's R (and G), as
PixelCNN++ (Salimans et al. 2017). Adam 1e-3 with gradients clipped to norm 1, batches of 64. Held-out numbers
are bits per dimension (and nats per image).

What differs from the anchors: PixelCNN++'s own net is a U-Net of down- and up-sampling ResNet blocks with
dropout (2.92 bits/dim after about 5 days on eight V100s); the Gated PixelCNN paper's CIFAR-10 number, 3.03
bits/dim, is with a 256-way softmax per channel (--config.model.likelihood=softmax) and a deeper net.

TFDS must have cifar10 prepared (or be able to download it).

Command (a TPU VM or GPU): python train.py --config=configs/pixelcnn_cifar10.py --workdir=runs/pixelcnn_cifar10
Runtime: not trained here.
Result: not measured here.
"""

from configs import base


def get_config():
  c = base.get_config("pixelcnn")
  c.dataset.name = "cifar10"
  c.batch_size = 64
  c.num_steps = 500_000
  c.eval_every = 10_000
  c.checkpoint_every = 5000
  c.optim.learning_rate = 1e-3
  c.optim.grad_clip_norm = 1.0
  c.model.likelihood = "logistic_mixture"
  c.model.num_mixtures = 10
  c.model.features = 128
  c.model.num_layers = 15
  return c
