"""Data parallelism: the same numbers in two processes as in one; the paths' layouts, helpers and errors.

That every family gives the numbers of one device on 2 and 8 devices and on
the pmap path is the conformance suite's (tests/test_conformance_devices.py).
Here, the run that it cannot make: two processes (`tests/multidevice.py`)
joined by `jax.distributed.initialize` on 127.0.0.1 over gloo, JAX's CPU
collectives; and the pmap path on one device.
"""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import parallel, train_lib
from genjax.errors import UserError
from tests import conformance, multidevice
from tests.helpers import ROOT, TINY, cli_env, restore_state, tiny_config

PATHS = ("jit", "pmap")
# The conv VAE and the DCGAN (BatchNorm in both nets, an EMA at a constant decay) of tests.multidevice.
TWO_PROCESSES = ["vae:jit:all", "dcgan:jit:all", "dcgan:pmap:all"]
# Under float16, on 8 devices (tests.multidevice.LOW_PRECISION).
LOW_PRECISION = ["vae_float16:jit:8", "dcgan_float16:jit:8", "dcgan_float16:pmap:8", "dcgan_float16:jit:1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """{'one': one process on one device, jit and pmap; 'two': two processes with one device each, every process
  feeding its own rows of each global batch; 'low': float16 on 8 devices (and 1)}: folders of .npz states after
  3 steps (and each step's FLOPs and the types its all-reduces return), all run at once."""
  out = tmp_path_factory.mktemp("multidevice")
  address = multidevice.local_address()
  procs = [multidevice.launch(out / "one", [f"{m}:{p}:1" for m in ("vae", "dcgan") for p in PATHS], devices=1)]
  procs.append(multidevice.launch(out / "low", LOW_PRECISION, devices=8))
  procs += [multidevice.launch(out / "two", TWO_PROCESSES, devices=1, process=(address, 2, i)) for i in range(2)]
  multidevice.finish(procs)
  return out


def _state(folder, model: str, path: str, devices: str) -> dict:
  return dict(np.load(folder / f"{model}_{path}_{devices}.npz"))


def _program(folder, run: str) -> dict:
  return json.loads((folder / f"{run.replace(':', '_')}_program.json").read_text())


@pytest.mark.parametrize("run", TWO_PROCESSES)
def test_two_processes_reach_the_state_of_one(runs, run):
  model, path, _ = run.split(":")
  one = _state(runs / "one", model, "jit", "1")
  assert int(one[".step"]) == multidevice.STEPS
  conformance.assert_same_state(_state(runs / "two", model, path, "all"), one, run)


def test_every_process_gets_process_0s_flag(runs):
  """`parallel.from_chief`: the decisions only process 0 can make (a resume's missing evaluation) reach every
  process; otherwise process 0 would evaluate alone and the others end the run as complete (a hang)."""
  assert [(runs / "two" / f"from_chief_{i}.txt").read_text() for i in range(2)] == ["True", "True"]
  assert (runs / "one" / "from_chief_0.txt").read_text() == "True"


@pytest.mark.parametrize("model", ["vae", "dcgan"])
def test_pmap_on_one_device_reaches_the_state_of_jit(runs, model):
  """The pmap path with an axis of one (the conformance suite runs pmap on 8 devices)."""
  conformance.assert_same_state(_state(runs / "one", model, "pmap", "1"), _state(runs / "one", model, "jit", "1"))


@pytest.mark.parametrize("run", LOW_PRECISION[:2])
def test_under_float16_the_jit_path_sums_float32_gradients_across_devices(runs, run):
  """XLA's partitioner would sum each kernel's gradient across devices inside the float16 convolution that
  makes it (measured: float16 all-reduces in every family's step); the step written per device sums them
  after their cast to float32 (genjax.parallel.DataParallel.explicit_collectives)."""
  assert _program(runs / "low", run)["collectives"] == "f32"


def test_under_float16_the_jit_path_takes_pmaps_step(runs):
  """Per device, as pmap: each device's gradient is of its own rows, averaged once (shard_map's own tracking
  would sum it where the weights meet the rows, then the family's mean would not divide it: Adam's moments
  would be 8 times pmap's)."""
  conformance.assert_same_state(_state(runs / "low", "dcgan_float16", "jit", "8"),
                                _state(runs / "low", "dcgan_float16", "pmap", "8"))


def test_a_step_written_per_device_counts_the_flops_of_the_global_batch(runs):
  """The loop's FLOPs of a step (genjax.utilization) from one device's program on 8 devices, under jit's
  shard_map and pmap alike: 8 devices' shares of the batch, so the whole batch's FLOPs on one device, and 8
  copies of the work every device repeats (the optimizer's update of every weight, the EMA), which in this
  DCGAN of width 8 and batch 16 adds 7%."""
  one = _program(runs / "low", "dcgan_float16:jit:1")["flops"]
  eight = _program(runs / "low", "dcgan_float16:jit:8")["flops"]
  assert eight == _program(runs / "low", "dcgan_float16:pmap:8")["flops"]
  assert one < eight < 1.1 * one, (eight, one)


# ------------------------------------------------------------------ in this process (one device)


def test_a_step_of_a_family_built_for_another_axis_is_refused():
  """A pmap step (or a low-precision jit step on several devices) of a family built without the axis would
  not average its gradients over the devices."""
  from genjax import build  # pylint: disable=g-import-not-at-top
  config = tiny_config(parallel="pmap")
  par = parallel.DataParallel("pmap", 1)
  with pytest.raises(UserError, match=r"^parallel: the family was built for the axis None, this pmap step runs"
                     r" over 'data'; build it with genjax.build.family\(config, par\)$"):
    par.compile_steps(build.family(tiny_config()).train_step)
  for family in (build.family(config), build.family(config, par)):
    par.compile_step(family.train_step)
  # On one device a low-precision jit step is XLA's own program, as a family built without `par` expects.
  parallel.DataParallel("jit", 1, "float16").compile_step(build.family(tiny_config(precision="float16")).train_step)
  # A DataParallel made without the config's precision would compile XLA's float16 sums on several devices.
  with pytest.raises(UserError, match=r"^parallel: the DataParallel is for jit under float32, the config for jit"
                     r" under float16; make it with DataParallel\(config.parallel, config.num_devices,"
                     r" config.precision\)$"):
    build.family(tiny_config(precision="float16"), parallel.DataParallel("jit", 1))


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
  # JAX's own would be an IndexError, or a segmentation fault for a port that is no number
  for address in ("nohost", "localhost:abc", ":1234", "localhost:0", "localhost:65536"):
    with pytest.raises(UserError,
                       match=rf"^--coordinator_address: expected HOST:PORT \(process 0's\), got '{address}'$"):
      parallel.initialize(address, 2, 0)


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


def test_the_loop_on_pmap_checkpoints_a_state_that_resumes_on_jit(tmp_path):
  """train_and_evaluate on the pmap path (one device here): its checkpoints are the jit path's."""
  fields = {"model.g_width": 8, "model.d_width": 8, "model.latent_dim": 8, "eval_every": 4}
  straight, switched = str(tmp_path / "straight"), str(tmp_path / "switched")
  train_lib.train_and_evaluate(tiny_config("dcgan_mnist5k", num_steps=4, **fields), straight)
  train_lib.train_and_evaluate(tiny_config("dcgan_mnist5k", num_steps=2, parallel="pmap", **fields), switched)
  assert int(restore_state(switched)["step"]) == 2
  train_lib.train_and_evaluate(tiny_config("dcgan_mnist5k", num_steps=4, **fields), switched)
  got, want = restore_state(switched), restore_state(straight)
  for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
  assert os.path.isfile(os.path.join(switched, "samples", "samples_0000004.png"))


def test_a_batch_the_devices_cannot_share_is_refused_before_compiling(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2",
             XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8")
  result = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), f"--workdir={tmp_path}",
                           "--config.batch_size=12"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 2, result.stderr[-2000:]
  assert result.stderr.strip().splitlines()[-1] == (
      "error: batch_size: the global batch 12 does not divide among 8 devices; allowed: multiples of 8")
  assert "first step" not in result.stderr and not os.path.exists(tmp_path / "checkpoints")


def test_packs_must_fit_each_devices_rows_where_the_step_is_written_per_device():
  """PacGAN's packs are of one device's rows under pmap, and under jit at a low precision on several devices."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2",
             XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8")
  code = ("from genjax import parallel\nfrom genjax.errors import UserError\n"
          "for path, precision in (('jit', 'float32'), ('jit', 'bfloat16'), ('pmap', 'float32')):\n"
          "  try:\n    parallel.DataParallel(path, 8, precision).check_batch(16, 4)\n    print('accepted')\n"
          "  except UserError as e:\n    print(e)\n")
  result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
  assert result.stdout.splitlines() == [
      "accepted",
      "model.pack: 4 must divide the per-device batch 2 of the jit path under bfloat16; allowed: divisors of 2",
      "model.pack: 4 must divide the per-device batch 2 of the pmap path; allowed: divisors of 2"], (
          result.stderr[-2000:])


def test_a_process_that_fails_alone_ends_every_process_of_the_run_at_once(tmp_path):
  """Process 0 alone fails: its first evaluation cannot write into `samples`, which is a file. It exits with its
  one line and status 2 at once, and process 1, whose next all-reduce then loses its peer, ends too. Exiting
  the interpreter instead, process 0 waited at JAX's shutdown barrier and process 1 in its collective: both hung
  for the barrier's 5 minutes, then aborted."""
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "samples").write_text("")
  command = [sys.executable, os.path.join(ROOT, "train.py"), f"--config={ROOT}/configs/vae_mnist5k_mlp.py",
             f"--workdir={workdir}", *TINY, "--config.num_steps=4", "--config.eval_every=2",
             "--config.eval.quality_samples=0",
             f"--coordinator_address={multidevice.local_address()}", "--num_processes=2"]
  procs = [subprocess.Popen([*command, f"--process_id={i}"], cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for i in range(2)]
  ends = []
  for p in procs:
    try:
      ends.append((p.communicate(timeout=90)[1], p.returncode))
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      pytest.fail("a process of the run still waited after 90 s")
  (err0, status0), (_, status1) = ends
  assert status0 == 2 and err0.strip().splitlines()[-1] == (
      f"error: File exists ({workdir}/samples): fix that, then run the same command again; every checkpoint on disk"
      " is complete"), err0[-2000:]
  assert status1 != 0
