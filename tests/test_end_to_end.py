"""train.py / sample.py end to end: mnist5k, TFDS under mock_data, resume (SIGKILL trials: test_resume.py)."""

import json
import os

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from genjax import sample_lib, train_lib
from tests.helpers import TINY, restore_state, run_cli, tiny_config


def _metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f]


def test_train_then_resume_then_sample_on_mnist5k(tmp_path):
  workdir = str(tmp_path / "run")
  first = run_cli("train.py", f"--workdir={workdir}", "--config.num_steps=4", *TINY)
  assert first.returncode == 0, first.stderr[-3000:]
  assert "resumed" not in first.stderr
  assert sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit()) == [2, 4]
  train_steps = [r["step"] for r in _metrics(workdir) if r["split"] == "train"]
  assert train_steps == [2, 4]

  again = run_cli("train.py", f"--workdir={workdir}", "--config.num_steps=6", *TINY)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "resumed from the checkpoint of step 4" in again.stderr
  records = _metrics(workdir)
  assert [r["step"] for r in records if r["split"] == "train"] == [2, 4, 6]
  evals = [r for r in records if r["split"] == "eval"]
  assert [r["step"] for r in evals] == [4, 6]
  # What each part of the run trained on: in its first log line and in a row of its own.
  import jax  # pylint: disable=g-import-not-at-top
  n = len(jax.devices("cpu"))
  assert f"training on {n} cpu device{'s' * (n > 1)} (cpu) in 1 process, parallel=jit" in again.stderr
  starts = [({k: v for k, v in r.items() if k not in ("time", "step_flops")}) for r in records
            if r["split"] == "start"]
  assert starts == [{"step": s, "split": "start", "platform": "cpu", "devices": n, "device_kind": "cpu",
                     "processes": 1, "parallel": "jit", "precision": "float32", "peak_tflops": None} for s in (0, 4)]
  flops = [r["step_flops"] for r in records if r["split"] == "start"]
  assert flops[0] > 0 and flops[0] == flops[1]  # the same step, counted again by the resumed part
  assert all(np.isfinite(r["nll"]) and r["nll"] <= r["neg_elbo"] + 1e-3 for r in evals)
  for name in ("samples", "reconstructions", "interpolations"):
    assert os.path.isfile(os.path.join(workdir, "samples", f"{name}_0000006.png"))
  assert os.listdir(os.path.join(workdir, "tensorboard"))

  sampled = run_cli("sample.py", f"--workdir={workdir}", "--iwae_k=8")
  assert sampled.returncode == 0, sampled.stderr[-3000:]
  assert "negative ELBO" in sampled.stdout and "IWAE NLL (k=8)" in sampled.stdout
  with open(os.path.join(workdir, "sample", "eval.json"), encoding="utf-8") as f:
    result = json.load(f)
  assert result["step"] == 6 and result["iwae_k"] == 8 and result["num_examples"] == 32
  assert 0 < result["nll"] <= result["neg_elbo"]
  grid = np.asarray(Image.open(os.path.join(workdir, "sample", "samples.png")))
  # 8x8 grid of 28-pixel digits with 2-pixel gutters, upscaled twice.
  assert grid.shape == (2 * (8 * 30 + 2), 2 * (8 * 30 + 2)) and grid.dtype == np.uint8
  assert grid.std() > 1.0  # not a blank picture


def test_a_stopped_run_resumes_to_the_same_parameters(tmp_path):
  straight, stopped = str(tmp_path / "straight"), str(tmp_path / "stopped")
  train_lib.train_and_evaluate(tiny_config(num_steps=6), straight)
  train_lib.train_and_evaluate(tiny_config(num_steps=2), stopped)
  train_lib.train_and_evaluate(tiny_config(num_steps=6), stopped)
  a, b = restore_state(straight), restore_state(stopped)
  assert int(a["step"]) == int(b["step"]) == 6
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name,overrides", [
    ("mnist", {}),
    ("cifar10", {"model.likelihood": "gaussian", "model.binarize": False, "model.obs_logvar": -3.0}),
])
def test_tfds_datasets_train_and_sample_under_mock_data(tmp_path, name, overrides):
  workdir = str(tmp_path / name)
  config = tiny_config(**{"dataset.name": name, "num_steps": 4, **overrides})
  with tfds.testing.mock_data(num_examples=64):
    result = train_lib.train_and_evaluate(config, workdir)
    sampled = sample_lib.sample_and_evaluate(workdir, iwae_k=4)
  assert np.isfinite(result["neg_elbo"]) and result["nll"] <= result["neg_elbo"] + 1e-3
  assert sampled["step"] == 4 and sampled["nll"] <= sampled["neg_elbo"] + 1e-3
  assert all(os.path.isfile(path) for path in sampled["files"]) and len(sampled["files"]) == 3


def test_a_non_finite_loss_stops_the_run_with_its_step_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
  import dataclasses  # pylint: disable=g-import-not-at-top

  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from genjax import build  # pylint: disable=g-import-not-at-top
  from genjax.errors import NonFiniteLossError  # pylint: disable=g-import-not-at-top
  from genjax.models.vae import VAE  # pylint: disable=g-import-not-at-top

  @dataclasses.dataclass(frozen=True)
  class PoisonedFromStep4(VAE):
    def train_step(self, state, batch, key):
      new_state, metrics = super().train_step(state, batch, key)
      metrics["loss"] = jnp.where(new_state.step >= 4, jnp.nan, metrics["loss"])
      return new_state, metrics

  real_family = build.family
  monkeypatch.setattr(build, "family", lambda config, par=None: PoisonedFromStep4(
      **{f.name: getattr(real_family(config, par), f.name) for f in dataclasses.fields(VAE)}))
  workdir = str(tmp_path / "run")
  with pytest.raises(NonFiniteLossError, match=r"non-finite loss nan at step 4; checkpoint of step 2 left intact"):
    train_lib.train_and_evaluate(tiny_config(num_steps=10, log_every=5), workdir)
  assert sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit()) == [2]
  assert int(restore_state(workdir)["step"]) == 2
