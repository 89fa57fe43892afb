"""Pure `jax.numpy` math: KL terms, log-likelihoods, ELBO and IWAE bounds, GAN losses.

Functions take logits and log-variances, never probabilities or variances.
The distributions no family owns (`genjax.losses.distributions`: Gaussian
KL terms, log-densities, reparameterised draws) and the VAE bounds
(`genjax.losses.vae`) return per-example values and the caller reduces over
the batch; the GAN losses and penalties (`genjax.losses.gan`)
return the batch mean, the quantity each paper writes as an expectation.
"""

from genjax.losses import gan

from genjax.losses import diffusion
from genjax.losses import distributions
from genjax.losses import ema
from genjax.losses import pixelcnn
from genjax.losses.distributions import bernoulli_log_prob
from genjax.losses.distributions import gaussian_log_prob
from genjax.losses.distributions import kl_normal
from genjax.losses.distributions import kl_normal_standard
from genjax.losses.distributions import reparameterize
from genjax.losses.distributions import standard_normal_log_prob
from genjax.losses.vae import elbo
from genjax.losses.vae import importance_log_weights
from genjax.losses.vae import iwae_bound

__all__ = [
    "bernoulli_log_prob",
    "elbo",
    "gaussian_log_prob",
    "importance_log_weights",
    "iwae_bound",
    "kl_normal",
    "kl_normal_standard",
    "reparameterize",
    "standard_normal_log_prob",
]
