"""The Flax VAE example's MLP (784-500-20) on the embedded MNIST digits.

Command: python train.py --config=configs/vae_mnist5k_mlp.py --workdir=runs/vae_mnist5k_mlp
Runtime: 3,000 steps of 128. Wall times belong to one machine on one day, so they live in docs/speed.md
("Runtimes of the configs"), with their machine and date; benchmarks/vae_conv_vs_mlp.py prints this config's
training time.
Result: on the 500 held-out digits, negative ELBO 107.4 nats and IWAE NLL
(k=1000) 100.9 nats: 7.5 nats worse than the conv VAE of
configs/vae_mnist5k.py at the same number of steps
(python benchmarks/vae_conv_vs_mlp.py).
"""

from configs import base


def get_config():
  c = base.get_config()
  c.model.arch = "mlp"
  c.model.hidden = (500,)
  c.steps_per_call = 10  # steps of a few ms: ten per compiled call (docs/speed.md, "Small steps")
  return c
