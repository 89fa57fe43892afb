"""The conformance suite: what every registered family and architecture must do, run on each by registering.

tests/gauss_family.py defines a family in the tests alone; it passes the same
checks, which shows that a family needs no edit outside its own files. The
multi-device checks are in tests/test_conformance_devices.py (one 8-device
subprocess), so that pytest-xdist runs the two halves on two workers.
"""

import os
import re

import jax
import jax.extend
import ml_collections
import numpy as np
import pytest
from PIL import Image

from genjax import augment, build, checkpoint, cli, data, evaluation, options, train_lib
from genjax import random as grandom
from genjax import workdir as workdir_lib
from genjax.errors import UserError
from genjax.models import family as family_lib
from tests import conformance
from tests.helpers import NHWC, convolution_layouts, restore_state

CASES = conformance.cases()
IDS = [f"{name}:{arch}" for name, arch in CASES]
LOOP_CASES = conformance.cases(variants=False)  # the loop's machinery: the architectures (conformance.cases)
LOOP_IDS = [f"{name}:{arch}" for name, arch in LOOP_CASES]


def _family(name, arch, **overrides):
  config = conformance.config_of(name, arch, **overrides)
  build.validate(config)
  return config, build.family(config)


def _assert_trees(a, b, exact: bool, rtol=1e-6, atol=1e-6):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b, strict=True):
    x, y = np.asarray(x), np.asarray(y)
    if exact:
      assert x.dtype == y.dtype and x.tobytes() == y.tobytes()
    else:
      np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def test_every_family_of_the_library_and_the_test_family_is_registered():
  assert {"vae", "gan", "gauss"} <= set(family_lib.names())
  assert ("gauss", "diag") in CASES and ("vae", "conv") in CASES and ("gan", "dcgan") in CASES


CONDITIONAL = [(n, a) for n, a in CASES if _family(n, a)[1].num_classes]


def test_there_is_a_conditional_family_to_check():
  assert ("gauss", "class") in CONDITIONAL


@pytest.mark.parametrize("name,arch", CONDITIONAL, ids=[f"{n}-{a}" for n, a in CONDITIONAL])
def test_labels_reach_every_method_of_a_conditional_family(name, arch):
  """Training, evaluation, sampling and pictures of a conditional model each depend on the labels they are
  given: the held-out batch's labels permuted give other numbers, another class other samples."""
  config, family = _family(name, arch)
  keys = grandom.streams(config.seed)
  batch = conformance.batches(config, 1)[0]
  assert len(set(batch["label"].tolist())) > 1, "a batch of one class cannot tell labels from their permutation"
  permuted = {**batch, "label": np.roll(batch["label"], 1)}
  state = jax.jit(family.init)(keys.init)
  step = jax.jit(family.train_step)
  state, metrics = step(state, batch, keys.train)
  state, _ = step(state, batch, keys.train)  # trained a little, so that the classes differ
  _, shuffled = step(state, permuted, keys.train)
  _, same = step(state, batch, keys.train)
  assert float(same["loss"]) != float(shuffled["loss"])
  params = jax.jit(family.eval_params, static_argnums=2)(state, keys.eval, family_lib.get(name).weights[0])
  evaluate = jax.jit(family.evaluate)
  for number, value in evaluate(params, batch["image"], keys.eval, labels=batch["label"]).items():
    other = evaluate(params, batch["image"], keys.eval, labels=permuted["label"])[number]
    assert not np.array_equal(np.asarray(value), np.asarray(other)), number
  sample = jax.jit(family.sample, static_argnums=2)
  zeros, ones = (np.full((8,), c, np.int32) for c in (0, 1))
  assert not np.array_equal(np.asarray(sample(params, keys.sample, 8, zeros)),
                            np.asarray(sample(params, keys.sample, 8, ones)))
  visuals = jax.jit(family.visuals)
  a = visuals(params, keys.sample, batch["image"][:8], labels=zeros)
  b = visuals(params, keys.sample, batch["image"][:8], labels=ones)
  assert a and any(not np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


DECLARE_NUM_CLASSES = [(n, a) for n, a in CASES
                       if "num_classes" in options.flat(family_lib.get(n).options.get("model", {}))]


@pytest.mark.parametrize("name,arch", DECLARE_NUM_CLASSES, ids=[f"{n}-{a}" for n, a in DECLARE_NUM_CLASSES])
def test_num_classes_is_the_datasets_class_count_or_zero(name, arch):
  """`model.num_classes` (family.num_classes_option) is checked against the dataset by the shared validation,
  in one line: another count, or labels where the dataset has none, or a negative count is refused."""
  config = conformance.config_of(name, arch)
  have = data.num_classes(config.dataset.name)
  if not config.model.num_classes:  # a conditional case may set fields only a conditional model takes (guidance)
    build.validate(conformance.config_of(name, arch, **{"model.num_classes": 0}))
  if have:
    build.validate(conformance.config_of(name, arch, **{"model.num_classes": have}))
    with pytest.raises(UserError, match=rf"^model.num_classes: '{config.dataset.name}' has {have} classes; must be"
                                        rf" {have} \(conditional\) or 0 \(unconditional\), got 3$"):
      build.validate(conformance.config_of(name, arch, **{"model.num_classes": 3}))
  else:
    with pytest.raises(UserError, match=rf"^model.num_classes: '{config.dataset.name}' has no labels to condition"
                                        " on; 0 \\(unconditional\\) is the only choice, got 10$"):
      build.validate(conformance.config_of(name, arch, **{"model.num_classes": 10}))
  with pytest.raises(UserError, match="^model.num_classes: must be 0 \\(unconditional\\) or the dataset's number"):
    build.validate(conformance.config_of(name, arch, **{"model.num_classes": -1}))


@pytest.mark.parametrize("name,arch", CASES, ids=IDS)
def test_what_the_family_declares_to_sample_py_it_takes(name, arch):
  """sample.py dispatches on declarations, not signatures: a declared truncation is taken by `sample` and
  `visuals`, and every free field is a field of the family's config."""
  import inspect  # pylint: disable=g-import-not-at-top
  config, family = _family(name, arch)
  spec = family_lib.get(name)
  for method in (family.sample, family.visuals):
    assert ("truncation" in inspect.signature(method).parameters) == spec.truncation, method
  for field in spec.free:
    block, leaf = field.split(".")
    assert block in spec.config_blocks() and leaf in config[block], field


@pytest.mark.parametrize("name,arch", LOOP_CASES, ids=LOOP_IDS)
def test_jit_equals_no_jit_and_the_step_is_traced_once(name, arch):
  config, family = _family(name, arch)
  keys = grandom.streams(config.seed)
  state = jax.jit(family.init)(keys.init)
  traces = []

  def step(state, batch, key):
    traces.append(1)
    return family.train_step(state, batch, key)

  compiled = jax.jit(step)
  eager_state, jit_state = state, state
  for s, batch in enumerate(conformance.batches(config)):
    key = grandom.step_key(keys.train, s)
    eager_state, eager_metrics = family.train_step(eager_state, batch, key)
    jit_state, jit_metrics = compiled(jit_state, batch, key)
    assert np.isfinite(float(jit_metrics["loss"]))
  assert len(traces) == 1 and int(jit_state.step) == conformance.STEPS
  _assert_trees(jit_state, eager_state, exact=False, rtol=1e-5, atol=1e-5)
  _assert_trees(jit_metrics, eager_metrics, exact=False, rtol=1e-5, atol=1e-5)


PRODUCTS = ("dot_general", "conv_general_dilated")


def _products(jaxpr, scope: str = "") -> list[tuple[str, tuple[str, ...]]]:
  """(primitive, operand dtypes) of every matrix product and convolution of `jaxpr` and its sub-jaxprs, but
  those of one row (spectral norm's power iteration, whose vector u is a float32 statistic) and those of the
  augmentations' geometry (float32 by design)."""
  found = []
  for eqn in jaxpr.eqns:
    where = f"{scope}/{eqn.source_info.name_stack}"  # a sub-jaxpr's names are relative to its equation's
    if eqn.primitive.name in PRODUCTS and eqn.invars[0].aval.shape[0] != 1 and augment.GEOMETRY not in where:
      found.append((eqn.primitive.name, tuple(str(v.aval.dtype) for v in eqn.invars)))
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      found.extend(_products(sub, where))
  return found


@pytest.mark.parametrize("name,arch", CASES, ids=IDS)
def test_under_bfloat16_every_product_is_bfloat16_and_the_state_is_float32_as_it_was(name, arch):
  """The precision policy (genjax.precision): the training step computes each product and convolution that
  float32 computes in bfloat16, and its state (what a checkpoint holds) has float32's structure and dtypes."""
  config, family = _family(name, arch)
  _, low = _family(name, arch, precision="bfloat16")
  keys = grandom.streams(config.seed)
  batch = next(iter(conformance.batches(config)))
  state, low_state = (jax.jit(f.init)(keys.init) for f in (family, low))
  assert jax.tree.structure(low_state) == jax.tree.structure(state)
  assert [x.dtype for x in jax.tree.leaves(low_state)] == [x.dtype for x in jax.tree.leaves(state)]
  want = _products(jax.make_jaxpr(family.train_step)(state, batch, keys.train).jaxpr)
  got = _products(jax.make_jaxpr(low.train_step)(low_state, batch, keys.train).jaxpr)
  assert len(got) == len(want)
  assert all(dtypes == ("bfloat16", "bfloat16") for _, dtypes in got), sorted(set(got) - {
      (p, ("bfloat16", "bfloat16")) for p in PRODUCTS})
  after, metrics = jax.jit(low.train_step)(low_state, batch, keys.train)
  assert [x.dtype for x in jax.tree.leaves(after)] == [x.dtype for x in jax.tree.leaves(state)]
  assert np.isfinite(float(metrics["loss"]))


@pytest.mark.parametrize("name,arch", CASES, ids=IDS)
def test_every_convolution_of_the_step_and_its_gradients_is_nhwc_hwio(name, arch):
  """XLA:CPU puts only a program's top-level convolutions into the layout of its fast kernels (NHWC, HWIO); in a
  loop's body (several steps a call, a scan over the GAN's D updates) any other ran as a naive loop, the U-Net's
  two steps in one call 20 times slower than in two (genjax.nets.layers.conv_general_dilated). So every
  convolution of the training step, forward and both gradients, is already in that layout."""
  config, family = _family(name, arch)
  keys = grandom.streams(config.seed)
  state = jax.eval_shape(family.init, keys.init)
  jaxpr = jax.make_jaxpr(family.train_step)(state, next(iter(conformance.batches(config))), keys.train).jaxpr
  layouts = convolution_layouts(jaxpr)
  assert all(layout == NHWC for layout in layouts), [layout for layout in layouts if layout != NHWC]


def _eval_params(config, family, keys, weights=None):
  """Eval params of a fresh state as the loop makes them (compiled, from the eval params key); default weights."""
  state = jax.jit(family.init)(keys.init)
  weights = weights or family_lib.get(config.family).weights[0]
  return jax.jit(family.eval_params, static_argnums=2)(state, grandom.eval_params_key(keys.eval), weights)


@pytest.mark.parametrize("name,arch", CASES, ids=IDS)
def test_the_same_key_gives_the_same_samples_and_another_key_others(name, arch):
  config, family = _family(name, arch)
  params = _eval_params(config, family, grandom.streams(config.seed))
  sample = jax.jit(family.sample, static_argnums=2)
  a, b, c = (np.asarray(sample(params, jax.random.key(k), 8)) for k in (1, 1, 2))
  assert a.shape[0] == 8 and np.isfinite(a).all()
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


@pytest.mark.parametrize("name,arch", CASES, ids=IDS)
def test_a_checkpoint_round_trips(name, arch, tmp_path):
  config, family = _family(name, arch)
  keys = grandom.streams(config.seed)
  state = jax.jit(family.init)(keys.init)
  state, _ = jax.jit(family.train_step)(state, conformance.batches(config, 1)[0], keys.train)
  ckpt = checkpoint.Checkpointer(str(tmp_path), 2)
  ckpt.save(1, state)
  ckpt.close()
  reader = checkpoint.Checkpointer(str(tmp_path), 2, read_only=True)
  restored = reader.restore(1, jax.jit(family.init)(keys.init))
  reader.close()
  _assert_trees(restored, state, exact=True)


@pytest.mark.parametrize("name,arch", LOOP_CASES, ids=LOOP_IDS)
def test_stop_and_resume_ends_bitwise_equal_to_an_uninterrupted_run(name, arch, tmp_path):
  straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
  # No sample-quality numbers: the state is what is compared, and 500 samples per evaluation of a diffusion
  # model's sampler dominate the test's time.
  fields = {"eval.quality_samples": 0, **conformance.augmented(name, arch)}
  train_lib.train_and_evaluate(conformance.config_of(name, arch, num_steps=4, **fields), straight)
  train_lib.train_and_evaluate(conformance.config_of(name, arch, num_steps=2, **fields), resumed)
  train_lib.train_and_evaluate(conformance.config_of(name, arch, num_steps=4, **fields), resumed)
  _assert_trees(restore_state(resumed), restore_state(straight), exact=True)


@pytest.mark.parametrize("name,arch", CASES, ids=IDS)
def test_every_weights_the_family_names_gives_params_that_sample(name, arch):
  """Each of the spec's weights (the default first) gives the same params for the same key, and finite samples."""
  config, family = _family(name, arch)
  keys = grandom.streams(config.seed)
  weights = family_lib.get(name).weights
  assert weights and len(set(weights)) == len(weights)
  sample = jax.jit(family.sample, static_argnums=2)
  for w in weights:
    params = _eval_params(config, family, keys, w)
    _assert_trees(params, _eval_params(config, family, keys, w), exact=True)
    assert np.isfinite(np.asarray(sample(params, jax.random.key(1), 8))).all(), w


@pytest.mark.parametrize("name,arch", CASES, ids=IDS)
def test_evaluation_does_not_depend_on_the_evaluation_batch_size(name, arch):
  config, family = _family(name, arch)
  keys = grandom.streams(config.seed)
  params = _eval_params(config, family, keys)
  held_out = data.eval_examples(config.dataset.name, 24)
  labels = held_out["label"] if family.num_classes else None  # the seam gives labels to a conditional model
  evaluate = jax.jit(family.evaluate)
  by_8 = evaluation.evaluate_dataset(evaluate, params, held_out["image"], keys.eval, 8, labels)
  by_16 = evaluation.evaluate_dataset(evaluate, params, held_out["image"], keys.eval, 16, labels)
  assert by_8.keys() == by_16.keys() == set(family_lib.get(name).units)  # every number has its unit
  for metric, value in by_8.items():
    assert np.isfinite(value)
    np.testing.assert_allclose(by_16[metric], value, rtol=1e-5, err_msg=metric)


@pytest.mark.parametrize("name,arch", LOOP_CASES, ids=LOOP_IDS)
def test_pictures_are_written_as_png(name, arch, tmp_path):
  config, family = _family(name, arch)
  keys = grandom.streams(config.seed)
  params = _eval_params(config, family, keys)
  held_out = data.eval_examples(config.dataset.name, 32)
  sample = jax.jit(family.sample, static_argnums=2)
  files = evaluation.write_visuals(jax.jit(family.visuals), params, keys.sample, held_out["image"], str(tmp_path),
                                    extra=evaluation.point_grids({"samples": sample}, params, keys.sample,
                                                                  config.dataset.name),
                                    eval_labels=held_out["label"] if family.num_classes else None)
  assert files and all(f.endswith(".png") for f in files)
  for path in files:
    with Image.open(path) as picture:
      assert picture.format == "PNG" and min(picture.size) >= 28


@pytest.mark.parametrize("name,arch", CASES, ids=IDS)
def test_a_bad_field_of_the_family_is_one_line_with_status_2(name, arch, tmp_path, capsys):
  config = conformance.config_of(name, arch, **{"model.arch": "no_such_arch"})
  with pytest.raises(SystemExit) as info:
    with cli.user_errors_exit():
      train_lib.train_and_evaluate(config, str(tmp_path / "run"))
  lines = capsys.readouterr().err.strip().splitlines()
  allowed = ", ".join(family_lib.get(name).archs)
  assert info.value.code == 2 and lines == [f"error: model.arch: unknown 'no_such_arch'; allowed: {allowed}"]
  assert not os.path.exists(tmp_path / "run")


def _another(value):
  """A value of the same kind that differs from `value` (what a resume might be asked to change it to)."""
  if isinstance(value, bool):
    return not value
  if isinstance(value, (int, float)):
    return value * 2 + 1
  if isinstance(value, str):
    return value + "_other"
  if isinstance(value, (tuple, list)):
    return (*value, 1)
  return 0.5  # None


@pytest.mark.parametrize("name,arch", LOOP_CASES, ids=LOOP_IDS)
def test_a_resume_refuses_each_pinned_field_changed_and_accepts_each_free_one(name, arch, tmp_path):
  """Every field is either what the weights were trained with (pinned: a changed one is refused, naming it and
  its old value) or free (accepted); the family's own blocks and the seed, data, batch and optimizer are pinned,
  and what it declares free exists."""
  config = conformance.config_of(name, arch)
  workdir_lib.save_config(str(tmp_path), config)
  flat = workdir_lib._flat(config)  # pylint: disable=protected-access
  pinned = workdir_lib.pinned_fields(config)
  spec = family_lib.get(name)
  assert set(spec.free) <= set(flat)
  own = [f"{block}.{field}" for block, fields in spec.config_blocks().items() for field in fields]
  assert set(own) - set(spec.free) <= set(pinned)
  assert {"family", "seed", "dataset.name", "batch_size", "optim.learning_rate", "model.arch"} <= set(pinned)
  assert {"num_steps", "eval.num_examples", "eval.quality_samples", "keep_checkpoints"}.isdisjoint(pinned)
  for field, value in flat.items():
    changed = config.to_dict()
    node = changed
    *path, last = field.split(".")
    for part in path:
      node = node[part]
    node[last] = _another(value)
    changed = ml_collections.ConfigDict(changed)
    if field in pinned:
      with pytest.raises(UserError, match=f"^{re.escape(field)}: this workdir was trained with {re.escape(repr(value))},"):
        workdir_lib.check_resumable(str(tmp_path), changed)
    else:
      workdir_lib.check_resumable(str(tmp_path), changed)


def test_num_steps_is_pinned_under_a_cosine_schedule(tmp_path):
  """The cosine decay spans num_steps: the weights of every step so far were trained for that length."""
  config = conformance.config_of("vae", "mlp", **{"optim.schedule": "cosine"})
  workdir_lib.save_config(str(tmp_path), config)
  longer = conformance.config_of("vae", "mlp", **{"optim.schedule": "cosine", "num_steps": config.num_steps + 1})
  with pytest.raises(UserError, match=r"^num_steps: this workdir was trained with "):
    workdir_lib.check_resumable(str(tmp_path), longer)


def test_the_test_family_reaches_its_closed_form_optimum():
  """Maximum likelihood of a diagonal Gaussian on a fixed set of points: their mean and standard deviation."""
  config, family = _family("gauss", "diag", **{"optim.learning_rate": 0.05, "optim.schedule": "cosine",
                                               "num_steps": 1500, "batch_size": 4096})
  points = conformance.batches(config, 1)[0]
  state = jax.jit(family.init)(jax.random.key(0))

  def train(state):
    return jax.lax.fori_loop(0, 1500, lambda _, s: family.train_step(s, points, jax.random.key(0))[0], state)

  state = jax.jit(train)(state)
  x = np.asarray(points["image"], np.float64)
  np.testing.assert_allclose(state.params["mean"], x.mean(0), atol=1e-3)
  np.testing.assert_allclose(np.exp(state.params["log_std"]), x.std(0), rtol=1e-3)
