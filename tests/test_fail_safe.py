"""Failing safe: every error a user can cause is one line with exit status 2 and leaves the workdir as it was,
and no non-finite weights ever reach the disk.

Each CLI case runs train.py or sample.py in a subprocess on a copy of one
small trained workdir, hashes every file of that copy before and after, and
asserts the whole of stderr: exactly one line, `error: ...`.
"""

import hashlib
import json
import os
import re
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from genjax import build, checkpoint, config_flag, sample_lib, train_lib
from genjax import workdir as workdir_lib
from genjax import random as grandom
from genjax.errors import NonFiniteLossError
from tests.helpers import ROOT, TINY, restore_state, run_cli, tiny_config

# The run every case starts from: a small MLP VAE, 2 steps, a checkpoint at each.
RUN = {"num_steps": 2, "checkpoint_every": 1, "eval_every": 2, "log_every": 1, "model.hidden": (16,),
       "model.latent_dim": 4}
# The same run on the command line (tiny_config's fields are TINY's).
RUN_FLAGS = [f"--config={os.path.join(ROOT, 'configs', 'vae_mnist5k_mlp.py')}", *TINY,
             *(f"--config.{k}={v}" for k, v in RUN.items() if k != "model.hidden")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> str:
  workdir = str(tmp_path_factory.mktemp("trained") / "run")
  train_lib.train_and_evaluate(tiny_config("vae_mnist5k_mlp", **RUN), workdir)
  return workdir


def _digest(workdir: str) -> dict[str, str]:
  """{relative path: sha256 of the content} of every file under workdir (directories as '<dir>')."""
  out = {}
  for directory, dirs, names in os.walk(workdir):
    for name in dirs:
      out[os.path.relpath(os.path.join(directory, name), workdir)] = "<dir>"
    for name in names:
      path = os.path.join(directory, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, workdir)] = hashlib.sha256(f.read()).hexdigest()
  return out


# ---------------------------------------------------------------------------------------- preparing a case


def _edit_config(workdir: str, edit) -> None:
  path = os.path.join(workdir, "config.json")
  with open(path, encoding="utf-8") as f:
    saved = json.load(f)
  edit(saved)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(saved, f)


def _write(relative: str, text: str):
  def prepare(workdir: str) -> None:
    with open(os.path.join(workdir, relative), "w", encoding="utf-8") as f:
      f.write(text)
  return prepare


def _set(field: str, value):
  def edit(saved):
    node = saved
    *path, last = field.split(".")
    for part in path:
      node = node[part]
    node[last] = value
  return lambda workdir: _edit_config(workdir, edit)


def _drop(block: str):
  return lambda workdir: _edit_config(workdir, lambda saved: saved.pop(block))


def _corrupt_checkpoint(workdir: str) -> None:
  step_dir = os.path.join(workdir, "checkpoints", "2")
  for directory, _, names in os.walk(step_dir):
    if os.path.basename(directory) == "d":  # orbax's array chunks
      for name in names:
        with open(os.path.join(directory, name), "wb") as f:
          f.write(b"not an array")


def _nan_checkpoint(workdir: str) -> None:
  """Replaces the checkpoint of step 2 with the same state whose weights are NaN (as an older genjax could save)."""
  config = workdir_lib.load_config(workdir)
  family = build.family(config)
  state = jax.jit(family.init)(grandom.streams(config.seed).init)
  state = state.replace(params=jax.tree.map(lambda x: np.full(x.shape, np.nan, x.dtype), state.params))
  shutil.rmtree(os.path.join(workdir, "checkpoints", "2"))
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), 3)
  ckpt.save(2, state)
  ckpt.close()


def _file_at(relative: str):
  def prepare(workdir: str) -> None:
    path = os.path.join(workdir, relative)
    shutil.rmtree(path, ignore_errors=True)
    with open(path, "w", encoding="utf-8") as f:
      f.write("a file where a directory goes")
  return prepare


def _no_checkpoints(workdir: str) -> None:
  shutil.rmtree(os.path.join(workdir, "checkpoints"))


def _config_files(workdir: str) -> None:
  """Config files of every kind of breakage, beside the workdir (outside it: the workdir stays as it was)."""
  here = os.path.dirname(workdir)
  files = {"syntax.py": "def get_config(:\n", "noget.py": "x = 1\n",
           "raises.py": "def get_config():\n  return {}['model']\n", "notdict.py": "def get_config():\n  return 3\n",
           "dict.py": "def get_config():\n  return {'family': 'vae'}\n",
           "nofamily.py": "import ml_collections\n\ndef get_config():\n  return ml_collections.ConfigDict({'a': 1})\n",
           # a copy of a config with a misspelt field, which an unlocked ConfigDict would simply add
           "typo.py": "from configs import vae_mnist5k_mlp\n\ndef get_config():\n  c = vae_mnist5k_mlp.get_config()\n"
                      "  c.optim.learning_rat = 0.1\n  return c\n"}
  for name, text in files.items():
    with open(os.path.join(here, name), "w", encoding="utf-8") as f:
      f.write(text)


# (script, extra arguments, how to break the workdir copy, the exact stderr line). In arguments and lines,
# {w} is the workdir and {d} its parent directory.
CASES = {
    # config files and overrides
    "config file missing": ("train.py", ["--config={d}/missing.py", "--workdir={d}/new"], None,
                            "error: --config: no such file '{d}/missing.py'; allowed: a Python file with get_config(),"
                            " e.g. configs/vae_mnist5k.py"),
    "config file syntax error": ("train.py", ["--config={d}/syntax.py", "--workdir={d}/new"], _config_files,
                                 "error: --config: {d}/syntax.py, line 1: SyntaxError: invalid syntax"),
    "config file without get_config": ("train.py", ["--config={d}/noget.py", "--workdir={d}/new"], _config_files,
                                       "error: --config: {d}/noget.py defines no get_config(); a config file returns"
                                       " its ConfigDict from get_config()"),
    "config file raises": ("train.py", ["--config={d}/raises.py", "--workdir={d}/new"], _config_files,
                           "error: --config: get_config() in {d}/raises.py, line 2: KeyError: 'model'"),
    "config file returns no ConfigDict": ("train.py", ["--config={d}/notdict.py", "--workdir={d}/new"], _config_files,
                                          "error: --config: get_config() in {d}/notdict.py returned int, not an"
                                          " ml_collections.ConfigDict"),
    "config file returns a dict": ("train.py", ["--config={d}/dict.py", "--workdir={d}/new"], _config_files,
                                   "error: --config: get_config() in {d}/dict.py returned dict, not an"
                                   " ml_collections.ConfigDict"),
    "config file sets no family": ("train.py", ["--config={d}/nofamily.py", "--workdir={d}/new"], _config_files,
                                   "error: --config: {d}/nofamily.py sets no family; allowed: a config of configs/ (a"
                                   " family's get_config in configs/base.py)"),
    "misspelt field in a config file": ("train.py", ["--config={d}/typo.py", "--workdir={d}/new"], _config_files,
                                        "error: optim.learning_rat: no such field of a vae config (set in"
                                        " {d}/typo.py); did you mean optim.learning_rate?"),
    "config file given twice": ("train.py", ["--config={root}/configs/vae_mnist5k_mlp.py",
                                             "--config={root}/configs/vae_mnist5k.py", "--workdir={d}/new"], None,
                                "error: --config: given 2 times ({root}/configs/vae_mnist5k_mlp.py,"
                                " {root}/configs/vae_mnist5k.py); allowed: one config file, changed by"
                                " --config.FIELD=VALUE"),
    "config file with an argument it does not take": (
        "train.py", ["--config={root}/configs/vae_mnist5k.py:small", "--workdir={d}/new"], None,
        "error: --config: get_config('small') in {root}/configs/vae_mnist5k.py: TypeError: get_config() takes 0"
        " positional arguments but 1 was given (the text after ':' in --config=FILE:ARG is get_config's argument,"
        " and this get_config takes none)"),
    "misspelt override": ("train.py", ["--config.batchsize=8"], None,
                          "error: --config.batchsize: no such field in {root}/configs/vae_mnist5k_mlp.py; did you"
                          " mean --config.batch_size?"),
    "misspelt nested override": ("train.py", ["--config.optim.learningrate=0.1"], None,
                                 "error: --config.optim.learningrate: no such field in"
                                 " {root}/configs/vae_mnist5k_mlp.py; did you mean --config.optim.learning_rate?"),
    "override of the wrong type": ("train.py", ["--config.batch_size=big"], None,
                                   "error: --config.batch_size: cannot use 'big' (invalid literal for int() with"
                                   " base 10: 'big'); allowed: int"),
    # --config.FIELD=None sets None (ml_collections alone parses it as the field's type), for validate to judge
    "None for a field that needs a value": ("train.py", ["--config.num_steps=None"], None,
                                            "error: num_steps: must be a positive integer, got None"),
    "None resetting a field an earlier override set": (
        "train.py", ["--config.num_devices=64", "--config.num_devices=None", "--config.batch_size=6000",
                     "--workdir={d}/new"], None,
        "error: batch_size: the global batch 6000 exceeds the 4500 training examples of dataset 'mnist5k'; allowed:"
        " at most 4500"),
    "None for no field": ("train.py", ["--config.nope=None"], None,
                          "error: --config.nope: no such field in {root}/configs/vae_mnist5k_mlp.py; allowed: the"
                          " fields of configs/base.py"),
    "infinite learning rate": ("train.py", ["--config.optim.learning_rate=inf"], None,
                               "error: optim.learning_rate: must be a finite number, got inf"),
    "infinite beta": ("train.py", ["--config.model.beta=inf"], None,
                      "error: model.beta: must be a finite number, got inf"),
    "NaN observation log-variance": ("train.py", ["--config.model.obs_logvar=nan"], None,
                                     "error: model.obs_logvar: must be a finite number, got nan"),
    "learning rate infinite in float32": ("train.py", ["--config.optim.learning_rate=1e39"], None,
                                          "error: optim.learning_rate: must be a finite number in float32 (at most"
                                          " 3.403e+38 in size), got 1e+39"),
    # a resume that would change what the weights were trained with
    "resume with another seed": ("train.py", ["--config.seed=1"], None,
                                 "error: seed: this workdir was trained with 0, the config asks for 1; a resume keeps"
                                 " what the weights were trained with: use the same seed, or a new --workdir"),
    "resume with another KL weight": ("train.py", ["--config.model.beta=0.5"], None,
                                      "error: model.beta: this workdir was trained with 1.0, the config asks for 0.5;"
                                      " a resume keeps what the weights were trained with: use the same model.beta,"
                                      " or a new --workdir"),
    "resume with another batch": ("train.py", ["--config.batch_size=8"], None,
                                  "error: batch_size: this workdir was trained with 16, the config asks for 8; a"
                                  " resume keeps what the weights were trained with: use the same batch_size, or a"
                                  " new --workdir"),
    "empty --workdir": ("train.py", ["--workdir="], None, "error: --workdir: empty; allowed: a directory name"),
    # absl flags
    "unknown flag": ("train.py", ["--workdri=x"], None, "error: --workdri: unknown flag; did you mean --workdir?"),
    "extra argument": ("train.py", ["again"], None,
                       "error: unexpected arguments: again; allowed: flags only (--helpshort lists them)"),
    "--distributed off a cluster": ("train.py", ["--distributed", "--workdir={d}/new"], None,
                                    "error: --distributed: JAX detects no cluster here (coordinator_address should"
                                    " be defined.): it joins TPU VM pods, Slurm and other clusters it knows;"
                                    " elsewhere give --coordinator_address, --num_processes and --process_id, or"
                                    " leave --distributed out to train on this machine's devices"),
    "bad integer flag": ("train.py", ["--num_processes=two"], None,
                         "error: --num_processes: cannot use 'two' (invalid literal for int() with base 10:"
                         " 'two'); allowed: int"),
    # config.json of the workdir
    "config.json not JSON": ("train.py", [], _write("config.json", '{"family": "vae",'),
                             "error: {w}/config.json: not valid JSON (Expecting property name enclosed in double"
                             " quotes at line 1, column 18); train.py writes this file: restore it, or train into a"
                             " new --workdir"),
    "config.json of the wrong type": ("train.py", [], _set("optim.learning_rate", "fast"),
                                      "error: {w}/config.json: optim.learning_rate: must be > 0, got 'fast'"),
    "config.json without a block": ("train.py", [], _drop("model"),
                                    "error: {w}/config.json: model: missing from the config; every config starts"
                                    " from configs/base.py, which has it"),
    # the data
    "batch larger than the dataset": ("train.py", ["--config.batch_size=6000", "--workdir={d}/new"], None,
                                      "error: batch_size: the global batch 6000 exceeds the 4500 training"
                                      " examples of dataset 'mnist5k'; allowed: at most 4500"),
    # a TFDS dataset not prepared (TensorFlow and TFDS log on the way there: none of it may reach stderr)
    "TFDS dataset not prepared": ("train.py", ["--config.dataset.name=mnist", "--config.dataset.download=False",
                                               "--config.dataset.data_dir={d}/tfds", "--workdir={d}/new"], None,
                                  None),
    # the model against the device's memory (an MLP VAE with 2 x 2**40 weights and Adam's moments)
    "model too large for memory": ("train.py", ["--config={root}/configs/vae_mnist5k_mlp.py",
                                                "--config.model.hidden=(1048576, 1048576)", "--workdir={d}/new"], None, None),
    # the evaluation against the device's memory: the step fits, a million held-out digits at once do not
    "evaluation too large for memory": ("train.py", ["--config={root}/configs/vae_mnist5k.py",
                                                     "--config.eval.batch_size=1048576", "--workdir={d}/new"], None,
                                        None),
    # the feature network of FID
    "Inception weights missing": ("train.py", ["--config.eval.inception_weights={d}/fid.npz", "--workdir={d}/new"],
                                  None, "error: eval.inception_weights: no file '{d}/fid.npz'; convert pytorch-fid's"
                                  " pt_inception-2015-12-05-6726825d.pth once with `python -m"
                                  " genjax.convert_inception` (docs/evaluation.md, 'FID with Inception-v3')"),
    "Inception weights of another network": ("train.py", ["--config.eval.inception_weights={w}/config.json",
                                                           "--workdir={d}/new"], None,
                                             "error: eval.inception_weights: {w}/config.json: not an .npz of named arrays"
                                             " (ValueError); convert"
                                             " pytorch-fid's pt_inception-2015-12-05-6726825d.pth with `python -m"
                                             " genjax.convert_inception`"),
    # the workdir
    "workdir under a file": ("train.py", [], _file_at("checkpoints"),
                             "error: checkpoint: {w}/checkpoints is a file, not a directory of checkpoints; move it"
                             " away, or use a new --workdir"),
    "workdir is a file": ("train.py", ["--workdir={w}/config.json"], None,
                          "error: --workdir: cannot write to '{w}/config.json' ({w}/config.json is a file, not a"
                          " directory)"),
    # the checkpoint
    "corrupt checkpoint": ("train.py", ["--config.num_steps=4"], _corrupt_checkpoint, None),
    "non-finite checkpoint": ("train.py", ["--config.num_steps=4"], _nan_checkpoint,
                              "error: checkpoint: step 2 in {w}/checkpoints holds non-finite values (NaN or infinity"
                              " in params/decoder/Dense_0/bias), which no training or sampling can use; move"
                              " {w}/checkpoints/2 away to resume from the checkpoint before it, or use a new"
                              " --workdir"),
    "another model's checkpoint": ("train.py", ["--config.model.latent_dim=8", "--config.num_steps=4"],
                                   _set("model.latent_dim", 8),
                                   "error: checkpoint: step 2 in {w}/checkpoints was written by another model:"
                                   " params/decoder/Dense_0/kernel is float32[4, 16] there, float32[8, 16] in this"
                                   " model; use a new --workdir, or the config the checkpoint was trained with"),
    "checkpoints without config.json": ("train.py", ["--config.seed=9", "--config.num_steps=4"],
                                        lambda w: os.remove(f"{w}/config.json"),
                                        "error: --workdir: '{w}' holds checkpoints but no config.json, which says"
                                        " what they were trained with; put it back (sample.py needs it too), or use a"
                                        " new --workdir"),
    "family overridden": ("train.py", ["--config.family=gan"], None,
                          "error: --config.family: a config file fixes its family (its fields are the family's);"
                          " allowed: a config file of the family you want, e.g. --config=configs/gan_ring8.py"),
    # sample.py
    "sample: no --workdir": ("sample.py", None, None, "error: --workdir: required; A workdir written by train.py."),
    "sample: empty --workdir": ("sample.py", ["--workdir="], None, "error: --workdir: empty; allowed: a directory name"),
    "sample: no config.json": ("sample.py", [], lambda w: os.remove(f"{w}/config.json"),
                               "error: --workdir: '{w}' holds no config.json; train into it first with train.py"),
    "sample: config.json not JSON": ("sample.py", [], _write("config.json", "[1, 2"),
                                     "error: {w}/config.json: not valid JSON (Expecting ',' delimiter at line 1,"
                                     " column 6); train.py writes this file: restore it, or train into a new"
                                     " --workdir"),
    "sample: config.json a list": ("sample.py", [], _write("config.json", "[1, 2]"),
                                   "error: {w}/config.json: holds a JSON list, not the object of a config that"
                                   " train.py writes"),
    "sample: config.json with NaN": ("sample.py", [], _set("model.beta", float("nan")),
                                     "error: {w}/config.json: model.beta: must be a finite number, got nan"),
    "sample: config.json without a block": ("sample.py", [], _drop("optim"),
                                            "error: {w}/config.json: optim: missing from the config; every config"
                                            " starts from configs/base.py, which has it"),
    "sample: unwritable output": ("sample.py", [], _file_at("sample"),
                                  "error: --workdir: cannot write to '{w}/sample' ({w}/sample is a file, not a"
                                  " directory)"),
    "sample: no checkpoint": ("sample.py", [], _no_checkpoints,
                              "error: --workdir: '{w}' holds no checkpoint yet; train into it first with train.py"),
    "sample: corrupt checkpoint": ("sample.py", [], _corrupt_checkpoint, None),
    "sample: non-finite checkpoint": ("sample.py", [], _nan_checkpoint,
                                      "error: checkpoint: step 2 in {w}/checkpoints holds non-finite values (NaN or"
                                      " infinity in params/decoder/Dense_0/bias), which no training or sampling can"
                                      " use; move {w}/checkpoints/2 away to resume from the checkpoint before it, or"
                                      " use a new --workdir"),
    "sample: bad --iwae_k": ("sample.py", ["--iwae_k=0"], None, "error: --iwae_k: must be a positive integer, got 0"),
    "sample: --iwae_k not a number": ("sample.py", ["--iwae_k=many"], None,
                                      "error: --iwae_k: cannot use 'many' (invalid literal for int() with base 10:"
                                      " 'many'); allowed: int"),
    "sample: Inception weights missing": ("sample.py", ["--inception_weights={d}/fid.npz"], None,
                                          "error: --inception_weights: no file '{d}/fid.npz'; convert pytorch-fid's"
                                          " pt_inception-2015-12-05-6726825d.pth once with `python -m"
                                          " genjax.convert_inception` (docs/evaluation.md, 'FID with Inception-v3')"),
    "sample: weights the family lacks": ("sample.py", ["--weights=ema"], None,
                                         "error: --weights: the vae in '{w}' has no 'ema' weights; allowed: raw"),
    "sample: unknown flag": ("sample.py", ["--iwaek=5"], None, "error: --iwaek: unknown flag; did you mean --iwae_k?"),
}

# Lines whose middle depends on the machine: (start, end) they must have.
PATTERNS = {
    "model too large for memory": ("error: model: one training step needs ",
                                   " GiB are available; allowed: a smaller model.* width or batch_size 128"),
    "TFDS dataset not prepared": ("error: TFDS dataset 'mnist' is not in data_dir={d}/tfds and dataset.download=False;",
                                  "(dataset.name='mnist5k')"),
    "evaluation too large for memory": ("error: eval.batch_size: evaluating 1048576 held-out examples at once needs ",
                                        " GiB are available; allowed: a smaller eval.batch_size than 1048576"),
    "corrupt checkpoint": ("error: checkpoint: step 2 in {w}/checkpoints is unreadable (",
                           "); move {w}/checkpoints/2 away to resume from the checkpoint before it, or use a new"
                           " --workdir"),
    "sample: corrupt checkpoint": ("error: checkpoint: step 2 in {w}/checkpoints is unreadable (",
                                   "); move {w}/checkpoints/2 away to resume from the checkpoint before it, or use a"
                                   " new --workdir"),
}


# Cases found after JAX has started, run again as a user's run is: JAX looking for every platform, and logging
# the ones it does not find (TPU on any machine without libtpu) before the error.
AFTER_JAX = ("batch larger than the dataset", "model too large for memory", "corrupt checkpoint",
             "sample: non-finite checkpoint", "TFDS dataset not prepared")


@pytest.mark.parametrize("name,cpu_only", [(name, True) for name in CASES] + [(name, False) for name in AFTER_JAX],
                         ids=[*CASES, *(f"{name}, every platform" for name in AFTER_JAX)])
def test_cli_refuses_in_one_line_with_status_2_and_changes_nothing(trained, tmp_path, name, cpu_only):
  script, args, prepare, line = CASES[name]
  workdir = str(tmp_path / "run")
  shutil.copytree(trained, workdir)
  if prepare is not None:
    prepare(workdir)
  before = _digest(workdir)
  fill = {"w": workdir, "d": str(tmp_path), "root": ROOT}
  if args is None:  # sample.py without --workdir
    argv = []
  elif script == "train.py" and args and args[0].startswith("--config="):  # a config of its own, not the run's
    argv = [f"--workdir={workdir}", *(a.format(**fill) for a in args)]
  elif script == "train.py":
    argv = [f"--workdir={workdir}", *RUN_FLAGS, *(a.format(**fill) for a in args)]
  else:
    argv = [f"--workdir={workdir}", *(a.format(**fill) for a in args)]
  result = run_cli(script, *argv, cpu_only=cpu_only)
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
  assert len(lines) == 1, result.stderr[-3000:]
  if line is not None:
    assert lines[0] == line.format(**fill)
  else:
    start, end = (part.format(**fill) for part in PATTERNS[name])
    assert lines[0].startswith(start) and lines[0].endswith(end), lines[0]
  assert _digest(workdir) == before
  assert not os.path.exists(tmp_path / "new")  # where a case trains into a new workdir, it is not created


def test_a_none_override_is_set_after_parsing_and_a_later_override_still_wins():
  argv = ["train.py", "--config.a=1", "--config.a=None", "--config.b.c=None", "--config.b.c=2", "--workdir=w",
          "--config.d=None"]
  parsed, nones = config_flag.without_none_overrides(argv)
  assert parsed == ["train.py", "--config.a=1", "--config.b.c=2", "--workdir=w"]
  assert nones == ["a", "d"]
  config = ml_collections.ConfigDict({"a": 1, "b": {"c": 2}, "d": ml_collections.config_dict.placeholder(int)})
  config.lock()
  assert not config_flag.set_none(config, ["a", "b.x"]) and config.a == 1  # one is no field: nothing changes
  assert not config_flag.set_none(config, ["b"]) and config.b.c == 2  # a block is not a field to set to None
  assert config_flag.set_none(config, ["a", "b.c"]) and config.a is None and config.b.c is None


def test_the_cli_table_covers_both_scripts():
  scripts = [script for script, *_ in CASES.values()]
  assert scripts.count("train.py") >= 20 and scripts.count("sample.py") >= 10


def test_a_refused_run_creates_no_workdir(tmp_path):
  result = run_cli("train.py", f"--workdir={tmp_path / 'new'}", *RUN_FLAGS, "--config.batch_size=6000")
  assert result.returncode == 2 and result.stderr.startswith("error: batch_size: ")
  assert not os.path.exists(tmp_path / "new")


# ---------------------------------------------------------------------------------------- non-finite weights


def _all_checkpoints_finite(workdir: str) -> list[int]:
  """The steps on disk, after asserting that every floating array of every one of them is finite."""
  steps = sorted(int(n) for n in os.listdir(os.path.join(workdir, "checkpoints")) if n.isdigit())
  for step in steps:
    for leaf in jax.tree.leaves(restore_state(workdir, step)):
      if np.issubdtype(leaf.dtype, np.floating):
        assert np.isfinite(leaf).all(), step
  return steps


def _infinite_step_size(monkeypatch) -> None:
  """Every optimizer built from now on steps by 1e39, infinite in float32.

  No config can ask for it (the float32 check refuses 1e39), so only this reaches the loop's last guard: an
  update that makes the weights non-finite while the loss of its step, computed before the update, is finite.
  """
  monkeypatch.setattr(build, "learning_rate", lambda value, schedule, num_steps: 1e39)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # 1e39 as float32, on purpose
def test_an_update_to_non_finite_weights_is_never_saved_and_sample_py_still_works(trained, tmp_path, monkeypatch):
  workdir = str(tmp_path / "run")
  shutil.copytree(trained, workdir)
  _infinite_step_size(monkeypatch)
  config = tiny_config("vae_mnist5k_mlp", **{**RUN, "num_steps": 4})
  with pytest.raises(NonFiniteLossError,
                     match=r"^non-finite weights \(params/\S+\) after step 3; checkpoint of step 2 left intact$"):
    train_lib.train_and_evaluate(config, workdir)
  assert _all_checkpoints_finite(workdir) == [1, 2]
  result = run_cli("sample.py", f"--workdir={workdir}", "--iwae_k=2")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "checkpoint step 2" in result.stdout


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_a_run_that_diverges_at_its_first_step_writes_no_checkpoint(tmp_path, monkeypatch):
  _infinite_step_size(monkeypatch)
  with pytest.raises(NonFiniteLossError, match=r"after step 1; no checkpoint was written$"):
    train_lib.train_and_evaluate(tiny_config("vae_mnist5k_mlp", **RUN), str(tmp_path))
  assert not [n for n in os.listdir(tmp_path / "checkpoints") if n.isdigit()]


def _sampled_numbers_finite(workdir: str, step: int) -> None:
  result = sample_lib.sample_and_evaluate(workdir, iwae_k=2, quality_samples=64)
  assert result["step"] == step
  assert all(np.isfinite(result[name]) for name in ("neg_elbo", "nll", "fid", "kid")), result


def _step_size_1e30_from_step_3(monkeypatch) -> None:
  """Every optimizer built from now on steps by the config's step size for 2 steps, then by 1e30 (finite in
  float32): the update of step 3 gives finite weights of about 1e30, whose losses overflow. (Its state has a
  step count that a constant step size's lacks: such a workdir is sampled in this process.)"""
  monkeypatch.setattr(build, "learning_rate",
                      lambda value, schedule, num_steps: lambda count: jnp.where(count < 2, value, 1e30))


def test_a_checkpoint_whose_weights_give_a_non_finite_loss_is_removed(tmp_path, monkeypatch):
  """Step 3's weights are finite and saved; the loss of step 4, computed with them, is not. Keeping that
  checkpoint would leave one from which every resume and every sample.py gives NaN."""
  _step_size_1e30_from_step_3(monkeypatch)
  workdir = str(tmp_path / "run")
  with pytest.raises(NonFiniteLossError, match=r"^non-finite loss (nan|inf) at step 4; removed the checkpoint of step"
                                               r" 3, whose weights it was computed with; checkpoint of step 2 left intact$"):
    train_lib.train_and_evaluate(tiny_config("vae_mnist5k_mlp", **{**RUN, "num_steps": 6}), workdir)
  assert _all_checkpoints_finite(workdir) == [1, 2]
  _sampled_numbers_finite(workdir, 2)


def test_a_checkpoint_whose_weights_give_a_non_finite_held_out_loss_is_removed(tmp_path, monkeypatch):
  """The same at the last step: no later loss judges its weights, the final evaluation does."""
  _step_size_1e30_from_step_3(monkeypatch)
  workdir = str(tmp_path / "run")
  with pytest.raises(NonFiniteLossError, match=r"^non-finite held-out neg_elbo (nan|inf) of the weights of step 3;"
                                               r" removed the checkpoint of step 3, whose weights it was computed with;"
                                               r" checkpoint of step 2 left intact$"):
    train_lib.train_and_evaluate(tiny_config("vae_mnist5k_mlp", **{**RUN, "num_steps": 3}), workdir)
  assert _all_checkpoints_finite(workdir) == [1, 2]
  _sampled_numbers_finite(workdir, 2)
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    text = f.read()
  assert "NaN" not in text and "Infinity" not in text and '"split": "eval"' not in text.splitlines()[-1]


def test_a_diverged_run_exits_1_in_one_line_and_sample_py_prints_no_nan(tmp_path):
  """A step size of 1e30 from the start (the user's case): step 1's weights, the only checkpoint, give a NaN
  loss at step 2. The run says so in one line (exit 1), and sample.py refuses to print the NaN as a result."""
  workdir = str(tmp_path / "run")
  result = run_cli("train.py", f"--workdir={workdir}", *RUN_FLAGS, "--config.num_steps=3",
                   "--config.optim.learning_rate=1e30")
  assert result.returncode == 1, result.stderr[-3000:]
  last = result.stderr.strip().splitlines()[-1]
  assert re.fullmatch(r"error: non-finite loss (nan|inf) at step 2; the checkpoint of step 1, the only one, holds the"
                      r" weights that gave it: train again with another config in a new --workdir", last), last
  assert "Traceback" not in result.stderr
  sampled = run_cli("sample.py", f"--workdir={workdir}", "--iwae_k=2", "--quality_samples=0")
  assert sampled.returncode == 1, sampled.stderr[-3000:]
  assert re.fullmatch(r"error: checkpoint step 1 gives a non-finite negative ELBO \((nan|inf) nats\): its weights"
                      r" diverged; train again with another config in a new --workdir\n", sampled.stderr), sampled.stderr
  assert "nan" not in sampled.stdout.lower()


def test_non_finite_leaf_names_the_first_bad_array():
  tree = {"a": np.zeros(3, np.float32), "b": {"c": np.array([1.0, np.inf], np.float32)},
          "d": np.array([np.nan], np.float32), "n": np.arange(3)}
  assert checkpoint.non_finite_leaf(tree) == "b/c"
  assert checkpoint.non_finite_leaf({"a": np.ones(2, np.float32), "n": np.arange(2)}) is None
  assert checkpoint.non_finite_leaf({"n": np.arange(2)}) is None


def test_config_json_is_written_atomically(tmp_path):
  workdir_lib.save_config(str(tmp_path), tiny_config())
  assert sorted(os.listdir(tmp_path)) == ["config.json"]  # no temporary file left behind
  assert workdir_lib.load_config(str(tmp_path)).model.arch == "conv"


def test_asyncios_reports_of_unretrieved_failed_reads_are_dropped_and_only_they(caplog):
  """After a corrupt checkpoint's one-line error, orbax's other failed reads may be garbage collected and
  reported by asyncio with a traceback each; the CLIs drop exactly those reports."""
  import asyncio  # pylint: disable=g-import-not-at-top
  import gc  # pylint: disable=g-import-not-at-top
  import logging  # pylint: disable=g-import-not-at-top

  from genjax import cli  # pylint: disable=g-import-not-at-top

  def unretrieved_failure():
    loop = asyncio.new_event_loop()

    async def read():
      raise ValueError("OUT_OF_RANGE: Error reading byte range")

    task = loop.create_task(read())
    loop.run_until_complete(asyncio.sleep(0.01))
    del task
    gc.collect()
    loop.close()

  def reports():
    return [r for r in caplog.records if r.name == "asyncio" and "never retrieved" in r.getMessage()]

  with caplog.at_level(logging.ERROR, logger="asyncio"):
    unretrieved_failure()
    assert len(reports()) == 1  # what the CLI would print without the filter
    caplog.clear()
    logger = logging.getLogger("asyncio")
    logger.addFilter(cli._not_an_unretrieved_read)  # pylint: disable=protected-access
    try:
      unretrieved_failure()
      logger.error("Unclosed client session")
    finally:
      logger.removeFilter(cli._not_an_unretrieved_read)  # pylint: disable=protected-access
  assert not reports() and [r.getMessage() for r in caplog.records] == ["Unclosed client session"]
