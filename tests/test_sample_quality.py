"""Sample-quality metrics against closed forms and direct computations (genjax.metrics.sample_quality)."""

import itertools

import numpy as np
import pytest
from scipy import linalg

from genjax.metrics import sample_quality as sq


def _random_cov(rng, d):
  a = rng.normal(size=(d, d))
  return a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_distance_of_gaussians_is_the_closed_form_with_full_covariances():
  rng = np.random.default_rng(0)
  for d in (1, 3, 8):
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
    # The reference takes scipy's matrix square root of the (non-symmetric) product itself.
    expected = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real))
    np.testing.assert_allclose(sq.frechet_distance(mu1, s1, mu2, s2), expected, rtol=1e-9, atol=1e-12)
  # Two 1-D Gaussians: (mu1 - mu2)^2 + (sigma1 - sigma2)^2.
  np.testing.assert_allclose(sq.frechet_distance([1.0], [[4.0]], [-2.0], [[9.0]]), 9.0 + 1.0, rtol=1e-12)
  assert sq.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)


def test_the_estimate_from_samples_converges_to_the_distance_of_the_gaussians():
  rng = np.random.default_rng(1)
  d = 3
  mu1, mu2, s1, s2 = rng.normal(size=d), rng.normal(size=d), _random_cov(rng, d), _random_cov(rng, d)
  exact = sq.frechet_distance(mu1, s1, mu2, s2)
  errors = []
  for n in (1_000, 100_000):
    a = sq.GaussianStats(d).update(rng.multivariate_normal(mu1, s1, size=n))
    b = sq.GaussianStats(d).update(rng.multivariate_normal(mu2, s2, size=n))
    errors.append(abs(sq.frechet_distance_of(a, b) - exact))
  assert errors[1] < 0.02 * exact and errors[1] < errors[0]


def test_streaming_statistics_equal_the_one_shot_ones_for_any_batch_split():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(101, 5)).astype(np.float32) * 3 + 1
  one = sq.GaussianStats(5).update(x)
  np.testing.assert_allclose(one.mean, x.astype(np.float64).mean(0), rtol=1e-12)
  np.testing.assert_allclose(one.cov, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-10)
  for cuts in ([1], [50, 51], [7, 33, 90], list(range(1, 101))):
    stats = sq.GaussianStats(5)
    for part in np.split(x, cuts):
      stats.update(part)
    np.testing.assert_allclose(stats.mean, one.mean, rtol=1e-12)
    np.testing.assert_allclose(stats.cov, one.cov, rtol=1e-10)


def _mmd2_by_loops(x, y):
  """The unbiased MMD^2 of Bińkowski et al. (eq. 3), one kernel evaluation at a time."""
  def k(a, b):
    return (float(np.dot(a, b)) / len(a) + 1.0) ** 3
  n, m = len(x), len(y)
  xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
  yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
  xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
  return xx + yy - 2 * xy


def test_kid_is_the_unbiased_mmd_of_the_direct_computation():
  rng = np.random.default_rng(3)
  x, y = rng.normal(size=(12, 4)), rng.normal(loc=0.5, size=(15, 4))
  np.testing.assert_allclose(sq.mmd2_unbiased(x, y), _mmd2_by_loops(x, y), rtol=1e-10)
  # One subset: every real row (in some order) and the 12 fake rows the seed draws; its spread is 0.
  mean, std = sq.kid(x, y, num_subsets=1, subset_size=12, seed=0)
  rng = np.random.default_rng(0)
  rng.choice(12, 12, replace=False)
  np.testing.assert_allclose(mean, _mmd2_by_loops(x, y[rng.choice(15, 12, replace=False)]), rtol=1e-10)
  assert std == 0.0


def test_kid_is_near_zero_for_one_distribution_and_clearly_positive_for_two():
  rng = np.random.default_rng(4)
  same = sq.kid(rng.normal(size=(2000, 8)), rng.normal(size=(2000, 8)), num_subsets=20, subset_size=500)
  other = sq.kid(rng.normal(size=(2000, 8)), rng.normal(loc=0.3, size=(2000, 8)), num_subsets=20,
                 subset_size=500)
  assert abs(same[0]) < 3 * same[1] + 1e-4  # unbiased: zero within its spread
  assert other[0] > 10 * abs(same[0]) and other[0] > 5 * other[1]
  assert sq.kid(np.ones((5, 2)), np.ones((5, 2)), seed=1) == sq.kid(np.ones((5, 2)), np.ones((5, 2)), seed=1)


def _prdc_by_loops(real, fake, k):
  def radius(points, i):
    return sorted(np.linalg.norm(points[i] - points[j]) for j in range(len(points)) if j != i)[k - 1]
  r_real = [radius(real, i) for i in range(len(real))]
  r_fake = [radius(fake, j) for j in range(len(fake))]
  in_real = [[np.linalg.norm(f - r) <= rr for r, rr in zip(real, r_real)] for f in fake]
  precision = np.mean([any(row) for row in in_real])
  recall = np.mean([any(np.linalg.norm(r - f) <= rf for f, rf in zip(fake, r_fake)) for r in real])
  density = sum(sum(row) for row in in_real) / (k * len(fake))
  coverage = np.mean([any(in_real[j][i] for j in range(len(fake))) for i in range(len(real))])
  return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


def test_precision_recall_density_coverage_equal_the_direct_computation():
  rng = np.random.default_rng(5)
  real, fake = rng.normal(size=(40, 3)), rng.normal(loc=0.7, scale=0.6, size=(30, 3))
  got = sq.precision_recall_density_coverage(real, fake)  # the papers' k: 3 for P/R, 5 for D/C
  want = {**{n: v for n, v in _prdc_by_loops(real, fake, 3).items() if n in ("precision", "recall")},
          **{n: v for n, v in _prdc_by_loops(real, fake, 5).items() if n in ("density", "coverage")}}
  for name in want:
    np.testing.assert_allclose(got[name], want[name], rtol=1e-12, err_msg=name)
  assert got["coverage"] != _prdc_by_loops(real, fake, 3)["coverage"]  # a case where k tells them apart
  assert 0 < got["precision"] < 1 and 0 < got["recall"] < 1  # a case that tells the two apart


def test_prdc_on_constructed_clouds():
  # Real points 0..9 on a line: the 3rd neighbour is 2 away inside, 3 away at both ends.
  real = np.arange(10, dtype=np.float64)[:, None]
  np.testing.assert_allclose(sq.knn_radii(real, 3), [3, 2, 2, 2, 2, 2, 2, 2, 2, 3])
  np.testing.assert_allclose(sq.knn_radii(real, 3, rows=3), [3, 2, 2, 2, 2, 2, 2, 2, 2, 3])  # in 4 blocks
  same = sq.precision_recall_density_coverage(real, real, k=3, k_density=3)
  assert same["precision"] == same["recall"] == same["coverage"] == 1.0
  # Each point lies in the balls of the points within 2 (3 at the ends): the count by hand, over k * 10.
  counts = [sum(abs(p - q) <= r for q, r in zip(range(10), [3, 2, 2, 2, 2, 2, 2, 2, 2, 3])) for p in range(10)]
  assert same["density"] == pytest.approx(sum(counts) / 30)
  far = sq.precision_recall_density_coverage(real, real + 100.0, k=3, k_density=3)
  assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
  # Fakes on the first half only: every fake is real-like; reals 0..6 have a fake in their ball (coverage),
  # reals 0..7 lie in a fake's ball (the fakes' radii: 3, 2, 2, 2, 3; recall).
  half = sq.precision_recall_density_coverage(real, real[:5], k=3, k_density=3)
  assert half["precision"] == 1.0 and half["coverage"] == pytest.approx(0.7) and half["recall"] == pytest.approx(0.8)


def test_coverage_is_measured_on_sets_of_one_size_as_its_paper_defines_it():
  """A k-NN ball's radius shrinks as its set grows, so coverage compares sets of one size (Naeem et al.: a perfect
  generator's expected coverage is 1 - prod_{i<=k} (N - i) / (M + N - i), 0.97 for k = 5 at N = M, 0.38 for a
  reference 10 times the samples). `equal_sizes` subsamples the larger set, deterministically, to the smaller's."""
  rng = np.random.default_rng(0)
  real, fake = rng.normal(size=(2000, 8)), rng.normal(size=(200, 8))
  expected = lambda n, m: 1.0 - np.prod([(n - i) / (m + n - i) for i in range(1, 6)])  # noqa: E731
  unequal = sq.precision_recall_density_coverage(real, fake)["coverage"]
  sub_real, same_fake = sq.equal_sizes(real, fake)
  assert sub_real.shape == (200, 8) and np.array_equal(same_fake, fake)
  assert {tuple(r) for r in sub_real} <= {tuple(r) for r in real}  # rows of the set, none twice
  assert len({tuple(r) for r in sub_real}) == 200
  np.testing.assert_array_equal(sq.equal_sizes(real, fake)[0], sub_real)  # the same rows every time
  equal = sq.precision_recall_density_coverage(sub_real, fake)["coverage"]
  assert abs(unequal - expected(2000, 200)) < 0.06 and abs(equal - expected(200, 200)) < 0.04, (unequal, equal)
  b, a = sq.equal_sizes(fake, real)  # either order
  assert a.shape == (200, 8) and np.array_equal(b, fake)
