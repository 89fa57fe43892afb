"""Flax linen modules: pure networks that know nothing of training."""

from genjax.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from genjax.nets.mlp_gan import MLPDiscriminator, MLPGenerator
from genjax.nets.pixelcnn import GatedPixelCNN
from genjax.nets.vae import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder

__all__ = ["DCGANDiscriminator", "DCGANGenerator", "GatedPixelCNN", "MLPDiscriminator", "MLPGenerator", "ConvDecoder",
           "ConvEncoder", "MLPDecoder", "MLPEncoder"]
