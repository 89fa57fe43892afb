"""Gated PixelCNN on TFDS MNIST (60,000 digits, dynamically binarised). Needs network once.

Command: python train.py --config=configs/pixelcnn_mnist.py --workdir=runs/pixelcnn_mnist
A larger net than configs/pixelcnn_mnist5k.py's for the full training set (F=64, 10 gated layers, a receptive
field of 12 pixels to each side), 50,000 steps of 64, Adam 1e-3; held-out numbers on the same binarisation as
configs/vae_mnist.py's, so the two compare. The literature's anchors (PixelCNN 81.3 nats, Gated PixelCNN about
the same, PixelRNN 79.2) are on the fixed binarisation of Larochelle and Murray:
--config.dataset.name=binarized_mnist trains and scores on that one.
Runtime: not measured here (the build machines have no network); written for an accelerator.
Result: not measured yet.
"""

from configs import base


def get_config():
  c = base.get_config("pixelcnn")
  c.dataset.name = "mnist"
  c.batch_size = 64
  c.num_steps = 50_000
  c.eval_every = 5000
  c.checkpoint_every = 2000
  c.optim.learning_rate = 1e-3
  c.model.features = 64
  c.model.num_layers = 10
  return c
