"""Closed-form tests of genjax.losses.gan: GAN losses and gradient penalties.

Every library value is checked against an independent float64 reference
(numpy formulas written with probabilities, quadrature of the JSD, closed-form
input gradients of linear and quadratic critics). Keys and data are fixed.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.losses import gan

B = 6
REAL = np.array([-3.0, -1.5, -0.2, 0.0, 0.7, 2.5])
FAKE = np.array([2.0, -2.7, 0.4, -0.9, 1.3, -0.05, 3.1])  # its own batch size


def _sigmoid64(x):
  x = np.asarray(x, np.float64)
  return 1.0 / (1.0 + np.exp(-x))


# name -> float64 reference written from the paper's formula (probabilities,
# not softplus), for (real, fake) or (fake,) arguments.
_D_REFERENCE = {
    "minimax_discriminator_loss": lambda r, f: (
        -np.mean(np.log(_sigmoid64(r))) - np.mean(np.log(1.0 - _sigmoid64(f)))),
    "hinge_discriminator_loss": lambda r, f: (
        np.mean(np.maximum(0.0, 1.0 - r)) + np.mean(np.maximum(0.0, 1.0 + f))),
    "wasserstein_discriminator_loss": lambda r, f: np.mean(f) - np.mean(r),
    "least_squares_discriminator_loss": lambda r, f: (
        0.5 * np.mean((r - 1.0) ** 2) + 0.5 * np.mean(f ** 2)),
}
_G_REFERENCE = {
    "minimax_generator_loss": lambda f: np.mean(np.log(1.0 - _sigmoid64(f))),
    "non_saturating_generator_loss": lambda f: -np.mean(np.log(_sigmoid64(f))),
    "hinge_generator_loss": lambda f: -np.mean(f),
    "wasserstein_generator_loss": lambda f: -np.mean(f),
    "least_squares_generator_loss": lambda f: 0.5 * np.mean((f - 1.0) ** 2),
}


@pytest.mark.parametrize("column", [False, True], ids=["B", "Bx1"])
@pytest.mark.parametrize("name", sorted(_D_REFERENCE))
def test_discriminator_loss_matches_float64_formula(name, column):
  real, fake = REAL, FAKE
  if column:
    real, fake = real[:, None], fake[:, None]
  got = getattr(gan, name)(jnp.asarray(real, jnp.float32), jnp.asarray(fake, jnp.float32))
  assert got.shape == ()
  np.testing.assert_allclose(float(got), _D_REFERENCE[name](real, fake), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("column", [False, True], ids=["B", "Bx1"])
@pytest.mark.parametrize("name", sorted(_G_REFERENCE))
def test_generator_loss_matches_float64_formula(name, column):
  fake = FAKE[:, None] if column else FAKE
  got = getattr(gan, name)(jnp.asarray(fake, jnp.float32))
  assert got.shape == ()
  np.testing.assert_allclose(float(got), _G_REFERENCE[name](fake), rtol=1e-6, atol=1e-6)


_EXTREME = jnp.array([100.0, -100.0, 100.0, -100.0], jnp.float32)


@pytest.mark.parametrize("name", sorted(_D_REFERENCE))
def test_discriminator_loss_and_gradient_finite_at_extreme_logits(name):
  loss_fn = getattr(gan, name)
  for real, fake in [(_EXTREME, -_EXTREME), (_EXTREME, _EXTREME)]:
    value, (g_real, g_fake) = jax.value_and_grad(loss_fn, argnums=(0, 1))(real, fake)
    assert np.isfinite(float(value))
    assert np.all(np.isfinite(g_real)) and np.all(np.isfinite(g_fake))


@pytest.mark.parametrize("name", sorted(_G_REFERENCE))
def test_generator_loss_and_gradient_finite_at_extreme_logits(name):
  value, grad = jax.value_and_grad(getattr(gan, name))(_EXTREME)
  assert np.isfinite(float(value))
  assert np.all(np.isfinite(grad))


def test_minimax_discriminator_loss_at_confident_logits():
  plus = jnp.full((B,), 100.0, jnp.float32)
  # A confidently right D costs ~0 (softplus(-100) ~ 4e-44); a confidently
  # wrong one costs 100 nats per term (a naive log(sigmoid) gives inf here).
  assert abs(float(gan.minimax_discriminator_loss(plus, -plus))) < 1e-30
  np.testing.assert_allclose(float(gan.minimax_discriminator_loss(-plus, plus)), 200.0, rtol=1e-6)


def test_minimax_generator_loss_saturates_and_non_saturating_does_not():
  fake = jnp.full((B,), -100.0, jnp.float32)  # D rejects every fake
  g_minimax = np.asarray(jax.grad(gan.minimax_generator_loss)(fake), np.float64)
  g_non_sat = np.asarray(jax.grad(gan.non_saturating_generator_loss)(fake), np.float64)
  # d/dl of -mean(softplus(l)) = -sigmoid(l) / B ~ -6e-45: the vanishing
  # gradient of Goodfellow et al. 2014, Section 3.
  np.testing.assert_allclose(g_minimax, -_sigmoid64(-100.0) / B, atol=1e-30)
  assert np.all(np.abs(g_minimax) < 1e-30)
  # d/dl of mean(softplus(-l)) = -sigmoid(-l) / B ~ -1 / B.
  np.testing.assert_allclose(g_non_sat, -1.0 / B, rtol=1e-6)
  # And the minimax generator loss is the negated fake term of the D loss.
  logits = jnp.asarray(FAKE, jnp.float32)
  np.testing.assert_allclose(
      float(gan.minimax_generator_loss(logits)),
      -float(gan.minimax_discriminator_loss(jnp.full((1,), jnp.inf), logits)), rtol=1e-6)


# -- The optimal discriminator, by quadrature ---------------------------------

GRID = np.linspace(-10.0, 10.0, 20_001)
DX = GRID[1] - GRID[0]


def _normal_pdf64(x, mean, std):
  return np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2.0 * math.pi))


P = _normal_pdf64(GRID, 0.0, 1.0)
Q = _normal_pdf64(GRID, 1.0, 1.5)


@jax.jit
def _library_terms(logits_N):
  """The library's per-point terms: -log D(x) = loss(l, fake=-inf), -log(1 - D(x))."""
  inf = jnp.full((1,), jnp.inf, logits_N.dtype)
  per_point = lambda l: (gan.minimax_discriminator_loss(l[None], -inf),
                         gan.minimax_discriminator_loss(inf, l[None]))
  return jax.vmap(per_point)(logits_N)


def _value(logits):
  """V(D) = int p log D + q log(1 - D) dx, D = sigmoid(l), by the library's terms.

  The expectations of minimax_discriminator_loss become quadrature sums:
  V = -(int p softplus(-l) + int q softplus(l)). The terms are the library's
  (float32); the weighted sums are float64.
  """
  neg_log_d, neg_log_1md = _library_terms(jnp.asarray(logits, jnp.float32))
  return -float(np.sum(P * np.asarray(neg_log_d, np.float64)
                       + Q * np.asarray(neg_log_1md, np.float64)) * DX)


def test_library_terms_are_the_log_probabilities():
  logits = np.linspace(-8.0, 8.0, 41)
  neg_log_d, neg_log_1md = _library_terms(jnp.asarray(logits, jnp.float32))
  np.testing.assert_allclose(neg_log_d, -np.log(_sigmoid64(logits)), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(neg_log_1md, -np.log(1.0 - _sigmoid64(logits)), rtol=1e-6, atol=1e-6)


def test_optimal_discriminator_attains_minus_log4_plus_2jsd():
  # JSD by quadrature of its definition, float64, nothing from the library.
  m = 0.5 * (P + Q)
  jsd = 0.5 * np.sum(P * np.log(P / m)) * DX + 0.5 * np.sum(Q * np.log(Q / m)) * DX
  assert 0.01 < jsd < math.log(2.0)  # the densities differ, but not totally
  l_star = np.log(P) - np.log(Q)  # D* = p / (p + q)
  np.testing.assert_allclose(_value(l_star), -math.log(4.0) + 2.0 * jsd, atol=1e-6)


@pytest.mark.parametrize("perturbation", [
    lambda x: 0.1 + 0 * x, lambda x: -0.1 + 0 * x, lambda x: 0.1 * np.sin(x),
    lambda x: 0.1 * x,
], ids=["+0.1", "-0.1", "0.1sin", "0.1x"])
def test_perturbing_the_optimal_discriminator_lowers_the_value(perturbation):
  l_star = np.log(P) - np.log(Q)
  v_star = _value(l_star)
  v_perturbed = _value(l_star + perturbation(GRID))
  # The loss is quadratic at its optimum: a 0.1 change loses ~1e-3 nats, far
  # above the ~1e-7 float32 error of the terms.
  assert v_perturbed < v_star - 1e-5


# -- Gradient penalties on critics with closed-form input gradients -----------

_gradient_penalty = jax.jit(gan.gradient_penalty, static_argnums=0)
_r1 = jax.jit(gan.r1_penalty, static_argnums=0)
_r2 = jax.jit(gan.r2_penalty, static_argnums=0)
_zero_centered = jax.jit(gan.zero_centered_gradient_penalty, static_argnums=0)


def _linear_critic(w_D, x_BxD):
  return x_BxD.reshape(x_BxD.shape[0], -1) @ w_D


@pytest.mark.parametrize("shape", [(7, 5), (7, 4, 4, 1)], ids=["BxD", "BxHxWxC"])
def test_gradient_penalty_on_linear_critic_is_norm_minus_one_squared(shape):
  rng = np.random.default_rng(0)
  d = int(np.prod(shape[1:]))
  w = rng.normal(size=d).astype(np.float32)
  real = jnp.asarray(rng.normal(size=shape), jnp.float32)
  fake = jnp.asarray(rng.normal(size=shape), jnp.float32)
  norm = np.linalg.norm(w.astype(np.float64))
  critic = functools.partial(_linear_critic, jnp.asarray(w))
  for seed in range(3):
    got = float(_gradient_penalty(critic, real, fake, jax.random.key(seed)))
    np.testing.assert_allclose(got, (norm - 1.0) ** 2, rtol=1e-5)
  unit_critic = functools.partial(_linear_critic, jnp.asarray(w / norm, jnp.float32))
  assert float(_gradient_penalty(unit_critic, real, fake, jax.random.key(0))) < 1e-10


def test_gradient_penalty_accepts_column_outputs_and_rejects_pooled_ones():
  x = jnp.ones((3, 2), jnp.float32)
  w = jnp.array([3.0, 4.0], jnp.float32)  # ||w|| = 5
  column = lambda x: (x @ w)[:, None]
  np.testing.assert_allclose(
      float(gan.gradient_penalty(column, x, 0 * x, jax.random.key(0))), 16.0, rtol=1e-6)
  with pytest.raises(ValueError, match="critic_fn"):
    gan.gradient_penalty(lambda x: jnp.sum(x @ w), x, 0 * x, jax.random.key(0))


def test_gradient_penalty_is_differentiable_where_the_critic_is_flat():
  x = jnp.ones((3, 2), jnp.float32)
  grad = jax.grad(lambda w: gan.gradient_penalty(
      lambda x: x @ w, x, 0 * x, jax.random.key(0)))(jnp.zeros((2,), jnp.float32))
  assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("shape", [(5, 16), (5, 4, 4, 1)], ids=["BxD", "BxHxWxC"])
def test_r1_and_r2_on_quadratic_critic_match_closed_form(shape):
  rng = np.random.default_rng(1)
  m = rng.normal(size=(16, 16))
  a = 0.5 * (m + m.T)  # symmetric, so grad 0.5 x^T A x = A x
  a32 = jnp.asarray(a, jnp.float32)

  def critic(x):
    x_BxD = x.reshape(x.shape[0], -1)
    return 0.5 * jnp.einsum("bi,ij,bj->b", x_BxD, a32, x_BxD)

  real = rng.normal(size=shape).astype(np.float32)
  fake = rng.normal(size=shape).astype(np.float32)

  def expected(x):
    ax = x.reshape(x.shape[0], -1).astype(np.float64) @ a
    return np.mean(np.sum(ax ** 2, axis=1))

  assert not np.isclose(expected(real), expected(fake))
  np.testing.assert_allclose(float(_r1(critic, jnp.asarray(real))), expected(real), rtol=1e-5)
  np.testing.assert_allclose(float(_r2(critic, jnp.asarray(fake))), expected(fake), rtol=1e-5)
  np.testing.assert_allclose(
      float(_zero_centered(critic, jnp.asarray(fake))), expected(fake), rtol=1e-5)


def test_gradient_penalty_uses_its_key():
  rng = np.random.default_rng(2)
  w = jnp.asarray(rng.normal(size=(3,)), jnp.float32)
  critic = lambda x: jnp.sum(jnp.tanh(2.0 * x * w), axis=-1)
  real = jnp.asarray(rng.normal(size=(8, 3)), jnp.float32)
  fake = jnp.asarray(rng.normal(size=(8, 3)), jnp.float32)
  a1 = float(_gradient_penalty(critic, real, fake, jax.random.key(1)))
  a2 = float(_gradient_penalty(critic, real, fake, jax.random.key(1)))
  b = float(_gradient_penalty(critic, real, fake, jax.random.key(2)))
  assert a1 == a2
  assert abs(a1 - b) > 1e-4


# f(x) = 0.5 x^2 + 2 x on 1-D examples: grad = x + 2. With real = 1, fake = 0,
# x_hat = eps and the penalty is (eps + 2 - 1)^2 = (1 + eps)^2, so eps is
# recovered without ambiguity as sqrt(penalty) - 1 for any eps > -1.
def _shifted_quadratic(x_Bx1):
  return jnp.sum(0.5 * x_Bx1 ** 2 + 2.0 * x_Bx1, axis=-1)


@functools.partial(jax.jit, static_argnums=0)
def _penalties_over_keys(batch, seed):
  real = jnp.ones((batch, 1), jnp.float32)
  keys = jax.random.split(jax.random.key(seed), 256)
  return jax.vmap(lambda k: gan.gradient_penalty(_shifted_quadratic, real, 0 * real, k))(keys)


def test_gradient_penalty_eps_is_uniform_on_the_unit_interval():
  eps = np.sqrt(np.asarray(_penalties_over_keys(1, 3), np.float64)) - 1.0
  assert np.all(eps >= 0.0) and np.all(eps <= 1.0)
  # Spread over the whole interval, not a constant: U[0, 1] has mean 1/2.
  assert eps.min() < 0.05 and eps.max() > 0.95
  assert abs(eps.mean() - 0.5) < 4 * math.sqrt(1 / 12 / eps.size)


def test_gradient_penalty_draws_one_eps_per_example():
  # With a batch of 64, the per-example draws average out: the penalty varies
  # from key to key with std ~ 0.87 / 8 ~ 0.11 (one eps for the whole batch
  # would give ~ 0.87). Its mean is E[(1 + eps)^2] = 7 / 3.
  penalties = np.asarray(_penalties_over_keys(64, 4), np.float64)
  assert penalties.std() < 0.2
  assert abs(penalties.mean() - 7.0 / 3.0) < 4 * 0.11 / math.sqrt(penalties.size)


def test_gradient_penalty_interpolates_each_example_along_one_segment():
  # real = (1, 0), fake = (0, 1): every point of the segment has x1 + x2 = 1,
  # so f(x) = 0.5 (x1 + x2)^2 has gradient (1, 1) there and the penalty is
  # (sqrt 2 - 1)^2 for every key. An eps drawn per coordinate leaves the
  # segment and changes it.
  real = jnp.tile(jnp.array([[1.0, 0.0]], jnp.float32), (16, 1))
  critic = lambda x: 0.5 * jnp.sum(x, axis=-1) ** 2
  for seed in range(3):
    got = float(_gradient_penalty(critic, real, real[:, ::-1], jax.random.key(seed)))
    np.testing.assert_allclose(got, (math.sqrt(2.0) - 1.0) ** 2, rtol=1e-5)


def test_gradient_penalty_with_one_key_per_example_is_exact_per_slice():
  """With per-example keys, example i's eps comes from key i alone: the mean over two halves is the whole's."""
  keys_B = jax.random.split(jax.random.key(5), 8)
  real = jnp.ones((8, 1), jnp.float32)
  penalty = lambda k, r: gan.gradient_penalty(_shifted_quadratic, r, 0 * r, k)  # noqa: E731
  whole = float(penalty(keys_B, real))
  halves = 0.5 * (float(penalty(keys_B[:4], real[:4])) + float(penalty(keys_B[4:], real[4:])))
  np.testing.assert_allclose(halves, whole, rtol=1e-6)
  # Each penalty is (1 + eps_i)^2 with eps_i ~ U[0, 1] from key i.
  eps_1 = jax.random.uniform(keys_B[1], (1,))
  np.testing.assert_allclose(float(penalty(keys_B[1:2], real[:1])), float((1 + eps_1[0]) ** 2), rtol=1e-6)
  with pytest.raises(ValueError, match=r"key: one key or one per example \(8\), got keys of shape \(3,\)"):
    penalty(keys_B[:3], real)


# -- The registry ---------------------------------------------------------------

def test_losses_registry():
  assert set(gan.LOSSES) == {"minimax", "non_saturating", "hinge", "wasserstein", "least_squares"}
  real = jnp.asarray(REAL, jnp.float32)
  fake = jnp.asarray(FAKE, jnp.float32)
  for name, (d_loss, g_loss) in gan.LOSSES.items():
    assert np.isfinite(float(d_loss(real, fake))), name
    assert np.isfinite(float(g_loss(fake))), name
  assert gan.LOSSES["minimax"] == (gan.minimax_discriminator_loss, gan.minimax_generator_loss)
  assert gan.LOSSES["non_saturating"] == (
      gan.minimax_discriminator_loss, gan.non_saturating_generator_loss)
  assert gan.LOSSES["hinge"] == (gan.hinge_discriminator_loss, gan.hinge_generator_loss)
  assert gan.LOSSES["wasserstein"] == (
      gan.wasserstein_discriminator_loss, gan.wasserstein_generator_loss)
  assert gan.LOSSES["least_squares"] == (
      gan.least_squares_discriminator_loss, gan.least_squares_generator_loss)


def test_all_is_complete():
  public = {n for n in dir(gan) if not n.startswith("_") and n not in {"jax", "jnp"}}
  assert set(gan.__all__) == public
