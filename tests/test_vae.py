import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax.models.vae import VAE
from genjax.nets import vae as nets

SHAPE = (28, 28, 1)


def make_vae(arch="mlp", beta=1.0, binarize=True, eval_chunk=100, latent=4):
  if arch == "mlp":
    enc, dec = nets.MLPEncoder(latent, (32,)), nets.MLPDecoder(SHAPE, (32,))
  else:
    enc, dec = nets.ConvEncoder(latent, (4, 8), (16,)), nets.ConvDecoder(SHAPE, (4, 8), (16,))
  return VAE(encoder=enc, decoder=dec, optimizer=optax.adam(1e-2), image_shape=SHAPE, latent_dim=latent,
             beta=beta, binarize=binarize, eval_chunk=eval_chunk)


def images(n, seed=0):
  return np.asarray(jax.random.randint(jax.random.key(seed), (n, *SHAPE), 0, 256), np.uint8)


def assert_trees_close(a, b, rtol=1e-6, atol=1e-6):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_jit_and_no_jit_steps_agree(arch):
  vae = make_vae(arch)
  state0 = vae.init(jax.random.key(0))
  batches = [{"image": images(8, s)} for s in range(2)]
  eager, compiled = state0, jax.tree.map(jnp.copy, state0)
  step = jax.jit(vae.train_step)
  for i, batch in enumerate(batches):
    eager, m_eager = vae.train_step(eager, batch, jax.random.key(10 + i))
    compiled, m_jit = step(compiled, batch, jax.random.key(10 + i))
  assert int(eager.step) == int(compiled.step) == 2
  assert_trees_close(eager.params, compiled.params, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(m_eager["loss"], m_jit["loss"], rtol=1e-5)
  # The step moved the parameters.
  delta = jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), state0.params, eager.params))
  assert max(delta) > 1e-3


def test_compiled_step_is_traced_once_across_steps():
  vae = make_vae()
  traces = []

  def step(state, batch, key):
    traces.append(1)
    return vae.train_step(state, batch, key)

  step_fn = jax.jit(step, donate_argnums=0)
  state = vae.init(jax.random.key(0))
  for i in range(4):
    state, _ = step_fn(state, {"image": images(8, i)}, jax.random.fold_in(jax.random.key(1), i))
  assert len(traces) == 1 and int(state.step) == 4


def test_loss_is_reconstruction_plus_beta_kl():
  x = {"image": images(8)}
  for beta in (1.0, 0.25):
    vae = make_vae(beta=beta)
    state = vae.init(jax.random.key(0))
    _, m = vae.train_step(state, x, jax.random.key(3))
    np.testing.assert_allclose(m["neg_elbo"], m["recon"] + m["kl"], rtol=1e-6)
    np.testing.assert_allclose(m["loss"], m["recon"] + beta * m["kl"], rtol=1e-6)
    assert m["kl"] > 0 and m["grad_norm"] > 0


def test_training_lowers_the_loss_on_a_fixed_batch():
  vae = make_vae("conv")
  state = vae.init(jax.random.key(0))
  # Half-black, half-white images: easy to fit.
  image = np.zeros((16, *SHAPE), np.uint8)
  image[:8, :14] = 255
  image[8:, 14:] = 255
  step = jax.jit(vae.train_step)
  _, first = step(state, {"image": image}, jax.random.key(0))
  for i in range(60):
    state, m = step(state, {"image": image}, jax.random.key(i))
  assert float(m["loss"]) < 0.5 * float(first["loss"])


def test_dynamic_binarisation_draws_bernoulli_pixels():
  vae = make_vae()
  x = jnp.full((4, *SHAPE), 0.3)
  keys = jax.random.split(jax.random.key(0), 4)
  drawn = vae.observe(x, keys)
  assert set(np.unique(drawn).tolist()) == {0.0, 1.0}
  assert abs(float(drawn.mean()) - 0.3) < 4 * np.sqrt(0.3 * 0.7 / drawn.size)
  # Pixels that are exactly 0 or 1 stay put; without binarisation nothing changes.
  edge = jnp.concatenate([jnp.zeros((2, *SHAPE)), jnp.ones((2, *SHAPE))])
  np.testing.assert_array_equal(vae.observe(edge, keys), edge)
  np.testing.assert_array_equal(make_vae(binarize=False).observe(x, keys), x)


def test_scale_and_unscale_round_trip_uint8():
  vae = make_vae()
  x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
  assert float(vae.scale(x).max()) == 1.0 and float(vae.scale(x).min()) == 0.0
  np.testing.assert_array_equal(vae.unscale(vae.scale(x)), x)


def test_same_key_same_samples_and_other_key_other_samples():
  vae = make_vae()
  params = vae.init(jax.random.key(0)).params
  sample = jax.jit(vae.sample, static_argnums=2)
  a, b = sample(params, jax.random.key(5), 6), sample(params, jax.random.key(5), 6)
  c = sample(params, jax.random.key(6), 6)
  np.testing.assert_array_equal(a, b)
  assert float(jnp.max(jnp.abs(a - c))) > 1e-3
  assert a.shape == (6, *SHAPE) and float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def test_evaluation_iwae_below_elbo_and_invariant_to_batching_and_chunks():
  vae = make_vae()
  params = vae.init(jax.random.key(0)).params
  x = images(6)
  key = jax.random.key(9)
  vae = dataclasses.replace(vae, iwae_k=20)
  whole = vae.evaluate(params, x, key)
  # Same examples in two batches (offsets) and in chunks of 7 samples: same numbers.
  small = dataclasses.replace(vae, eval_chunk=7)
  parts = [small.evaluate(params, x[:4], key, offset=0), small.evaluate(params, x[4:], key, offset=4)]
  for name in ("neg_elbo", "nll"):
    np.testing.assert_allclose(np.concatenate([p[name] for p in parts]), whole[name], rtol=1e-5)
  assert np.all(whole["nll"] <= whole["neg_elbo"] + 1e-4)
  assert np.all(whole["neg_elbo"] - whole["nll"] > 1e-3)  # an untrained encoder leaves a gap
  # One importance sample: the bound is the single-sample ELBO.
  one = dataclasses.replace(vae, iwae_k=1).evaluate(params, x, key)
  np.testing.assert_allclose(one["nll"], one["neg_elbo"], rtol=1e-6)


def test_visuals_show_originals_next_to_reconstructions():
  vae = make_vae()
  params = vae.init(jax.random.key(0)).params
  x = images(32)
  grids = jax.jit(vae.visuals)(params, jax.random.key(1), x)
  assert grids["samples"].shape == (8, 8, *SHAPE) and grids["samples"].dtype == jnp.uint8
  recon = np.asarray(grids["reconstructions"])
  assert recon.shape == (8, 8, *SHAPE)
  np.testing.assert_array_equal(recon[0], x[:8])  # row 0: originals
  np.testing.assert_array_equal(recon[2], x[8:16])
  np.testing.assert_array_equal(recon[1], np.asarray(vae.unscale(vae.reconstruct(params, vae.scale(x[:8])))))
  inter = np.asarray(grids["interpolations"])
  assert inter.shape == (8, 12, *SHAPE)
  np.testing.assert_array_equal(inter[:, 0], x[:8])
  np.testing.assert_array_equal(inter[:, -1], x[8:16])
