"""The class-conditional DCGAN on the embedded offline MNIST digits: configs/dcgan_mnist5k.py, conditioned on
the digit's class (issue 27).

The classic recipe and steps of configs/dcgan_mnist5k.py (its `classic()`, which its measurements used). G's
BatchNorms take their scale and offset from a class embedding shared by every layer (BigGAN's class-conditional
BatchNorm), with the class's one-hot beside z; D is a projection discriminator (Miyato & Koyama 2018) that also
reads the class's one-hot maps beside the image (genjax/nets/dcgan.py says why). Each step's fakes are generated
for the real batch's labels (genjax.models.gan); samples are asked for classes drawn from the held-out labels'
frequencies, and samples/samples_by_class_<step>.png in the workdir has one row per digit.

Command: python train.py --config=configs/dcgan_mnist5k_class.py --workdir=runs/dcgan_mnist5k_class
Runtime: 3,000 steps of 128; a step costs more than the unconditional one's, because D
reads ten more input channels (measured wall times live in docs/speed.md and docs/results.md).
Result: benchmarks/conditional_vs_unconditional.py --family=dcgan --minutes=5,10 measures it against the same
config without classes; its numbers (class accuracy above 95% at 10 minutes, FID far below the unconditional
model's) are in docs/results.md, "Conditional against unconditional at equal CPU time".
"""

from configs import dcgan_mnist5k


def get_config():
  c = dcgan_mnist5k.classic()
  c.model.num_classes = 10
  return c
