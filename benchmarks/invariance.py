"""Same numbers on any device count and path: the largest difference after 3 steps, as a table.

Command: python benchmarks/invariance.py [--devices=1,2,8] [--processes=2]
Runs `tests/multidevice.py` (3 steps of a small conv VAE, a DCGAN with
BatchNorm in both nets, and a WGAN-GP with 2 critic steps, on the same
global batches and keys) in one process with 8 simulated CPU devices, on the
jit and the pmap path, and in 2 processes on 127.0.0.1 (gloo) with one device
each; prints, for every run, the largest difference from the 1-device jit run
over the parameters, BatchNorm statistics and EMA, relative to the largest
magnitude of each array, and the same for Adam's moments.
"""

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.multidevice import MODELS, finish, launch, local_address, state_difference  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--devices", default="1,2,8")
  parser.add_argument("--processes", type=int, default=2)
  args = parser.parse_args()
  counts = [int(n) for n in args.devices.split(",")]
  out = tempfile.mkdtemp(prefix="genjax_invariance_")
  runs = [f"{m}:{p}:{n}" for m in MODELS for p in ("jit", "pmap") for n in counts]
  finish([launch(out, runs, devices=max(counts))])
  rows = [(run, f"{n} device{'s' * (n > 1)}") for run in runs for n in [int(run.split(":")[2])]]
  if args.processes > 1:
    address = local_address()
    multi = [f"{m}:{p}:all" for m in MODELS for p in ("jit", "pmap")]
    finish([launch(os.path.join(out, "multi"), multi, devices=1, process=(address, args.processes, i))
            for i in range(args.processes)])
    rows += [(f"multi/{run}", f"{args.processes} processes") for run in multi]

  print(f"{'model':8s} {'path':5s} {'where':12s} {'params, stats, EMA':>19s} {'Adam moments':>13s}")
  for run, where in rows:
    name = run.split("/")[-1]
    model, path, _ = name.split(":")
    want = dict(np.load(os.path.join(out, f"{model}_jit_1.npz")))
    got = dict(np.load(os.path.join(out, *run.split("/")[:-1], f"{model}_{path}_{name.split(':')[2]}.npz")))
    print(f"{model:8s} {path:5s} {where:12s} {state_difference(got, want, False):>19.1e} {state_difference(got, want, True):>13.1e}")


if __name__ == "__main__":
  main()
