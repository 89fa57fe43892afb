"""Mode coverage of samples from a Gaussian mixture (VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al. 2018).

The metric and the picture of a 2-D mixture belong to the data, not to a
family: the loop and sample.py score any family that samples points
(`genjax.evaluation.point_metrics`).
"""

import jax.numpy as jnp
import numpy as np


def mode_coverage(samples_Nx2: np.ndarray, centres_Kx2: np.ndarray, std: float,
                  threshold: float = 3.0) -> dict[str, float]:
  """Modes covered, % high-quality samples and reverse KL of samples against a mixture.

  A sample is high-quality when it lies within `threshold` standard deviations
  of its nearest mode; a mode is covered when at least one high-quality
  sample is assigned to it; reverse KL = KL(h || uniform) = log K - H(h),
  where h is the histogram of the high-quality samples over the modes.

  Args:
    samples_Nx2: generated points.
    centres_Kx2: the mixture's mode centres.
    std: the modes' (isotropic) standard deviation.
    threshold: in standard deviations (3 in both papers).

  Returns:
    {'modes': covered modes (0..K), 'high_quality': percent of samples,
     'reverse_kl': nats, inf when no sample is high-quality}.
  """
  samples = np.asarray(samples_Nx2, np.float64)
  centres = np.asarray(centres_Kx2, np.float64)
  dist_NxK = np.linalg.norm(samples[:, None, :] - centres[None, :, :], axis=-1)
  nearest_N = np.argmin(dist_NxK, axis=1)
  good_N = dist_NxK[np.arange(len(samples)), nearest_N] <= threshold * std
  counts_K = np.bincount(nearest_N[good_N], minlength=len(centres)).astype(np.float64)
  total = counts_K.sum()
  if total == 0:
    reverse_kl = float("inf")
  else:
    h_K = counts_K / total
    nonzero = h_K > 0
    reverse_kl = float(np.log(len(centres)) + np.sum(h_K[nonzero] * np.log(h_K[nonzero])))
  return {"modes": float(np.count_nonzero(counts_K)), "high_quality": 100.0 * float(good_N.mean()),
          "reverse_kl": reverse_kl}


def scatter(points_Nx2: jnp.ndarray, centres_Kx2: np.ndarray, size: int = 256) -> jnp.ndarray:
  """uint8 [1, 1, size, size, 3]: white, darker where samples are denser, red ticks around each mode centre."""
  centres_Kx2 = jnp.asarray(centres_Kx2)
  lo, hi = jnp.min(centres_Kx2), jnp.max(centres_Kx2)
  margin = 0.25 * (hi - lo)
  lo, hi = lo - margin, hi + margin

  def pixels(p_Nx2):
    ij = jnp.floor((p_Nx2 - lo) / (hi - lo) * size).astype(jnp.int32)
    # Row 0 at the top: y grows upwards as in a plot.
    return size - 1 - ij[:, 1], ij[:, 0]

  rows, cols = pixels(jnp.asarray(points_Nx2))
  inside = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
  counts = jnp.zeros((size, size)).at[rows, cols].add(inside.astype(jnp.float32), mode="drop")
  ink = jnp.clip(counts / 4.0, 0.0, 1.0)  # four or more samples in a pixel: black
  gray = (1.0 - ink)[..., None] * jnp.ones(3)
  c_rows, c_cols = pixels(centres_Kx2)
  red = jnp.asarray([1.0, 0.0, 0.0])
  # Ticks 4 and 5 pixels from each centre, so the samples on it stay visible.
  for dr, dc in ((4, 0), (5, 0), (-4, 0), (-5, 0), (0, 4), (0, 5), (0, -4), (0, -5)):
    gray = gray.at[c_rows + dr, c_cols + dc].set(red, mode="drop")
  return jnp.round(gray * 255).astype(jnp.uint8)[None, None]
