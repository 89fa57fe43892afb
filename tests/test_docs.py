"""Every fenced code block of README.md and docs/*.md runs here, so the documentation cannot drift from the code.

- ```python blocks: the blocks of one page run in order, in one fresh Python process (JAX on the CPU, the
  repository root as the working directory), so a later block of a page may use the names of an earlier
  one of the same page, and never those of another page.
- ```bash (or sh, console) blocks: every command runs with its flags as written, plus small overrides that
  make it take seconds (`LOOP`, `TINY_MODELS`: a 2-step run of a tiny model of its config's family), in one
  scratch working copy (train.py, sample.py and configs/ copied into a temporary directory, so nothing is
  written into the repository). Pages run in order (README.md, then docs/*.md by name), and the commands of a page
  in order, so `python sample.py --workdir=runs/X` finds the runs/X that an earlier `python train.py` of
  the page trained. A command already run for an earlier page is not run again.
- Commands that cannot run here are in `NOT_RUN`, each with the reason. For those, every flag is still
  parsed by the script's own absl flags (and every --config.FIELD against its config file), so a renamed
  flag or field fails here.
- ```text blocks are not code (example output, a listing) and do not run.
- Every relative link and picture of the pages resolves (the file, and the heading a #fragment names).
"""

import dataclasses
import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib

import pytest

from tests.helpers import ROOT, cli_env

PAGES = ["README.md"] + sorted(f"docs/{name}" for name in os.listdir(os.path.join(ROOT, "docs"))
                               if name.endswith(".md"))
LANGUAGES = {"python", "bash", "sh", "console", "text"}
SHELL = {"bash", "sh", "console"}
TIMEOUT = 300

# The README's first two lines; .ci/run runs the second (after its venv line).
README_TRAIN = "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && python train.py"
README_TEST = "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && python -m pytest -q"
VENV = "python3 -m venv .venv && . .venv/bin/activate && "

_MEASUREMENT = ("a benchmark: a measurement that takes minutes of CPU by design (a fixed training budget or"
                " full-size networks, with no flag that makes it take seconds); run by hand, see docs/speed.md")
_PLOT = ("draws a figure of docs/ from the JSON a benchmark wrote, with matplotlib (the bench extra's), into the"
         " repository's docs/")
_PYTORCH_FID = "needs pytorch-fid's Inception weights file, which cannot be downloaded here"
# Each command of the pages that this file does not run, exactly as written, and why.
NOT_RUN = {
    "python3 -m venv .venv": "creates a virtual environment; the suite already runs in one",
    ". .venv/bin/activate": "activates that virtual environment",
    "pip install -e .": "installs packages (the suite runs where genjax is installed)",
    "pip install -e '.[test]'": "installs packages (the test extras; checked to exist in pyproject.toml)",
    "pip install -e '.[bench]'": "installs packages (the bench extras; checked to exist in pyproject.toml)",
    "pip install -e '.[gcs]'": "installs packages (the gcs extras; checked to exist in pyproject.toml)",
    "python train.py --config=configs/vae_mnist5k.py --workdir=gs://my-bucket/runs/vae_mnist5k":
        "needs a Google Cloud Storage bucket (tests/test_bucket_workdir.py trains into an emulated one)",
    "python sample.py --workdir=gs://my-bucket/runs/vae_mnist5k":
        "needs a Google Cloud Storage bucket (tests/test_bucket_workdir.py samples from an emulated one)",
    "pip install -U \"jax[cuda13]\"": "installs JAX's build for NVIDIA GPUs; needs a GPU",
    "pip install -U \"jax[tpu]\"": "installs JAX's build for Cloud TPU VMs; needs a TPU",
    "python -m pytest -q": "is this test suite; checked to be the line that .ci/run runs",
    "wget https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth":
        "downloads pytorch-fid's weights (no network here; the file name is checked against genjax's)",
    "python -m genjax.convert_inception --pth=pt_inception-2015-12-05-6726825d.pth --out=fid_inception.npz":
        _PYTORCH_FID,
    "python train.py --config.eval.inception_weights=fid_inception.npz": _PYTORCH_FID,
    "python sample.py --workdir=runs/vae_mnist5k --inception_weights=fid_inception.npz": _PYTORCH_FID,
    "python train.py --config=configs/vae_mnist.py --workdir=runs/vae_mnist": "needs TFDS to download MNIST",
    "python train.py --config.num_devices=2": "needs 2 devices (a later command of the page runs it on 2 simulated"
                                              " CPU devices)",
    "python train.py --distributed": "a multi-host launch (TPU VM pods, Slurm)",
    "python train.py --coordinator_address=10.0.0.1:1234 --num_processes=2 --process_id=0":
        "a multi-host launch; tests/test_parallel.py runs 2 processes on 127.0.0.1",
    "python train.py --config=configs/diffusion_mnist5k.py --workdir=runs/diffusion_mnist5k":
        "compiling even the smallest U-Net with its samplers and bound takes about 25 s of CPU, past this file's"
        " budget; tests/test_diffusion_family.py and the conformance suite train, sample and evaluate a small"
        " U-Net through the same loop",
    "python sample.py --workdir=runs/diffusion_mnist5k": "samples the U-Net the command above trains (see there)",
    "JAX_COMPILATION_CACHE_DIR=~/.cache/jax python train.py": "writes the user's own JAX cache (~/.cache/jax); the"
                                                              " suite's runs share a cache of their own",
    "python benchmarks/vae_conv_vs_mlp.py --iwae_k=1000": _MEASUREMENT,
    "python benchmarks/toy2d.py --jobs=2": _MEASUREMENT,
    "python benchmarks/ema_gan.py --steps=3000 --eval_every=250 --samples=5000": _MEASUREMENT,
    "python benchmarks/toy2d.py --variants=diffusion --jobs=2": _MEASUREMENT,
    "python benchmarks/diffusion_steps.py --workdir=runs/diffusion_mnist5k --samplers=heun --steps=10"
    " --num_samples=5000 --step=1000 --plot= --json=": _MEASUREMENT,
    "python benchmarks/diffusion_steps.py --workdir=runs/diffusion_mnist5k --step=3500 --steps=3,5,10,20,50"
    " --num_samples=1000": _MEASUREMENT,
    "python benchmarks/pixelcnn_vs_vae.py": _MEASUREMENT,
    "python benchmarks/dcgan_speed.py --impls=fast,products": _MEASUREMENT,
    "python benchmarks/vae_speed.py --impls=fast,products": _MEASUREMENT,
    "python benchmarks/layer_speed.py --impls=fast,products,torch --rounds=3": _MEASUREMENT,
    "python benchmarks/conditional_vs_unconditional.py --family=vae": _MEASUREMENT,
    "python benchmarks/conditional_vs_unconditional.py --family=dcgan --minutes=5,10": _MEASUREMENT,
    "python benchmarks/small_data_gan.py --train_examples=450 --steps=500,1000,2000": _MEASUREMENT,
    "python benchmarks/small_data_gan.py --train_examples=100 --steps=2000,4000,8000,12000,16000": _MEASUREMENT,
    "python benchmarks/small_data_gan.py --train_examples=100 --steps=2000,4000,8000,12000,16000,20000,24000"
    " --variants=none,diffaugment --name=long": _MEASUREMENT,
    "python benchmarks/small_data_gan.py --train_examples=100 --steps=24000,28000,32000 --variants=none,diffaugment"
    " --name=long32": _MEASUREMENT,
    "python benchmarks/small_data_gan.py --train_examples=450 --steps=4000,8000,16000,24000,32000,40000"
    " --variants=none,diffaugment --name=long --workdir=runs/small_data_450_long": _MEASUREMENT,
    "python benchmarks/small_data_gan.py --train_examples=0 --steps=1000,2000": _MEASUREMENT,
    "python benchmarks/small_data_gan.py --train_examples=100 --steps=2000,4000,8000 --recipe=hinge_sn": _MEASUREMENT,
    "python benchmarks/gan_recipe.py --minutes=2,5 --recipes=base,hinge_sn,ttur,translation,batch64,r1_layer,sn_bn,lr4"
    " --out=docs/gan_recipe_round1.json": _MEASUREMENT,
    "python benchmarks/gan_recipe.py --minutes=2,5 --recipes=lr4,lr4_b64,sn_lr4,sn_lr4_b64,sn_b64"
    " --out=docs/gan_recipe_round2.json": _MEASUREMENT,
    "python benchmarks/gan_recipe.py --minutes=5,15 --recipes=base,sn_lr4_b64 --reference=diffusion_mnist5k"
    " --num_samples=5000 --out=docs/gan_recipe_final.json": _MEASUREMENT,
    "python benchmarks/sn_init.py --steps=2000,4300": _MEASUREMENT,
    "python benchmarks/gan_recipe.py --minutes=5,15 --recipes=base,sn_lr4_b64 --reference=diffusion_mnist5k"
    " --num_samples=5000 --out=docs/gan_recipe_final_draw_init.json": _MEASUREMENT,
    "python benchmarks/small_data_gan.py --train_examples=450 --steps=2000,4000,8000 --recipe=sn_lr4_b64"
    " --variants=none,translation,ada": _MEASUREMENT,
    "python benchmarks/small_data_gan.py --train_examples=0 --steps=2000,4000 --recipe=sn_lr4_b64"
    " --variants=none,translation,ada": _MEASUREMENT,
    "python benchmarks/plot_small_data.py --out=docs/small_data_fid.png docs/small_data_100_long.json"
    "+docs/small_data_100_long32.json docs/small_data_450.json docs/small_data_4500.json docs/small_data_100_hinge_sn.json"
    " docs/small_data_450_sn_lr4_b64.json docs/small_data_4500_sn_lr4_b64.json": _PLOT,
    "python benchmarks/generated_data.py --train_examples=100 --minutes=3 --per_class=200 --classifier_steps=1000":
        _MEASUREMENT,
    "python benchmarks/generated_data.py --train_examples=450 --minutes=3 --per_class=200 --classifier_steps=1000"
    " --seeds=3": _MEASUREMENT,
    "python benchmarks/generated_data.py --train_examples=100 --families=vae,dcgan --config_steps --per_class=200"
    " --classifier_steps=1000 --seeds=3": _MEASUREMENT,
    "python benchmarks/generated_data.py --train_examples=450 --config_steps --per_class=200 --classifier_steps=1000"
    " --seeds=3": _MEASUREMENT,
    "python benchmarks/conditional_vs_unconditional.py --family=diffusion --guidance=1,1.5": _MEASUREMENT,
    "python train.py --config=configs/diffusion_mnist5k_class.py --workdir=runs/diffusion_mnist5k_class":
        "trains the conditional U-Net for 15 minutes (see configs/diffusion_mnist5k.py's command above)",
    "python benchmarks/conditional_diffusion.py --workdir=runs/diffusion_mnist5k_class --num_samples=500"
    " --parts=guidance": _MEASUREMENT,
    "python benchmarks/conditional_diffusion.py --workdir=runs/diffusion_mnist5k_class --parts=inpainting":
        _MEASUREMENT,
    "python benchmarks/pixelcnn_sampling.py --rounds=3": _MEASUREMENT,
    "python benchmarks/dcgan_speed.py": _MEASUREMENT,
    "python benchmarks/vae_speed.py": _MEASUREMENT,
    "python benchmarks/layer_speed.py": _MEASUREMENT,
    "python benchmarks/diffusion_speed.py": _MEASUREMENT,
    "python benchmarks/inception_speed.py": _MEASUREMENT,
    "python benchmarks/unet_ops.py": _MEASUREMENT,
    "python benchmarks/conv_reproducer.py": _MEASUREMENT,
    "python benchmarks/cpu_fusions.py": _MEASUREMENT,
    "python benchmarks/cpu_fusions.py --variants=genjax,no_ynn_conv --rounds=9": _MEASUREMENT,
    "python benchmarks/host_settings.py": _MEASUREMENT,
    "python benchmarks/host_settings.py --configs=vae_mnist5k_mlp --steps=3000": _MEASUREMENT,
    ('python benchmarks/host_settings.py --configs=vae_mnist5k_mlp,gan_ring8,diffusion_ring8 --steps=3000,4000,4000'
     ' --variants="one=,ten=--config.steps_per_call=10,queued=--cpu_async_dispatch"'): _MEASUREMENT,
    "python benchmarks/dcgan_speed.py --impls=fast": _MEASUREMENT,
    "python benchmarks/diffusion_speed.py --impls=fast --sample_steps=10 --rounds=3": _MEASUREMENT,
    "python benchmarks/diffusion_speed.py --impls=fast --sample_steps=10 --rounds=3 --ynn_convolutions":
        _MEASUREMENT,
    "python benchmarks/dcgan_speed.py --device=gpu --rounds=7": _MEASUREMENT + "; needs a GPU",
    "python benchmarks/dcgan_speed.py --impls=fast --torch_compile --rounds=5": _MEASUREMENT,
    "python benchmarks/vae_speed.py --impls=fast --torch_compile --rounds=5": _MEASUREMENT,
    "python benchmarks/precision_fid.py > docs/precision_fid.json": _MEASUREMENT,
    "bash benchmarks/gpu_checks.sh": _MEASUREMENT + "; needs a GPU (GPU_CHECKS_DRY=1 runs it on the CPU, minutes)",
    "python benchmarks/step_cost.py --config=configs/diffusion_cifar10.py --chips=16 --device=\"TPU v4\"":
        "traces the full-size CIFAR-10 U-Net (about 20 s of CPU); tests/test_precision.py checks the FLOP count"
        " it prints against the loop's",
    "python train.py --config=configs/diffusion_cifar10.py --config.precision=bfloat16"
    " --workdir=gs://my-bucket/runs/diffusion_cifar10": "needs a TPU VM, a bucket and TFDS to download CIFAR-10",
    "gcloud compute tpus tpu-vm ssh my-tpu --zone=us-central2-b --worker=all --command=\"cd genjax; python train.py"
    " --distributed --config=configs/diffusion_cifar10.py --config.precision=bfloat16"
    " --workdir=gs://my-bucket/runs/diffusion_cifar10\"": "launches on a TPU pod slice's hosts",
    "python train.py --config=configs/dcgan_celeba64.py --config.precision=bfloat16 --workdir=runs/dcgan_celeba64":
        "needs GPUs and TFDS to download CelebA",
    "python benchmarks/vae_speed.py --device=gpu --rounds=7": _MEASUREMENT + "; needs a GPU",
}

# What makes a run take seconds: added after the command's own flags, for the fields the command does not set
# (num_steps always: a page's training command is a run of thousands of steps). No FID in these runs: it
# would double their time, and tests/test_gan_end_to_end.py and test_quality_cache.py run it through both CLIs.
LOOP = {"num_steps": "2", "batch_size": "16", "log_every": "1", "checkpoint_every": "2", "eval_every": "2",
        "eval.num_examples": "32", "eval.batch_size": "16", "eval.quality_samples": "0"}
ALWAYS = ("num_steps",)
TINY_MODELS = {  # (family, arch) -> fields of a model small enough to compile in seconds
    ("vae", "conv"): {"model.conv_widths": "(4, 8)", "model.hidden": "(16,)", "model.latent_dim": "4",
                      "model.iwae_k": "4"},
    ("vae", "mlp"): {"model.hidden": "(16,)", "model.latent_dim": "4", "model.iwae_k": "4"},
    ("gan", "dcgan"): {"model.g_width": "4", "model.d_width": "4", "model.latent_dim": "8"},
    ("gan", "mlp"): {"model.g_hidden": "(16, 16)", "model.d_hidden": "(16, 16)"},
    ("diffusion", "mlp"): {"model.hidden": "(16, 16)", "model.emb_dim": "8", "diffusion.sample_steps": "2",
                           "diffusion.eval_steps": "2"},
    ("pixelcnn", "gated"): {"model.features": "4", "model.num_layers": "2", "model.first_kernel_size": "3"},
}
OFFLINE_DATASETS = ("mnist5k", "ring8", "grid25")
SAMPLE_OVERRIDES = {"--quality_samples": "0", "--num_examples": "32"}
MODULE_OVERRIDES = {"genjax.train_classifier": {"--steps": "20"}}  # python -m MODULE: flag -> value


@dataclasses.dataclass(frozen=True)
class Block:
  page: str
  line: int  # of the first line of code, 1-based
  lang: str
  text: str


@dataclasses.dataclass(frozen=True)
class Command:
  page: str
  line: int
  text: str  # as written, comments and continuations removed

  @property
  def env(self) -> dict[str, str]:
    return dict(token.split("=", 1) for token in self._tokens()[:self._argv_start()])

  @property
  def argv(self) -> list[str]:
    return self._tokens()[self._argv_start():]

  def _tokens(self) -> list[str]:
    return shlex.split(self.text)

  def _argv_start(self) -> int:
    tokens = self._tokens()
    i = 0
    while i < len(tokens) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", tokens[i]):
      i += 1
    return i

  def where(self) -> str:
    return f"{self.page}:{self.line}: {self.text}"


def fenced_blocks(page: str) -> list[Block]:
  """The fenced code blocks of a page, in order; a fence may be indented (inside a list)."""
  blocks, lang, start, lines, indent = [], None, 0, [], ""
  with open(os.path.join(ROOT, page), encoding="utf-8") as f:
    for number, line in enumerate(f.read().splitlines(), 1):
      fence = re.match(r"^(\s*)```\s*([\w+-]*)\s*$", line)
      if lang is None and fence:
        indent, lang, start, lines = fence.group(1), fence.group(2) or "(none)", number + 1, []
      elif lang is not None and fence and not fence.group(2):
        blocks.append(Block(page, start, lang, "\n".join(lines) + "\n"))
        lang = None
      elif lang is not None:
        lines.append(line[len(indent):] if line.startswith(indent) else line)
  assert lang is None, f"{page}:{start}: a code block is not closed"
  return blocks


def shell_commands(block: Block) -> list[Command]:
  """The commands of a shell block: continuation lines joined, comments dropped, `&&` chains split."""
  commands = []
  lines = block.text.splitlines()
  i = 0
  while i < len(lines):
    number, text = block.line + i, lines[i]
    while text.endswith("\\") and i + 1 < len(lines):
      i += 1
      text = text[:-1] + " " + lines[i].strip()
    i += 1
    if block.lang == "console":
      if not text.startswith("$ "):
        continue  # output
      text = text[2:]
    text = re.sub(r"(^|\s)#.*$", "", text).strip()
    for part in text.split("&&"):
      if part.strip():
        commands.append(Command(block.page, number, " ".join(part.split())))
  return commands


def all_blocks() -> list[Block]:
  return [block for page in PAGES for block in fenced_blocks(page)]


def all_commands() -> list[Command]:
  return [command for block in all_blocks() if block.lang in SHELL for command in shell_commands(block)]


def _python_and_args(command: Command) -> tuple[str, list[str]] | None:
  """('train.py' | 'benchmarks/x.py' | 'genjax.module', args) of a `python ...` command; None otherwise."""
  argv = command.argv
  if not argv or argv[0] not in ("python", "python3"):
    return None
  if argv[1] == "-m":
    return argv[2], argv[3:]
  return argv[1], argv[2:]


def _flag_names(args: list[str]) -> set[str]:
  return {arg.split("=", 1)[0] for arg in args if arg.startswith("--")}


def test_every_code_block_has_a_known_language():
  blocks = all_blocks()
  assert blocks, "no code blocks found"
  unknown = [f"{b.page}:{b.line - 1}: ```{b.lang}" for b in blocks if b.lang not in LANGUAGES]
  assert not unknown, f"label every block with one of {sorted(LANGUAGES)}: {unknown}"


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second():
  with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
    lines = f.read().splitlines()
  first = fenced_blocks("README.md")[0]
  assert first.lang == "bash" and first.text.splitlines() == [README_TRAIN, README_TEST]
  # Only the title and the short description come before it.
  before = [line for line in lines[:first.line - 2] if line.strip()]
  assert before[0] == "# genjax" and not any(line.startswith("#") for line in before[1:]), before
  assert len(before) <= 10, "the two commands must come right after the title and the short description"
  # .ci/run's last command is the README's test line after its venv line; it adds only pip's -q (quiet).
  with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
    ci = [line for line in f.read().splitlines() if line.strip() and not line.lstrip().startswith("#")]
  assert README_TEST.startswith(VENV)
  assert ci[-1].replace("pip install -q ", "pip install ", 1) == README_TEST[len(VENV):], ci[-1]


def test_every_command_not_run_is_on_a_page():
  written = {command.text for command in all_commands()}
  stale = sorted(set(NOT_RUN) - written)
  assert not stale, f"NOT_RUN lists commands no page has (renamed? then rename them here too): {stale}"


def _anchor(heading: str) -> str:
  """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
  return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_relative_link_and_picture_resolves():
  broken = []
  for page in PAGES:
    with open(os.path.join(ROOT, page), encoding="utf-8") as f:
      text = f.read()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
      if re.match(r"\w+://", target):
        continue
      path, _, fragment = target.partition("#")
      file = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), path)) if path else os.path.join(ROOT, page)
      if not os.path.exists(file):
        broken.append(f"{page}: {target}")
      elif fragment:
        with open(file, encoding="utf-8") as f:
          anchors = {_anchor(line.lstrip("#")) for line in f.read().splitlines() if re.match(r"#{1,6} ", line)}
        if fragment not in anchors:
          broken.append(f"{page}: {target}")
  assert not broken, f"links to nothing: {broken}"


# --------------------------------------------------------------------------------------------- python blocks

_RUNNER = """
ns = {"__name__": "__main__"}
for page, line, code in BLOCKS:
  print(f"--- {page}:{line}", flush=True)
  exec(compile("\\n" * (line - 1) + code, page, "exec"), ns)
"""


@pytest.mark.parametrize("page", [p for p in PAGES if any(b.lang == "python" for b in fenced_blocks(p))])
def test_python_blocks_run(page):
  blocks = [(b.page, b.line, b.text) for b in fenced_blocks(page) if b.lang == "python"]
  runner = f"BLOCKS = {blocks!r}\n{_RUNNER}"
  result = subprocess.run([sys.executable, "-c", runner], cwd=ROOT, env=cli_env(), capture_output=True, text=True,
                          timeout=TIMEOUT)
  assert result.returncode == 0, f"{page}: a python block failed\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"


# ---------------------------------------------------------------------------------------------- shell commands

@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
  """A scratch working copy of what the commands read (the scripts and configs), and the commands already run."""
  root = tmp_path_factory.mktemp("docs_workspace")
  for name in ("train.py", "sample.py"):
    shutil.copy(os.path.join(ROOT, name), root / name)
  shutil.copytree(os.path.join(ROOT, "configs"), root / "configs", ignore=shutil.ignore_patterns("__pycache__"))
  return {"root": str(root), "done": set()}


def _config_of(args: list[str]):
  """The config a train.py command trains (its --config file, default configs/vae_mnist5k.py)."""
  files = [arg.split("=", 1)[1] for arg in args if arg.startswith("--config=")]
  path = files[-1] if files else "configs/vae_mnist5k.py"
  assert re.fullmatch(r"configs/\w+\.py", path), f"name a page's config file as configs/NAME.py, not {path}"
  return importlib.import_module(f"configs.{os.path.basename(path)[:-3]}").get_config()


def _with_overrides(args: list[str], overrides: dict[str, str], always: tuple[str, ...] = ()) -> list[str]:
  """`args` and then each flag of `overrides` the command does not set itself (and those of `always`)."""
  given = _flag_names(args)
  return args + [f"{flag}={value}" for flag, value in overrides.items() if flag not in given or flag in always]


def _train_args(command: Command, args: list[str]) -> list[str]:
  config = _config_of(args)
  set_here = {arg.split("=", 1)[0][len("--config."):]: arg.split("=", 1)[1] for arg in args
              if arg.startswith("--config.")}
  dataset = set_here.get("dataset.name", config.dataset.name)
  assert dataset in OFFLINE_DATASETS, (
      f"{command.where()}\ntrains on {dataset!r}, which needs a download: list it in NOT_RUN with the reason")
  model = TINY_MODELS.get((config.family, set_here.get("model.arch", config.model.arch)))
  assert model is not None, f"{command.where()}\nno tiny model of {config.family}/{config.model.arch} in TINY_MODELS"
  overrides = {f"--config.{field}": value for field, value in {**LOOP, **model}.items()}
  return _with_overrides(args, overrides, tuple(f"--config.{f}" for f in ALWAYS))


def _sample_args(workdir_root: str, args: list[str]) -> list[str]:
  overrides = dict(SAMPLE_OVERRIDES)
  workdirs = [arg.split("=", 1)[1] for arg in args if arg.startswith("--workdir=")]
  with open(os.path.join(workdir_root, workdirs[-1], "config.json"), encoding="utf-8") as f:
    if json.load(f)["family"] == "vae":
      overrides["--iwae_k"] = "4"  # importance samples of the tiny model's NLL (sample.py's default is 1,000)
  return _with_overrides(args, overrides)


def _run(command: Command, root: str) -> None:
  target, args = _python_and_args(command) or (None, None)
  if target == "train.py":
    argv = [sys.executable, "train.py", *_train_args(command, args)]
  elif target == "sample.py":
    argv = [sys.executable, "sample.py", *_sample_args(root, args)]
  elif target in MODULE_OVERRIDES:
    argv = [sys.executable, "-m", target, *_with_overrides(args, MODULE_OVERRIDES[target])]
  else:
    pytest.fail(f"{command.where()}\nnot run and not in NOT_RUN: teach this test to run it in seconds, or list it"
                " in NOT_RUN with the reason it cannot run here")
  env = cli_env()
  for name, value in command.env.items():
    env[name] = f"{env[name]} {value}" if name == "XLA_FLAGS" and env.get(name) else value
  env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), ROOT) if p)
  result = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=TIMEOUT)
  assert result.returncode == 0, (f"{command.where()}\nran as: {shlex.join(argv[1:])}\n"
                                  f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}")


@pytest.mark.parametrize("page", [p for p in PAGES if any(c.page == p for c in all_commands())])
def test_shell_commands_run(page, workspace):
  for command in all_commands():
    if command.page != page or command.text in NOT_RUN or command.text in workspace["done"]:
      continue
    _run(command, workspace["root"])
    workspace["done"].add(command.text)


_FLAG_CHECKER = """
import contextlib, importlib.util, io, json, os, runpy, sys
from absl import app, flags
app.run = lambda main, *args, **kwargs: None  # define the flags as `python SCRIPT` does, run nothing
from genjax import cli
cli.run = lambda main: None
FLAGS = flags.FLAGS
results = []
for target, args in json.loads(sys.argv[1]):
  path = target if target.endswith(".py") else importlib.util.find_spec(target).origin
  before, err = set(FLAGS), io.StringIO()
  sys.argv = [path, *args]  # ml_collections reads the --config.FIELD overrides from sys.argv as it defines --config
  try:
    with contextlib.redirect_stderr(err):
      runpy.run_path(path, run_name="__main__")
      FLAGS.unparse_flags()
      FLAGS(sys.argv)
      if "config" in FLAGS:
        FLAGS["config"].value.keys()
    results.append(None)
  except SystemExit as e:
    results.append(f"exit {e.code}: {err.getvalue().strip()}")
  except Exception as e:  # pylint: disable=broad-except
    results.append(f"{type(e).__name__}: {e}")
  for name in set(FLAGS) - before:
    delattr(FLAGS, name)
print(json.dumps(results))
"""


def test_commands_not_run_use_flags_that_exist():
  """Each command of NOT_RUN: its flags parse as the script would parse them; its package extras exist."""
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    extras = set(tomllib.load(f)["project"]["optional-dependencies"])
  from genjax.metrics import features  # pylint: disable=g-import-not-at-top
  checks, where = [], []
  for command in all_commands():
    if command.text not in NOT_RUN:
      continue
    argv = command.argv
    if argv[:2] == ["pip", "install"]:
      for match in filter(None, (re.fullmatch(r"\.\[([\w,]+)\]", arg) for arg in argv)):
        missing = set(match.group(1).split(",")) - extras
        assert not missing, f"{command.where()}\nno extra {missing} in pyproject.toml"
    elif argv[0] == "wget":
      assert os.path.basename(argv[-1]) == features.INCEPTION_SOURCE, command.where()
    elif (target := _python_and_args(command)) and target[0] not in ("venv", "pytest"):
      checks.append(target)
      where.append(command.where())
  result = subprocess.run([sys.executable, "-c", _FLAG_CHECKER, json.dumps(checks)], cwd=ROOT, env=cli_env(),
                          capture_output=True, text=True, timeout=TIMEOUT)
  assert result.returncode == 0, result.stderr[-5000:]
  errors = [f"{w}\n  {e}" for w, e in zip(where, json.loads(result.stdout.splitlines()[-1]), strict=True) if e]
  assert not errors, "flags that do not parse:\n" + "\n".join(errors)


def test_the_gpu_checks_pass_flags_that_exist(tmp_path):
  """benchmarks/gpu_checks.sh runs on a GPU only: its stages' commands, as a stand-in python3 records them, parse
  as test_commands_not_run_use_flags_that_exist parses the pages' (a renamed flag fails here, not on a lent GPU)."""
  log, fake = tmp_path / "argv.jsonl", tmp_path / "python3"
  fake.write_text(f"#!{sys.executable}\nimport json, sys\nif sys.argv[1] != '-c':\n"
                  f"  open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
  fake.chmod(0o755)
  env = dict(cli_env(), PYTHON=str(fake), OUT=str(tmp_path / "out"))
  ran = subprocess.run(["bash", "benchmarks/gpu_checks.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=TIMEOUT)
  assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
  commands = [json.loads(line) for line in log.read_text().splitlines()]
  scripts = ("dcgan", "vae", "dcgan", "vae", "diffusion", "diffusion")
  assert [c[0] for c in commands] == [f"benchmarks/{s}_speed.py" for s in scripts]
  result = subprocess.run([sys.executable, "-c", _FLAG_CHECKER, json.dumps([(c[0], c[1:]) for c in commands])],
                          cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=TIMEOUT)
  assert result.returncode == 0, result.stderr[-5000:]
  errors = [f"{c}\n  {e}" for c, e in zip(commands, json.loads(result.stdout.splitlines()[-1]), strict=True) if e]
  assert not errors, "flags that do not parse:\n" + "\n".join(errors)
