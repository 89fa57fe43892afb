"""A small convolutional classifier for 28x28x1 digits: the feature network of FID and KID on the MNIST family.

Inception-v3 sees natural images at 299x299; on 28x28 digits a classifier
trained on the digits themselves gives features that separate what matters
there (TTUR's and the anchors' practice for MNIST-like data). Its 128
penultimate activations are the features; its logits serve its own accuracy.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.nets import convolution


class DigitClassifier(nn.Module):
  """conv 32 -> pool -> conv 64 -> pool -> dense `features` -> dense `classes`, ReLU, no normalisation.

  Takes float images in [0, 1] shaped [B, 28, 28, 1]; returns (logits_BxK, features_BxF).
  """

  features: int = 128
  classes: int = 10

  @nn.compact
  def __call__(self, x_BxHxWxC: jax.Array) -> tuple[jax.Array, jax.Array]:
    h = nn.relu(convolution.flax_conv(32, (3, 3))(x_BxHxWxC))
    h = nn.avg_pool(h, (2, 2), (2, 2))
    h = nn.relu(convolution.flax_conv(64, (3, 3))(h))
    h = nn.avg_pool(h, (2, 2), (2, 2))
    features_BxF = nn.relu(nn.Dense(self.features)(h.reshape(h.shape[0], -1)))
    return nn.Dense(self.classes)(features_BxF), features_BxF


def images_to_unit(image_BxHxWxC: jax.Array) -> jax.Array:
  """uint8 0..255 -> float32 [0, 1]: the classifier sees quantised images, generated ones as real ones."""
  return image_BxHxWxC.astype(jnp.float32) / 255.0
