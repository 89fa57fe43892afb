"""Bad input is refused before any compilation: one line naming the field, exit status 2."""

import json
import os
import re

import pytest

from genjax import build, cli, sample_lib, train_lib
from genjax import workdir as workdir_lib
from genjax.errors import UserError
from genjax.models import family as family_lib
from tests.helpers import TINY, run_cli, tiny_config

# (config overrides, what the one-line message must say). Each is refused by
# `build.validate`, which runs before data loading and compilation.
BAD_CONFIGS = [
    ({"dataset.name": "imagenet"}, "dataset.name: unknown 'imagenet'; allowed: mnist5k, mnist"),
    # Every registered family is named (those registered when this module loads; a test family may follow).
    ({"family": "nosuchfamily"}, f"family: unknown 'nosuchfamily'; allowed: {', '.join(family_lib.names())}"),
    ({"model.arch": "resnet"}, "model.arch: unknown 'resnet'; allowed: conv, mlp"),
    ({"model.conv_widths": (8, 16, 32)}, "model.conv_widths: 3 stride-2 layers cannot produce the 28x28 images"
                                         " of dataset 'mnist5k'; allowed: 1 to 2 layers"),
    ({"model.conv_widths": ()}, "model.conv_widths: must be one or more positive integers"),
    ({"model.likelihood": "poisson"}, "model.likelihood: unknown 'poisson'; allowed: bernoulli, gaussian"),
    ({"model.likelihood": "gaussian"}, "model.binarize: True needs model.likelihood='bernoulli'"),
    ({"model.latent_dim": 0}, "model.latent_dim: must be a positive integer, got 0"),
    ({"model.beta": -1.0}, "model.beta: must be >= 0, got -1.0"),
    ({"model.hidden": (16, -2)}, "model.hidden: must be positive integers"),
    ({"batch_size": 0}, "batch_size: must be a positive integer, got 0"),
    ({"batch_size": -16}, "batch_size: must be a positive integer, got -16"),
    ({"num_steps": 0}, "num_steps: must be a positive integer, got 0"),
    ({"optim.learning_rate": 0.0}, "optim.learning_rate: must be > 0, got 0.0"),
    ({"optim.learning_rate": -1e-3}, "optim.learning_rate: must be > 0, got -0.001"),
    ({"optim.b1": 1.0}, "optim.b1: must be in [0, 1), got 1.0"),
    ({"optim.grad_clip_norm": 0.0}, "optim.grad_clip_norm: must be > 0 or None, got 0.0"),
    ({"model.iwae_k": 0}, "model.iwae_k: must be a positive integer, got 0"),
    ({"checkpoint_every": -1}, "checkpoint_every: must be a positive integer, got -1"),
    # Upper bounds of counts, each one above the bound (AT_THE_BOUNDS holds the bound itself, accepted).
    ({"seed": 2**32}, "seed: must be an integer in [0, 4294967295], got 4294967296"),
    ({"seed": -1}, "seed: must be an integer in [0, 4294967295], got -1"),
    ({"num_steps": 2**31}, "num_steps: must be an integer in [1, 2147483647], got 2147483648"),
    ({"log_every": 2**31}, "log_every: must be an integer in [1, 2147483647], got 2147483648"),
    ({"eval_every": 2**31}, "eval_every: must be an integer in [1, 2147483647], got 2147483648"),
    ({"checkpoint_every": 2**31}, "checkpoint_every: must be an integer in [1, 2147483647], got 2147483648"),
    ({"steps_per_call": 1001}, "steps_per_call: must be an integer in [1, 1000], got 1001"),
    ({"keep_checkpoints": 1001}, "keep_checkpoints: must be an integer in [1, 1000], got 1001"),
    ({"batch_size": 2**20 + 1}, "batch_size: must be an integer in [1, 1048576], got 1048577"),
    ({"eval.batch_size": 2**20 + 1}, "eval.batch_size: must be an integer in [1, 1048576], got 1048577"),
    ({"eval.num_examples": 10**6 + 1}, "eval.num_examples: must be an integer in [1, 1000000], got 1000001"),
    ({"eval.quality_samples": 200_001}, "eval.quality_samples: must be 0 (none) or an integer in [4, 200000], got"
                                        " 200001"),
    # KID needs pairs, precision/recall 3 neighbours: fewer samples were a traceback after training
    ({"eval.quality_samples": 3}, "eval.quality_samples: must be 0 (none) or an integer in [4, 200000], got 3"),
    ({"eval.quality_samples": -1}, "eval.quality_samples: must be 0 (none) or an integer in [4, 200000], got -1"),
    ({"model.iwae_k": 100_001}, "model.iwae_k: must be an integer in [1, 100000], got 100001"),
    ({"model.latent_dim": 2**20 + 1}, "model.latent_dim: must be an integer in [1, 1048576], got 1048577"),
    ({"model.hidden": (16, 2**20 + 1)}, "model.hidden: each must be an integer in [1, 1048576], got (16, 1048577)"),
    ({"model.conv_widths": (4, 2**20 + 1)},
     "model.conv_widths: each must be an integer in [1, 1048576], got (4, 1048577)"),
]

# (config file, overrides, message) of the GAN configs and the choices shared with them.
BAD_GAN_CONFIGS = [
    ("dcgan_mnist5k", {"model.arch": "mlp"}, "model.arch: 'mlp' cannot model dataset 'mnist5k'; allowed: 'mlp' for"),
    ("gan_ring8", {"model.arch": "dcgan"}, "model.arch: 'dcgan' cannot model dataset 'ring8'"),
    ("gan_ring8", {"model.arch": "conv"}, "model.arch: unknown 'conv'; allowed: dcgan, mlp"),
    ("gan_ring8", {"gan.loss": "vanilla"}, "gan.loss: unknown 'vanilla'; allowed: minimax, non_saturating, hinge"),
    ("gan_ring8", {"gan.d_steps": 0}, "gan.d_steps: must be a positive integer, got 0"),
    ("gan_ring8", {"gan.r1_gamma": -1.0}, "gan.r1_gamma: must be >= 0, got -1.0"),
    ("gan_ring8", {"gan.gp_weight": -10.0}, "gan.gp_weight: must be >= 0, got -10.0"),
    ("gan_ring8", {"gan.ema_decay": 1.0}, "gan.ema_decay: must be in [0, 1), got 1.0"),
    ("gan_ring8", {"model.pack": 3}, "model.pack: 3 must divide batch_size 16"),
    ("gan_ring8", {"model.d_hidden": ()}, "model.d_hidden: must be one or more positive integers, got ()"),
    ("gan_ring8", {"optim.d_learning_rate": 0.0}, "optim.d_learning_rate: must be > 0 or None, got 0.0"),
    ("dcgan_mnist5k", {"gan.gp_weight": 10.0, "model.d_norm": "batch"},
     "model.d_norm: 'batch' couples the examples of a batch, so the gradient penalty of gan.gp_weight is not per"
     " example"),
    ("dcgan_mnist5k", {"model.d_norm": "group"}, "model.d_norm: unknown 'group'; allowed: batch, layer, none"),
    ("dcgan_mnist5k", {"model.g_width": 0}, "model.g_width: must be a positive integer, got 0"),
    ("vae_mnist5k", {"dataset.name": "ring8"}, "dataset.name: 'ring8' holds 2-D points; the vae family models images"),
    ("vae_mnist5k", {"optim.schedule": "linear"}, "optim.schedule: unknown 'linear'; allowed: constant, cosine"),
    ("gan_ring8", {"model.latent_dim": 2**20 + 1}, "model.latent_dim: must be an integer in [1, 1048576], got 1048577"),
    ("gan_ring8", {"gan.d_steps": 101}, "gan.d_steps: must be an integer in [1, 100], got 101"),
    ("gan_ring8", {"model.pack": 32}, "model.pack: 32 must divide batch_size 16"),  # above batch_size
    ("gan_ring8", {"model.g_hidden": (16, 2**20 + 1)},
     "model.g_hidden: each must be an integer in [1, 1048576], got (16, 1048577)"),
    ("gan_ring8", {"model.d_hidden": (2**20 + 1,)},
     "model.d_hidden: each must be an integer in [1, 1048576], got (1048577,)"),
    ("dcgan_mnist5k", {"model.g_width": 2**20 + 1}, "model.g_width: must be an integer in [1, 1048576], got 1048577"),
    ("dcgan_mnist5k", {"model.d_width": 2**20 + 1}, "model.d_width: must be an integer in [1, 1048576], got 1048577"),
]

# (config file, overrides, message) of the diffusion family's own fields.
BAD_DIFFUSION_CONFIGS = [
    ("diffusion_ring8", {"diffusion.num_timesteps": 0}, "diffusion.num_timesteps: must be a positive integer, got 0"),
    ("diffusion_ring8", {"diffusion.num_timesteps": 100_001},
     "diffusion.num_timesteps: must be an integer in [1, 100000], got 100001"),
    ("diffusion_ring8", {"diffusion.sample_steps": 2_000_000_000},
     "diffusion.sample_steps: must be an integer in [1, 10000], got 2000000000"),
    ("diffusion_ring8", {"diffusion.sample_steps": 10_001},
     "diffusion.sample_steps: must be an integer in [1, 10000], got 10001"),
    ("diffusion_ring8", {"diffusion.eval_steps": 10_001},
     "diffusion.eval_steps: must be an integer in [1, 10000], got 10001"),
    ("diffusion_ring8", {"model.hidden": (16, 2**20 + 1)},
     "model.hidden: each must be an integer in [1, 1048576], got (16, 1048577)"),
    ("diffusion_ring8", {"model.emb_dim": 2**20 + 1}, "model.emb_dim: must be an integer in [1, 1048576], got 1048577"),
    ("diffusion_mnist5k", {"model.ch": 2**20 + 1}, "model.ch: must be an integer in [1, 1048576], got 1048577"),
    ("diffusion_mnist5k", {"model.ch_mult": (1, 2**20 + 1)},
     "model.ch_mult: each must be an integer in [1, 1048576], got (1, 1048577)"),
    ("diffusion_mnist5k", {"model.ch": 64, "model.ch_mult": (1, 2**15)},
     "model.ch_mult: each level's channels (ch x ch_mult = [64, 2097152]) must be an integer in [1, 1048576]"),
    ("diffusion_mnist5k", {"model.num_res_blocks": 101},
     "model.num_res_blocks: must be an integer in [1, 100], got 101"),
]

# (config file, overrides) at the upper bounds (and seed's and quality_samples' lower ones): accepted by
# `build.validate`. Every field refused one above its bound in the tables above is here.
AT_THE_BOUNDS = [
    ("vae_mnist5k", {"seed": 2**32 - 1}),
    ("vae_mnist5k", {"seed": 0}),
    ("vae_mnist5k", {"num_steps": 2**31 - 1}),
    ("vae_mnist5k", {"log_every": 2**31 - 1}),
    ("vae_mnist5k", {"eval_every": 2**31 - 1}),
    ("vae_mnist5k", {"checkpoint_every": 2**31 - 1}),
    ("vae_mnist5k", {"steps_per_call": 1000}),
    ("vae_mnist5k", {"keep_checkpoints": 1000}),
    ("vae_mnist5k", {"batch_size": 2**20}),
    ("vae_mnist5k", {"eval.batch_size": 2**20}),
    ("vae_mnist5k", {"eval.num_examples": 10**6}),
    ("vae_mnist5k", {"eval.quality_samples": 200_000}),
    ("vae_mnist5k", {"eval.quality_samples": 0}),
    ("vae_mnist5k", {"eval.quality_samples": 4}),
    ("vae_mnist5k", {"model.iwae_k": 100_000}),
    ("vae_mnist5k", {"model.latent_dim": 2**20}),
    ("vae_mnist5k", {"model.hidden": (16, 2**20)}),
    ("vae_mnist5k", {"model.conv_widths": (4, 2**20)}),
    ("gan_ring8", {"model.latent_dim": 2**20}),
    ("gan_ring8", {"gan.d_steps": 100}),
    ("gan_ring8", {"model.pack": 16}),  # batch_size
    ("gan_ring8", {"model.g_hidden": (16, 2**20)}),
    ("gan_ring8", {"model.d_hidden": (2**20,)}),
    ("dcgan_mnist5k", {"model.g_width": 2**20}),
    ("dcgan_mnist5k", {"model.d_width": 2**20}),
    ("diffusion_ring8", {"diffusion.num_timesteps": 100_000}),
    ("diffusion_ring8", {"diffusion.sample_steps": 10_000}),
    ("diffusion_ring8", {"diffusion.eval_steps": 10_000}),
    ("diffusion_ring8", {"model.hidden": (16, 2**20)}),
    ("diffusion_ring8", {"model.emb_dim": 2**20}),
    ("diffusion_mnist5k", {"model.ch": 2**20, "model.ch_mult": (1,), "model.attn_resolutions": ()}),
    ("diffusion_mnist5k", {"model.ch": 32, "model.ch_mult": (1, 2**15, 2**15)}),
    ("diffusion_mnist5k", {"model.num_res_blocks": 100}),
    # eps: the sampler's and the bound's levels are also bounded by the schedule's num_timesteps
    ("diffusion_ring8", {"diffusion.objective": "eps", "diffusion.num_timesteps": 10_000,
                         "diffusion.sample_steps": 10_000, "diffusion.eval_steps": 10_000}),
]


# Every case is refused before the first step compiles: by `build.validate` or the device check, before
# anything is read, or (an unavailable TFDS dataset) when the input pipeline is built.
BAD_INPUTS = [("vae_mnist5k", o, m) for o, m in BAD_CONFIGS] + BAD_GAN_CONFIGS + BAD_DIFFUSION_CONFIGS + [
    ("vae_mnist5k", {"parallel": "pjit"}, "parallel: unknown 'pjit'; allowed: jit, pmap"),
    ("vae_mnist5k", {"num_devices": 0}, "num_devices: must be a positive integer, got 0"),
    ("dcgan_mnist5k", {"num_devices": 64}, "num_devices: must be an integer in [1, 1] (the devices here) or None"),
    ("vae_mnist5k", {"dataset.name": "mnist", "dataset.download": False},
     "TFDS dataset 'mnist' is not in data_dir="),
]


def _exit_of_train(config, workdir, capsys) -> tuple[int, str]:
  """(exit status, last line of stderr) of training `config` through the CLIs' error handling."""
  with pytest.raises(SystemExit) as info:
    with cli.user_errors_exit():
      train_lib.train_and_evaluate(config, str(workdir))
  return info.value.code, capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("name,overrides,message", BAD_INPUTS,
                         ids=[f"{n}:{'+'.join(o)}" for n, o, _ in BAD_INPUTS])
def test_bad_config_exits_2_with_one_line_naming_the_field(tmp_path, capsys, name, overrides, message):
  if overrides.get("dataset.download") is False:  # an empty TFDS directory: nothing is prepared there
    overrides = {**overrides, "dataset.data_dir": str(tmp_path / "tfds")}
  status, line = _exit_of_train(tiny_config(name, **overrides), tmp_path / "run", capsys)
  assert status == 2
  assert line.startswith("error: ") and message in line, line
  # Nothing trained: no checkpoint step, no metrics.
  checkpoints = tmp_path / "run" / "checkpoints"
  assert not (checkpoints.is_dir() and any(n.isdigit() for n in os.listdir(checkpoints)))
  assert not os.path.exists(tmp_path / "run" / "metrics.jsonl")


def test_the_table_of_bad_inputs_is_long_enough():
  assert len(BAD_INPUTS) >= 20


_VALIDATED = [("vae_mnist5k", o, m) for o, m in BAD_CONFIGS] + BAD_GAN_CONFIGS + BAD_DIFFUSION_CONFIGS


@pytest.mark.parametrize("name,overrides,message", _VALIDATED, ids=[f"{n}:{'+'.join(o)}" for n, o, _ in _VALIDATED])
def test_bad_config_is_refused_by_validate(name, overrides, message):
  # The same rows as above, at `build.validate` alone: a bound that lets its row through fails here at once
  # rather than after the training run it then starts.
  with pytest.raises(UserError) as info:
    build.validate(tiny_config(name, **overrides))
  assert message in str(info.value)


@pytest.mark.parametrize("name,overrides", AT_THE_BOUNDS, ids=[f"{n}:{'+'.join(o)}" for n, o in AT_THE_BOUNDS])
def test_counts_at_their_bounds_are_accepted(name, overrides):
  build.validate(tiny_config(name, **overrides))


def test_every_upper_bound_refused_is_accepted_at_the_bound():
  bounded = {field for _, overrides, message in _VALIDATED if "must be an integer in [" in message
             for field in overrides}
  accepted = {field for _, overrides in AT_THE_BOUNDS for field in overrides}
  assert bounded - accepted == set()


@pytest.mark.parametrize("flag,value,message", [
    ("quality_samples", 200_001, "--quality_samples: must be 0 (none) or an integer in [6, 200000], got 200001"),
    ("quality_samples", -1, "--quality_samples: must be 0 (none) or an integer in [6, 200000], got -1"),
    # density and coverage take 5 neighbours (the loop's 4 gave a traceback here)
    ("quality_samples", 5, "--quality_samples: must be 0 (none) or an integer in [6, 200000], got 5"),
    ("iwae_k", 100_001, "--iwae_k: must be an integer in [1, 100000], got 100001"),
    ("iwae_k", 0, "--iwae_k: must be a positive integer, got 0"),
    ("num_examples", 10**6 + 1, "--num_examples: must be an integer in [1, 1000000], got 1000001"),
    ("num_examples", 0, "--num_examples: must be a positive integer, got 0"),
    ("truncation", float("inf"), "--truncation: must be a finite number > 0, got inf"),
    ("truncation", float("nan"), "--truncation: must be a finite number > 0, got nan"),
])
def test_sample_count_flags_are_bounded_before_the_workdir_is_read(tmp_path, flag, value, message):
  missing = tmp_path / "missing"  # read first, it would be refused as holding no config.json
  with pytest.raises(UserError) as info:
    sample_lib.sample_and_evaluate(str(missing), **{flag: value})
  assert str(info.value) == message
  assert not missing.exists()


@pytest.mark.parametrize("flag,value", [("quality_samples", 200_000), ("quality_samples", 0), ("quality_samples", 6),
                                        ("iwae_k", 100_000),
                                        ("iwae_k", 1), ("num_examples", 10**6), ("num_examples", 1)])
def test_sample_count_flags_at_their_bounds_reach_the_workdir(tmp_path, flag, value):
  with pytest.raises(UserError, match="holds no config.json"):
    sample_lib.sample_and_evaluate(str(tmp_path / "missing"), **{flag: value})


def _snapshot(workdir) -> dict[str, tuple[float, int]]:
  """{relative path: (mtime, size)} of every file under workdir."""
  out = {}
  for directory, _, names in os.walk(workdir):
    for name in names:
      path = os.path.join(directory, name)
      out[os.path.relpath(path, workdir)] = (os.path.getmtime(path), os.path.getsize(path))
  return out


def test_checkpoint_of_another_architecture_names_the_array_and_overwrites_nothing(tmp_path, capsys):
  train_lib.train_and_evaluate(tiny_config(num_steps=2), str(tmp_path))
  # config.json says the new widths (as if edited by hand), so that only the checkpoint itself can tell
  workdir_lib.save_config(str(tmp_path), tiny_config(**{"model.conv_widths": (4, 16)}))
  before = _snapshot(tmp_path)
  status, line = _exit_of_train(tiny_config(**{"model.conv_widths": (4, 16), "num_steps": 4}), tmp_path, capsys)
  assert status == 2
  assert line.startswith("error: checkpoint: step 2 in ") and (
      "was written by another model: params/decoder/ConvTranspose_0/kernel is float32[4, 4, 8, 4] there,"
      " float32[4, 4, 16, 4] in this model") in line, line
  assert _snapshot(tmp_path) == before


def test_corrupt_checkpoint_is_refused_in_one_line_and_overwrites_nothing(tmp_path, capsys):
  train_lib.train_and_evaluate(tiny_config(num_steps=2), str(tmp_path))
  arrays = [path for path in _snapshot(tmp_path) if f"{os.sep}d{os.sep}" in path]  # orbax's array chunks
  assert arrays
  for path in arrays:
    with open(tmp_path / path, "wb") as f:
      f.write(b"not an array")
  before = _snapshot(tmp_path)
  status, line = _exit_of_train(tiny_config(num_steps=4), tmp_path, capsys)
  assert status == 2
  assert line.startswith("error: checkpoint: step 2 in ") and " is unreadable (" in line
  assert line.endswith("to resume from the checkpoint before it, or use a new --workdir"), line
  assert _snapshot(tmp_path) == before


def _assert_refused(result, message):
  assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and message in last, last


@pytest.mark.parametrize("flag,message", [
    ("--config.dataset.name=imagenet", "dataset.name: unknown 'imagenet'"),
    ("--config.batch_size=0", "batch_size: must be a positive integer"),
    ("--config.optim.learning_rate=-1", "optim.learning_rate: must be > 0"),
    ("--config.model.conv_widths=(8,16,32)", "model.conv_widths: 3 stride-2 layers cannot produce"),
])
def test_train_cli_exits_2_before_compiling(tmp_path, flag, message):
  result = run_cli("train.py", f"--workdir={tmp_path / 'run'}", flag)
  _assert_refused(result, message)
  assert "first step" not in result.stderr  # nothing was compiled
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_unwritable_workdir_is_refused(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  result = run_cli("train.py", f"--workdir={blocker / 'run'}", "--config.num_steps=1")
  _assert_refused(result, f"--workdir: cannot write to '{blocker / 'run'}'")


def test_a_workdir_entry_a_run_cannot_write_is_refused_before_anything_is_written(tmp_path, monkeypatch):
  """A checkpoints/ the run may not write into (another user's, immutable) would be found at the first save,
  after minutes of training (os.access stands in for the permission: root may write anything)."""
  (tmp_path / "checkpoints").mkdir()
  (tmp_path / "metrics.jsonl").write_text("")
  assert workdir_lib.check_workdir(str(tmp_path)) == str(tmp_path)
  access = os.access
  monkeypatch.setattr(os, "access", lambda p, mode: access(p, mode) and not str(p).endswith("checkpoints"))
  with pytest.raises(UserError, match=re.escape(f"--workdir: cannot write to {tmp_path}/checkpoints (permission);"
                                                " fix that, then run the same command again")):
    workdir_lib.check_workdir(str(tmp_path))


def test_sample_on_an_empty_workdir_is_refused(tmp_path):
  _assert_refused(run_cli("sample.py", f"--workdir={tmp_path}"), "--workdir:")
  _assert_refused(run_cli("sample.py", f"--workdir={tmp_path / 'missing'}"), "holds no config.json")


def test_sample_on_a_workdir_without_checkpoints_is_refused(tmp_path):
  workdir_lib.save_config(str(tmp_path), tiny_config())
  _assert_refused(run_cli("sample.py", f"--workdir={tmp_path}"), "holds no checkpoint yet")


def test_resuming_with_another_architecture_is_refused(tmp_path):
  workdir_lib.save_config(str(tmp_path), tiny_config())
  with open(tmp_path / "config.json", encoding="utf-8") as f:
    assert json.load(f)["model"]["arch"] == "conv"
  result = run_cli("train.py", f"--workdir={tmp_path}", "--config.model.arch=mlp", *TINY)
  _assert_refused(result, "model.arch: this workdir was trained with 'conv', the config asks for 'mlp'")
