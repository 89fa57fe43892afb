"""Mode coverage of samples from a Gaussian mixture (VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al. 2018)."""

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
