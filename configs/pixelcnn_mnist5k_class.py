"""The class-conditional Gated PixelCNN on the embedded offline MNIST digits: configs/pixelcnn_mnist5k.py with
model.num_classes = 10, each gated layer biased by the digit's class (van den Oord et al. 2016, eq. 4).

Command: python train.py --config=configs/pixelcnn_mnist5k_class.py --workdir=runs/pixelcnn_mnist5k_class
The unconditional run's net, steps and time (about 5 minutes on a 2-core CPU), plus 2 x 6 class projections of
10 x 32 weights; its held-out NLL is -log p(x | c), each digit scored given its label. Not yet measured: the
share of samples the shipped digit classifier assigns to the asked class is issue 27's number to report.
"""

from configs import pixelcnn_mnist5k


def get_config():
  c = pixelcnn_mnist5k.get_config()
  c.model.num_classes = 10
  return c
