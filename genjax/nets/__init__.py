"""Flax linen modules: pure networks that know nothing of training."""

from genjax.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from genjax.nets.vae import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder

__all__ = ["DCGANDiscriminator", "DCGANGenerator", "ConvDecoder", "ConvEncoder", "MLPDecoder", "MLPEncoder"]
