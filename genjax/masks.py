"""Inpainting masks: which pixels of an image are given (True) and which a model draws (False).

A mask is bool [N, H, W, C], the images' shape, with every channel of a pixel alike. The kinds are those the
inpainting literature compares (RePaint's: a box, halves, scattered pixels):

- 'lower_half': the rows from H // 2 down are drawn (what an autoregressive model completes in its order);
- 'centre_box': the centre square of half the side is drawn (a PixelCNN sees only its top part's context);
- 'random_pixels': each pixel drawn with probability 1/2, from the example's key.

`known` builds them; evaluation scores the first two (EVAL_MASKS) on the held-out images, and sample.py's
--inpaint picks one.
"""

import jax
import jax.numpy as jnp

KINDS = ("lower_half", "centre_box", "random_pixels")
EVAL_MASKS = ("lower_half", "centre_box")


def known(kind: str, shape_NxHxWxC: tuple[int, ...], keys_N: jax.Array | None = None) -> jax.Array:
  """The mask of `kind` for N images of shape (H, W, C); 'random_pixels' draws example i's from keys_N[i]."""
  n, height, width, channels = shape_NxHxWxC
  rows = jnp.arange(height)[:, None]
  cols = jnp.arange(width)[None, :]
  if kind == "lower_half":
    pixel = jnp.broadcast_to(rows < height // 2, (height, width))
  elif kind == "centre_box":
    top, left = height // 4, width // 4
    box = (rows >= top) & (rows < top + height // 2) & (cols >= left) & (cols < left + width // 2)
    pixel = ~box
  elif kind == "random_pixels":
    if keys_N is None:
      raise ValueError("keys_N: 'random_pixels' draws each example's pixels from its own key")
    pixel_N = jax.vmap(lambda k: jax.random.bernoulli(k, 0.5, (height, width)))(keys_N)
    return jnp.broadcast_to(pixel_N[..., None], (n, height, width, channels))
  else:
    raise ValueError(f"kind: unknown {kind!r}; allowed: {', '.join(KINDS)}")
  return jnp.broadcast_to(pixel[None, :, :, None], (n, height, width, channels))
