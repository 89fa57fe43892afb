import math

import jax
import numpy as np
import pytest

from genjax import evaluation
from genjax.data import toy2d
from genjax.metrics import mode_coverage, scatter


def test_ring_modes_are_eight_distinct_points_on_the_unit_circle():
  centres = toy2d.mode_centres("ring8")
  assert centres.shape == (8, 2)
  np.testing.assert_allclose(np.linalg.norm(centres, axis=1), 1.0, rtol=1e-6)
  gaps = np.linalg.norm(centres - np.roll(centres, 1, axis=0), axis=1)
  np.testing.assert_allclose(gaps, 2 * math.sin(math.pi / 8), rtol=1e-5)  # evenly spaced, none doubled


def test_grid_modes():
  centres = toy2d.mode_centres("grid25")
  assert centres.shape == (25, 2) and set(np.unique(centres)) == {-4.0, -2.0, 0.0, 2.0, 4.0}
  assert len({tuple(c) for c in centres}) == 25


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_a_perfect_sampler_covers_everything_with_the_chi2_share_of_high_quality(name):
  x = np.asarray(toy2d.sample(name, jax.random.key(0), 20_000))
  k = len(toy2d.mode_centres(name))
  result = mode_coverage(x, toy2d.mode_centres(name), toy2d.mode_std(name))
  # Within 3 std in 2-D: P(chi2_2 <= 9) = 1 - exp(-4.5) = 98.89 %.
  expected = 100 * (1 - math.exp(-4.5))
  assert result["modes"] == k
  assert abs(result["high_quality"] - expected) < 4 * 100 * math.sqrt(0.0111 * 0.9889 / x.shape[0])
  assert 0 <= result["reverse_kl"] < 0.01
  std = np.std(x - toy2d.mode_centres(name)[np.argmin(np.linalg.norm(x[:, None] - toy2d.mode_centres(name)[None], axis=-1), axis=1)])
  assert abs(std - toy2d.mode_std(name)) < 0.05 * toy2d.mode_std(name)


def test_collapsed_and_split_samples_have_their_closed_form_reverse_kl():
  centres, std = toy2d.mode_centres("ring8"), 0.01
  one_mode = np.repeat(centres[:1], 100, axis=0)
  r = mode_coverage(one_mode, centres, std)
  assert r["modes"] == 1 and r["high_quality"] == 100.0 and abs(r["reverse_kl"] - math.log(8)) < 1e-12
  two_modes = np.concatenate([np.repeat(centres[:1], 50, 0), np.repeat(centres[3:4], 50, 0)])
  assert abs(mode_coverage(two_modes, centres, std)["reverse_kl"] - math.log(4)) < 1e-12


def test_far_samples_are_not_high_quality_and_do_not_cover():
  centres, std = toy2d.mode_centres("ring8"), 0.01
  near = centres[:4] + np.array([0.029, 0.0])  # 2.9 std: counts
  far = centres[4:] + np.array([0.0, 0.031])  # 3.1 std: does not
  r = mode_coverage(np.concatenate([near, far]), centres, std)
  assert r["modes"] == 4 and r["high_quality"] == 50.0 and abs(r["reverse_kl"] - math.log(2)) < 1e-12
  assert mode_coverage(far, centres, std)["reverse_kl"] == float("inf")


def test_unknown_toy_dataset():
  with pytest.raises(ValueError, match="unknown 2-D dataset 'moons'; allowed: ring8, grid25"):
    toy2d.mode_centres("moons")


def test_the_scatter_marks_every_mode_with_its_ticks():
  picture = np.asarray(scatter(np.zeros((10, 2), np.float32), toy2d.mode_centres("ring8")))
  assert picture.shape == (1, 1, 256, 256, 3) and picture.dtype == np.uint8
  red = (picture[..., 0] == 255) & (picture[..., 1] == 0)
  assert int(red.sum()) == 8 * 8  # eight ticks around each of the eight ring modes
  centre = 256 // 2  # the 10 points at the origin: one black pixel
  assert picture[0, 0, centre - 1, centre].tolist() == [0, 0, 0]


def test_point_metrics_score_any_family_that_outputs_the_mode_centres():
  """A sampler of exact centres covers every mode with 100% high quality; images get no point metrics."""
  centres = toy2d.mode_centres("ring8")

  def sample(params, key, n):
    del params
    return centres[np.asarray(jax.random.randint(key, (n,), 0, 8))]

  result = evaluation.point_metrics(sample, None, jax.random.key(0), "ring8")
  assert result["modes"] == 8 and result["high_quality"] == 100.0 and result["reverse_kl"] < 0.01
  assert evaluation.point_metrics(sample, None, jax.random.key(0), "mnist5k") == {}
  grids = evaluation.point_grids({"samples": sample}, None, jax.random.key(0), "ring8")
  assert list(grids) == ["samples"] and grids["samples"].shape == (1, 1, 256, 256, 3)
