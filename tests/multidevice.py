"""Multi-process runs: a few training steps of small models, one process of several; the final states as .npz.

Kept apart from the conformance suite's device worker (tests/conformance.py),
which checks every family on 1, 2 and 8 devices and on pmap in ONE process:
what that worker cannot do is a run over several processes, joined by
`jax.distributed.initialize` (genjax.parallel.initialize), in which every
process feeds only its own rows of each global batch, the collectives cross
processes (gloo on the CPU) and process 0 alone writes. tests/test_parallel.py
starts two such processes and one plain process on one device, and holds the
two to the conformance suite's rule. benchmarks/invariance.py runs it too,
in one process on 1, 2 and 8 devices as well, for a table of the differences
(and 'wgan_gp': per-example interpolation weights and 2 critic steps).

  python -m tests.multidevice --out=DIR --runs=vae:jit:all,dcgan:pmap:all \\
      --coordinator_address=127.0.0.1:PORT --num_processes=2 --process_id=0   (and =1)
  XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m tests.multidevice --out=DIR \\
      --runs=vae:jit:1,vae:pmap:8,...

Every run trains on the same global batches (the first mnist5k training
digits) with the same keys, so its final state should not depend on the
path, the device count or the processes.
"""

import argparse
import json
import os
import re
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODELS = ("vae", "dcgan", "wgan_gp")
# The conv VAE and the DCGAN under float16 (genjax.precision): the jit path then writes its own collectives
# (genjax.parallel.DataParallel.explicit_collectives), so that each gradient is float32 before the cross-device sum.
LOW_PRECISION = {"vae_float16": "vae", "dcgan_float16": "dcgan"}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 3
BATCH = 16


def model_config(model: str, path: str, num_devices: int | None):
  """Small configs of the three kinds of step: VAE, DCGAN with BatchNorm, WGAN-GP with 2 critic steps; and the
  first two under float16 (LOW_PRECISION)."""
  from tests.helpers import tiny_config  # pylint: disable=g-import-not-at-top
  common = {"parallel": path, "num_devices": num_devices, "batch_size": BATCH}
  if model in LOW_PRECISION:
    model, common["precision"] = LOW_PRECISION[model], "float16"
  if model == "vae":
    return tiny_config("vae_mnist5k", **common)
  # A constant EMA decay: after 3 steps a ramped-up EMA is the raw weights, and the EMA's arithmetic would go unseen.
  gan = {"model.g_width": 8, "model.d_width": 8, "model.latent_dim": 8, "gan.ema_warmup": "none", **common}
  if model == "wgan_gp":
    gan.update({"gan.loss": "wasserstein", "gan.gp_weight": 10.0, "gan.d_steps": 2, "model.d_norm": "layer",
                "optim.b1": 0.0, "optim.b2": 0.9})
  return tiny_config("dcgan_mnist5k", **gan)


def train_steps(model: str, path: str, num_devices: int | None) -> dict:
  """The canonical state after STEPS steps, flattened to {'path/of/leaf': numpy array}, and under 'program' the
  step's FLOPs as the loop counts them and the element types the jit path's compiled step's all-reduces return
  ('collectives': the distinct ones, sorted, space-separated)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from genjax import build, parallel, utilization  # pylint: disable=g-import-not-at-top
  from genjax import random as grandom  # pylint: disable=g-import-not-at-top
  from genjax.data import load_mnist5k  # pylint: disable=g-import-not-at-top

  config = model_config(model, path, num_devices)
  par = parallel.DataParallel(path, num_devices, config.precision)
  par.check_batch(BATCH)
  family = build.family(config, par)
  keys = grandom.streams(0)
  state = par.to_run(par.init(family.init, keys.init))
  step_key = par.step_keys(keys.train)
  images = load_mnist5k("train")["image"][:STEPS * BATCH]
  rows = BATCH // jax.process_count()
  batches = [par.put_batch({"image": images[s * BATCH:(s + 1) * BATCH][jax.process_index() * rows:][:rows]})
             for s in range(STEPS)]
  step_fn, collectives = par.compile_step(family.train_step), []
  lowered = step_fn.lower(state, batches[0], step_key(0))
  flops = utilization.flops_of(lowered) * par.program_copies  # as the loop counts a step's FLOPs
  if path == "jit":  # pmap's programs are compiled ahead of time for the global shapes, and called with local ones
    step_fn = lowered.compile()
    collectives = all_reduce_types(step_fn.as_text())
  for s in range(STEPS):
    state, _ = step_fn(state, batches[s], step_key(s))
  # The canonical state is what a checkpoint holds, whichever path trained it.
  flat = jax.tree_util.tree_flatten_with_path(par.to_canonical(state))[0]
  leaves = {jax.tree_util.keystr(p): np.asarray(x.addressable_data(0)) for p, x in flat}
  return {**leaves, "program": {"collectives": " ".join(sorted(set(collectives))), "flops": flops}}


def all_reduce_types(hlo: str) -> list[str]:
  """The element type of every array an all-reduce of the compiled program `hlo` (its text) returns."""
  found = []
  for line in hlo.splitlines():
    _, _, rhs = line.partition(" = ")
    result = re.match(r"(.*?)\ball-reduce(-start)?\(", rhs)  # '(f32[4]{0}, /*index=5*/f32[..]) all-reduce('
    if result:
      found += re.findall(r"\b([a-z]+[0-9]+)\[", result.group(1))
  return found


def launch(out, runs: list[str], *, devices: int, process: tuple[str, int, int] | None = None) -> subprocess.Popen:
  """Starts this module in a subprocess with `devices` CPU devices (and as process `process` of a run)."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2",
             XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}")
  args = [sys.executable, "-m", "tests.multidevice", f"--out={out}", "--runs=" + ",".join(runs)]
  if process is not None:
    address, count, index = process
    args += [f"--coordinator_address={address}", f"--num_processes={count}", f"--process_id={index}"]
  return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(procs: list[subprocess.Popen], timeout: float = 1200) -> None:
  """Waits for every process; on a failure or timeout kills the rest and raises with the stderr tail."""
  try:
    for proc in procs:
      _, err = proc.communicate(timeout=timeout)
      if proc.returncode:
        raise RuntimeError(f"a multidevice worker failed:\n{err[-3000:]}")
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()


def local_address() -> str:
  """127.0.0.1:PORT with a port that was free a moment ago, for a coordinator."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return f"127.0.0.1:{s.getsockname()[1]}"


def state_difference(got: dict, want: dict, optimizer: bool) -> float:
  """Largest |got - want| over the float arrays (optimizer moments, or everything else) / each array's max |want|."""
  worst = 0.0
  for name, expected in want.items():
    if expected.dtype.kind != "f" or ("opt_state" in name) != optimizer:
      continue
    scale = max(float(abs(expected).max()), 1e-30)
    worst = max(worst, float(abs(got[name] - expected).max()) / scale)
  return worst


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", required=True)
  parser.add_argument("--runs", required=True, help="model:path:devices,... (devices 'all' for every device)")
  parser.add_argument("--coordinator_address")
  parser.add_argument("--num_processes", type=int)
  parser.add_argument("--process_id", type=int)
  args = parser.parse_args()
  from genjax import parallel  # pylint: disable=g-import-not-at-top
  parallel.initialize(args.coordinator_address, args.num_processes, args.process_id)
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  os.makedirs(args.out, exist_ok=True)
  # What every process learns of process 0's own knowledge (the loop's resume decisions): its flag, not theirs.
  with open(os.path.join(args.out, f"from_chief_{jax.process_index()}.txt"), "w") as f:
    f.write(str(parallel.from_chief(parallel.is_chief())))
  for run in args.runs.split(","):
    model, path, devices = run.split(":")
    leaves = train_steps(model, path, None if devices == "all" else int(devices))
    if parallel.is_chief():
      with open(os.path.join(args.out, f"{model}_{path}_{devices}_program.json"), "w", encoding="ascii") as f:
        json.dump(leaves.pop("program"), f)
      np.savez(os.path.join(args.out, f"{model}_{path}_{devices}.npz"), **leaves)
      print(f"done {run}", flush=True)


if __name__ == "__main__":
  main()
