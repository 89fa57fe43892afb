"""The arrows of the design point one way (nets and losses know nothing of training; only the loop and the CLIs
touch the disk), read from the source's imports."""

import ast
import os

import pytest

from tests.helpers import ROOT

GENJAX = os.path.join(ROOT, "genjax")


def _genjax_imports(path: str) -> set[str]:
  """The genjax names a file imports (`from genjax.a import b` counts as genjax.a.b)."""
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out.update(a.name for a in node.names if a.name.startswith("genjax"))
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("genjax"):
      out.update(f"{node.module}.{a.name}" for a in node.names)
  return out


def _files(room: str) -> list[str]:
  path = os.path.join(GENJAX, room)
  if room.endswith(".py"):
    return [path]
  return sorted(os.path.join(path, n) for n in os.listdir(path) if n.endswith(".py"))


# (room, the genjax modules its files may import: each a prefix)
ALLOWED = [
    # The data room (pipeline, its TFDS reader and preparer, the offline sets) reads datasets and nothing else.
    ("data", ("genjax.data", "genjax.errors")),
    ("losses", ("genjax.losses",)),
    ("nets", ("genjax.nets",)),
    # A family knows nets, losses, the collectives helper and how options are declared; never files,
    # datasets or the loop.
    ("models", ("genjax.models", "genjax.nets", "genjax.losses", "genjax.parallel", "genjax.random",
                "genjax.config_checks", "genjax.options", "genjax.errors", "genjax.augment", "genjax.ada",
                "genjax.precision")),
    # Transforms of images, the keys they draw from and their options; a family (the GAN's DiffAugment and ADA)
    # and the build use them.
    ("augment.py", ("genjax.parallel", "genjax.random", "genjax.options", "genjax.config_checks")),
    # ADA's transforms (resampled with augment's warp), its rule and its options.
    ("ada.py", ("genjax.augment", "genjax.options")),
    # The precision policy: dtypes, a module wrapper and an optimizer wrapper, declared as one option.
    ("precision.py", ("genjax.options",)),
    # Declaring options knows only the checks: a family's model module and the shared fields import it.
    ("options.py", ("genjax.config_checks", "genjax.errors")),
    # The diffusion objectives' math: numbers only, the net handed in; no nets, devices or config.
    ("models/diffusion_param.py", ("genjax.losses",)),
    ("metrics", ("genjax.metrics", "genjax.nets")),
    # Where files go (local or a bucket): the layer every writer of a workdir calls; it knows only genjax's errors.
    ("paths.py", ("genjax.errors",)),
    ("workdir.py", ("genjax.build", "genjax.errors", "genjax.models.family", "genjax.options", "genjax.paths")),
    # The evaluation the loop and sample.py share: data, metrics, pictures, its keys' purposes; never a checkpoint
    # or the loop.
    ("evaluation.py", ("genjax.data", "genjax.images", "genjax.masks", "genjax.metrics", "genjax.quality", "genjax.errors",
                       "genjax.paths", "genjax.random")),
    ("sample_lib.py", ("genjax.build", "genjax.checkpoint", "genjax.data", "genjax.masks", "genjax.random", "genjax.workdir",
                       "genjax.paths", "genjax.evaluation", "genjax.writers", "genjax.errors", "genjax.models.family",
                       "genjax.quality", "genjax.config_checks")),
    ("quality.py", ("genjax.data", "genjax.metrics", "genjax.errors", "genjax.paths")),
    ("masks.py", ()),
    # The loop's parts that know neither families nor files: stopping when asked, compiled programs' memory.
    ("stopping.py", ("genjax.checkpoint",)),
    ("memory.py", ("genjax.parallel", "genjax.errors")),
    ("config_flag.py", ("genjax.errors",)),
]


@pytest.mark.parametrize("room,allowed", ALLOWED, ids=[r for r, _ in ALLOWED])
def test_a_room_imports_only_what_it_may(room, allowed):
  for path in _files(room):
    bad = sorted(m for m in _genjax_imports(path) if not m.startswith(allowed))
    assert not bad, f"{os.path.relpath(path, ROOT)} imports {bad}"


def test_the_check_sees_imports():
  assert "genjax.workdir" in _genjax_imports(os.path.join(GENJAX, "sample_lib.py"))
  assert "genjax.train_lib" not in _genjax_imports(os.path.join(GENJAX, "sample_lib.py"))
  assert any(m.startswith("genjax.workdir.") for m in _genjax_imports(os.path.join(GENJAX, "train_lib.py")))


def test_no_module_of_genjax_is_over_400_lines():
  """A module that grows past a screenful of screens wants splitting by concern, as train_lib (stopping, memory)
  and the GAN (its config seam) were."""
  long = {}
  for directory, _, names in os.walk(GENJAX):
    for name in names:
      if name.endswith(".py"):
        with open(os.path.join(directory, name), encoding="utf-8") as f:
          count = sum(1 for _ in f)
        if count > 400:
          long[os.path.relpath(os.path.join(directory, name), ROOT)] = count
  assert not long, long
