"""One run per workdir, a complete run left as it is, Ctrl-C at any moment, and metrics without duplicates.

The CLI cases run train.py in subprocesses on a small MLP VAE; each asserts
the exit status, the whole of stderr's last line, and what the workdir holds.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from genjax import train_lib
from genjax import workdir as workdir_lib
from genjax.errors import UserError
from genjax.writers import MetricWriter, last_row
from tests.helpers import ROOT, cli_env, run_cli, tiny_config

RUN = {"num_steps": 2, "checkpoint_every": 1, "eval_every": 2, "log_every": 1, "model.hidden": (16,),
       "model.latent_dim": 4, "eval.quality_samples": 0, "model.iwae_k": 2, "steps_per_call": 1}


def _flags(**fields) -> list[str]:
  merged = {**RUN, **fields}
  return [f"--config={os.path.join(ROOT, 'configs', 'vae_mnist5k_mlp.py')}", "--config.batch_size=16",
          "--config.model.conv_widths=(4, 8)",  # tiny_config's (unused by the MLP, but part of its config)
          "--config.eval.num_examples=32", "--config.eval.batch_size=16",
          *(f"--config.{k}={v}" for k, v in merged.items())]


def _train(workdir: str, **fields) -> subprocess.Popen:
  return subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), f"--workdir={workdir}", *_flags(**fields)],
                          cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _rows(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f]


def _files(workdir: str) -> dict[str, float]:
  """{relative path: (size, modification time)} of every file under workdir."""
  out = {}
  for directory, _, names in os.walk(workdir):
    for name in names:
      path = os.path.join(directory, name)
      out[os.path.relpath(path, workdir)] = (os.path.getsize(path), os.path.getmtime(path))
  return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> str:
  workdir = str(tmp_path_factory.mktemp("trained") / "run")
  train_lib.train_and_evaluate(tiny_config("vae_mnist5k_mlp", **RUN), workdir)
  return workdir


# ---------------------------------------------------------------------------------------------- the lock


def test_a_second_run_is_refused_in_one_line_naming_the_first_and_changes_nothing(trained, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(trained, workdir)
  lock = workdir_lib.RunLock(workdir)
  try:
    lock.announce()
    before = _files(workdir)
    result = run_cli("train.py", f"--workdir={workdir}", *_flags(num_steps=4))
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    start = (f"error: --workdir: {workdir!r} is in use by another train.py (pid {os.getpid()} on"
             f" {socket.gethostname()}, started ")
    assert lines[0].startswith(start), lines[0]
    assert lines[0].endswith("); one train.py per workdir: wait for it to finish or stop it (the same command then"
                             " resumes), or use another --workdir"), lines[0]
    assert _files(workdir) == before
    # sample.py does not take the lock: it reads beside a live run.
    sampled = run_cli("sample.py", f"--workdir={workdir}", "--iwae_k=2", "--quality_samples=0")
    assert sampled.returncode == 0, sampled.stderr[-3000:]
  finally:
    lock.release()
  assert not os.path.exists(os.path.join(workdir, workdir_lib.HOLDER_FILE))  # the label goes with the lock


def test_the_lock_is_refused_in_process_and_taken_again_once_released(tmp_path):
  first = workdir_lib.RunLock(str(tmp_path))
  with pytest.raises(UserError, match=r"is in use by another train\.py; one train\.py per workdir"):
    workdir_lib.RunLock(str(tmp_path))  # no label yet: the holder is still checking its input
  # A label left by a run killed before (its pid gone), not yet rewritten by the run holding the lock now.
  with open(tmp_path / workdir_lib.HOLDER_FILE, "w", encoding="utf-8") as f:
    json.dump({"pid": _dead_pid(), "host": socket.gethostname(), "started": "2026-01-01 00:00:00 UTC"}, f)
  with pytest.raises(UserError, match=r"is in use by another train\.py \(still checking its input\); one"):
    workdir_lib.RunLock(str(tmp_path))
  first.release()
  workdir_lib.RunLock(str(tmp_path)).release()


def test_a_run_whose_lock_is_lost_stops_after_the_step_in_flight_writing_nothing_more(tmp_path, monkeypatch):
  """The loop asks its lock after every step: once another run has taken it over (a bucket's lock, after a
  stall), the run stops in one line, with no checkpoint, metrics row or evaluation of a later step."""
  workdir = str(tmp_path / "run")
  calls = []

  def check(self):
    calls.append(1)
    if len(calls) == 3:
      raise UserError("--workdir: another run took over the lock (test)")

  monkeypatch.setattr(workdir_lib.RunLock, "check", check)
  with pytest.raises(UserError, match=r"took over the lock \(test\)"):
    train_lib.train_and_evaluate(tiny_config(num_steps=6), workdir)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2"]  # step 3 raised: nothing of 3 or 4
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8")]
  assert max(r["step"] for r in rows) == 2
  assert not os.path.exists(os.path.join(workdir, workdir_lib.HOLDER_FILE))  # released on the way out


def _dead_pid() -> int:
  """The pid of a process that has exited."""
  child = subprocess.Popen([sys.executable, "-c", "pass"])  # pylint: disable=consider-using-with
  child.wait()
  return child.pid


def test_a_run_killed_with_the_lock_held_leaves_nothing_stale(tmp_path):
  workdir = str(tmp_path / "run")
  proc = _train(workdir, num_steps=100000, checkpoint_every=1000, log_every=1000, eval_every=100000)
  try:
    label = os.path.join(workdir, workdir_lib.HOLDER_FILE)
    deadline = time.time() + 120
    while not os.path.exists(label) and proc.poll() is None and time.time() < deadline:
      time.sleep(0.05)
    assert os.path.exists(label), proc.stderr.read() if proc.poll() is not None else "no label in 120 s"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  finally:
    if proc.poll() is None:
      proc.kill()
  # The kernel released the lock with the process; the stale label does not hold the workdir.
  again = run_cli("train.py", f"--workdir={workdir}", *_flags())
  assert again.returncode == 0, again.stderr[-3000:]
  assert not os.path.exists(os.path.join(workdir, workdir_lib.HOLDER_FILE))


def test_two_runs_started_together_one_trains_the_other_is_refused(tmp_path):
  workdir = str(tmp_path / "run")
  fields = {"num_steps": 300, "checkpoint_every": 50, "log_every": 10, "eval_every": 300}
  procs = [_train(workdir, **fields) for _ in range(2)]
  outcomes = []
  for proc in procs:
    _, stderr = proc.communicate(timeout=600)
    outcomes.append((proc.returncode, stderr.strip().splitlines()[-1] if stderr.strip() else ""))
  assert sorted(code for code, _ in outcomes) == [0, 2], outcomes
  refused = next(line for code, line in outcomes if code == 2)
  assert refused.startswith(f"error: --workdir: {workdir!r} is in use by another train.py") or refused.startswith(
      f"error: --workdir: another run wrote into {workdir!r} while this one checked its input"), refused
  rows = _rows(workdir)
  keys = [(row["step"], row["split"]) for row in rows]
  assert len(keys) == len(set(keys)) and max(row["step"] for row in rows) == 300


# ---------------------------------------------------------------------------------------------- a complete run


def test_num_steps_at_or_below_the_checkpoint_says_complete_and_changes_nothing(trained, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(trained, workdir)
  before = _files(workdir)
  for num_steps in (1, 2):
    result = run_cli("train.py", f"--workdir={workdir}", *_flags(num_steps=num_steps))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (f"the run in {workdir} is complete: its checkpoint of step 2 reaches num_steps {num_steps}; nothing was"
            " changed") in result.stderr
    assert _files(workdir) == before  # no new row, no config.json saying num_steps 1, no pictures
  # In the library: the last evaluation, from metrics.jsonl.
  result = train_lib.train_and_evaluate(tiny_config("vae_mnist5k_mlp", **{**RUN, "num_steps": 1}), workdir)
  assert result == last_row(workdir, "eval", 2) and set(result) >= {"neg_elbo", "nll"}
  assert _files(workdir) == before
  # A newest checkpoint emptied (or half copied) is no complete run: it is refused as unreadable.
  shutil.rmtree(os.path.join(workdir, "checkpoints", "2"))
  os.mkdir(os.path.join(workdir, "checkpoints", "2"))
  with pytest.raises(UserError, match=r"^checkpoint: step 2 in .*checkpoints is unreadable \(.*\); move .*checkpoints/2"
                                      r" away to resume from the checkpoint before it"):
    train_lib.train_and_evaluate(tiny_config("vae_mnist5k_mlp", **{**RUN, "num_steps": 1}), workdir)


# ---------------------------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_during_the_last_evaluation_stops_it_and_exits_130(tmp_path):
  """The final evaluation is made long (1,000 importance samples of 500 held-out digits, 20,000 samples of FID);
  Ctrl-C as it starts stops it at once, with the last step saved, and exits 130 so that `train.py && sample.py`
  stops there."""
  workdir = str(tmp_path / "run")
  proc = _train(workdir, num_steps=4, eval_every=1000, **{"model.iwae_k": 1000, "eval.quality_samples": 20000,
                                                          "eval.num_examples": 500, "eval.batch_size": 100})
  try:
    lines = []
    for line in proc.stderr:  # the progress line of the last step comes just before its save and evaluation
      lines.append(line)
      if "step 4/4" in line:
        break
    assert any("step 4/4" in line for line in lines), "".join(lines)[-3000:]
    time.sleep(0.5)
    sent = time.time()
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    proc.wait(timeout=120)
    took = time.time() - sent
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 130, rest[-3000:]
  assert rest.strip().splitlines()[-1] == ("interrupted at step 4 (Ctrl-C); checkpoint of step 4 saved; the training"
                                           " is complete; run the same command to evaluate it"), rest[-3000:]
  assert "Traceback" not in rest
  assert took < 60, took  # the evaluation was stopped, not finished (it takes minutes)
  assert [row["step"] for row in _rows(workdir) if row["split"] == "eval"] == []
  assert sorted(int(n) for n in os.listdir(os.path.join(workdir, "checkpoints")) if n.isdigit())[-1] == 4


# ---------------------------------------------------------------------------------------------- metrics.jsonl


def test_a_resumed_run_drops_the_rows_of_the_steps_it_trains_again(tmp_path):
  path = tmp_path / "metrics.jsonl"
  rows = [{"step": s, "split": "train", "time": 0.0, "loss": float(s)} for s in (1, 2, 3, 4)]
  path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 5, "spl', encoding="utf-8")
  writer = MetricWriter(str(tmp_path), tensorboard=False, resume_step=2)
  writer.write(3, "train", {"loss": 30.0})
  writer.close()
  assert [(r["step"], r["loss"]) for r in _rows(str(tmp_path))] == [(1, 1.0), (2, 2.0), (3, 30.0)]
  # Without a resume step (sample.py's tools, benchmarks) the file is only appended to.
  MetricWriter(str(tmp_path), tensorboard=False).close()
  assert len(_rows(str(tmp_path))) == 3


# What each stop request may end with when sent 0.8 s after the start: still importing, checking or compiling
# (one line, nothing trained), or, on a fast machine, already in the loop (saved at a step).
_STARTING = {
    "SIGINT": (130, ("error: interrupted (Ctrl-C) while starting; nothing was written",
                     "error: interrupted (Ctrl-C) outside the training steps; every checkpoint on disk is complete"),
               r"interrupted at step \d+ \(Ctrl-C\); checkpoint of step \d+ saved; run the same command to resume"),
    "SIGTERM": (0, ("stopped on request (SIGTERM) while starting; nothing was written",
                    "stopped on request (SIGTERM) outside the training steps; every checkpoint on disk is complete;"
                    " run the same command to go on"),
                r"stopped at step \d+ on request \(SIGTERM or a preemption notice\); checkpoint of step \d+ saved;"
                r" run the same command to resume"),
}


@pytest.mark.parametrize("name", sorted(_STARTING))
def test_a_stop_request_while_starting_is_one_line(tmp_path, name):
  """0.8 s after the start, train.py is still importing JAX and TensorFlow (more than a second on any machine):
  Ctrl-C exits 130 and SIGTERM (a scheduler's) 0, in one line, never a traceback from the import machinery nor
  the shell's 143 with nothing said."""
  status, lines, saved = _STARTING[name]
  workdir = str(tmp_path / "run")
  proc = _train(workdir, num_steps=100000, checkpoint_every=1000, log_every=1000, eval_every=100000)
  try:
    time.sleep(0.8)
    proc.send_signal(getattr(signal, name))
    _, stderr = proc.communicate(timeout=120)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == status, (proc.returncode, stderr[-3000:])
  assert "Traceback" not in stderr and "Fatal Python error" not in stderr, stderr[-3000:]
  last = stderr.strip().splitlines()[-1]
  assert last in lines or re.fullmatch(saved, last), stderr[-3000:]


def test_a_platform_this_machine_lacks_is_one_line(tmp_path):
  env = dict(cli_env(), JAX_PLATFORMS="tpu")
  result = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), f"--workdir={tmp_path / 'new'}", *_flags()],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 2, result.stderr[-3000:]
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: JAX_PLATFORMS=tpu: no backend could start ("), lines
  assert lines[0].endswith("); allowed: a platform this machine has and the JAX build for it (cpu always works)")
  assert not os.path.exists(tmp_path / "new")
