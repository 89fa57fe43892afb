"""Data parallelism: the same numbers on 1, 2 and 8 devices, on the jit and the pmap path, and in two processes.

The device count is fixed when JAX starts, so the runs happen in subprocesses
(`tests/multidevice.py`) with XLA_FLAGS=--xla_force_host_platform_device_count=8,
and the two-process run with `jax.distributed.initialize` on 127.0.0.1 over
gloo, JAX's CPU collectives.
"""

import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import parallel
from genjax.errors import UserError
from tests.helpers import ROOT

PATHS = ("jit", "pmap")
DEVICE_COUNTS = (1, 2, 8)
# The VAE and the DCGAN (BatchNorm in both nets) on every path and device count. (`tests.multidevice`
# also has 'wgan_gp': per-example interpolation weights and 2 critic steps, for a run by hand.)
RUNS = [(m, p, n) for m in ("vae", "dcgan") for p in PATHS for n in DEVICE_COUNTS]


def _worker(out, runs, *, devices: int, process: tuple[str, int, int] | None = None, wait: bool = True):
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  args = [sys.executable, "-m", "tests.multidevice", f"--out={out}", "--runs=" + ",".join(runs)]
  if process is not None:
    address, count, index = process
    args += [f"--coordinator_address={address}", f"--num_processes={count}", f"--process_id={index}"]
  proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  if wait:
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
  return proc


@pytest.fixture(scope="module")
def states(tmp_path_factory):
  """{(model, path, devices): {leaf name: array}} after 3 steps, all from one 8-device process."""
  out = tmp_path_factory.mktemp("multidevice")
  _worker(out, [f"{m}:{p}:{n}" for m, p, n in RUNS], devices=8)
  return {run: dict(np.load(out / f"{run[0]}_{run[1]}_{run[2]}.npz")) for run in RUNS}


def _assert_same_state(got: dict, want: dict) -> None:
  """Parameters, BatchNorm statistics and EMA to 1e-5 relative; optimizer moments to 1e-5 of their scale.

  Adam's moments of weights whose gradient is nearly zero are tiny sums of
  terms that cancel, whose relative rounding error says nothing; their
  difference is compared with the size of the whole array instead.
  """
  assert got.keys() == want.keys()
  for name, expected in want.items():
    actual = got[name]
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, name
    if expected.dtype.kind != "f":
      np.testing.assert_array_equal(actual, expected, err_msg=name)
    elif "opt_state" in name:
      assert np.max(np.abs(actual - expected)) <= 1e-5 * np.max(np.abs(expected)), name
    else:
      np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("model,path,devices", [r for r in RUNS if r[1:] != ("jit", 1)],
                         ids=[f"{m}-{p}-{n}" for m, p, n in RUNS if (p, n) != ("jit", 1)])
def test_three_steps_give_the_same_state_on_any_path_and_device_count(states, model, path, devices):
  reference = states[(model, "jit", 1)]
  assert int(reference[".step"]) == 3
  _assert_same_state(states[(model, path, devices)], reference)


def test_the_comparison_sees_a_one_step_difference(states):
  """The states do move: a state compared with one of a different model of its kind would fail."""
  vae = states[("vae", "jit", 1)]
  moved = {k: (v + 1e-3 * np.abs(v).max() if "params" in k and v.dtype.kind == "f" else v) for k, v in vae.items()}
  with pytest.raises(AssertionError):
    _assert_same_state(moved, vae)
  dcgan = states[("dcgan", "jit", 1)]
  assert np.abs(dcgan[".ema_params['ConvTranspose_0']['kernel']"]
                - dcgan[".g_params['ConvTranspose_0']['kernel']"]).max() > 0  # the weights moved, the EMA lags


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_reach_the_state_of_one(states, tmp_path):
  runs = ["vae:jit:all", "dcgan:jit:all", "dcgan:pmap:all"]
  address = f"127.0.0.1:{_free_port()}"
  procs = [_worker(tmp_path, runs, devices=1, process=(address, 2, i), wait=False) for i in range(2)]
  for proc in procs:
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
  for run in runs:
    model, path, _ = run.split(":")
    _assert_same_state(dict(np.load(tmp_path / f"{model}_{path}_all.npz")), states[(model, "jit", 1)])


# ------------------------------------------------------------------ in this process (one device)


def test_unknown_path_and_too_many_devices_are_one_line_errors():
  with pytest.raises(UserError, match=r"^parallel: unknown 'pjit'; allowed: jit, pmap$"):
    parallel.DataParallel("pjit")
  n = len(jax.devices())
  with pytest.raises(UserError, match=rf"^num_devices: must be an integer in \[1, {n}\]"):
    parallel.DataParallel("jit", n + 1)


def test_helpers_outside_pmap_are_the_identity():
  tree = {"a": jnp.arange(3.0)}
  assert parallel.mean_over(tree, None) is tree
  assert parallel.batch_offset(4, None) == 0
  key = jax.random.key(0)
  np.testing.assert_array_equal(parallel.global_rows(lambda k, n: jax.random.normal(k, (n, 2)), key, 4, None),
                                jax.random.normal(key, (4, 2)))


def test_global_rows_under_pmap_are_the_rows_of_the_global_draw():
  """On one device the mapped axis has size 1, so the device's rows are the whole draw."""
  key = jax.random.key(3)
  draw = lambda k, n: jax.random.normal(k, (n, 2))  # noqa: E731
  rows = jax.pmap(lambda _: parallel.global_rows(draw, key, 4, "data"), axis_name="data")(jnp.zeros(1))
  np.testing.assert_array_equal(rows[0], draw(key, 4))


def test_initialize_does_nothing_without_settings_and_wants_all_three(monkeypatch):
  for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
    monkeypatch.delenv(name, raising=False)
  assert parallel.initialize() is False
  with pytest.raises(UserError, match="give all three"):
    parallel.initialize("127.0.0.1:1234")
  monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
  with pytest.raises(UserError, match=r"^JAX_NUM_PROCESSES: must be an integer, got 'two'$"):
    parallel.initialize()
  with pytest.raises(UserError, match=r"^--process_id: must be in \[0, 2\), got 2$"):
    parallel.initialize("127.0.0.1:1234", 2, 2)


def test_a_checkpointed_state_moves_between_the_layouts_of_the_two_paths():
  par = parallel.DataParallel("pmap")
  state = par.init(lambda key: {"w": jax.random.normal(key, (3, 2)), "step": jnp.zeros((), jnp.int32)},
                   jax.random.key(0))
  run = par.to_run(state)
  assert run["w"].shape == (len(jax.devices()), 3, 2)
  back = par.to_canonical(run)
  np.testing.assert_array_equal(back["w"], state["w"])
  assert back["w"].sharding.is_fully_replicated
  np.testing.assert_array_equal(par.local_copy(run)["w"], state["w"])
