"""Image grids: tile a [rows, cols, H, W, C] uint8 array and write it as PNG."""

import os

import numpy as np
from PIL import Image

from genjax import paths


def tile(images_RxCxHxWxC: np.ndarray, pad: int = 2, fill: int = 255) -> np.ndarray:
  """One uint8 picture [R*(H+pad)+pad, C*(W+pad)+pad, ch] of a grid of images."""
  images = np.asarray(images_RxCxHxWxC)
  if images.dtype != np.uint8 or images.ndim != 5:
    raise ValueError(f"tile wants uint8 [rows, cols, H, W, C], got {images.dtype} {images.shape}")
  rows, cols, h, w, c = images.shape
  grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), fill, np.uint8)
  for r in range(rows):
    for q in range(cols):
      top, left = pad + r * (h + pad), pad + q * (w + pad)
      grid[top:top + h, left:left + w] = images[r, q]
  return grid


def write_png(path: str, images_RxCxHxWxC: np.ndarray, scale: int = 1) -> str:
  """Writes the tiled grid to `path` (nearest-neighbour upscaled), returns the path."""
  grid = tile(images_RxCxHxWxC)
  picture = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
  if scale > 1:
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
  if paths.is_remote(path):  # one upload of the whole picture: the old one or the new one, never part of it
    paths.write_atomically(path, paths.png_bytes(picture))
    return path
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  # Written beside and renamed into place: a full disk leaves the old picture or none, never an empty one.
  temporary = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
  try:
    picture.save(temporary, format="PNG")
    os.replace(temporary, path)
  except OSError as e:
    if os.path.exists(temporary):
      os.remove(temporary)
    raise OSError(e.errno, e.strerror, path) from e
  return path
