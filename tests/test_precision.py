"""The precision policy (genjax.precision): bfloat16 training tracks float32, float16's loss scaling unscales
every gradient leaf and skips overflowing steps, and the loop reports the step's FLOPs (genjax.utilization)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax import build, data, parallel, precision, train_lib, utilization
from genjax import random as grandom
from genjax.models import update
from tests import conformance

# (family, smoke case, overrides, steps): small nets trained long enough for their losses to fall a lot.
TRACKED = [
    ("vae", "conv", {"optim.learning_rate": 3e-3}, 300),
    ("diffusion", "unet", {"optim.learning_rate": 1e-3, "model.ch": 32, "model.ch_mult": (1,),
                           "model.attn_resolutions": (), "batch_size": 8}, 60),
]


def _train(name, arch, overrides, steps, policy):
  config = conformance.config_of(name, arch, precision=policy, **overrides)
  build.validate(config)
  family = build.family(config)
  keys = grandom.streams(config.seed)
  state = jax.jit(family.init)(keys.init)
  step = jax.jit(family.train_step)
  batches = conformance.batches(config, 20)
  losses = []
  for s in range(steps):
    state, metrics = step(state, batches[s % len(batches)], grandom.step_key(keys.train, s))
    losses.append(float(metrics["loss"]))
  held = data.eval_images(config.dataset.name, 32)
  params = jax.jit(family.eval_params, static_argnums=2)(state, grandom.eval_params_key(keys.eval), "raw"
                                                         if name == "vae" else "ema")
  numbers = {k: float(np.mean(v)) for k, v in jax.jit(family.evaluate)(params, held, keys.eval).items()}
  return np.asarray(losses), numbers, state


@pytest.mark.parametrize("name,arch,overrides,steps", TRACKED, ids=[f"{n}:{a}" for n, a, _, _ in TRACKED])
def test_bfloat16_training_tracks_float32(name, arch, overrides, steps):
  """The same steps from the same keys in float32 and in bfloat16: the first 10 losses agree within 0.2%
  (the forward and backward passes in bfloat16 are close), and after the trajectories part (chaos, not
  error), the mean loss of the last 50 steps and the held-out numbers within 5%. The weights stay float32.

  Measured: the first losses differ by 0.002% (VAE), 0.08% (U-Net); the last ones by 3.0% (VAE, bfloat16
  lower; 0.2% and 0.7% with seeds 1 and 2, across which float32's own spread is 5%) and 0.03% (U-Net); the
  held-out numbers by 3.7% (VAE's negative ELBO, bfloat16 lower) and 0.05% (the U-Net's bound). A GAN's two
  runs part for good (its end loss in float32 alone moves 23% between seeds), so the DCGAN is tested step by
  step along one run, below."""
  full, full_held, _ = _train(name, arch, overrides, steps, "float32")
  low, low_held, state = _train(name, arch, overrides, steps, "bfloat16")
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating))
  assert low[0] != full[0]  # bfloat16 did compute something else
  np.testing.assert_allclose(low[:10].mean(), full[:10].mean(), rtol=2e-3)
  end_full, end_low = full[-50:].mean(), low[-50:].mean()
  assert abs(end_low - end_full) <= 0.05 * abs(end_full), (end_low, end_full)
  if name != "gan":  # a GAN's D + G loss need not fall
    assert end_full < 0.5 * full[:10].mean(), "the loss must fall for the comparison to mean anything"
  for key, value in full_held.items():
    assert abs(low_held[key] - value) <= 0.05 * abs(value), (key, low_held[key], value)


def _relative_update(got, want, before) -> float:
  """|got - want| / |want - before| over all leaves: how far one update is from another, relative to its size."""
  pairs = list(zip(jax.tree.leaves(got), jax.tree.leaves(want), jax.tree.leaves(before)))
  apart = sum(jnp.sum((g - w) ** 2) for g, w, _ in pairs)
  return float(np.sqrt(apart / sum(jnp.sum((w - b) ** 2) for _, w, b in pairs)))


def test_bfloat16_dcgan_steps_track_float32_all_along_a_float32_run():
  """A GAN's float32 and bfloat16 runs part for good after a few dozen steps (the end losses of 300 steps of
  this DCGAN move 23% between float32 seeds, and by 10-15% between the policies with seeds 1 and 2), so the
  comparison of whole runs is chance. Along one float32 run of 300 steps instead, the bfloat16 step from the
  same state, batch and key computes D's and G's losses within 3% and moves each net's weights within 6% of
  the float32 step (measured, seeds 0-2, steps 100-299: losses within 1.5%, G's update 1.0-2.6%, D's 0.1-1.5%;
  step 0 is left out: Adam's first update is the gradients' signs, which rounding flips where they are near 0)."""
  full, low = (build.family(conformance.config_of("gan", "dcgan", precision=p)) for p in ("float32", "bfloat16"))
  config = conformance.config_of("gan", "dcgan")
  keys = grandom.streams(config.seed)
  state = jax.jit(full.init)(keys.init)
  step_full, step_low = jax.jit(full.train_step), jax.jit(low.train_step)
  batches = conformance.batches(config, 20)
  for s in range(300):
    batch, key = batches[s % len(batches)], grandom.step_key(keys.train, s)
    after, metrics = step_full(state, batch, key)
    if s in (100, 200, 299):
      after_low, metrics_low = step_low(state, batch, key)
      assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(after_low) if jnp.issubdtype(x.dtype, jnp.floating))
      for name in ("d_loss", "g_loss"):
        np.testing.assert_allclose(metrics_low[name], metrics[name], rtol=0.03, err_msg=f"{name} at step {s}")
      for net in ("g_params", "d_params"):
        moved = _relative_update(getattr(after_low, net), getattr(after, net), getattr(state, net))
        assert 0 < moved <= 0.06, (net, s, moved)
    state = after


def test_the_unets_groupnorm_takes_its_statistics_in_float32_under_bfloat16():
  """Far from zero (mean 100, sd 1) bfloat16's 8 bits would leave E[x^2] - E[x]^2 nothing but rounding. The
  inputs are multiples of 0.5 near 100, which bfloat16 holds exactly, so only the statistics can differ."""
  from genjax.nets import unet  # pylint: disable=g-import-not-at-top
  x = 100.0 + 0.5 * jnp.round(2 * jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 8, 64)), jnp.float32))
  norm = unet.GroupNorm(num_groups=32)
  params = norm.init(jax.random.key(0), [x])
  want = norm.apply(params, [x])[0]
  got = precision.Cast(norm, jnp.bfloat16).apply(params, [x])[0]
  assert got.dtype == jnp.float32  # cast back at the net's boundary
  np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-2)  # the output's own bfloat16 rounding


# The keyword form is Cast's own logic: the MLP's smaller net checks it.
@pytest.mark.parametrize("denoiser,as_keyword", [("unet", False), ("mlp", False), ("mlp", True)])
def test_a_denoiser_gets_its_noise_level_uncast_under_bfloat16(denoiser, as_keyword):
  """bfloat16 holds 999 as 1000 (8 significant bits), so a cast noise level would make the two steps one;
  uncast, the sinusoidal embedding (float32) tells them apart, while x is still cast (the output differs
  from float32's), whether the level is passed by position or by name, and beside `Module.apply`'s own
  keywords (the U-Net trains with dropout: `rngs`)."""
  from genjax.nets import mlp_denoiser, unet  # pylint: disable=g-import-not-at-top
  if denoiser == "unet":
    net = unet.UNet(ch=32, out_ch=1, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(), dropout=0.5)
    x, name = jax.random.normal(jax.random.key(0), (2, 8, 8, 1)), "t_B"
  else:
    net, x, name = mlp_denoiser.MLPDenoiser(hidden=(16,)), jax.random.normal(jax.random.key(0), (2, 4)), "c_B"
  params = net.init(jax.random.key(1), x, jnp.zeros(2))
  low = precision.wrap(net, "bfloat16")

  def at(module, t):
    level = jnp.full((2,), t, jnp.float32)
    extra = {"train": True, "rngs": {"dropout": jax.random.key(2)}} if denoiser == "unet" else {}
    return module.apply(params, x, **{name: level}, **extra) if as_keyword else module.apply(params, x, level, **extra)

  assert jnp.bfloat16(999.0) == jnp.bfloat16(1000.0)
  assert float(jnp.abs(at(low, 999.0) - at(low, 1000.0)).max()) > 1e-3
  assert at(low, 999.0).dtype == jnp.float32 and not np.array_equal(at(low, 999.0), at(net, 999.0))


# ------------------------------------------------------------------ sums in float32


def test_a_bias_gradient_over_many_positions_sums_in_float32():
  """The gradient of a bias broadcast over 16 x 28 x 28 positions is a sum of the bfloat16 cotangent; XLA:CPU
  accumulates it in bfloat16, where it stops growing (8 of 251 here); `sums_in_float32` takes it in float32."""
  y = jnp.zeros((16, 28, 28, 1), jnp.bfloat16)

  def loss(bias, c):
    return jnp.sum((y + bias.astype(jnp.bfloat16)).astype(jnp.float32) * c)

  grad = jax.grad(loss)
  c, bias = 0.02, jnp.zeros((1,), jnp.float32)
  want = 0.02 * 16 * 28 * 28
  assert abs(float(jax.jit(grad)(bias, c)[0]) - want) > 0.5 * want  # as XLA:CPU takes it
  np.testing.assert_allclose(jax.jit(precision.sums_in_float32(grad))(bias, c), [want], rtol=1e-2)
  # A function without such sums (float32 here) is the function: the same program, the same numbers.
  f32 = jax.grad(lambda bias, c: jnp.sum((y.astype(jnp.float32) + bias) * c))
  np.testing.assert_array_equal(jax.jit(precision.sums_in_float32(f32))(bias, c), jax.jit(f32)(bias, c))
  # Arguments that are not arrays reach the function as they are (a flag for Python's `if`), keywords too.
  flagged = jax.grad(lambda bias, c, *, double: loss(bias, c) * (2.0 if double else 1.0))
  np.testing.assert_allclose(precision.sums_in_float32(flagged)(bias, 0.02, double=True), [2 * want], rtol=1e-2)


@pytest.mark.parametrize("name,arch", [("vae", "conv"), ("pixelcnn", "gated")])
def test_a_bfloat16_steps_gradient_norm_is_float32s(name, arch):
  """Every family's update (genjax.models.update) sums in float32: the conv VAE's bfloat16 gradient norm was
  43 where float32's is 295 (its output bias), the PixelCNN's biases up to 97% off."""
  norms = {}
  for policy in ("float32", "bfloat16"):
    config = conformance.config_of(name, arch, precision=policy)
    family, keys = build.family(config), grandom.streams(config.seed)
    state = jax.jit(family.init)(keys.init)
    norms[policy] = float(jax.jit(family.train_step)(state, conformance.batches(config, 1)[0], keys.train)[1][
        "grad_norm"])
  np.testing.assert_allclose(norms["bfloat16"], norms["float32"], rtol=0.03)


def test_bfloat16_gradients_are_as_far_from_float32s_as_rounding_the_weights_makes_them():
  """Every leaf of the conv VAE's bfloat16 gradient is within 3 points of the relative error that float32's own
  math makes on the weights rounded to bfloat16. The first layer's is 19% off, and so is float32's on the
  rounded weights: at initialisation its gradient is a sum that nearly cancels, not one summed in low precision."""
  def gradients(policy, params=None):
    config = conformance.config_of("vae", "conv", precision=policy)
    family, keys = build.family(config), grandom.streams(config.seed)
    params = jax.jit(family.init)(keys.init).params if params is None else params
    image = conformance.batches(config, 1)[0]["image"]
    loss = lambda p: family.loss(p, image, keys.train)[0]  # noqa: E731
    return params, jax.jit(precision.sums_in_float32(jax.grad(loss)))(params)

  params, full = gradients("float32")
  _, low = gradients("bfloat16")
  _, rounded = gradients("float32", jax.tree.map(lambda w: w.astype(jnp.bfloat16).astype(jnp.float32), params))
  error = lambda a, b: float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))  # noqa: E731
  for (path, want), got, near in zip(jax.tree_util.tree_flatten_with_path(full)[0], jax.tree.leaves(low),
                                     jax.tree.leaves(rounded)):
    assert error(got, want) <= error(near, want) + 0.03, (jax.tree_util.keystr(path), error(got, want),
                                                          error(near, want))
  assert error(rounded["encoder"]["Conv_0"]["kernel"], full["encoder"]["Conv_0"]["kernel"]) > 0.1


# ------------------------------------------------------------------ float16's dynamic loss scaling


def _groups():
  """Parameters in several groups (the guided-diffusion bug unscaled only the first)."""
  rng = np.random.default_rng(0)
  return {"a": jnp.asarray(rng.normal(size=(3,)), jnp.float32),
          "b": {"c": jnp.asarray(rng.normal(size=(2, 2)), jnp.float32), "d": jnp.float32(0.5)}}


def _loss(params, x):
  leaves = jax.tree.leaves(params)
  return sum(jnp.sum(jnp.sin(leaf * x) * (i + 1)) for i, leaf in enumerate(leaves)), {}


def test_every_gradient_leaf_of_every_group_is_unscaled():
  params, sgd = _groups(), optax.sgd(0.1)
  plain = update.apply_gradients(_loss, params, sgd.init(params), sgd, None, 1.5)
  scaled_opt = precision.loss_scaled(sgd, initial_scale=2.0**10)
  scaled = update.apply_gradients(_loss, params, scaled_opt.init(params), scaled_opt, None, 1.5)
  for got, want in zip(jax.tree.leaves(scaled.params), jax.tree.leaves(plain.params), strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)  # a power of 2 divides exactly
  assert float(scaled.loss) == float(plain.loss)
  np.testing.assert_allclose(scaled.grad_norm, plain.grad_norm, rtol=1e-6)
  assert float(scaled.opt_state.scale) == 2.0**10 and int(scaled.opt_state.good_steps) == 1


def test_an_overflowing_step_is_skipped_its_weights_untouched_and_the_scale_halved():
  params, adam = _groups(), optax.adam(0.1)
  opt = precision.loss_scaled(adam, initial_scale=2.0**15, growth_interval=2)
  state = opt.init(params)
  huge = lambda params, x: (_loss(params, x)[0] * 1e35, {})  # times 2^15: the scaled gradient overflows
  new = update.apply_gradients(huge, params, state, opt, None, 1.5)
  for got, want in zip(jax.tree.leaves(new.params), jax.tree.leaves(params), strict=True):
    np.testing.assert_array_equal(got, want)
  for got, want in zip(jax.tree.leaves(new.opt_state.inner), jax.tree.leaves(state.inner), strict=True):
    np.testing.assert_array_equal(got, want)  # Adam's moments and count stay as they were
  assert float(new.opt_state.scale) == 2.0**14 and float(new.grad_norm) == 0.0
  # Finite steps then go through, and after growth_interval of them in a row the scale doubles.
  again = update.apply_gradients(_loss, new.params, new.opt_state, opt, None, 1.5)
  assert not np.array_equal(again.params["a"], params["a"]) and float(again.opt_state.scale) == 2.0**14
  third = update.apply_gradients(_loss, again.params, again.opt_state, opt, None, 1.5)
  assert float(third.opt_state.scale) == 2.0**15 and int(third.opt_state.good_steps) == 0


def test_a_float16_family_scales_its_loss_and_computes_in_float16():
  config = conformance.config_of("gan", "dcgan", precision="float16")
  build.validate(config)
  family = build.family(config)
  keys = grandom.streams(config.seed)
  state = jax.jit(family.init)(keys.init)
  for opt_state in (state.g_opt_state, state.d_opt_state):  # each of the GAN's two optimizers has its scale
    assert float(precision.scale_of(opt_state)) == precision.INITIAL_SCALE
  after, metrics = jax.jit(family.train_step)(state, conformance.batches(config, 1)[0], keys.train)
  assert np.isfinite(float(metrics["loss"])) and int(after.g_opt_state.good_steps) == 1
  assert all(x.dtype != jnp.float16 for x in jax.tree.leaves(after))  # the state stays float32


def test_precision_is_pinned_and_wrap_refuses_an_unknown_policy():
  with pytest.raises(ValueError, match="precision: unknown 'int8'; allowed: float32, bfloat16, float16"):
    precision.wrap(None, "int8")
  from genjax import workdir  # pylint: disable=g-import-not-at-top
  assert "precision" in workdir.pinned_fields(conformance.config_of("vae", "conv"))


# ------------------------------------------------------------------ the step's FLOPs and MFU


@pytest.mark.parametrize("kind,policy,want", [
    ("NVIDIA H100 80GB HBM3", "bfloat16", 989.4), ("NVIDIA H100 PCIe", "float32", 378.0),
    ("NVIDIA L4", "bfloat16", 121.0), ("NVIDIA L40S", "bfloat16", None), ("TPU v5 lite", "bfloat16", 197.0),
    ("TPU v5p", "float32", 459.0), ("TPU v4", "bfloat16", 275.0), ("cpu", "float32", None),
    ("Tesla V100-SXM2-16GB", "bfloat16", None), ("NVIDIA H100 NVL", "bfloat16", 835.5),
    ("NVIDIA GH200 480GB", "bfloat16", 989.4), ("Tesla V100-PCIE-16GB", "float16", 112.0),
    ("Tesla V100-SXM2-16GB", "float16", 125.0),
    ("TPU v3", "bfloat16", 61.5), ("TPU v2", "float32", 22.5)])  # per TensorCore: JAX's device there
def test_the_peak_table(kind, policy, want):
  assert utilization.peak_tflops(kind, policy) == want
  assert utilization.peak_tflops(kind, policy, given=12.5) == 12.5


def test_the_loop_reports_the_steps_flops_from_the_cost_analysis_and_mfu_from_them(tmp_path):
  config = conformance.config_of("vae", "conv", peak_tflops=2.0, num_steps=4)
  build.validate(config)
  workdir = str(tmp_path / "run")
  train_lib.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    rows = [json.loads(line) for line in f]
  start = next(r for r in rows if r["split"] == "start")
  family, keys = build.family(config), grandom.streams(config.seed)
  state = jax.jit(family.init)(keys.init)
  batch = conformance.batches(config, 1)[0]
  par = parallel.DataParallel("jit", 1)
  want = utilization.flops_of(par.compile_step(family.train_step).lower(
      par.init(family.init, keys.init), par.put_batch(batch), par.step_keys(keys.train)(0)))
  assert start["step_flops"] == want and want > 0
  # The step as a user would jit it counts the same products (up to the few operations of the key's placing).
  plain = utilization.flops_of(jax.jit(family.train_step).lower(state, batch, keys.train))
  np.testing.assert_allclose(want, plain, rtol=1e-4)
  assert start["peak_tflops"] == 2.0 and start["precision"] == "float32"
  trains = [r for r in rows if r["split"] == "train"]
  assert trains
  for row in trains:
    np.testing.assert_allclose(row["tflops"], want * row["steps_per_s"] / 1e12, rtol=1e-6)
    np.testing.assert_allclose(row["mfu"], row["tflops"] / 2.0, rtol=1e-6)


@pytest.mark.parametrize("name,arch", [("gan", "dcgan"), ("diffusion", "unet")])
def test_a_skipped_step_leaves_the_batchnorm_statistics_and_the_ema_untouched(name, arch):
  """A step whose gradients overflow (every scale at float32's largest, so the scaled loss is infinite) leaves
  everything the step computes beside the weights as it was: BatchNorm's running statistics (the forward pass
  was finite, so updating them would move them) and the EMA (set apart from the weights first, so that one
  more average would move it); the scales halve."""
  config = conformance.config_of(name, arch, precision="float16")
  build.validate(config)
  family = build.family(config)
  keys = grandom.streams(config.seed)
  state = jax.jit(family.init)(keys.init)
  huge = jnp.float32(np.finfo(np.float32).max)
  opt_fields = [f for f in ("opt_state", "g_opt_state", "d_opt_state") if hasattr(state, f)]
  state = state.replace(ema_params=jax.tree.map(lambda p: 0.5 * p + 0.1, state.ema_params),
                        **{f: getattr(state, f)._replace(scale=huge) for f in opt_fields})
  after, _ = jax.jit(family.train_step)(state, conformance.batches(config, 1)[0], keys.train)
  kept = [f for f in ("params", "g_params", "d_params", "g_stats", "d_stats", "ema_params") if hasattr(state, f)]
  assert name != "gan" or {"g_stats", "d_stats"} <= set(kept)
  for field in kept:
    for got, want in zip(jax.tree.leaves(getattr(after, field)), jax.tree.leaves(getattr(state, field)), strict=True):
      np.testing.assert_array_equal(got, want, err_msg=field)
  for field in opt_fields:
    assert float(getattr(after, field).scale) == float(huge) / 2
