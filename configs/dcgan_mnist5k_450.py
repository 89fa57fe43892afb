"""The DCGAN on 450 of mnist5k's training digits (issue 28's small data): configs/dcgan_mnist5k.py trained on a
fixed class-balanced subset (dataset.train_examples = 450, the same digits for every seed), with DiffAugment's
colour, translation and cutout applied to reals and fakes before D, the paper's choice for little data.

Command: python train.py --config=configs/dcgan_mnist5k_450.py --workdir=runs/dcgan_mnist5k_450
Runtime: 3,000 steps, as configs/dcgan_mnist5k.py (DiffAugment adds its transforms to every D and G update).
Result: not measured yet; the comparison with no augmentation and with ADA at equal steps is issue 28's open part.
FID is measured against all 4,500 training digits, so it counts what the subset lacks too.
"""

from configs import dcgan_mnist5k


def get_config():
  c = dcgan_mnist5k.get_config()
  c.dataset.train_examples = 450
  c.gan.diffaugment = "color,translation,cutout"
  return c
