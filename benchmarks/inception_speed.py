"""FID's Inception-v3 features: genjax (Flax, jit) against pytorch-fid on the same weights and images, in one run.

Command: python benchmarks/inception_speed.py [--rounds=3 --batch=50]
(needs the test extras: pip install -e '.[test]'.)

Both sides take the same uint8 28x28x1 digits (mnist5k's held-out split) and
the same random weights (tests/torch_fid.py), resize them to 299x299 by the
same rule and return the 2,048 pool features; rounds alternate between them.
genjax's features are checked against pytorch-fid's before timing.
"""

import os
import statistics
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds of each side.")
_BATCH = flags.DEFINE_integer("batch", 50, "Images per call.")
_CALLS = flags.DEFINE_integer("calls", 2, "Calls per round.")


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top

  from genjax import data  # pylint: disable=g-import-not-at-top
  from genjax.metrics import features  # pylint: disable=g-import-not-at-top
  from tests.torch_fid import import_pytorch_fid, random_state_dict  # pylint: disable=g-import-not-at-top

  pt = import_pytorch_fid()
  state = random_state_dict(pt._inception_v3(num_classes=1008, aux_logits=False, weights=None), seed=0)
  pt.load_state_dict_from_url = lambda url, progress=True: state
  torch_net = pt.InceptionV3().eval()
  params = features.inception_params_from_torch({k: v.numpy() for k, v in state.items()})

  images = data.load_mnist5k("test")["image"][:_BATCH.value]
  torch_in = torch.from_numpy((np.repeat(images, 3, -1).transpose(0, 3, 1, 2) / 255.0).astype(np.float32))

  def run_torch():
    with torch.no_grad():
      return torch_net(torch_in)[0][:, :, 0, 0].numpy()

  def run_genjax():
    return np.asarray(jax.block_until_ready(features.inception_features(params, images)))

  want, got = run_torch(), run_genjax()  # the first genjax call compiles
  error = float(np.abs(got - want).max() / np.abs(want).max())
  print(f"max |genjax - pytorch-fid| / max |pytorch-fid| = {error:.1e}; torch threads {torch.get_num_threads()},"
        f" {jax.devices()[0].device_kind}")
  rates = {"genjax": [], "pytorch-fid": []}
  for _ in range(_ROUNDS.value):
    for name, fn in (("genjax", run_genjax), ("pytorch-fid", run_torch)):
      t = time.perf_counter()
      for _ in range(_CALLS.value):
        fn()
      rates[name].append(_CALLS.value * _BATCH.value / (time.perf_counter() - t))
  for name, r in rates.items():
    print(f"{name:12s} " + "  ".join(f"{x:6.1f}" for x in r) + f"  img/s (median {statistics.median(r):.1f})")
  print(f"genjax / pytorch-fid: {statistics.median(rates['genjax']) / statistics.median(rates['pytorch-fid']):.2f}")


if __name__ == "__main__":
  app.run(main)
