"""Conv VAE on the embedded offline MNIST digits: the default of `python train.py`.

Command: python train.py --config=configs/vae_mnist5k.py --workdir=runs/vae_mnist5k
Runtime: 3,000 steps of 128. Wall times belong to one machine on one day, so they live in docs/speed.md
("Runtimes of the configs"), with their machine and date; benchmarks/vae_conv_vs_mlp.py prints this config's
training time (train.py logs steps/s as it runs).
Result: on the 500 held-out digits, negative ELBO 100.9 nats and IWAE NLL
(python sample.py, k=1000) 93.4 nats.
"""

from configs import base


def get_config():
  c = base.get_config()
  return c
