"""genjax: a functional JAX reference implementation of image-generation models.

Importing genjax has no side effects and does not import TensorFlow: it gives
the pure math (`genjax.losses`), the linen modules (`genjax.nets`) and the
model families (`genjax.models`: VAE, GAN, Diffusion and PixelCNN), whose
methods `init`, `train_step`, `sample` and `evaluate` are pure functions to
compile where they are used.
"""

from genjax import losses, models, nets
from genjax.losses import (
    bernoulli_log_prob,
    elbo,
    gaussian_log_prob,
    importance_log_weights,
    iwae_bound,
    kl_normal,
    kl_normal_standard,
    reparameterize,
    standard_normal_log_prob,
)
from genjax.models import GAN, VAE, Diffusion, DiffusionState, GANState, PixelCNN, PixelCNNState, VAEState
from genjax.nets import (
    ConvDecoder,
    ConvEncoder,
    DCGANDiscriminator,
    DCGANGenerator,
    GatedPixelCNN,
    MLPDecoder,
    MLPDiscriminator,
    MLPEncoder,
    MLPGenerator,
)

__version__ = "0.1.0"

__all__ = [
    "Diffusion", "DiffusionState", "GAN", "GANState", "PixelCNN", "PixelCNNState", "VAE", "VAEState",
    "ConvDecoder", "ConvEncoder", "MLPDecoder", "MLPEncoder", "DCGANDiscriminator", "DCGANGenerator",
    "GatedPixelCNN", "MLPDiscriminator", "MLPGenerator",
    "bernoulli_log_prob", "elbo", "gaussian_log_prob", "importance_log_weights", "iwae_bound",
    "kl_normal", "kl_normal_standard", "reparameterize", "standard_normal_log_prob",
    "losses", "models", "nets",
]
