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
import socket
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ("vae", "dcgan", "wgan_gp")


def worker(out, runs, devices, process=None):
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  args = [sys.executable, "-m", "tests.multidevice", f"--out={out}", "--runs=" + ",".join(runs)]
  if process is not None:
    args += [f"--coordinator_address={process[0]}", f"--num_processes={process[1]}", f"--process_id={process[2]}"]
  return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(procs):
  for proc in procs:
    _, err = proc.communicate()
    if proc.returncode:
      sys.exit(f"worker failed:\n{err[-3000:]}")


def difference(got: dict, want: dict, optimizer: bool) -> float:
  worst = 0.0
  for name, expected in want.items():
    if expected.dtype.kind != "f" or ("opt_state" in name) != optimizer:
      continue
    scale = max(float(np.abs(expected).max()), 1e-30)
    worst = max(worst, float(np.abs(got[name] - expected).max()) / scale)
  return worst


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--devices", default="1,2,8")
  parser.add_argument("--processes", type=int, default=2)
  args = parser.parse_args()
  counts = [int(n) for n in args.devices.split(",")]
  out = tempfile.mkdtemp(prefix="genjax_invariance_")
  runs = [f"{m}:{p}:{n}" for m in MODELS for p in ("jit", "pmap") for n in counts]
  finish([worker(out, runs, max(counts))])
  rows = [(run, f"{n} device{'s' * (n > 1)}") for run in runs for n in [int(run.split(":")[2])]]
  if args.processes > 1:
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      address = f"127.0.0.1:{s.getsockname()[1]}"
    multi = [f"{m}:{p}:all" for m in MODELS for p in ("jit", "pmap")]
    finish([worker(os.path.join(out, "multi"), multi, 1, (address, args.processes, i))
            for i in range(args.processes)])
    rows += [(f"multi/{run}", f"{args.processes} processes") for run in multi]

  print(f"{'model':8s} {'path':5s} {'where':12s} {'params, stats, EMA':>19s} {'Adam moments':>13s}")
  for run, where in rows:
    name = run.split("/")[-1]
    model, path, _ = name.split(":")
    want = dict(np.load(os.path.join(out, f"{model}_jit_1.npz")))
    got = dict(np.load(os.path.join(out, *run.split("/")[:-1], f"{model}_{path}_{name.split(':')[2]}.npz")))
    print(f"{model:8s} {path:5s} {where:12s} {difference(got, want, False):>19.1e} {difference(got, want, True):>13.1e}")


if __name__ == "__main__":
  main()
