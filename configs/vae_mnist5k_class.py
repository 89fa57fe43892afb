"""The class-conditional conv VAE (CVAE, Sohn et al. 2015) on the embedded offline MNIST digits: configs/vae_mnist5k.py
with the encoder q(z|x, y) and the decoder p(x|z, y) given each digit's class; the prior stays N(0, I), and the
training loss weighs the KL term by beta = 3 (Higgins et al. 2017).

Why beta 3: with the ELBO's weight 1 the code z carries the class as well as the style (the decoder learns to
read z before it learns to read y), so a z drawn from the prior for class 3 often holds a 7's shape and the
decoder draws a blend. A heavier KL term makes keeping in z what y already says costly. Measured with four
variants trained in turns for 3 minutes each (about 1,830 steps; 1,000 samples; the share the digit classifier
gives the class asked for, and FID): beta 1: 58%, FID 158; latent 4: 95%, 196; latent 8 and beta 2: 92%, 97;
beta 3: 96%, 75. The reported bounds keep weight 1 (they bound log p(x|y)), so they are looser than beta 1
would train them.

Command: python train.py --config=configs/vae_mnist5k_class.py --workdir=runs/vae_mnist5k_class
Runtime: 3,000 steps of 128, as configs/vae_mnist5k.py (the class rows add 10 inputs to two dense layers).
Result (benchmarks/conditional_vs_unconditional.py --family=vae, 5 minutes of training, 1,000 samples): 98.4% of
the samples are of the class asked for, FID 37.7; the same config without classes: FID 109.1 (docs/results.md).
Its bounds are of log p(x|y), each held-out digit given its class. The grid 'samples_by_class' has one row per
digit.
"""

from configs import vae_mnist5k


def get_config():
  c = vae_mnist5k.get_config()
  c.model.num_classes = 10  # mnist5k's digit classes
  c.model.beta = 3.0  # see the docstring: at 1 the prior's codes mix classes
  return c
