"""The DCGAN on 450 of mnist5k's training digits, 45 of each class (issue 28's small data): the classic recipe of
configs/dcgan_mnist5k.py (its classic(), which these measurements used) trained on a fixed class-balanced subset (dataset.train_examples = 450, the same digits for every seed).

Command: python train.py --config=configs/dcgan_mnist5k_450.py --workdir=runs/dcgan_mnist5k_450
Runtime: 3,000 steps of 128.
Result: no augmentation of what D sees, because within these steps it has the lowest FID: DiffAugment and ADA
(`--config.gan.diffaugment=color,translation,cutout`, `--config.gan.ada_target=0.6`) gave higher FID at equal
steps, here and at 100 digits (docs/results.md, "Small data and augmentation", benchmarks/small_data_gan.py).
FID is measured against all 4,500 training digits, so it counts what the subset lacks too.
"""

from configs import dcgan_mnist5k


def get_config():
  c = dcgan_mnist5k.classic()
  c.dataset.train_examples = 450
  return c
