"""The GAN family: BatchNorm policy, EMA, packing, interpolation, one compile, jit == no jit."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax.losses import gan as gan_losses
from genjax.models.gan import GAN, slerp
from genjax.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from genjax.nets.mlp_gan import MLPDiscriminator, MLPGenerator

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


def test_ema_after_n_steps_equals_its_closed_form():
  """G's weights jump to a constant c; then ema_n = d^n e_0 + (1 - d^n) c."""
  decay, n, c = 0.9, 7, 0.25
  to_c = optax.GradientTransformation(
      lambda params: optax.EmptyState(),
      lambda grads, s, params: (jax.tree.map(lambda p: c - p, params), s))
  gan = GAN(MLPGenerator(2, (16,)), MLPDiscriminator((16,)), to_c, optax.adam(1e-3), (2,), latent_dim=2,
            ema_decay=decay, points=True)
  state = gan.init(jax.random.key(0))
  e0 = state.ema_params
  update = jax.jit(gan.generator_update, static_argnums=1)
  for i in range(n):
    state, _ = update(state, B, jax.random.key(i))
  expected = jax.tree.map(lambda e: decay**n * e + (1 - decay**n) * c, e0)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), state.ema_params, expected)
  assert not tree_equal(state.ema_params, state.g_params)


def test_ema_decay_zero_makes_sampling_use_the_current_weights():
  gan = tiny_mlp(ema_decay=0.0)
  state = gan.init(jax.random.key(0))
  state, _ = jax.jit(gan.train_step)(state, {"image": np.zeros((B, 2), np.float32)}, jax.random.key(1))
  assert tree_equal(gan.eval_params(state)["params"], state.g_params)


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
  grids = jax.jit(functools.partial(gan.visuals, truncation=0.5))(gan.eval_params(state), jax.random.key(1),
                                                                 images())
  assert grids["samples"].shape == (8, 8, 28, 28, 1) and grids["samples"].dtype == jnp.uint8
  assert grids["interpolations"].shape == (8, 10, 28, 28, 1)
  assert grids["truncated_0.5"].shape == (8, 8, 28, 28, 1)
  toy = tiny_mlp()
  assert toy.visuals(toy.eval_params(toy.init(jax.random.key(0))), jax.random.key(1), None) == {}  # the data's


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
    tiny_mlp(ema_decay=1.0)
