"""A workdir in a bucket (gs://), offline: train, resume and sample against a GCS emulator on this machine.

The emulator (gcp-storage-emulator, pure Python, in memory, in this process) serves the JSON API on a loopback port. Every layer
that writes a workdir reaches it: genjax's own files through etils.epath and gcsfs (STORAGE_EMULATOR_HOST),
orbax's arrays through tensorstore's gcs driver (TENSORSTORE_GCS_HTTP_URL), orbax's removal of old checkpoints
through google-cloud-storage. Credentials are never looked for outside this machine: the metadata server's
addresses point at a closed loopback port. The tests run from an empty working directory and fail if anything
lands there (before genjax.paths, a gs:// workdir became a local folder named 'gs:').

The emulator is given GCS's generation preconditions (tests/gcs_emulator.py), which tensorstore's OCDBT and
the bucket's lock rely on.
"""

import json
import os
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from genjax import paths, sample_lib, train_lib
from genjax import workdir as workdir_lib
from genjax.errors import UserError
from genjax.writers import MetricWriter
from tests import gcs_emulator
from tests.helpers import tiny_config

BUCKET = "genjax-test"
# A conv VAE small enough for seconds, keeping one checkpoint (orbax removes the older one from the bucket); no
# sample-quality numbers (not what is tested here).
FIELDS = {"eval.quality_samples": 0, "checkpoint_every": 2, "eval_every": 4, "log_every": 2, "keep_checkpoints": 1}


@pytest.fixture(scope="module")
def bucket():
  """The emulator's URL, with the environment pointing every client at it (undone after the module)."""
  from etils.epath import gpath  # pylint: disable=g-import-not-at-top
  server, url = gcs_emulator.start(BUCKET)
  closed = f"127.0.0.1:{gcs_emulator.free_port()}"  # nothing listens there: a credentials probe fails at once
  env = pytest.MonkeyPatch()
  for name, value in {
      "STORAGE_EMULATOR_HOST": url,  # gcsfs and google-cloud-storage (anonymous credentials)
      "TENSORSTORE_GCS_HTTP_URL": url,  # orbax's arrays
      # TensorFlow's gfile, which epath takes for gs:// where TensorFlow is installed, has no endpoint to
      # point at an emulator: gcsfs, which epath takes otherwise, has.
      "EPATH_USE_TF": "false",
      "FSSPEC_GS_TOKEN": "anon",
      # gcsfs asks a gRPC service for the bucket's type (zonal, hierarchical), which the emulator lacks.
      "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
      "GCE_METADATA_HOST": closed, "GCE_METADATA_IP": closed, "GCE_METADATA_ROOT": closed, "NO_GCE_CHECK": "true",
      "GOOGLE_CLOUD_PROJECT": "genjax-test",
  }.items():
    env.setenv(name, value)
  gpath._is_tf_installed.cache_clear()  # pylint: disable=protected-access  (epath decides once per process)
  try:
    yield url
  finally:
    server.stop()
    env.undo()
    gpath._is_tf_installed.cache_clear()  # pylint: disable=protected-access


def _objects(prefix: str) -> set[str]:
  """The names of the emulator's objects under gs://BUCKET/prefix, relative to it (read by a client of its own)."""
  from google.cloud import storage  # pylint: disable=g-import-not-at-top
  client = storage.Client()
  return {blob.name[len(prefix) + 1:] for blob in client.list_blobs(BUCKET, prefix=prefix + "/")}


def _state(checkpoints: str, step: int):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  manager = ocp.CheckpointManager(checkpoints)
  tree = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
  manager.close()
  return jax.tree.map(np.asarray, tree)


def test_train_resume_and_sample_in_a_bucket(bucket, tmp_path, tmp_path_factory, monkeypatch):
  monkeypatch.chdir(tmp_path)  # a gs:// path taken as a local one would land here, as a folder 'gs:'
  workdir = f"gs://{BUCKET}/runs/vae"
  train_lib.train_and_evaluate(tiny_config(num_steps=2, **FIELDS), workdir)
  assert {"config.json", "metrics.jsonl", "checkpoints/2/_CHECKPOINT_METADATA"} <= _objects("runs/vae")
  assert workdir_lib.HOLDER_FILE not in _objects("runs/vae")  # the lock was released
  result = train_lib.train_and_evaluate(tiny_config(num_steps=4, **FIELDS), workdir)  # resumed from step 2
  sampled = sample_lib.sample_and_evaluate(workdir, num_examples=32, quality_samples=0)
  assert os.listdir(tmp_path) == []

  objects = _objects("runs/vae")
  assert {"config.json", "metrics.jsonl", "samples/reconstructions_0000004.png", "sample/eval.json",
          "sample/samples.png"} <= objects, sorted(objects)
  assert sorted({name.split("/")[1] for name in objects if name.startswith("checkpoints/")}) == ["4"]
  assert any(name.startswith("tensorboard/events.out.tfevents.") for name in objects)
  assert workdir_lib.HOLDER_FILE not in objects

  rows = [json.loads(line) for line in paths.read_text(f"{workdir}/metrics.jsonl").splitlines()]
  assert [(row["step"], row["split"]) for row in rows] == [
      (0, "start"), (2, "train"), (2, "eval"), (2, "start"), (4, "train"), (4, "eval")]
  assert rows[-1]["neg_elbo"] == pytest.approx(result["neg_elbo"], rel=1e-6)
  assert sampled["step"] == 4 and json.loads(paths.read_text(f"{workdir}/sample/eval.json"))["step"] == 4
  assert workdir_lib.load_config(workdir).num_steps == 4

  # Stopped at 2 and resumed from the bucket's checkpoint: the weights of one uninterrupted local run.
  straight = str(tmp_path_factory.mktemp("straight") / "run")
  train_lib.train_and_evaluate(tiny_config(num_steps=4, **FIELDS), straight)
  for a, b in zip(jax.tree.leaves(_state(f"{workdir}/checkpoints", 4)),
                  jax.tree.leaves(_state(os.path.join(straight, "checkpoints"), 4)), strict=True):
    assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_one_run_per_bucket_workdir_and_a_dead_runs_lock_is_taken_over(bucket, monkeypatch):
  workdir = f"gs://{BUCKET}/runs/locked"
  first = workdir_lib.RunLock(workdir)
  first.announce()
  with pytest.raises(UserError, match=r"^--workdir: 'gs://genjax-test/runs/locked' is in use by another train.py"
                                      rf" \(pid {os.getpid()} on .+, started .+ UTC\); one train.py per workdir"):
    workdir_lib.RunLock(workdir)
  first.release()
  assert _objects("runs/locked") == set()
  second = workdir_lib.RunLock(workdir)  # released: free again
  # A holder that stopped renewing its lock for LEASE_S (killed outright) no longer holds it.
  monkeypatch.setattr(paths, "LEASE_S", 0.0)
  third = workdir_lib.RunLock(workdir)
  second.release()  # its lock was taken over: it removes nothing of the new holder's
  assert _objects("runs/locked") == {workdir_lib.HOLDER_FILE}
  third.release()
  assert _objects("runs/locked") == set()


def test_a_live_run_renews_its_bucket_lock_and_keeps_it_past_the_lease(bucket, monkeypatch):
  monkeypatch.setattr(paths, "HEARTBEAT_S", 0.1)
  monkeypatch.setattr(paths, "LEASE_S", 1.0)
  workdir = f"gs://{BUCKET}/runs/renewed"
  first = workdir_lib.RunLock(workdir)
  time.sleep(1.5)  # past the lease: only its renewals keep it
  with pytest.raises(UserError, match="is in use by another train.py"):
    workdir_lib.RunLock(workdir)
  first.release()
  assert _objects("runs/renewed") == set()


def test_a_run_whose_bucket_lock_was_taken_over_finds_it_lost_at_its_next_renewal(bucket, monkeypatch):
  """A holder that stalled past the lease is alive after all: its next renewal fails the precondition, and
  `check` (which the training loop calls after every step) then stops it in one line."""
  monkeypatch.setattr(paths, "HEARTBEAT_S", 1.0)  # the first renewal comes after the takeover below
  workdir = f"gs://{BUCKET}/runs/taken"
  first = workdir_lib.RunLock(workdir)
  first.check()  # held: nothing to say
  monkeypatch.setattr(paths, "LEASE_S", 0.0)
  second = workdir_lib.RunLock(workdir)
  deadline = time.time() + 10
  while not first._bucket.lost and time.time() < deadline:  # pylint: disable=protected-access
    time.sleep(0.05)
  with pytest.raises(UserError, match=r"^--workdir: another run took over the lock of 'gs://genjax-test/runs/taken'"
                                      r" \(this one did not renew it for 0 s, .+\); stopping without saving"):
    first.check()
  second.check()
  first.release()  # removes nothing of the new holder's
  assert _objects("runs/taken") == {workdir_lib.HOLDER_FILE}
  second.release()


def test_of_two_runs_creating_a_bucket_lock_at_once_one_gets_it(bucket, monkeypatch):
  """The read that names a holder cannot decide a race: the create-only-while-absent write does."""
  from google.cloud import storage  # pylint: disable=g-import-not-at-top
  workdir = f"gs://{BUCKET}/runs/race"
  first = workdir_lib.RunLock(workdir)
  monkeypatch.setattr(storage.Blob, "exists", lambda self, *a, **k: False)  # read before the first one wrote
  with pytest.raises(UserError, match="is in use by another train.py"):
    workdir_lib.RunLock(workdir)
  monkeypatch.undo()
  first.release()


def test_metrics_in_a_bucket_are_uploaded_whole_and_at_most_every_few_seconds(bucket):
  workdir = f"gs://{BUCKET}/runs/metrics"
  writer = MetricWriter(workdir, tensorboard=False)
  writer.write(1, "train", {"loss": 1.0})
  writer.write(2, "train", {"loss": 2.0})  # within REMOTE_FLUSH_S of the first upload: kept in memory
  assert [json.loads(line)["step"] for line in paths.read_text(f"{workdir}/metrics.jsonl").splitlines()] == [1]
  writer.close()
  assert [json.loads(line)["step"] for line in paths.read_text(f"{workdir}/metrics.jsonl").splitlines()] == [1, 2]
  writer = MetricWriter(workdir, tensorboard=False, resume_step=1)  # a resume from step 1 drops step 2's row
  writer.write(2, "train", {"loss": 3.0})
  writer.close()
  rows = [json.loads(line) for line in paths.read_text(f"{workdir}/metrics.jsonl").splitlines()]
  assert [(row["step"], row["loss"]) for row in rows] == [(1, 1.0), (2, 3.0)]


@pytest.mark.parametrize("workdir,words", [
    ("s3://bucket/run", "'s3://bucket/run': s3:// is not a place genjax can keep checkpoints; allowed: a local"
                        " directory or gs://BUCKET/PATH"),
    ("gs://", "'gs://' names no bucket; allowed: gs://BUCKET/PATH"),
    ("memory://run", "'memory://run': memory:// is not a place genjax can keep checkpoints"),
])
def test_a_workdir_of_another_scheme_is_one_line_and_never_a_local_folder(workdir, words, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  with pytest.raises(UserError, match="^--workdir: " + words.replace("(", r"\(").replace(")", r"\)")):
    train_lib.train_and_evaluate(tiny_config(num_steps=2), workdir)
  with pytest.raises(UserError, match="^--workdir: "):
    sample_lib.sample_and_evaluate(workdir)
  assert os.listdir(tmp_path) == []


def test_a_bucket_without_its_packages_names_what_to_install(monkeypatch):
  installed = paths._installed  # pylint: disable=protected-access
  monkeypatch.setattr(paths, "_installed", lambda module: module != "google.cloud.storage" and installed(module))
  with pytest.raises(UserError, match=r"^--workdir: 'gs://b/run' needs google-cloud-storage, which is not"
                                      r" installed; pip install 'genjax\[gcs\]'$"):
    workdir_lib.check_workdir("gs://b/run")


def test_train_py_and_sample_py_on_a_bucket_from_the_command_line(bucket, tmp_path):
  """The CLIs, run where a 'gs:' folder would appear: a bucket workdir trained and sampled, and s3:// refused in one
  line; the working directory stays empty."""
  from tests.helpers import ROOT, TINY, cli_env  # pylint: disable=g-import-not-at-top
  workdir = f"gs://{BUCKET}/runs/cli"

  def run(script, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=tmp_path, env=cli_env(),
                          capture_output=True, text=True, timeout=300)

  trained = run("train.py", f"--workdir={workdir}", *TINY, "--config.num_steps=2", "--config.eval.quality_samples=0")
  assert trained.returncode == 0, trained.stderr[-3000:]
  sampled = run("sample.py", f"--workdir={workdir}", "--quality_samples=0", "--iwae_k=2", "--num_examples=32")
  assert sampled.returncode == 0, sampled.stderr[-3000:]
  assert {"config.json", "checkpoints/2/_CHECKPOINT_METADATA", "samples/samples_0000002.png",
          "sample/eval.json"} <= _objects("runs/cli")
  refused = run("train.py", "--workdir=s3://bucket/run", "--config.num_steps=2", *TINY)
  assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
      "error: --workdir: 's3://bucket/run': s3:// is not a place genjax can keep checkpoints; allowed: a local"
      " directory or gs://BUCKET/PATH"], refused.stderr[-3000:]
  assert os.listdir(tmp_path) == []


def test_gfile_errors_reach_the_callers_as_the_oserrors_open_gives():
  """epath's backend is TensorFlow's gfile where TensorFlow is installed; its tf.errors are not OSErrors, which
  every `except OSError` of the callers (a missing checkpoint, an unreadable config.json) expects."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with pytest.raises(FileNotFoundError) as missing:
    with paths._remote_errors("gs://b/run/config.json"):  # pylint: disable=protected-access
      raise tf.errors.NotFoundError(None, None, "gs://b/run/config.json: not found")
  assert missing.value.filename == "gs://b/run/config.json"
  with pytest.raises(OSError) as denied:
    with paths._remote_errors("gs://b/run"):  # pylint: disable=protected-access
      raise tf.errors.PermissionDeniedError(None, None, "403 forbidden")
  assert not isinstance(denied.value, FileNotFoundError) and "403 forbidden" in str(denied.value)
  with pytest.raises(KeyError):  # anything else passes through
    with paths._remote_errors("gs://b/run"):  # pylint: disable=protected-access
      raise KeyError("x")
