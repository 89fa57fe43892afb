"""The DCGAN on 100 of mnist5k's training digits, 10 of each class (issue 28's small data): configs/
dcgan_mnist5k_450.py on the first 100 of the same fixed class-balanced order, in batches of 50.

Command: python train.py --config=configs/dcgan_mnist5k_100.py --workdir=runs/dcgan_mnist5k_100
Runtime: 3,000 steps of 50 images, less than configs/dcgan_mnist5k.py's of 128.
Result: no augmentation of what D sees, as at 450 digits: up to 12,000 steps it has the lowest FID; after
that its FID rises again while DiffAugment's still falls (docs/results.md, "Small data and augmentation").
"""

from configs import dcgan_mnist5k_450


def get_config():
  c = dcgan_mnist5k_450.get_config()
  c.dataset.train_examples = 100
  c.batch_size = 50  # at most the subset: batches never straddle epochs
  return c
