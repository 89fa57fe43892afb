"""Model families: nets + losses + optax glued into init / train_step / sample."""

from genjax.models.gan import GAN, GANState
from genjax.models.vae import VAE, VAEState

__all__ = ["GAN", "GANState", "VAE", "VAEState"]
