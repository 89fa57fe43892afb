"""Model families: nets + losses + optax glued into init / train_step / sample.

Each family module registers itself with `genjax.models.family` when it is
imported (the GAN's and the diffusion model's registrations live beside them, in `gan_config` and
`diffusion_config`); a new
family adds one import line here.
"""

from genjax.models import family
from genjax.models.family import Family, FamilySpec
# Registered in this order, which error messages list: the default family first.
from genjax.models.vae import VAE, VAEState  # isort: skip
from genjax.models.gan import GAN, GANState  # isort: skip
from genjax.models import gan_config  # noqa: F401  isort: skip  (the GAN's config and registration)
from genjax.models.diffusion import Diffusion, DiffusionState  # isort: skip
from genjax.models import diffusion_config  # noqa: F401  isort: skip  (the diffusion model's config and registration)
from genjax.models.pixelcnn import PixelCNN, PixelCNNState  # isort: skip

__all__ = ["Diffusion", "DiffusionState", "GAN", "GANState", "PixelCNN", "PixelCNNState", "VAE", "VAEState",
           "Family", "FamilySpec", "family"]
