"""The GAN family: BatchNorm policy, EMA and its warm-up and statistics, packing, interpolation, one compile."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax.losses import ema
from genjax.losses import gan as gan_losses
from genjax.models.gan import GAN, slerp
from genjax.models.update import EMA
from genjax.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from genjax.nets.mlp_gan import MLPDiscriminator, MLPGenerator
from tests.helpers import NHWC, convolution_layouts, tiny_config

B = 8


def tiny_dcgan(**kw) -> GAN:
  kw = {"loss": "non_saturating", **kw}
  return GAN(DCGANGenerator((28, 28, 1), width=4), DCGANDiscriminator(width=4, norm=kw.pop("d_norm", "batch")),
             optax.adam(1e-3, 0.5), optax.adam(1e-3, 0.5), (28, 28, 1), latent_dim=8, **kw)


def tiny_mlp(**kw) -> GAN:
  return GAN(MLPGenerator(2, (16, 16), kw.pop("g_batchnorm", False)), MLPDiscriminator((16, 16)),
             optax.adam(1e-3, 0.5), optax.adam(1e-3, 0.5), (2,), latent_dim=2, points=True, **kw)


def images(seed=0, n=B):
  return np.random.default_rng(seed).integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)


def tree_equal(a, b) -> bool:
  return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y)), a, b)))


@pytest.fixture(scope="module")
def dcgan_state():
  gan = tiny_dcgan()
  return gan, jax.jit(gan.init)(jax.random.key(0))


def test_scale_and_unscale_are_inverse_on_uint8_and_map_to_minus_one_one():
  gan = tiny_dcgan()
  x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
  scaled = gan.scale(x)
  assert float(scaled.min()) == -1.0 and float(scaled.max()) == 1.0
  np.testing.assert_array_equal(np.asarray(gan.unscale(scaled)), x)


def test_discriminator_update_moves_only_d_and_its_statistics(dcgan_state):
  gan, state = dcgan_state
  new, _ = jax.jit(gan.discriminator_update)(state, gan.scale(images()), jax.random.key(1))
  assert tree_equal(new.g_stats, state.g_stats) and tree_equal(new.g_params, state.g_params)
  assert tree_equal(new.ema_params, state.ema_params) and int(new.step) == 0
  assert not tree_equal(new.d_stats, state.d_stats)  # D's running averages took the real and fake batches
  assert not tree_equal(new.d_params, state.d_params)


def test_generator_update_keeps_d_statistics_although_d_runs_in_training_mode(dcgan_state):
  gan, state = dcgan_state
  new, _ = jax.jit(gan.generator_update, static_argnums=1)(state, B, jax.random.key(2))
  assert tree_equal(new.d_stats, state.d_stats) and tree_equal(new.d_params, state.d_params)
  assert not tree_equal(new.g_stats, state.g_stats)  # G's statistics change in its own update
  assert not tree_equal(new.g_params, state.g_params) and int(new.step) == 1
  # The test can fail: D in training mode on fakes does produce new statistics, which the update dropped.
  fake = gan.sample({"params": state.g_params, "batch_stats": state.g_stats}, jax.random.key(3), B)
  _, would_be = gan.discriminate(state.d_params, state.d_stats, fake, train=True)
  assert not tree_equal(would_be, state.d_stats)


def test_d_statistics_after_a_step_are_those_of_the_real_then_the_fake_batch(dcgan_state):
  gan, state = dcgan_state
  x = images(5)
  key = jax.random.key(4)
  after, _ = jax.jit(gan.train_step)(state, {"image": x}, key)
  # Rebuild the D update's fakes from the step's keys, then run D on real, then fake.
  d_key, _ = jax.random.split(key)
  z_key, _ = jax.random.split(jax.random.split(d_key, 1)[0])
  fake, _ = gan.generate(state.g_params, state.g_stats, gan.latents(z_key, B), train=True)
  _, stats = gan.discriminate(state.d_params, state.d_stats, gan.scale(x), train=True)
  _, stats = gan.discriminate(state.d_params, stats, fake, train=True)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), after.d_stats, stats)


def _decay(rule: str, d: float, n: int, rampup: float) -> float:
  """d_n of each warm-up rule, written out again in float64 (genjax.losses.ema is the code under test)."""
  if rule == "none" or d == 0.0:
    return d
  if rule == "num_updates":
    return min(d, (1 + n) / (10 + n))
  half_life = min(math.log(0.5) / math.log(d), rampup * n)
  return 0.5 ** (1 / half_life)


def test_the_warm_up_rules_published_values():
  assert float(ema.decay("num_updates", 0.999, 1)) == pytest.approx(2 / 11)  # TF: (1 + n) / (10 + n)
  assert float(ema.decay("num_updates", 0.999, 10**5)) == pytest.approx(0.999)
  # EDM / StyleGAN2-ADA: half-life min(ln 0.5 / ln 0.999 = 692.8, 0.05 n) updates
  assert float(ema.decay("rampup", 0.999, 100)) == pytest.approx(0.5 ** (1 / 5), rel=1e-6)
  assert float(ema.decay("rampup", 0.999, 10**5)) == pytest.approx(0.999, rel=1e-6)
  assert float(ema.decay("none", 0.999, 1)) == pytest.approx(0.999)


@pytest.mark.parametrize("rule,decay", [(r, d) for r in ema.RULES for d in (0.9, 0.999, 0.0)])
def test_ema_after_n_steps_equals_its_closed_form(rule, decay):
  """G's weights move by delta at every update, p_k = p_0 + k delta; then ema_n = p_0 + B_n delta with
  B_k = d_k B_{k-1} + (1 - d_k) k, B_0 = 0 (the weights of an EMA sum to one), d_k by the rule."""
  n, delta = 200, 0.01
  step_by_delta = optax.GradientTransformation(
      lambda params: optax.EmptyState(),
      lambda grads, s, params: (jax.tree.map(lambda p: jnp.full_like(p, delta), params), s))
  gan = GAN(MLPGenerator(2, (16,)), MLPDiscriminator((16,)), step_by_delta, optax.adam(1e-3), (2,), latent_dim=2,
            ema=EMA(decay=decay, warmup=rule), points=True)
  state = gan.init(jax.random.key(0))
  p0 = state.g_params
  update = jax.jit(gan.generator_update, static_argnums=1)
  for i in range(n):
    state, _ = update(state, B, jax.random.key(i))
  b_n = 0.0
  for k in range(1, n + 1):
    d_k = _decay(rule, decay, k, gan.ema.rampup)
    b_n = d_k * b_n + (1 - d_k) * k
  lag = jax.tree.map(lambda e, p: (np.asarray(e, np.float64) - np.asarray(p, np.float64)) / delta, state.ema_params,
                     p0)
  for leaf in jax.tree.leaves(lag):  # B_n, in updates: 200 without EMA, less by the EMA's lag
    np.testing.assert_allclose(leaf, b_n, atol=2e-3)
  if decay == 0.0:
    assert b_n == n and tree_equal(state.ema_params, state.g_params)  # no EMA: the raw weights themselves


def test_ema_decay_zero_makes_sampling_use_the_current_weights():
  gan = tiny_mlp(ema=EMA(decay=0.0))
  state = gan.init(jax.random.key(0))
  state, _ = jax.jit(gan.train_step)(state, {"image": np.zeros((B, 2), np.float32)}, jax.random.key(1))
  assert tree_equal(gan.eval_params(state, jax.random.key(2))["params"], state.g_params)


def _bn_inputs(gan: GAN, params, z):
  """The inputs of each of G's BatchNorm layers, in order, in training mode (the outputs of the layer before)."""
  stats = gan.init(jax.random.key(0)).g_stats  # structure only: training mode normalises by the batch's own
  _, captured = gan.generator.apply({"params": params, "batch_stats": stats}, z, train=True,
                                    capture_intermediates=True, mutable=["batch_stats", "intermediates"])
  inter = captured["intermediates"]
  names = sorted((k for k in inter if not k.startswith("BatchNorm") and k != "__call__"),
                 key=lambda k: int(k.split("_")[-1]))
  return [np.asarray(inter[k]["__call__"][0], np.float64) for k in names]


@pytest.mark.parametrize("make", [lambda: tiny_dcgan(), lambda: tiny_mlp(g_batchnorm=True)], ids=["dcgan", "mlp"])
def test_the_ema_generators_statistics_are_its_own_batch_statistics_on_the_given_latents(make):
  """Standing statistics: each layer's mean and (biased) variance over the batch of the EMA weights' own activations."""
  gan = make()
  state = gan.init(jax.random.key(0))
  # EMA weights apart from the raw ones, and raw running statistics that are nothing like the batch's.
  state = state.replace(ema_params=jax.tree.map(lambda x: x * 1.3 + 0.01, state.g_params),
                        g_stats=jax.tree.map(lambda x: x + 5.0, state.g_stats))
  key = jax.random.key(3)
  params = jax.jit(gan.eval_params, static_argnums=2)(state, key, "ema")
  assert tree_equal(params["params"], state.ema_params)
  z = gan.latents(key, gan.standing_latents)
  inputs = _bn_inputs(gan, state.ema_params, z)
  bn_names = sorted(params["batch_stats"], key=lambda k: int(k.split("_")[-1]))
  assert len(inputs) == len(bn_names) + 1  # every layer but the output is normalised
  for x, name in zip(inputs, bn_names):
    axes = tuple(range(x.ndim - 1))
    np.testing.assert_allclose(params["batch_stats"][name]["mean"], x.mean(axes), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(params["batch_stats"][name]["var"], x.var(axes), rtol=1e-4, atol=1e-5)
  raw = gan.eval_params(state, key, "raw")
  assert tree_equal(raw, {"params": state.g_params, "batch_stats": state.g_stats})


def test_train_step_compiles_once_and_equals_the_unjitted_step():
  gan = tiny_dcgan(d_steps=2)
  traces = []

  def counted(state, batch, key):
    traces.append(1)
    return gan.train_step(state, batch, key)

  step = jax.jit(counted)
  state = jax.jit(gan.init)(jax.random.key(0))
  eager_state, eager_metrics = gan.train_step(state, {"image": images(0)}, jax.random.key(10))
  jit_state, jit_metrics = step(state, {"image": images(0)}, jax.random.key(10))
  for i in range(1, 3):
    jit_state, _ = step(jit_state, {"image": images(i)}, jax.random.key(10 + i))
  assert len(traces) == 1
  one_state, _ = step(state, {"image": images(0)}, jax.random.key(10))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), one_state, eager_state)
  for name, value in eager_metrics.items():
    np.testing.assert_allclose(jit_metrics[name], value, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("loss", sorted(gan_losses.LOSSES))
def test_every_loss_trains_a_finite_step_and_reports_its_parts(loss):
  gan = tiny_mlp(loss=loss, gp_weight=10.0, r1_gamma=1.0, r2_gamma=1.0)
  state = gan.init(jax.random.key(0))
  x = np.random.default_rng(0).normal(size=(B, 2)).astype(np.float32)
  state, metrics = jax.jit(gan.train_step)(state, {"image": x}, jax.random.key(1))
  assert {"d_loss", "g_loss", "d_real", "d_fake", "gp", "r1", "r2", "d_grad_norm", "g_grad_norm", "loss"} <= set(metrics)
  assert all(np.isfinite(float(v)) for v in metrics.values())
  np.testing.assert_allclose(metrics["loss"], metrics["d_loss"] + metrics["g_loss"], rtol=1e-6)
  assert 0 < float(metrics["d_real"]) < 1 and 0 < float(metrics["d_fake"]) < 1


def test_d_loss_metric_equals_the_loss_of_the_first_d_update():
  gan = tiny_mlp(loss="hinge")
  state = gan.init(jax.random.key(0))
  x = np.random.default_rng(1).normal(size=(B, 2)).astype(np.float32)
  key = jax.random.key(2)
  _, metrics = gan.train_step(state, {"image": x}, key)
  d_key, _ = jax.random.split(key)
  z_key, _ = jax.random.split(jax.random.split(d_key, 1)[0])
  fake, _ = gan.generate(state.g_params, state.g_stats, gan.latents(z_key, B), train=True)
  real_logits, _ = gan.discriminate(state.d_params, state.d_stats, x, train=False)
  fake_logits, _ = gan.discriminate(state.d_params, state.d_stats, fake, train=False)
  expected = gan_losses.hinge_discriminator_loss(real_logits, fake_logits)
  np.testing.assert_allclose(metrics["d_loss"], expected, rtol=1e-5)


def test_r1_penalty_in_the_step_is_gamma_over_two_times_r1():
  """The D gradient of the penalised loss equals loss + gamma/2 R1 differentiated by hand."""
  gan = tiny_mlp(r1_gamma=3.0)
  plain = tiny_mlp()
  state = gan.init(jax.random.key(0))
  rng = np.random.default_rng(0)
  real, fake = (rng.normal(size=(B, 2)).astype(np.float32) for _ in range(2))
  total, (_, metrics) = gan.discriminator_loss(state.d_params, {}, real, fake, jax.random.key(1))
  base, _ = plain.discriminator_loss(state.d_params, {}, real, fake, jax.random.key(1))

  def critic(x):
    return gan.discriminate(state.d_params, {}, x, train=False)[0]

  r1 = gan_losses.r1_penalty(critic, real)
  np.testing.assert_allclose(metrics["r1"], r1, rtol=1e-6)
  np.testing.assert_allclose(total, base + 1.5 * r1, rtol=1e-6)


def test_ttur_gives_each_net_its_own_learning_rate():
  gan = GAN(MLPGenerator(2, (16,)), MLPDiscriminator((16,)), optax.sgd(0.0), optax.sgd(0.1), (2,),
            latent_dim=2, points=True)
  state = gan.init(jax.random.key(0))
  new, _ = jax.jit(gan.train_step)(state, {"image": np.ones((B, 2), np.float32)}, jax.random.key(1))
  assert tree_equal(new.g_params, state.g_params) and not tree_equal(new.d_params, state.d_params)


def test_a_cosine_schedule_spans_the_run_for_d_updating_several_times_a_step():
  """With d_steps D updates a step, D's optimizer counts d_steps x num_steps updates: its cosine schedule spans
  them, so D still learns at the run's last step (over num_steps updates it reached 0 halfway and froze D)."""
  from genjax import build  # pylint: disable=g-import-not-at-top
  from tests import conformance  # pylint: disable=g-import-not-at-top
  config = conformance.config_of("gan", "mlp", num_steps=4, **{"optim.schedule": "cosine", "gan.d_steps": 2})
  build.validate(config)
  family = build.family(config)
  state = family.init(jax.random.key(0))
  batch = {"image": np.random.default_rng(0).normal(size=(config.batch_size, 2)).astype(np.float32)}
  step = jax.jit(family.train_step)
  for s in range(4):
    new, _ = step(state, batch, jax.random.key(s))
    assert not tree_equal(new.d_params, state.d_params), s  # D moves at every step, the last one included
    state = new


def test_the_steps_flop_count_holds_each_of_its_d_updates():
  """XLA's cost analysis counts a loop's body once; the D updates are unrolled (up to 8), so the count the loop
  reports for MFU grows by one D update per d_step (a scan gave the same count for d_steps 1, 2 and 5)."""
  from genjax import utilization  # pylint: disable=g-import-not-at-top
  batch = {"image": np.ones((B, 2), np.float32)}

  def flops(d_steps):
    gan = tiny_mlp(d_steps=d_steps)
    return utilization.flops_of(jax.jit(gan.train_step).lower(gan.init(jax.random.key(0)), batch, jax.random.key(1)))

  one, two, three = flops(1), flops(2), flops(3)
  assert two > one and three - two == pytest.approx(two - one, rel=1e-3)


def test_pack_puts_consecutive_examples_side_by_side_on_the_last_axis():
  gan = tiny_mlp(pack=2)
  x = jnp.arange(12.0).reshape(6, 2)
  np.testing.assert_array_equal(gan.pack_examples(x), [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]])
  img = tiny_dcgan(pack=2)
  x = jnp.arange(4 * 2 * 2 * 1.0).reshape(4, 2, 2, 1)
  packed = img.pack_examples(x)
  assert packed.shape == (2, 2, 2, 2)
  np.testing.assert_array_equal(packed[1, ..., 0], x[2, ..., 0])
  np.testing.assert_array_equal(packed[1, ..., 1], x[3, ..., 0])
  with pytest.raises(ValueError, match="packs of 2"):
    gan.pack_examples(jnp.zeros((3, 2)))


def test_packed_discriminator_sees_half_as_many_inputs():
  gan = tiny_mlp(pack=4)
  state = gan.init(jax.random.key(0))
  assert state.d_params["Dense_0"]["kernel"].shape == (8, 16)
  _, metrics = jax.jit(gan.train_step)(state, {"image": np.zeros((B, 2), np.float32)}, jax.random.key(1))
  assert np.isfinite(float(metrics["loss"]))


def test_slerp_ends_at_its_endpoints_and_keeps_the_norm_of_equal_norm_codes():
  z0 = jnp.asarray([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
  z1 = jnp.asarray([[0.0, 1.0, 0.0], [0.0, 2.0, 0.0]])  # the second pair is parallel: a straight line
  path = slerp(z0, z1, jnp.linspace(0.0, 1.0, 5))
  np.testing.assert_allclose(path[:, 0], z0, atol=1e-6)
  np.testing.assert_allclose(path[:, -1], z1, atol=1e-6)
  np.testing.assert_allclose(jnp.linalg.norm(path[0], axis=-1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(path[0, 2], [2**-0.5, 2**-0.5, 0.0], rtol=1e-6)
  np.testing.assert_allclose(path[1], jnp.tile(z0[1], (5, 1)), atol=1e-6)


def test_truncated_latents_lie_in_the_interval():
  z = tiny_dcgan().latents(jax.random.key(0), 1000, truncation=0.5)
  assert float(jnp.max(jnp.abs(z))) <= 0.5 and float(jnp.std(z)) > 0.2


def test_visuals_of_images_and_points():
  gan, state = tiny_dcgan(), None
  state = jax.jit(gan.init)(jax.random.key(0))
  params = gan.eval_params(state, jax.random.key(2))
  grids = jax.jit(functools.partial(gan.visuals, truncation=0.5))(params, jax.random.key(1), images())
  assert grids["samples"].shape == (8, 8, 28, 28, 1) and grids["samples"].dtype == jnp.uint8
  assert grids["interpolations"].shape == (8, 10, 28, 28, 1)
  assert grids["truncated_0.5"].shape == (8, 8, 28, 28, 1)
  toy = tiny_mlp()
  assert toy.visuals(toy.eval_params(toy.init(jax.random.key(0)), jax.random.key(2)), jax.random.key(1), None) == {}  # the data's


def test_generator_batchnorm_for_points_follows_the_same_policy():
  gan = tiny_mlp(g_batchnorm=True)
  state = gan.init(jax.random.key(0))
  assert state.g_stats and not state.d_stats
  new, _ = jax.jit(gan.discriminator_update)(state, jnp.ones((B, 2)), jax.random.key(1))
  assert tree_equal(new.g_stats, state.g_stats)
  new, _ = jax.jit(gan.generator_update, static_argnums=1)(state, B, jax.random.key(1))
  assert not tree_equal(new.g_stats, state.g_stats)


def test_bad_arguments_are_one_line_errors():
  with pytest.raises(ValueError, match="loss: unknown 'vanilla'"):
    tiny_mlp(loss="vanilla")
  with pytest.raises(ValueError, match="ema_decay"):
    tiny_mlp(ema=EMA(decay=1.0))


@pytest.mark.parametrize("config_name", ["gan_ring8", "dcgan_mnist5k"])
def test_a_wasserstein_critic_without_any_lipschitz_constraint_is_refused(config_name):
  """WGAN's loss with neither a penalty nor spectral norm (and no weight clipping) lets D grow without bound."""
  from genjax import build  # pylint: disable=g-import-not-at-top
  from genjax.errors import UserError  # pylint: disable=g-import-not-at-top
  free = {"gan.loss": "wasserstein", "model.d_spectral_norm": False, "gan.gp_weight": 0.0, "gan.r1_gamma": 0.0,
          "gan.r2_gamma": 0.0}
  with pytest.raises(UserError, match=r"^gan.gp_weight: gan.loss 'wasserstein' needs D kept Lipschitz.*; allowed: > 0"):
    build.validate(tiny_config(config_name, **free))
  for constraint in ({"gan.gp_weight": 10.0}, {"gan.r1_gamma": 1.0}, {"model.d_spectral_norm": True}):
    build.validate(tiny_config(config_name, **{**free, **constraint}))


@pytest.mark.parametrize("penalty", ["none", "r1_gamma", "gp_weight"])
def test_a_penalised_dcgan_d_keeps_every_convolution_in_the_layout_xla_cpu_runs_fast(penalty):
  """A penalty on D's input gradient differentiates D twice; 'fast''s strided convolutions' second derivatives
  would leave NHWC/HWIO (slow inside the D updates' scan on a CPU), so such a D computes them as products."""
  from genjax import build  # pylint: disable=g-import-not-at-top
  from genjax import random as grandom  # pylint: disable=g-import-not-at-top
  fields = {"model.g_width": 16, "model.d_width": 16, "model.latent_dim": 8}
  if penalty != "none":
    fields.update({f"gan.{penalty}": 1.0, "gan.loss": "wasserstein" if penalty == "gp_weight" else "non_saturating"})
  family = build.family(tiny_config("dcgan_mnist5k", **fields))
  keys = grandom.streams(0)
  state = jax.eval_shape(family.init, keys.init)
  batch = {"image": jnp.zeros((16, 28, 28, 1), jnp.uint8)}
  layouts = convolution_layouts(jax.make_jaxpr(family.train_step)(state, batch, keys.train).jaxpr)
  assert layouts and all(layout == NHWC for layout in layouts), [layout for layout in layouts if layout != NHWC]
