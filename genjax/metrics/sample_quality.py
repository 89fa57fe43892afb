"""Sample-quality metrics on feature vectors: Fréchet distance, KID, precision/recall, density/coverage.

Each takes features of real and generated examples (rows), as a feature
network gives them, and returns numbers; none of them sees an image. The
statistics are accumulated in float64 on the host (`GaussianStats`), so the
result does not depend on how the features were batched, and without
switching JAX to 64-bit for the whole process.

References:
  Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a
    Local Nash Equilibrium", NeurIPS 2017 (FID).
  Bińkowski et al., "Demystifying MMD GANs", ICLR 2018 (KID).
  Kynkäänniemi et al., "Improved Precision and Recall Metric for Assessing
    Generative Models", NeurIPS 2019.
  Naeem et al., "Reliable Fidelity and Diversity Metrics for Generative
    Models", ICML 2020 (density and coverage).
"""

import dataclasses

import numpy as np


@dataclasses.dataclass
class GaussianStats:
  """Streaming mean and covariance of feature rows, in float64: any batch split gives the same statistics.

  Sums of x and of x x^T are accumulated; `mean` and `cov` (unbiased, n - 1)
  are read at the end. Feed it with `update(features_BxD)`.
  """

  dim: int
  count: int = 0
  total_D: np.ndarray | None = None
  outer_DxD: np.ndarray | None = None

  def __post_init__(self):
    if self.total_D is None:
      self.total_D = np.zeros(self.dim, np.float64)
    if self.outer_DxD is None:
      self.outer_DxD = np.zeros((self.dim, self.dim), np.float64)

  def update(self, features_BxD) -> "GaussianStats":
    x = np.asarray(features_BxD, np.float64).reshape(-1, self.dim)
    self.count += x.shape[0]
    self.total_D += x.sum(axis=0)
    self.outer_DxD += x.T @ x
    return self

  @property
  def mean(self) -> np.ndarray:
    return self.total_D / self.count

  @property
  def cov(self) -> np.ndarray:
    if self.count < 2:
      raise ValueError(f"a covariance needs at least 2 examples, got {self.count}")
    mean = self.mean
    return (self.outer_DxD - self.count * np.outer(mean, mean)) / (self.count - 1)


def _sqrt_psd(matrix_DxD: np.ndarray) -> np.ndarray:
  """The symmetric square root of a symmetric positive semi-definite matrix (negative round-off clipped)."""
  values, vectors = np.linalg.eigh((matrix_DxD + matrix_DxD.T) / 2)
  return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mean1_D, cov1_DxD, mean2_D, cov2_DxD) -> float:
  """d² = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½), the Fréchet distance of two Gaussians (FID's formula).

  tr((Σ₁ Σ₂)^½) is computed as tr((Σ₁^½ Σ₂ Σ₁^½)^½): the two matrices are
  similar, and the second is symmetric positive semi-definite, so its
  eigenvalues are real and non-negative (no complex square roots, no
  iterative matrix square root).
  """
  mean1, mean2 = np.asarray(mean1_D, np.float64), np.asarray(mean2_D, np.float64)
  cov1, cov2 = np.asarray(cov1_DxD, np.float64), np.asarray(cov2_DxD, np.float64)
  root1 = _sqrt_psd(cov1)
  middle = root1 @ cov2 @ root1
  trace_root = float(np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None))))
  diff = mean1 - mean2
  return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_root)


def frechet_distance_of(stats1: GaussianStats, stats2: GaussianStats) -> float:
  """The Fréchet distance between the Gaussians fitted to two sets of features."""
  return frechet_distance(stats1.mean, stats1.cov, stats2.mean, stats2.cov)


def polynomial_kernel(x_NxD: np.ndarray, y_MxD: np.ndarray) -> np.ndarray:
  """k(x, y) = (x·y / D + 1)³, KID's kernel."""
  return (x_NxD @ y_MxD.T / x_NxD.shape[1] + 1.0) ** 3


def mmd2_unbiased(x_NxD: np.ndarray, y_MxD: np.ndarray) -> float:
  """The unbiased estimate of MMD² with the cubic polynomial kernel (Bińkowski et al. 2018, eq. 3)."""
  x, y = np.asarray(x_NxD, np.float64), np.asarray(y_MxD, np.float64)
  n, m = x.shape[0], y.shape[0]
  k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
  return float((k_xx.sum() - np.trace(k_xx)) / (n * (n - 1)) + (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
               - 2.0 * k_xy.mean())


def kid(real_NxD, fake_MxD, *, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
  """Kernel inception distance: (mean, standard deviation) of the unbiased MMD² over random subsets.

  Each subset draws `subset_size` rows of each set without replacement (all
  of them when a set is smaller), as Bińkowski et al. and the anchors do; the
  subsets come from `seed`, so the same features give the same numbers.
  """
  real, fake = np.asarray(real_NxD, np.float64), np.asarray(fake_MxD, np.float64)
  size = min(subset_size, real.shape[0], fake.shape[0])
  if size < 2:
    raise ValueError(f"KID needs at least 2 examples of each set, got {real.shape[0]} and {fake.shape[0]}")
  rng = np.random.default_rng(seed)
  values = [mmd2_unbiased(real[rng.choice(real.shape[0], size, replace=False)],
                          fake[rng.choice(fake.shape[0], size, replace=False)]) for _ in range(num_subsets)]
  return float(np.mean(values)), float(np.std(values))


def _pairwise_distances(x_NxD: np.ndarray, y_MxD: np.ndarray, rows: int = 1024) -> np.ndarray:
  """Euclidean distances [N, M], in row blocks (memory), float64."""
  out = np.empty((x_NxD.shape[0], y_MxD.shape[0]), np.float64)
  y_sq = np.sum(y_MxD * y_MxD, axis=1)
  for start in range(0, x_NxD.shape[0], rows):
    x = x_NxD[start:start + rows]
    sq = np.sum(x * x, axis=1)[:, None] + y_sq[None, :] - 2.0 * x @ y_MxD.T
    out[start:start + rows] = np.sqrt(np.clip(sq, 0.0, None))
  return out


def knn_radii(x_NxD, k: int = 3, rows: int = 256) -> np.ndarray:
  """The distance of each row to its k-th nearest other row (the radius of its k-NN ball), `rows` rows at a time:
  never an N x N matrix."""
  x = np.asarray(x_NxD, np.float64)
  if not 1 <= k < x.shape[0]:
    raise ValueError(f"k must be in [1, {x.shape[0] - 1}] for {x.shape[0]} examples, got {k}")
  # Column 0 of each sorted row is the row itself (distance 0).
  return np.concatenate([np.partition(_pairwise_distances(x[start:start + rows], x), k, axis=1)[:, k]
                         for start in range(0, x.shape[0], rows)])


def equal_sizes(a_NxD, b_MxD, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """The two sets with the larger one subsampled to the smaller's size (rows without replacement, from `seed`, in
  their order), as precision, recall, density and coverage are defined on: a k-NN ball's radius shrinks as its
  set grows, so a 50,000-image reference against 5,000 samples would put a perfect generator's coverage at 0.38
  (Naeem et al.'s expectation, 1 - prod_{i<=k} (N - i) / (M + N - i); 0.97 at equal sizes)."""
  a, b = np.asarray(a_NxD), np.asarray(b_MxD)
  n = min(a.shape[0], b.shape[0])
  pick = lambda x: x if x.shape[0] == n else x[np.sort(np.random.default_rng(seed).choice(x.shape[0], n, False))]
  return pick(a), pick(b)


def precision_recall_density_coverage(real_NxD, fake_MxD, k: int = 3, k_density: int = 5) -> dict[str, float]:
  """Precision and recall (Kynkäänniemi et al. 2019) and density and coverage (Naeem et al. 2020), k-NN balls.

  A real example's ball has the radius of its k-th nearest real neighbour,
  a fake's of its k-th nearest fake neighbour. Precision: the share of fakes
  inside some real ball. Recall: the share of reals inside some fake ball.
  Density: the mean number of real balls holding each fake, over k (1 for
  fakes distributed as the reals, above 1 where fakes crowd dense regions).
  Coverage: the share of real balls holding at least one fake.

  Each pair with its paper's k: `k` = 3 for precision and recall
  (Kynkäänniemi et al.), `k_density` = 5 for density and coverage (Naeem et
  al., whose coverage needs the larger balls to be stable).
  """
  real, fake = np.asarray(real_NxD, np.float64), np.asarray(fake_MxD, np.float64)
  distances_NxM = _pairwise_distances(real, fake)
  inside_real_NxM = distances_NxM <= knn_radii(real, k)[:, None]  # fake j in real i's ball
  inside_fake_NxM = distances_NxM <= knn_radii(fake, k)[None, :]  # real i in fake j's ball
  in_dense_NxM = distances_NxM <= knn_radii(real, k_density)[:, None] if k_density != k else inside_real_NxM
  return {
      "precision": float(np.mean(inside_real_NxM.any(axis=0))),
      "recall": float(np.mean(inside_fake_NxM.any(axis=1))),
      "density": float(in_dense_NxM.sum() / (k_density * fake.shape[0])),
      "coverage": float(np.mean(in_dense_NxM.any(axis=1))),
  }
