"""The conformance suite's device checks: 2 and 8 devices and pmap give every family the numbers of one device.

Every registered family and architecture (tests/conformance.py) is trained
for a few steps on 1, 2 and 8 simulated CPU devices and on the pmap path, in
one 8-device subprocess. A family that forgets to average its gradients or
metrics over the pmap axis fails here. The FID and KID that the loop measures
of the trained weights (genjax.quality) must not move with the devices either.
The rule (conformance.assert_same_state) is also the one that two processes
must meet (tests/test_parallel.py, tests/multidevice.py).
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from tests import conformance
from tests.helpers import ROOT

CASES = conformance.cases(variants=False)  # the loop's machinery: the architectures (conformance.cases)
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


def _load(placements, name: str, arch: str, path: str, devices: int) -> dict:
  return dict(np.load(os.path.join(placements, f"{name}_{arch}_{path}_{devices}.npz")))


@pytest.mark.parametrize("name,arch", CASES, ids=IDS)
def test_two_and_eight_devices_and_pmap_agree_with_one_device(placements, name, arch):
  one = _load(placements, name, arch, "jit", 1)
  assert int(one[".step"]) == conformance.STEPS
  for path, devices in conformance.PLACEMENTS[1:]:
    conformance.assert_same_state(_load(placements, name, arch, path, devices), one, f"{path} on {devices}")


@pytest.mark.parametrize("name,arch", CASES, ids=IDS)
def test_the_comparison_sees_a_small_difference_and_the_ema_lags(placements, name, arch):
  """The states compared do move: weights off by 1e-3 of their size fail, and an EMA is not its weights.

  An EMA (conformance.device_config keeps its decay constant) lags its
  weights by more than the comparison allows somewhere, so the devices'
  agreement covers the EMA's own arithmetic, not a copy of the weights.
  """
  one = _load(placements, name, arch, "jit", 1)
  weights = [k for k, v in one.items() if "params" in k and v.dtype.kind == "f"]
  assert weights
  moved = {k: v + 1e-3 * np.abs(v).max() if k in weights else v for k, v in one.items()}
  with pytest.raises(AssertionError):
    conformance.assert_same_state(moved, one)
  emas = [k for k in weights if k.startswith(".ema_params")]
  if not emas:
    return
  # Its weights: the tree of the same leaves under another name (.params, .g_params) nearest to it (a GAN's
  # two MLPs can have the same leaves).
  rest = {k[len(".ema_params"):] for k in emas}
  trees = {k.split("[")[0] for k in weights} - {".ema_params"}
  same_leaves = [t for t in trees if {k[len(t):] for k in weights if k.split("[")[0] == t} == rest]
  raw = min(same_leaves, key=lambda t: sum(float(np.abs(one[".ema_params" + r] - one[t + r]).max()) for r in rest))
  lag = max(float(np.abs(one[".ema_params" + r] - one[raw + r]).max())
            / (1e-5 * max(float(np.abs(one[raw + r]).max()), 1e-3)) for r in rest)
  assert lag > 1, (raw, lag)
