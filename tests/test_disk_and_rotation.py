"""A full disk, sample.py beside a live run, and the words of an unreadable checkpoint.

A full disk: train.py on a real tmpfs too small for its later checkpoints
stops with one line `error: ...` (exit 2), removes the half-written step and
keeps the last complete one; the same command on the still-full disk says so
again and loses nothing. A live run: sample.py reads the newest complete
checkpoint while train.py keeps saving and removing old ones. An unreadable
checkpoint is named with tensorstore's words, without its payloads.
"""

import contextlib
import errno
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from genjax import build, checkpoint, cli
from genjax import random as grandom
from genjax.errors import CheckpointWriteError, DiskFullError, UserError
from tests.helpers import ROOT, restore_state, run_cli, tiny_config

TMP_MARK = checkpoint.TMP_MARK
# A small MLP VAE that saves at every step and evaluates only at its (never reached) last step.
RUN = {"batch_size": 16, "checkpoint_every": 1, "log_every": 1000, "eval_every": 100_000, "eval.num_examples": 16,
       "eval.batch_size": 16, "eval.quality_samples": 0, "model.iwae_k": 2, "model.hidden": (16,),
       "model.latent_dim": 4, "steps_per_call": 1}
INFO_LINE = re.compile(r"^I\d{4} ")  # absl's INFO lines: the progress lines train.py prints on stderr


def _train_args(workdir: str, **changes) -> list[str]:
  fields = {**RUN, **changes}
  return [f"--workdir={workdir}", "--config=" + os.path.join(ROOT, "configs", "vae_mnist5k_mlp.py"),
          *(f"--config.{k}={v}" for k, v in fields.items())]


def _env() -> dict[str, str]:
  return dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")


def _the_error_line(result) -> str:
  """The one `error: ...` line of a CLI's stderr, after asserting that nothing else is there but progress lines."""
  lines = result.stderr.strip().splitlines()
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  others = [line for line in lines if not INFO_LINE.match(line)]
  assert len(others) == 1 and others[0].startswith("error: ") and lines[-1] == others[0], result.stderr[-3000:]
  return others[0]


def _steps(workdir: str) -> tuple[list[int], list[str]]:
  """(complete steps, half-written step directories) in a workdir's checkpoints/."""
  names = os.listdir(os.path.join(workdir, "checkpoints"))
  return sorted(int(n) for n in names if n.isdigit()), [n for n in names if TMP_MARK in n]


def _digest(directory: str) -> dict[str, str]:
  out = {}
  for parent, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(parent, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
  return out


def _pages(directory: str) -> int:
  """Bytes that the files under `directory` take on a tmpfs (whole 4 KiB pages)."""
  return sum(-(-os.path.getsize(os.path.join(parent, name)) // 4096) * 4096
             for parent, _, names in os.walk(directory) for name in names)


@contextlib.contextmanager
def _tmpfs(path: str, size_bytes: int):
  """A tmpfs of `size_bytes` mounted at `path` (root only); skips the test where it cannot be mounted."""
  os.makedirs(path, exist_ok=True)
  mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes // 1024}k", "tmpfs", path],
                           capture_output=True, text=True, check=False)
  if mounted.returncode != 0:
    pytest.skip(f"a full disk needs a small filesystem: cannot mount a tmpfs at {path} (root with"
                f" CAP_SYS_ADMIN only): {mounted.stderr.strip()}")
  try:
    yield path
  finally:
    if subprocess.run(["umount", path], capture_output=True, check=False).returncode != 0:
      subprocess.run(["umount", "-l", path], capture_output=True, check=False)


# ---------------------------------------------------------------------------------------- a full disk


def _one_checkpoint_at_most(directory: str) -> int:
  """Bytes that the tmpfs gives one checkpoint of the tiny MLP VAE at most: its state filled with random numbers,
  which orbax cannot compress (the initial state, mostly zeros, takes half as much as a trained one)."""
  rng = np.random.default_rng(0)
  state = jax.tree.map(lambda x: rng.standard_normal(x.shape).astype(x.dtype)
                       if np.issubdtype(x.dtype, np.floating) else x, _init_state())
  ckpt = checkpoint.Checkpointer(directory, 1)
  ckpt.save(1, state)
  ckpt.close()
  return _pages(os.path.join(directory, "1"))


def test_a_full_disk_stops_training_in_one_line_and_keeps_the_last_checkpoint(tmp_path):
  one = _one_checkpoint_at_most(str(tmp_path / "measure"))
  # Two checkpoints and the run's small files (config.json, TensorBoard, its lock label) fit, and a third
  # checkpoint does not; how many fit in the end depends on how well orbax compresses the trained weights.
  disk = str(tmp_path / "disk")
  with _tmpfs(disk, 2 * one + one // 4 + (64 << 10)):
    workdir = os.path.join(disk, "run")
    command = _train_args(workdir, num_steps=50, keep_checkpoints=100)

    first = run_cli("train.py", *command)
    assert first.returncode == 2, first.stderr[-3000:]
    line = _the_error_line(first)
    failed = int(re.match(r"^error: checkpoint: cannot write step (\d+) ", line).group(1))
    assert failed >= 3, line
    assert line == (f"error: checkpoint: cannot write step {failed} into {workdir}/checkpoints: no space left on"
                    f" device (the partial step {failed} was removed); the checkpoint of step {failed - 1} is intact;"
                    " free space, then run the same command to resume from it"), line
    assert _steps(workdir) == (list(range(1, failed)), [])
    kept = _digest(os.path.join(workdir, "checkpoints"))
    assert int(restore_state(workdir)["step"]) == failed - 1

    # The same command on the disk as it is: it resumes, finds the disk full at the same step, loses nothing.
    again = run_cli("train.py", *command)
    assert again.returncode == 2, again.stderr[-3000:]
    assert _the_error_line(again) == line
    assert f"resumed from the checkpoint of step {failed - 1}" in again.stderr
    assert _steps(workdir) == (list(range(1, failed)), []) and _digest(os.path.join(workdir, "checkpoints")) == kept

    # And on a disk without a byte free, where the run's first write (any file) fails.
    with open(os.path.join(disk, "filler"), "wb", buffering=0) as f:
      with contextlib.suppress(OSError):
        while True:
          f.write(b"\0" * 4096)
    full = run_cli("train.py", *command)
    assert full.returncode == 2, full.stderr[-3000:]
    full_line = _the_error_line(full)
    assert full_line.startswith(("error: no space left on device", "error: checkpoint: cannot write")), full_line
    assert _steps(workdir) == (list(range(1, failed)), []) and _digest(os.path.join(workdir, "checkpoints")) == kept
    assert int(restore_state(workdir)["step"]) == failed - 1
  print(f"\nthe full disk, twice: {line}\nwithout a byte free: {full_line}")  # for the record (pytest -s)


def test_a_full_disk_while_writing_an_evaluation_names_its_step_and_the_resume_evaluates_it(tmp_path, monkeypatch,
                                                                                            caplog):
  """The evaluation of step 4 cannot be written: one line names the step; the same command writes it, then trains on."""
  from genjax import train_lib  # pylint: disable=g-import-not-at-top
  from genjax.writers import has_row  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / "run")
  from genjax import evaluation  # pylint: disable=g-import-not-at-top
  write_grids = evaluation.write_grids

  def full_disk(grids, directory, suffix=""):
    raise OSError(errno.ENOSPC, "No space left on device", os.path.join(directory, f"samples{suffix}.png"))

  monkeypatch.setattr(evaluation, "write_grids", full_disk)
  config = tiny_config("vae_mnist5k", num_steps=8, checkpoint_every=4, **{"eval.quality_samples": 0})
  with pytest.raises(DiskFullError) as raised:
    train_lib.train_and_evaluate(config, workdir)
  assert str(raised.value) == (
      f"no space left on device ({workdir}/samples/samples_0000004.png) while writing the evaluation of step 4;"
      " checkpoint of step 4 left intact: free space, then run the same command again (it evaluates step 4 again)")
  assert not has_row(workdir, "eval", 4) and int(restore_state(workdir)["step"]) == 4

  monkeypatch.setattr(evaluation, "write_grids", write_grids)
  caplog.set_level(logging.INFO)
  result = train_lib.train_and_evaluate(config, workdir)
  assert "evaluating step 4 first: its evaluation was not written" in caplog.messages
  assert has_row(workdir, "eval", 4) and has_row(workdir, "eval", 8) and np.isfinite(result["nll"])
  assert sorted(os.listdir(os.path.join(workdir, "samples"))) == sorted(
      f"{name}_{step:07d}.png" for step in (4, 8) for name in ("interpolations", "reconstructions", "samples"))
  # Complete, with every evaluation written: the same command changes nothing.
  caplog.clear()
  assert train_lib.train_and_evaluate(config, workdir) == result
  assert not any("evaluating step" in line for line in caplog.messages)


def _tiny_state():
  return {"w": np.arange(6, dtype=np.float32), "step": np.int32(1)}


def _full(words: str = "No space left on device", code: int = errno.ENOSPC) -> ValueError:
  """A full disk as tensorstore reports it through orbax: a ValueError quoting the OS, caused by the OSError."""
  try:
    raise OSError(code, os.strerror(code))
  except OSError as e:
    try:
      raise ValueError(f"RESOURCE_EXHAUSTED: Error writing local file \"x/_sharding\": {words}"
                       f" [os_error_code='{code}']") from e
    except ValueError as wrapped:
      return wrapped


@pytest.mark.parametrize("where", ["save", "wait", "close", "the manager's close"])
def test_a_full_disk_in_any_of_orbaxs_calls_is_one_line_and_the_partial_step_goes(tmp_path, monkeypatch, where):
  directory = str(tmp_path / "checkpoints")
  ckpt = checkpoint.Checkpointer(directory, keep=5)
  assert ckpt.save(1, _tiny_state())
  ckpt.wait()
  assert ckpt.save(2, _tiny_state())
  ckpt.wait()
  os.makedirs(os.path.join(directory, f"3{TMP_MARK}-1234", "state"))  # what the failed save of step 3 left
  manager = ckpt._manager  # pylint: disable=protected-access
  real_wait = manager.wait_until_finished
  calls = {"n": 0}

  def failing(*args, **kwargs):
    del args, kwargs
    raise _full()

  def fails_once():
    calls["n"] += 1
    if calls["n"] == 1:
      raise _full()
    return real_wait()

  if where == "save":  # the blocking part of the save of step 3 itself
    monkeypatch.setattr(manager, "save", failing)
    with pytest.raises(DiskFullError) as raised:
      ckpt.save(3, _tiny_state())
  elif where == "the manager's close":  # found only when the manager closes (its finalize): still step 3's
    monkeypatch.setattr(manager, "save", lambda *a, **k: True)
    assert ckpt.save(3, _tiny_state())
    real_close = manager.close

    def close_full():
      real_close()
      raise _full()

    monkeypatch.setattr(manager, "close", close_full)
    with pytest.raises(DiskFullError) as raised:
      ckpt.close()
  else:  # the asynchronous part of step 3's save, joined by `wait` or by `close`
    monkeypatch.setattr(manager, "save", lambda *a, **k: True)
    assert ckpt.save(3, _tiny_state())
    monkeypatch.setattr(manager, "wait_until_finished", fails_once)
    with pytest.raises(DiskFullError) as raised:
      ckpt.wait() if where == "wait" else ckpt.close()
  assert str(raised.value) == (
      f"checkpoint: cannot write step 3 into {directory}: no space left on device (the partial step 3 was removed);"
      " the checkpoint of step 2 is intact; free space, then run the same command to resume from it")
  assert sorted(os.listdir(directory)) == ["1", "2"]
  if where in ("save", "wait"):
    ckpt.close()


def test_a_full_quota_and_other_errors_of_a_save(tmp_path, monkeypatch):
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=5)
  manager = ckpt._manager  # pylint: disable=protected-access

  def quota(*args, **kwargs):
    del args, kwargs
    raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

  monkeypatch.setattr(manager, "save", quota)
  with pytest.raises(DiskFullError, match=r"^checkpoint: cannot write step 1 into .*: disk quota exceeded; no"
                                          r" checkpoint is complete yet; free space, then run the same command to"
                                          r" start again$"):
    ckpt.save(1, _tiny_state())

  def other(*args, **kwargs):
    del args, kwargs
    raise ValueError("INVALID_ARGUMENT: something else")

  def refused(*args, **kwargs):
    del args, kwargs
    raise PermissionError(errno.EPERM, "Operation not permitted", f"{tmp_path}/1.orbax-checkpoint-tmp")

  monkeypatch.setattr(manager, "save", refused)
  with pytest.raises(CheckpointWriteError) as raised:
    ckpt.save(1, _tiny_state())
  assert str(raised.value) == (f"checkpoint: cannot write step 1 into {tmp_path}: Operation not permitted"
                               f" ({tmp_path}/1.orbax-checkpoint-tmp); no checkpoint is complete yet; fix that, then"
                               " run the same command to start again")
  assert not isinstance(raised.value, DiskFullError)

  monkeypatch.setattr(manager, "save", other)
  with pytest.raises(ValueError, match="^INVALID_ARGUMENT: something else$") as raised:
    ckpt.save(1, _tiny_state())
  assert not isinstance(raised.value, UserError)
  ckpt.close()


def test_delete_removes_one_step(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=5)
  for step in (1, 2, 3):
    assert ckpt.save(step, _tiny_state())
  ckpt.delete(2)  # joins the save of step 3 first
  assert ckpt.all_steps() == [1, 3]
  ckpt.close()
  assert sorted(os.listdir(tmp_path)) == ["1", "3"]


def _exits(body) -> tuple[int, str]:
  import io  # pylint: disable=g-import-not-at-top
  from unittest import mock  # pylint: disable=g-import-not-at-top

  def exit_now(line, status):  # os._exit, which would end pytest
    print(line, file=sys.stderr)
    raise SystemExit(status)

  err = io.StringIO()
  with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exited, mock.patch.object(cli, "_exit_now",
                                                                                                exit_now):
    with cli.user_errors_exit():
      body()
  return exited.value.code, err.getvalue()


def test_the_cli_says_a_full_disk_of_any_write_in_one_line():
  def metrics():
    raise OSError(errno.ENOSPC, "No space left on device", "/w/metrics.jsonl")

  assert _exits(metrics) == (2, "error: no space left on device (/w/metrics.jsonl): free space, then run the same"
                                " command again; every checkpoint on disk is complete\n")

  def tensorboard_after_a_checkpoint():
    try:
      raise DiskFullError("checkpoint: cannot write step 4 into /w/checkpoints: no space left on device; the"
                          " checkpoint of step 3 is intact")
    finally:
      raise OSError(errno.ENOSPC, "No space left on device")  # closing the TensorBoard file on the way out

  assert _exits(tensorboard_after_a_checkpoint) == (
      2, "error: checkpoint: cannot write step 4 into /w/checkpoints: no space left on device; the checkpoint of"
         " step 3 is intact\n")

  def quota():
    raise OSError(errno.EDQUOT, "Disk quota exceeded", "/w/samples/x.png")

  assert _exits(quota)[1].startswith("error: disk quota exceeded (/w/samples/x.png): ")

  def permission():
    raise OSError(errno.EACCES, "Permission denied", "/w/config.json")

  assert _exits(permission) == (2, "error: Permission denied (/w/config.json): fix that, then run the same command"
                                   " again; every checkpoint on disk is complete\n")

  def refused_checkpoint():
    raise CheckpointWriteError("checkpoint: cannot write step 4 into /w/checkpoints: Permission denied; the"
                               " checkpoint of step 3 is intact")

  assert _exits(refused_checkpoint) == (2, "error: checkpoint: cannot write step 4 into /w/checkpoints: Permission"
                                           " denied; the checkpoint of step 3 is intact\n")
  with pytest.raises(OSError, match="no errno"):  # no errno: not the OS's refusal, left as it is
    with cli.user_errors_exit():
      raise OSError("no errno")


def test_a_full_disk_in_an_appended_file_names_the_file(tmp_path):
  """metrics.jsonl and TensorBoard's events are appended to; the OS's error from a write or flush names no file."""
  from genjax import paths  # pylint: disable=g-import-not-at-top

  class Full:
    def write(self, data):
      raise OSError(errno.ENOSPC, "No space left on device")

    flush = close = lambda self: self.write(b"")

  path = str(tmp_path / "metrics.jsonl")
  appender = paths.Appender(path)
  appender._file.close()  # pylint: disable=protected-access
  appender._file = Full()  # pylint: disable=protected-access
  for operation in (lambda: appender.write("{}\n"), appender.flush, appender.close):
    with pytest.raises(OSError) as raised:
      operation()
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == path


def test_orbaxs_and_asyncios_reports_of_a_full_disk_are_dropped_and_only_they():
  def record(message, exc=None, path="/venv/orbax/checkpoint/_src/futures/future.py", level=logging.ERROR):
    return logging.LogRecord("absl", level, path, 1, message, (), (type(exc), exc, None) if exc else None)

  keep = cli._keep_log_record  # pylint: disable=protected-access
  assert not keep(record("Save Finalize thread (save_finalize) failed.", _full()))
  assert not keep(record("_SignalingThread.run() raised an exception: RESOURCE_EXHAUSTED: Failed writing: No space"
                         " left on device [os_error_code='28']"))
  assert keep(record("Save Finalize thread (save_finalize) failed.", ValueError("INVALID_ARGUMENT: other")))
  assert not keep(record("_SignalingThread.run() raised an exception", PermissionError(errno.EPERM, "refused")))
  assert keep(record("No space left on device", path="/work/genjax/train_lib.py", level=logging.INFO))
  # The failed save's other writes, gathered and never awaited, reported by asyncio when collected ...
  unretrieved = cli._not_an_unretrieved_read  # pylint: disable=protected-access
  assert not unretrieved(record("_GatheringFuture exception was never retrieved", path="asyncio/base_events.py"))
  assert unretrieved(record("Unclosed client session", path="asyncio/base_events.py"))
  # ... and their coroutines, closed by the exiting interpreter.
  reported = []
  quiet = cli._without_closed_event_loop(reported.append)  # pylint: disable=protected-access
  unraisable = lambda error: type("Unraisable", (), {"exc_type": type(error), "exc_value": error})()
  quiet(unraisable(ImportError("sys.meta_path is None, Python is likely shutting down")))
  quiet(unraisable(ImportError("No module named 'x'")))
  assert [str(u.exc_value) for u in reported] == ["No module named 'x'"]


# ---------------------------------------------------------------------------------------- sample.py beside a live run


def _init_state():
  """The tiny MLP VAE's initial train state (the structure every checkpoint here has)."""
  config = tiny_config("vae_mnist5k_mlp", **RUN)
  return jax.jit(build.family(config).init)(grandom.streams(config.seed).init)


@pytest.fixture(scope="module")
def three_steps(tmp_path_factory) -> str:
  """A workdir whose checkpoints/ holds steps 1, 2 and 3 of the tiny MLP VAE's state."""
  workdir = str(tmp_path_factory.mktemp("three") / "run")
  state = _init_state()
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), 3)
  for step in (1, 2, 3):
    ckpt.save(step, state.replace(step=jax.numpy.asarray(step, state.step.dtype)))
  ckpt.close()
  return workdir


def test_restore_latest_retries_when_the_newest_step_is_rotated_away(three_steps, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(three_steps, workdir)
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), 3, read_only=True)
  real_restore = ckpt.restore
  asked = []

  def rotated_first(step, like):
    asked.append(step)
    if len(asked) == 1:  # a live run removes the step between the listing and the read
      shutil.rmtree(os.path.join(workdir, "checkpoints", str(step)))
    return real_restore(step, like)

  ckpt.restore = rotated_first
  try:
    step, state = ckpt.restore_latest(_init_state())
  finally:
    ckpt.close()
  assert asked == [3, 2] and step == 2 and int(state.step) == 2


def test_restore_latest_refuses_an_unreadable_step_that_is_still_there(three_steps, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(three_steps, workdir)
  _corrupt(workdir, 3)
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), 3, read_only=True)
  try:
    with pytest.raises(UserError, match=rf"^checkpoint: step 3 in {workdir}/checkpoints is unreadable \(.*\); move"
                                        rf" {workdir}/checkpoints/3 away to resume from the checkpoint before it"):
      ckpt.restore_latest(_init_state())
  finally:
    ckpt.close()


def test_sample_py_reads_the_newest_checkpoint_while_train_py_rotates_them(tmp_path):
  workdir = str(tmp_path / "run")
  log = open(tmp_path / "train.log", "w+", encoding="utf-8")  # pylint: disable=consider-using-with
  train = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"),
                            *_train_args(workdir, num_steps=1_000_000, keep_checkpoints=2)],
                           cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=log)
  try:
    deadline = time.time() + 300
    seen = set()
    # Until the run has saved (and removed) a few steps: checkpoints rotate from here on.
    while train.poll() is None and time.time() < deadline and len(seen) < 5:
      with contextlib.suppress(OSError):
        seen.update(n for n in os.listdir(os.path.join(workdir, "checkpoints")) if n.isdigit())
      time.sleep(0.01)
    assert train.poll() is None, (tmp_path / "train.log").read_text(encoding="utf-8")[-3000:]
    for _ in range(3):
      sampled = run_cli("sample.py", f"--workdir={workdir}", "--iwae_k=2", "--quality_samples=0",
                        "--num_examples=16")
      assert sampled.returncode == 0 and "Traceback" not in sampled.stderr, sampled.stderr[-3000:]
      step = int(re.search(r"checkpoint step (\d+)", sampled.stdout).group(1))
      assert train.poll() is None and step not in _steps(workdir)[0]  # it was rotated away since
  finally:
    train.kill()
    train.wait()
    log.close()


# ---------------------------------------------------------------------------------------- an unreadable checkpoint


def _corrupt(workdir: str, step: int) -> None:
  """Overwrites the array chunks of a step, as test_fail_safe's _corrupt_checkpoint does."""
  for directory, _, names in os.walk(os.path.join(workdir, "checkpoints", str(step))):
    if os.path.basename(directory) == "d":  # orbax's array chunks
      for name in names:
        with open(os.path.join(directory, name), "wb") as f:
          f.write(b"not an array")


def test_an_unreadable_checkpoint_is_named_in_tensorstores_words_without_its_payloads(three_steps, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(three_steps, workdir)
  _corrupt(workdir, 3)
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), 3, read_only=True)
  try:
    with pytest.raises(UserError) as raised:
      ckpt.restore(3, _init_state())
  finally:
    ckpt.close()
  message = str(raised.value)
  reason = re.match(rf"^checkpoint: step 3 in {workdir}/checkpoints is unreadable \((.*)\); move {workdir}/"
                    r"checkpoints/3 away to resume from the checkpoint before it, or use a new --workdir$",
                    message).group(1)
  for fragment in ("0x", "source locations", "tensorstore_spec", "{", "\n"):
    assert fragment not in reason, reason
  assert not reason.endswith("...") and len(reason) <= 300, reason  # its last clause (why) is kept


def test_first_line_drops_status_payloads_specs_and_object_reprs():
  first_line = checkpoint._first_line  # pylint: disable=protected-access
  spec = '{\\"driver\\":\\"zarr\\",\\"kvstore\\":{\\"path\\":\\"/w/checkpoints/2/state/\\"}}'
  words = 'NOT_FOUND: Error opening "zarr" driver: Metadata at "state/.zarray" does not exist'
  where = "tensorstore/driver/kvs_backed_chunk_driver.cc:1262\ntensorstore/driver/driver.cc:120"
  assert first_line(ValueError(f"{words} [source locations='{where}'] [tensorstore_spec='{spec}']")) == words
  assert first_line(TypeError("cannot restore <tensorstore.Spec object at 0x7f3a2c1d0e70> with"
                              " tensorstore_spec={'driver': {'kvstore': 'file'}} here")) == (
                                  "cannot restore Spec with here")
  assert first_line(ValueError("")) == "ValueError"
  long = "DATA_LOSS: Error reading " + ": ".join(f"clause {i} " + "x" * 40 for i in range(12)) + ": why it failed"
  assert first_line(ValueError(long)).endswith(": ...: why it failed") and len(first_line(ValueError(long))) <= 300


def test_an_atomic_write_on_a_full_disk_names_its_file_and_leaves_nothing(tmp_path, monkeypatch):
  """config.json and the lock's label go through `write_atomically`: a full disk is one error naming the file,
  and no temporary file stays behind (a buffered file failed again when closed, before its cleanup ran)."""
  from genjax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  (tmp_path / "config.json").write_text("old", encoding="utf-8")

  def full(fd, data):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(workdir_lib.os, "write", full)
  with pytest.raises(OSError) as raised:
    workdir_lib.write_atomically(str(tmp_path / "config.json"), "new")
  assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(tmp_path / "config.json")
  assert sorted(os.listdir(tmp_path)) == ["config.json"]
  assert (tmp_path / "config.json").read_text(encoding="utf-8") == "old"
