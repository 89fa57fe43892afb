"""Flax linen modules: pure networks that know nothing of training."""

from genjax.nets.vae import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder

__all__ = ["ConvDecoder", "ConvEncoder", "MLPDecoder", "MLPEncoder"]
