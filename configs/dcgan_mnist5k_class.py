"""The class-conditional DCGAN on the embedded offline MNIST digits: configs/dcgan_mnist5k.py, conditioned on
the digit's class (issue 27).

The same recipe and steps as configs/dcgan_mnist5k.py. G's BatchNorms take their scale and offset from a class
embedding shared by every layer (BigGAN's class-conditional BatchNorm), with the class's one-hot beside z; D is a
projection discriminator (Miyato & Koyama 2018) that also reads the class's one-hot maps beside the image
(genjax/nets/dcgan.py says why). Each step's fakes are generated for the real batch's labels
(genjax.models.gan); samples are asked for classes drawn from the held-out labels' frequencies, and
samples/samples_by_class_<step>.png in the workdir has one row per digit.

Command: python train.py --config=configs/dcgan_mnist5k_class.py --workdir=runs/dcgan_mnist5k_class
Runtime: 3,000 steps, as configs/dcgan_mnist5k.py; a step takes about 1.4 times the unconditional one's
(measured wall times live in docs/speed.md).
Result (benchmarks/conditional_vs_unconditional.py --family=dcgan --minutes=5,10, 1,000 samples; 2026-12-05):
at 10 minutes of training, 97.0% of the samples are of the class asked for, FID 38.3 against 182.4 without
classes; at 5 minutes 93.3%, FID 66.6 against 257.3 (docs/results.md).
"""

from configs import dcgan_mnist5k


def get_config():
  c = dcgan_mnist5k.get_config()
  c.model.num_classes = 10
  return c
