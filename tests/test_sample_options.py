"""sample.py offers a family's sampling and evaluation options, the ones it declares free, and no others.

A diffusion model trained with one sampler is sampled with another (`--set=diffusion.sampler=heun`): the
samples change, eval.json says what they were drawn with, and the run's config.json does not change. A
field the weights were trained with, a value the config would refuse, and a malformed flag are each one
line.
"""

import json
import os

import numpy as np
import pytest
from PIL import Image

from genjax import sample_lib, train_lib
from genjax.errors import UserError
from tests import conformance
from tests.helpers import run_cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("diffusion") / "run")
  train_lib.train_and_evaluate(conformance.config_of("diffusion", "mlp", num_steps=4, **{
      "diffusion.sampler": "ancestral", "eval.quality_samples": 0}), workdir)
  return workdir


def _eval(workdir: str, out: str, **kwargs) -> dict:
  result = sample_lib.sample_and_evaluate(workdir, out_dir=out, quality_samples=0, **kwargs)
  with open(os.path.join(out, "eval.json"), encoding="utf-8") as f:
    return {**result, "json": json.load(f)}


def test_the_sampler_and_its_steps_are_chosen_at_sampling_time(trained, tmp_path):
  with open(os.path.join(trained, "config.json"), encoding="utf-8") as f:
    config_json = f.read()
  default = _eval(trained, str(tmp_path / "default"))
  heun = _eval(trained, str(tmp_path / "heun"), options={"diffusion.sampler": "heun",
                                                         "diffusion.sample_steps": "5"})
  assert (default["json"]["sampler"], default["json"]["sample_steps"]) == ("ancestral", 3)
  assert (heun["json"]["sampler"], heun["json"]["sample_steps"]) == ("heun", 5)
  # The samples (their scatter picture) come from the chosen sampler; the held-out bound does not depend on it.
  pictures = [sorted(os.path.basename(p) for p in r["files"]) for r in (default, heun)]
  assert pictures[0] == pictures[1] and pictures[0]
  for name in pictures[0]:
    with open(tmp_path / "default" / name, "rb") as a, open(tmp_path / "heun" / name, "rb") as b:
      assert a.read() != b.read(), name
  np.testing.assert_allclose(heun["json"]["bpd"], default["json"]["bpd"], rtol=1e-6)
  with open(os.path.join(trained, "config.json"), encoding="utf-8") as f:
    assert f.read() == config_json


def test_a_flag_of_another_familys_option_is_one_line(trained, tmp_path):
  """--iwae_k sets the option that declares it (a VAE's); a diffusion model declares none."""
  with pytest.raises(UserError, match=r"^--iwae_k: the diffusion family draws no importance samples"):
    sample_lib.sample_and_evaluate(trained, iwae_k=5, out_dir=str(tmp_path / "out"))
  assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize("options,message", [
    ({"diffusion.objective": "v"}, "--set: diffusion.objective is not a sampling or evaluation option of the"
                                   " diffusion family (a resume could not keep it); allowed: diffusion.sampler, "),
    ({"diffusion.sampler": "euler"}, "--set: diffusion.sampler: unknown 'euler'; allowed: "),
    ({"diffusion.sample_steps": "0"}, "--set: diffusion.sample_steps: must be "),
    ({"diffusion.sample_steps": "abc"}, "--set: diffusion.sample_steps: cannot use 'abc'; allowed: a value of type"
                                        " int"),
    ({"diffusion.eta": "nan"}, "--set: diffusion.eta: must be "),
])
def test_what_sample_py_cannot_set_is_one_line(trained, tmp_path, options, message):
  with pytest.raises(UserError) as raised:
    _eval(trained, str(tmp_path / "out"), options=options)
  assert str(raised.value).startswith(message), str(raised.value)
  assert not os.path.exists(tmp_path / "out")


def test_the_flag_on_the_command_line(trained, tmp_path):
  bad = run_cli("sample.py", f"--workdir={trained}", "--set=sampler")
  assert bad.returncode == 2 and bad.stderr.strip() == (
      "error: --set: expected BLOCK.FIELD=VALUE (e.g. diffusion.sampler=heun), got 'sampler'"), bad.stderr[-2000:]
  vae_only = run_cli("sample.py", f"--workdir={trained}", "--set=model.iwae_k=5")
  assert vae_only.returncode == 2 and vae_only.stderr.strip().startswith(
      "error: --set: model.iwae_k is not a sampling or evaluation option of the diffusion family"), vae_only.stderr


@pytest.fixture(scope="module")
def conditional(tmp_path_factory):
  """The smoke conditional diffusion model on digits, trained 2 steps."""
  workdir = str(tmp_path_factory.mktemp("conditional") / "run")
  train_lib.train_and_evaluate(conformance.config_of("diffusion", "unet_class", num_steps=2, **{
      "eval.quality_samples": 0, "eval.num_examples": 16}), workdir)
  return workdir


def test_guidance_label_and_inpainting_are_chosen_at_sampling_time(conditional, tmp_path):
  """--guidance and its interval set the fields that declare those flags (in eval.json); --label writes a grid
  of that class; --inpaint a grid of held-out digits whose known pixels are the digit's and whose hidden ones
  are drawn; the inpainting numbers of both evaluation masks are in eval.json."""
  out = tmp_path / "out"
  result = _eval(conditional, str(out), flag_values={"guidance": 3.0, "guidance_lo": 0.5, "guidance_hi": None},
                 label=7, inpaint="centre_box")
  assert (result["json"]["guidance"], result["json"]["guidance_lo"], result["json"]["guidance_hi"]) == (3.0, 0.5, 5.0)
  names = sorted(os.path.basename(p) for p in result["files"])
  assert "samples_class_7.png" in names and "inpaint_centre_box.png" in names and "samples_by_class.png" in names
  for mask in ("lower_half", "centre_box"):
    assert 0.0 <= result["json"][f"inpaint_kept_{mask}"] <= 1.0 and result["json"][f"inpaint_fid_{mask}"] > 0
  grid = np.asarray(Image.open(out / "inpaint_centre_box.png"))[::2, ::2]  # written at scale 2
  cell = lambda r, c: grid[2 + r * 30:2 + r * 30 + 28, 2 + c * 30:2 + c * 30 + 28]  # noqa: E731  (28 + pad 2)
  for r in range(8):
    whole, masked, drawn = cell(r, 0), cell(r, 1), cell(r, 2)
    np.testing.assert_array_equal(drawn[:7], whole[:7])  # the rows above the box are given
    assert (masked[7:21, 7:21] == 128).all()
  assert any(not np.array_equal(cell(r, 2)[7:21, 7:21], cell(r, 0)[7:21, 7:21]) for r in range(8))


@pytest.mark.parametrize("kwargs,message", [
    ({"label": 10}, "--label: the diffusion in "),
    ({"inpaint": "left_half"}, "--inpaint: unknown 'left_half'; allowed: lower_half, centre_box, random_pixels"),
    ({"flag_values": {"guidance_hi": 0.0}}, "--guidance_hi: diffusion.guidance_hi: must be > 0"),
])
def test_bad_conditional_flags_are_one_line(conditional, tmp_path, kwargs, message):
  with pytest.raises(UserError) as raised:
    _eval(conditional, str(tmp_path / "out"), **kwargs)
  assert str(raised.value).startswith(message), str(raised.value)
  assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize("kwargs,message", [
    ({"label": 0}, "--label: the diffusion in "),
    ({"flag_values": {"guidance": 2.0}}, "--guidance: diffusion.guidance: only a conditional model"),
    ({"inpaint": "lower_half"}, "--inpaint: the examples of 'ring8' are points, not images"),
])
def test_conditional_flags_on_an_unconditional_model_of_points_are_one_line(trained, tmp_path, kwargs, message):
  with pytest.raises(UserError) as raised:
    _eval(trained, str(tmp_path / "out"), **kwargs)
  assert str(raised.value).startswith(message), str(raised.value)
