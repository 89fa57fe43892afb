"""The GAN family through train.py / sample.py: 2-D points, DCGAN on mnist5k and TFDS, exact resume."""

import json
import os

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from genjax import build, data, evaluation, sample_lib, train_lib
from genjax import random as grandom
from genjax.errors import UserError
from tests.helpers import restore_state, run_cli, tiny_config

TINY_GAN = ["--config.batch_size=16", "--config.log_every=2", "--config.checkpoint_every=2",
            "--config.eval_every=4", "--config.eval.num_examples=32", "--config.model.g_hidden=(16,16)",
            "--config.model.d_hidden=(16,16)"]
TINY_DCGAN = {"model.g_width": 4, "model.d_width": 4}


def test_ring8_trains_resumes_and_samples_with_truncation(tmp_path):
  workdir = str(tmp_path / "ring")
  # A constant step size: a cosine schedule's decay spans num_steps, which a resume then keeps.
  first = run_cli("train.py", "--config=configs/gan_ring8.py", f"--workdir={workdir}", "--config.num_steps=4",
                  "--config.optim.schedule=constant", *TINY_GAN)
  assert first.returncode == 0, first.stderr[-3000:]
  again = run_cli("train.py", "--config=configs/gan_ring8.py", f"--workdir={workdir}", "--config.num_steps=6",
                  "--config.optim.schedule=constant", *TINY_GAN)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "resumed from the checkpoint of step 4" in again.stderr
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    records = [json.loads(line) for line in f]
  evals = [r for r in records if r["split"] == "eval"]
  assert [r["step"] for r in evals] == [4, 6]
  assert all(0 <= r["modes"] <= 8 and 0 <= r["high_quality"] <= 100 for r in evals)
  train = [r for r in records if r["split"] == "train"]
  assert {"d_loss", "g_loss", "d_real", "d_fake", "r1", "d_grad_norm", "g_grad_norm"} <= set(train[-1])

  sampled = run_cli("sample.py", f"--workdir={workdir}", "--truncation=1.0")
  assert sampled.returncode == 0, sampled.stderr[-3000:]
  assert "modes covered" in sampled.stdout and "IWAE" not in sampled.stdout
  with open(os.path.join(workdir, "sample", "eval.json"), encoding="utf-8") as f:
    result = json.load(f)
  assert result["step"] == 6 and "modes" in result and "iwae_k" not in result
  picture = np.asarray(Image.open(os.path.join(workdir, "sample", "truncated_1.png")))
  assert picture.shape == (2 * (256 + 4), 2 * (256 + 4), 3)


def test_dcgan_mnist5k_grids_from_the_ema_generator_and_from_the_raw_one(tmp_path):
  workdir = str(tmp_path / "dcgan")
  # Without warm-up the EMA stays near the initialisation, far from the raw weights (with it, after 2 updates
  # the EMA is the raw weights to 1e-3).
  config = tiny_config("dcgan_mnist5k", num_steps=2, **TINY_DCGAN, **{"gan.ema_warmup": "none"})
  train_lib.train_and_evaluate(config, workdir)
  sampled = sample_lib.sample_and_evaluate(workdir, truncation=0.7, quality_samples=64)  # the loop's 64
  names = sorted(os.path.basename(p) for p in sampled["files"])
  assert names == ["interpolations.png", "samples.png", "truncated_0.7.png"]
  grid = np.asarray(Image.open(os.path.join(workdir, "sample", "samples.png")))
  assert grid.shape == (2 * (8 * 30 + 2), 2 * (8 * 30 + 2)) and grid.std() > 1.0
  path = np.asarray(Image.open(os.path.join(workdir, "sample", "interpolations.png")))
  assert path.shape == (2 * (8 * 30 + 2), 2 * (10 * 30 + 2))

  # --weights=raw: the raw generator's own output for the same key, beside the EMA's, and the loop's numbers.
  raw = sample_lib.sample_and_evaluate(workdir, weights="raw", quality_samples=64)
  assert raw["weights"] == "raw" and sampled["weights"] == "ema"
  assert all(os.path.dirname(p) == os.path.join(workdir, "sample_raw") for p in raw["files"])
  state = restore_state(workdir)
  gan = build.family(config)
  keys = grandom.streams(config.seed)
  held_out = data.eval_images("mnist5k", config.eval.num_examples)
  by_hand = evaluation.write_visuals(jax.jit(gan.visuals), {"params": state["g_params"], "batch_stats": state["g_stats"]},
                                     keys.sample, held_out, str(tmp_path / "by_hand"))
  for mine in by_hand:
    np.testing.assert_array_equal(np.asarray(Image.open(mine)),
                                  np.asarray(Image.open(os.path.join(workdir, "sample_raw", os.path.basename(mine)))))
  assert not np.array_equal(np.asarray(Image.open(os.path.join(workdir, "sample_raw", "samples.png"))), grid)
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    last = [r for r in map(json.loads, f) if r["split"] == "eval"][-1]
  assert {"fid", "kid", "fid_raw", "kid_raw"} <= set(last)
  assert last["fid"] == pytest.approx(sampled["fid"], rel=1e-9) and last["fid_raw"] == pytest.approx(raw["fid"], rel=1e-9)
  assert last["fid"] != last["fid_raw"]
  with pytest.raises(UserError, match=r"--weights: the gan in '.*' has no 'best' weights; allowed: ema, raw"):
    sample_lib.sample_and_evaluate(workdir, weights="best")


def test_a_stopped_dcgan_run_resumes_to_the_same_state(tmp_path):
  """Weights, both optimizer states, both nets' BatchNorm statistics and the EMA."""
  straight, stopped = str(tmp_path / "straight"), str(tmp_path / "stopped")
  config = lambda n: tiny_config("dcgan_mnist5k", num_steps=n, **TINY_DCGAN, **{"gan.d_steps": 2})  # noqa: E731
  train_lib.train_and_evaluate(config(4), straight)
  train_lib.train_and_evaluate(config(2), stopped)
  train_lib.train_and_evaluate(config(4), stopped)
  a, b = restore_state(straight), restore_state(stopped)
  assert int(a["step"]) == int(b["step"]) == 4
  assert set(a) == {"step", "g_params", "d_params", "g_stats", "d_stats", "g_opt_state", "d_opt_state",
                    "ema_params", "ada"}
  assert not jax.tree.leaves(a["ada"])  # no ADA: its state holds nothing (older checkpoints lack it alike)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)


def test_dcgan_on_cifar10_under_mock_data(tmp_path):
  workdir = str(tmp_path / "cifar")
  with tfds.testing.mock_data(num_examples=64):
    train_lib.train_and_evaluate(tiny_config("dcgan_cifar10", num_steps=2, **TINY_DCGAN), workdir)
    sampled = sample_lib.sample_and_evaluate(workdir)
  grid = np.asarray(Image.open(os.path.join(workdir, "sample", "samples.png")))
  assert sampled["step"] == 2 and grid.shape == (2 * (8 * 34 + 2), 2 * (8 * 34 + 2), 3)


def test_truncation_is_refused_for_a_vae(tmp_path):
  workdir = str(tmp_path / "vae")
  train_lib.train_and_evaluate(tiny_config(num_steps=2), workdir)
  with pytest.raises(UserError, match="--truncation: the vae family samples from no truncated prior"):
    sample_lib.sample_and_evaluate(workdir, truncation=1.0)
