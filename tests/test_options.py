"""Options declared once: a field added to a family is one declaration, and the config, its validation, the
model's construction, what a resume keeps, sample.py's --set and old config files all follow from it."""

import dataclasses
import functools
import json
import os

import pytest

from configs import base
from genjax import build, options
from genjax import workdir as workdir_lib
from genjax.errors import UserError
from genjax.models import family as family_lib
from tests import gauss_family

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _variant(monkeypatch, **declaration):
  """Registers 'gauss_plus': the test family with one more field, `shift`, declared once on its dataclass."""

  @dataclasses.dataclass(frozen=True)
  class Shifted(gauss_family.Gauss):
    shift: float = options.number(0.5, "added to every sample", "> 0", **declaration).field()

  spec = dataclasses.replace(gauss_family.SPEC, name="gauss_plus",
                             options={"model": {**gauss_family.OPTIONS["model"], **options.of(Shifted)}},
                             from_config=functools.partial(gauss_family.from_config, cls=Shifted))
  monkeypatch.setitem(family_lib._REGISTRY, "gauss_plus", spec)  # pylint: disable=protected-access
  return spec


def _config(**model):
  config = base.get_config("gauss_plus")
  config.dataset.name = "ring8"
  for name, value in model.items():
    config.model[name] = value
  return config


def test_a_field_declared_once_reaches_the_config_validation_construction_and_pinning(monkeypatch, tmp_path):
  _variant(monkeypatch)
  config = _config()
  assert config.model.shift == 0.5  # the declared default, in the config
  build.validate(config)
  assert build.family(config).shift == 0.5  # and in the model built from it
  assert build.family(_config(shift=2.0)).shift == 2.0
  with pytest.raises(UserError, match=r"^model.shift: must be > 0, got -1.0$"):
    build.validate(_config(shift=-1.0))
  # Pinned unless declared free: a resume that changes it is refused, naming it.
  assert "model.shift" in workdir_lib.pinned_fields(config)
  workdir_lib.save_config(str(tmp_path), config)
  with pytest.raises(UserError, match=r"^model.shift: this workdir was trained with 0.5, the config asks for 2.0"):
    workdir_lib.check_resumable(str(tmp_path), _config(shift=2.0))


def test_a_free_field_is_one_word_of_its_declaration(monkeypatch, tmp_path):
  spec = _variant(monkeypatch, free=True, sample=3.0, flag="shift")
  assert spec.free == ("model.shift",) and spec.sample_eval == {"model.shift": 3.0}
  assert spec.sample_flags == {"shift": "model.shift"}
  # sample.py's --iwae_k is the VAE's declaration, not a field found by its name.
  assert family_lib.get("vae").sample_flags == {"iwae_k": "model.iwae_k"}
  assert family_lib.get("gan").sample_flags == {}
  assert family_lib.get("diffusion").sample_flags == {f: f"diffusion.{f}" for f in ("guidance", "guidance_lo",
                                                                                    "guidance_hi")}
  assert "model.shift" not in workdir_lib.pinned_fields(_config())
  workdir_lib.save_config(str(tmp_path), _config())
  workdir_lib.check_resumable(str(tmp_path), _config(shift=2.0))  # accepted


def test_a_field_added_later_loads_old_files_with_the_value_their_runs_had(monkeypatch, tmp_path):
  monkeypatch.setattr(options, "VERSION", 2)
  _variant(monkeypatch, added=(2, 1.0))
  config = _config()
  workdir_lib.save_config(str(tmp_path), config)
  path = tmp_path / "config.json"
  saved = json.loads(path.read_text())
  assert saved[options.VERSION_KEY] == 2
  # As a genjax before the field wrote it: version 1, no field.
  del saved["model"]["shift"]
  path.write_text(json.dumps({**saved, options.VERSION_KEY: 1}))
  assert workdir_lib.load_config(str(tmp_path)).model.shift == 1.0
  # A file of the current version that lacks it was edited by hand: refused as missing.
  path.write_text(json.dumps({**saved, options.VERSION_KEY: 2}))
  with pytest.raises(UserError, match=r"config.json: model.shift: missing"):
    workdir_lib.load_config(str(tmp_path))


def test_a_config_file_of_a_newer_genjax_is_refused_in_one_line(tmp_path):
  workdir_lib.save_config(str(tmp_path), base.get_config("vae"))
  path = tmp_path / "config.json"
  path.write_text(json.dumps({**json.loads(path.read_text()), options.VERSION_KEY: options.VERSION + 1}))
  with pytest.raises(UserError, match=rf"config_version: {options.VERSION + 1} is not a config version this genjax"
                                      rf" reads \(0 to {options.VERSION}\)"):
    workdir_lib.load_config(str(tmp_path))


def test_a_model_dataclass_and_its_config_share_each_default():
  """The model objects' defaults are the configs': one value, declared on the dataclass field."""
  for name in ("vae", "gan", "diffusion"):
    spec = family_lib.get(name)
    config = base.get_config(name)
    build.validate(config)
    built = build.family(config)
    for block, fields in spec.options.items():
      for field in fields:
        if hasattr(built, field):
          assert getattr(built, field) == options.values(config[block], {field: fields[field]})[field], field


def test_docs_options_md_lists_every_declared_option():
  with open(os.path.join(ROOT, "docs", "options.md"), encoding="utf-8") as f:
    assert f.read() == build.options_doc(), "regenerate: python -m genjax.build > docs/options.md"
