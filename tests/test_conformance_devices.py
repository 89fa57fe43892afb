"""The conformance suite's device checks: 2 and 8 devices and pmap give every family the numbers of one device.

Every registered family and architecture (tests/conformance.py) is trained
for a few steps on 1, 2 and 8 simulated CPU devices and on the pmap path, in
one 8-device subprocess. A family that forgets to average its gradients or
metrics over the pmap axis fails here. The FID and KID that the loop measures
of the trained weights (genjax.quality) must not move with the devices either.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from tests import conformance
from tests.helpers import ROOT

CASES = conformance.cases()
IDS = [f"{name}:{arch}" for name, arch in CASES]


@pytest.fixture(scope="module")
def placements(tmp_path_factory):
  """Every case trained on 1, 2 and 8 simulated devices and with pmap, in one 8-device process."""
  out = tmp_path_factory.mktemp("placements")
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2",
             XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8")
  result = subprocess.run([sys.executable, "-m", "tests.conformance", f"--out={out}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1200)
  assert result.returncode == 0, result.stderr[-3000:]
  return out


@pytest.mark.parametrize("name,arch", CASES, ids=IDS)
def test_two_and_eight_devices_and_pmap_agree_with_one_device(placements, name, arch):
  def load(path, devices):
    return dict(np.load(os.path.join(placements, f"{name}_{arch}_{path}_{devices}.npz")))

  one = load("jit", 1)
  for path, devices in conformance.PLACEMENTS[1:]:
    other = load(path, devices)
    assert other.keys() == one.keys()
    for leaf, want in one.items():
      if leaf.startswith("quality/"):
        # FID and KID of the loop's evaluation: samples of weights equal to 1e-5, quantised to uint8, give the
        # same numbers (measured: equal to the last digit on every path).
        assert abs(float(other[leaf]) - float(want)) <= 1e-4 * abs(float(want)), (path, devices, leaf)
      elif want.dtype.kind == "f":
        # Relative to the leaf, or to 1e-3 for a leaf smaller than that (a bias that started at zero and has
        # taken a few small steps), whose own size says nothing about the precision of its updates.
        scale = max(float(np.abs(want).max()), 1e-3)
        assert float(np.abs(other[leaf] - want).max()) / scale <= 1e-5, (path, devices, leaf)
      else:
        np.testing.assert_array_equal(other[leaf], want)
