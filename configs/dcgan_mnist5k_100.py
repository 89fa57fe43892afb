"""The DCGAN on 100 of mnist5k's training digits, 10 of each class (issue 28's small data): configs/
dcgan_mnist5k_450.py on the first 100 of the same fixed class-balanced order, in batches of 50, with SNGAN's D
(spectral normalisation in place of BatchNorm, the hinge loss; Miyato et al. 2018).

Command: python train.py --config=configs/dcgan_mnist5k_100.py --workdir=runs/dcgan_mnist5k_100
Runtime: 3,000 steps of 50 images, less than configs/dcgan_mnist5k.py's of 64.
Result: on these 100 digits SNGAN's D lowers the FID more than any augmentation does (benchmarks/small_data_gan.py
--recipe=hinge_sn: FID 120.6 at 8,000 steps against the BatchNorm D's 208.3), and with it no augmentation of what
D sees still has the lowest FID, ADA's next (docs/results.md, "Small data and augmentation").
"""

from configs import dcgan_mnist5k_450


def get_config():
  c = dcgan_mnist5k_450.get_config()
  c.dataset.train_examples = 100
  c.batch_size = 50  # at most the subset: batches never straddle epochs
  c.gan.loss = "hinge"
  c.model.d_norm = "none"
  c.model.d_spectral_norm = True
  return c
