"""The class-conditional conv VAE (CVAE, Sohn et al. 2015) on the embedded offline MNIST digits: configs/vae_mnist5k.py
with the encoder q(z|x, y) and the decoder p(x|z, y) given each digit's class; the prior stays N(0, I).

Command: python train.py --config=configs/vae_mnist5k_class.py --workdir=runs/vae_mnist5k_class
Runtime: 3,000 steps of 128, as configs/vae_mnist5k.py (the class rows add 10 inputs to two dense layers).
Result: not measured yet. Its bounds are of log p(x|y), each held-out digit given its class; of the data's
true densities, E[-log p(x|y)] = E[-log p(x)] - I(x; y), and I(x; y) <= H(y) = log 10 = 2.3 nats, so expect
them at most that far below configs/vae_mnist5k.py's. The grid 'samples_by_class' has one row per digit.
"""

from configs import vae_mnist5k


def get_config():
  c = vae_mnist5k.get_config()
  c.model.num_classes = 10  # mnist5k's digit classes
  return c
