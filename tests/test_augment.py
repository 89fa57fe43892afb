"""Augmentation (genjax.augment): the input pipeline's random transforms, DiffAugment in the GAN step, and the
small-data subsets of mnist5k.

The properties every family must keep under augmentation (1 and 8 devices augment the same examples the same
way; a resumed run augments as an uninterrupted one) are checked in the conformance suite, whose device and
resume runs augment their images (tests/conformance.py, AUGMENT).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import ada, augment, build
from genjax.data import mnist5k
from genjax.errors import UserError
from tests.helpers import tiny_config
from tests.test_gan import tiny_dcgan

B = 6


def digits(n=B):
  return jnp.asarray(mnist5k.load_mnist5k("test")["image"][::50][:n])


def keys(n=B, seed=0):
  return jax.random.split(jax.random.key(seed), n)


def test_the_identity_changes_nothing_bit_for_bit():
  x = digits()
  assert augment.augment_images(keys(), x, augment.Policy()) is x  # off: not even traced
  identity = augment.transform_matrix(False, 0.0, 1.0, jnp.zeros(2), 28, 28)
  out = augment.warp(x.astype(jnp.float32), jnp.broadcast_to(identity, (B, 2, 3)))
  np.testing.assert_array_equal(out, x.astype(np.float32))


def test_each_transform_is_the_exact_array_operation():
  """A quarter turn is np.rot90 (counter-clockwise), a flip reverses the columns, a whole-pixel shift moves the
  image and lets black in, a zoom by 2 reads the centre's pixels twice as far apart."""
  x = jnp.asarray(np.random.default_rng(0).random((1, 6, 6, 2)), jnp.float32)

  def warped(*args):
    return np.asarray(augment.warp(x, augment.transform_matrix(*args, 6, 6)[None])[0])

  np.testing.assert_allclose(warped(False, np.pi / 2, 1.0, jnp.zeros(2)), np.rot90(x[0]), atol=1e-6)
  np.testing.assert_array_equal(warped(True, 0.0, 1.0, jnp.zeros(2)), x[0, :, ::-1])
  shifted = np.zeros_like(x[0])
  shifted[1:, 2:] = x[0, :-1, :-2]
  np.testing.assert_array_equal(warped(False, 0.0, 1.0, jnp.array([1.0, 2.0])), shifted)
  # Zoom 2 about the centre (2.5, 2.5): output pixel 3 reads input 2.75, between pixels 2 and 3.
  np.testing.assert_allclose(warped(False, 0.0, 2.0, jnp.zeros(2))[3, 3], 0.25 * (
      0.25 * x[0, 2, 2] + 0.75 * x[0, 2, 3]) + 0.75 * (0.25 * x[0, 3, 2] + 0.75 * x[0, 3, 3]), rtol=1e-5)


def test_a_translation_alone_moves_each_image_by_whole_pixels_without_blurring_it():
  x = digits()
  moved = np.asarray(augment.augment_images(keys(), x, augment.Policy(translate=0.1)))
  padded = np.pad(np.asarray(x), ((0, 0), (3, 3), (3, 3), (0, 0)))  # 0.1 of 28 pixels: at most 3 after rounding
  for i in range(B):
    found = [(dr, dc) for dr in range(-3, 4) for dc in range(-3, 4)
             if np.array_equal(moved[i], padded[i, 3 + dr:31 + dr, 3 + dc:31 + dc])]
    assert found and found != [(0, 0)], i


def _products_outside_full_precision(fn, *args):
  """The matrix products of fn's trace not at full float32 precision."""
  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "dot_general" and eqn.params["precision"] != (jax.lax.Precision.HIGHEST,) * 2:
        yield eqn
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        yield from walk(sub)
  return list(walk(jax.make_jaxpr(fn)(*args).jaxpr))


def test_the_geometry_and_colour_products_run_at_full_float32_precision():
  """On a TPU (one bfloat16 pass) or a GPU (TF32) the default precision would move the sampling points."""
  x = digits().astype(jnp.float32)
  policy = augment.Policy(rotate=10.0, scale=0.1, translate=0.1)
  assert not _products_outside_full_precision(lambda x: augment.augment_images(keys(), x, policy), x)
  rgb = jnp.concatenate([x, x, x], axis=-1) / 127.5 - 1
  products = _products_outside_full_precision(lambda x: ada.ada_augment(keys(), x, jnp.float32(0.5)), rgb)
  assert not products, products


def test_the_same_key_gives_the_same_transform_and_others_differ():
  x = digits()
  policy = augment.Policy(rotate=15.0, scale=0.1, translate=0.1)
  a = augment.augment_images(keys(), x, policy)
  np.testing.assert_array_equal(a, augment.augment_images(keys(), x, policy))
  b = augment.augment_images(keys(seed=1), x, policy)
  assert all(not np.array_equal(a[i], b[i]) for i in range(B))
  assert a.dtype == np.uint8 and not np.array_equal(a, x)


def test_the_drawn_parameters_fill_their_ranges():
  """Angles uniform in +-rotate (the matrix's entries give them back), zooms in [1/(1+s), 1+s], shifts in
  +-translate of the side, and about half the images flipped."""
  policy = augment.Policy(flip=True, rotate=20.0, scale=0.25, translate=0.1)
  m = np.asarray(augment.affine_matrices(keys(4000), policy, 28, 28))
  det = np.linalg.det(m[:, :, :2])  # (flip: -1) / zoom**2
  zoom = 1 / np.sqrt(np.abs(det))
  assert abs(np.mean(det < 0) - 0.5) < 0.03
  assert 1 / 1.25 - 1e-4 < zoom.min() < 1 / 1.25 + 0.01 and 1.25 - 0.02 < zoom.max() < 1.25 + 1e-4
  np.testing.assert_allclose(np.mean(np.log(zoom)), 0.0, atol=0.01)  # zooming in as likely as out
  angle = np.degrees(np.arctan2(m[:, 0, 1], m[:, 0, 0]))
  assert 19.5 < np.abs(angle).max() <= 20.0 + 1e-4 and abs(np.mean(angle)) < 0.5


def test_augment_batch_draws_by_global_index_so_a_slice_gets_the_whole_batchs_draws():
  x = digits()
  policy = augment.Policy(rotate=30.0, translate=0.2)
  whole = augment.augment_batch({"image": x, "label": jnp.arange(B)}, jax.random.key(3), policy)
  ks = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(jax.random.fold_in(jax.random.key(3), augment.AUGMENT),
                                                      jnp.arange(B))
  np.testing.assert_array_equal(whole["image"][2:5], augment.augment_images(ks[2:5], x[2:5], policy))
  np.testing.assert_array_equal(whole["label"], np.arange(B))


def test_a_config_with_augmentation_builds_a_family_whose_step_sees_augmented_images():
  config = tiny_config("dcgan_mnist5k", **{"dataset.augment_rotate": 20.0})
  build.validate(config)
  family = build.family(config)
  assert isinstance(family, augment.Augmented) and family.policy == augment.Policy(rotate=20.0)
  assert family.num_classes == 0 and family.scale is not None  # the family's own attributes
  plain = build.family(tiny_config("dcgan_mnist5k"))
  state = plain.init(jax.random.key(0))
  batch = {"image": np.asarray(mnist5k.load_mnist5k("test")["image"][:16]), "label": np.zeros(16, np.int32)}
  key = jax.random.key(5)
  got, _ = jax.jit(family.train_step)(state, batch, key)
  want, _ = jax.jit(plain.train_step)(state, augment.augment_batch(batch, key, family.policy), key)
  unaugmented, _ = jax.jit(plain.train_step)(state, batch, key)
  leaves = lambda s: jax.tree.leaves(s.d_params)
  assert all(np.array_equal(a, b) for a, b in zip(leaves(got), leaves(want)))
  assert not all(np.array_equal(a, b) for a, b in zip(leaves(got), leaves(unaugmented)))


@pytest.mark.parametrize("field,value,message", [
    ("dataset.augment_rotate", 200.0, r"dataset.augment_rotate: must be in \[0, 180\], got 200.0"),
    ("dataset.augment_translate", -0.1, "dataset.augment_translate: must be >= 0, got -0.1"),
    ("dataset.train_examples", 5000, "dataset.train_examples: mnist5k has 4500 training digits"),
    ("dataset.train_examples", 0, "dataset.train_examples: must be"),
    ("gan.diffaugment", "color,zoom", "gan.diffaugment: '' or transforms joined by commas"),
    ("gan.diffaugment", "cutout,cutout", "gan.diffaugment: '' or transforms joined by commas, each once"),
])
def test_bad_fields_are_refused_in_one_line(field, value, message):
  with pytest.raises(UserError, match=message):
    build.validate(tiny_config("dcgan_mnist5k", **{field: value}))


def test_points_refuse_augmentation_and_subsets():
  from tests.conformance import config_of
  for field, value in (("dataset.augment_rotate", 10.0), ("dataset.train_examples", 100),
                       ("gan.diffaugment", "color")):
    with pytest.raises(UserError, match=f"{field}"):
      build.validate(config_of("gan", "mlp", **{field: value}))


def test_a_batch_larger_than_the_subset_is_refused():
  with pytest.raises(UserError, match="batch_size: 16 exceeds the 10 examples of dataset.train_examples"):
    build.validate(tiny_config("dcgan_mnist5k", **{"dataset.train_examples": 10}))


# ------------------------------------------------------------------ DiffAugment


def test_diffaugment_is_differentiable_and_its_gradient_is_the_finite_difference():
  """For fixed keys every transform is affine in the images, so central differences are exact up to rounding:
  the gradient of <w, T(x)> along a random direction equals them, for each transform alone and all together."""
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (4, 8, 8, 3)), jnp.float32)
  w = jnp.asarray(np.random.default_rng(1).normal(size=x.shape), jnp.float32)
  v = jnp.asarray(np.random.default_rng(2).normal(size=x.shape), jnp.float32)
  for policy in (("color",), ("translation",), ("cutout",), augment.DIFFAUGMENT):
    f = lambda x: jnp.sum(w * augment.diffaugment(keys(4), x, policy))
    grad = jax.grad(f)(x)
    assert float(jnp.abs(grad).sum()) > 0, policy
    eps = 0.5
    numeric = (f(x + eps * v) - f(x - eps * v)) / (2 * eps)
    np.testing.assert_allclose(jnp.sum(grad * v), numeric, rtol=2e-4, atol=2e-3, err_msg=str(policy))


def test_diffaugment_transforms_as_the_paper_says():
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (200, 8, 8, 3)), jnp.float32)
  k = keys(200)
  moved = augment.diffaugment(k, x, ("translation",))
  # Each image is itself moved by at most one pixel (1/8 of 8), zeros coming in: some row or column of zeros
  # on the side it moved away from, or no move.
  for i in range(20):
    found = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)
             if np.array_equal(moved[i], _shift(x[i], dr, dc))]
    assert found, i
  cut = augment.diffaugment(k, x, ("cutout",))
  zeros = np.asarray((cut == 0).all(axis=-1).sum(axis=(1, 2)))
  assert zeros.max() == 16 and zeros.min() >= 4  # a 4x4 box, clipped at the edges to at least 2x2
  colour = augment.diffaugment(k, x, ("color",))
  assert not np.allclose(colour, x)
  # In the policy's order, as the official code: colour after cutout brightens the box it cut.
  black = lambda y: int(np.asarray((y == 0).all(axis=-1)).sum())
  assert black(augment.diffaugment(k, x, ("color", "cutout"))) >= 4 * 200
  assert black(augment.diffaugment(k, x, ("cutout", "color"))) == 0
  np.testing.assert_array_equal(augment.diffaugment(k, x, ()), x)


def _shift(image, dr, dc):
  """The image read at (row + dr, col + dc), zeros outside: the official translation's result."""
  h, w, _ = image.shape
  padded = np.pad(np.asarray(image), ((1, 1), (1, 1), (0, 0)))
  return padded[1 + dr:1 + dr + h, 1 + dc:1 + dc + w]


def test_the_gan_step_with_diffaugment_scores_augmented_images_and_r1_differentiates_through_them():
  gan = tiny_dcgan(diffaugment="cutout", d_norm="none", r1_gamma=1.0)
  plain = tiny_dcgan(d_norm="none", r1_gamma=1.0)
  state = plain.init(jax.random.key(0))
  real = gan.scale(np.random.default_rng(0).integers(0, 256, (8, 28, 28, 1), dtype=np.uint8))
  fake = real[::-1]
  key = jax.random.key(1)
  total, (_, metrics) = gan.discriminator_loss(state.d_params, state.d_stats, real, fake, key)
  real_key, fake_key = (jax.random.fold_in(jax.random.fold_in(key, augment.AUGMENT), i) for i in (0, 1))
  cut_real, cut_fake = gan.d_input(real, real_key), gan.d_input(fake, fake_key)
  assert 0.1 < float((cut_real == 0).mean()) <= 0.25  # a quarter of each image, less at the edges
  want, (_, plain_metrics) = plain.discriminator_loss(state.d_params, state.d_stats, cut_real, cut_fake, key)
  np.testing.assert_allclose(metrics["d_loss"], plain_metrics["d_loss"], rtol=1e-6)
  # R1 through the cutout: the gradient with respect to the images before it is zero inside the box.
  critic = lambda x: gan.discriminate(state.d_params, state.d_stats, gan.d_input(x, real_key), train=False)[0]
  grads = jax.grad(lambda x: critic(x).sum())(real)
  assert float(jnp.abs(jnp.where(cut_real == 0, grads, 0)).max()) == 0.0
  np.testing.assert_allclose(metrics["r1"], jnp.mean(jnp.sum(grads**2, axis=(1, 2, 3))), rtol=1e-5)
  assert not np.isclose(metrics["r1"], plain_metrics["r1"])
  new, step_metrics = jax.jit(gan.train_step)(state, {"image": np.zeros((8, 28, 28, 1), np.uint8)}, key)
  assert np.isfinite(float(step_metrics["loss"])) and int(new.step) == 1


def test_unpack_inverts_pack():
  gan = tiny_dcgan(pack=2)
  x = jnp.arange(4 * 3 * 3 * 2.0).reshape(4, 3, 3, 2)
  np.testing.assert_array_equal(gan.unpack_examples(gan.pack_examples(x)), x)


# ------------------------------------------------------------------ small data


def test_the_subsets_are_class_balanced_nested_and_the_same_for_every_seed():
  images, labels = mnist5k.train_subset(450)
  assert np.bincount(labels, minlength=10).tolist() == [45] * 10
  small_images, small_labels = mnist5k.train_subset(100)
  assert np.bincount(small_labels, minlength=10).tolist() == [10] * 10
  as_rows = lambda a: {r.tobytes() for r in a.reshape(len(a), -1)}
  assert as_rows(small_images) <= as_rows(images)  # the 100 are among the 450
  whole_images, _ = mnist5k.train_subset(None)
  assert len(whole_images) == 4500 and as_rows(images) <= as_rows(whole_images)
  from genjax import data
  seen = [np.concatenate([next(it)["label"] for _ in range(10)]) for it in (
      data.train_iterator("mnist5k", batch_size=50, seed=s, train_examples=100) for s in (0, 1))]
  assert not np.array_equal(*seen)  # the seed orders ...
  assert all(np.bincount(s, minlength=10).tolist() == [50] * 10 for s in seen)  # ... the same 100 digits


def test_a_run_trains_on_its_subset_only():
  from genjax import data
  images, _ = mnist5k.train_subset(100)
  subset = {r.tobytes() for r in images.reshape(100, -1)}
  it = data.train_iterator("mnist5k", batch_size=64, seed=0, train_examples=100)
  for _ in range(5):
    batch = next(it)["image"]
    assert {r.tobytes() for r in batch.reshape(len(batch), -1)} <= subset


# ------------------------------------------------------------------ ADA


def test_ada_p_rises_while_d_overfits_and_falls_when_it_does_not_on_a_scripted_sequence():
  """ADA's rule on scripted D outputs: every 4 steps, p moves by 4 x 64 / (kimg x 1000) towards more
  augmentation when the mean sign of D on reals exceeds the target 0.6, and back when it does not; it stays in
  [0, 1] and moves only at the end of an interval, by the mean over the interval."""
  rule = ada.ADA(target=0.6, kimg=1.0, interval=4)  # 0.256 a step: a few intervals reach both ends
  state, ps = rule.init(), []
  signs = [1.0] * 16 + [0.2] * 20 + [0.9, 0.9, 0.1, 0.1] + [0.9, 0.9, 0.9, 0.1]
  for sign in signs:
    state = rule.update(state, jnp.float32(sign), 64)
    ps.append(float(state["p"]))
  want = ([0, 0, 0, .256] + [.256] * 3 + [.512] + [.512] * 3 + [.768] + [.768] * 3 + [1.0]  # up, clipped at 1
          + [1, 1, 1, .744] + [.744] * 3 + [.488] + [.488] * 3 + [.232] + [.232] * 3 + [0] + [0] * 4  # down to 0
          + [0] * 4  # mean sign 0.5 < 0.6: down, held at 0
          + [0, 0, 0, .256])  # mean 0.7 > 0.6: up, at the interval's 4th step only
  np.testing.assert_allclose(ps, want, rtol=1e-5, atol=1e-6)
  assert ada.ADA().init() is None and not ada.ADA().enabled


def test_ada_augment_at_p_0_is_the_identity_and_is_differentiable_at_any_p():
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (4, 8, 8, 1)), jnp.float32)
  np.testing.assert_array_equal(ada.ada_augment(keys(4), x, 0.0), x)
  moved = ada.ada_augment(keys(4), x, 1.0)
  assert all(not np.allclose(moved[i], x[i]) for i in range(4))
  w = jnp.asarray(np.random.default_rng(1).normal(size=x.shape), jnp.float32)
  v = jnp.asarray(np.random.default_rng(2).normal(size=x.shape), jnp.float32)
  f = lambda x: jnp.sum(w * ada.ada_augment(keys(4), x, 0.8))
  grad = jax.grad(f)(x)
  numeric = (f(x + 0.5 * v) - f(x - 0.5 * v)) / 1.0  # affine in x for fixed keys: exact up to rounding
  np.testing.assert_allclose(jnp.sum(grad * v), numeric, rtol=2e-4, atol=2e-3)


def test_ada_does_not_leak_at_p_0_6_what_d_sees_still_tells_an_upright_digit_from_a_turned_one():
  """The leak check. ADA is safe because each transform is skipped with probability 1 - p: then the augmented
  images of an upright and of a quarter-turned generator still differ, so D can tell a turned G from the data.
  At p = 1 every image is turned uniformly and the two become one distribution (the leak: G may turn its
  digits unpunished). The witness is the mean of 16,384 augmented images, each standardised (less its mean, over
  its standard deviation) and squared: the colour transforms, an affine map of each grey image with the luma
  flip's sign, cancel in it, which leaves the geometry the leak is about; against two independent draws of the
  same digit (its noise). (The plain mean image is no witness: the luma flip makes it zero at p = 1.)"""
  images, labels = mnist5k.train_subset(100)
  digit = jnp.asarray(images[labels == 7][0], jnp.float32) / 127.5 - 1.0
  n = 16384

  def mean_image(seed, image, p):
    keys_N = jax.random.split(jax.random.key(seed), n)
    x = ada.ada_augment(keys_N, jnp.broadcast_to(image, (n, *image.shape)), p)
    z = (x - x.mean(axis=(1, 2, 3), keepdims=True)) / x.std(axis=(1, 2, 3), keepdims=True)
    return jnp.mean(jnp.square(z), axis=0)

  def distances(p):
    upright, again, turned = (mean_image(s, image, p) for s, image in ((1, digit), (2, digit),
                                                                       (3, jnp.rot90(digit, 1, (0, 1)))))
    return float(jnp.sum((upright - turned) ** 2)), float(jnp.sum((upright - again) ** 2))

  turned, noise = distances(0.6)
  assert turned > 10 * noise, (turned, noise)  # measured at 4 seed triples: 15.7-19.6 against 0.50-0.61
  turned, noise = distances(1.0)
  assert turned < 2 * noise, (turned, noise)  # measured: 0.49-0.60 against 0.48-0.59


def test_the_gan_step_keeps_adas_state_and_reports_p():
  config = tiny_config("dcgan_mnist5k", **{"gan.ada_target": 0.6, "gan.ada_interval": 2, "gan.ada_kimg": 0.1})
  build.validate(config)
  family = build.family(config)
  state = family.init(jax.random.key(0))
  batch = {"image": np.asarray(mnist5k.load_mnist5k("test")["image"][:16]), "label": np.zeros(16, np.int32)}
  step = jax.jit(family.train_step)
  seen = []
  for s in range(4):
    state, metrics = step(state, batch, jax.random.key(s))
    seen.append((float(metrics["ada_p"]), float(metrics["d_real_sign"])))
  assert seen[0][0] == 0.0 and int(state.ada["count"]) == 0
  want = float(ada.ada_adjust(jnp.float32(0.0), (seen[0][1] + seen[1][1]) / 2, 0.6, 32, 0.1))
  np.testing.assert_allclose(seen[1][0], want, rtol=1e-6)
  assert build.family(tiny_config("dcgan_mnist5k")).init(jax.random.key(0)).ada is None
  with pytest.raises(UserError, match="gan.ada_target: one augmentation of what D sees"):
    build.validate(tiny_config("dcgan_mnist5k", **{"gan.ada_target": 0.6, "gan.diffaugment": "color"}))
  for loss in ("least_squares", "wasserstein"):  # D's sign says nothing of real against fake there
    with pytest.raises(UserError, match=f"gan.ada_target: ADA reads the sign of D .* with gan.loss '{loss}'"):
      build.validate(tiny_config("dcgan_mnist5k", **{"gan.ada_target": 0.6, "gan.loss": loss}))
    with pytest.raises(ValueError, match=f"ada: steers p by the sign of D on reals, .*; got '{loss}'"):
      ada.ADA(target=0.6).check_gan(loss, "")  # the GAN's own check, for code that builds one directly
    ada.ADA().check_gan(loss, "")  # off: any loss
  ada.ADA(target=0.6).check_gan("hinge", "")


def test_ada_draws_each_transform_from_its_own_keys_at_its_probability():
  """Every parameter of `ada.draws` is independent of every other (no key shared between two transforms: the
  luma flip once reused the flip's and the quarter turn's), and each transform applies with probability p (the
  rotations 1 - sqrt(1 - p); the flips then fire half the time, a quarter turn three quarters)."""
  p, n = 0.5, 16384
  d = jax.vmap(lambda k: ada.draws(k, p, 28, 28))(jax.random.split(jax.random.key(3), n))
  columns = {}
  for name, value in d.items():
    value = np.asarray(value)
    columns.update({f"{name}{i}": v for i, v in enumerate(value.T)} if value.ndim == 2 else {name: value})
  names = list(columns)
  corr = np.corrcoef(np.stack([columns[k] for k in names]))
  worst = max((abs(corr[i, j]), names[i], names[j]) for i in range(len(names)) for j in range(i))
  assert worst[0] < 0.05, worst  # 1 / sqrt(n) = 0.008
  identity = {"flip": 1.0, "zoom": 1.0, "aniso": 1.0, "contrast": 1.0, "saturation": 1.0}
  rate = {k: np.mean(v != identity.get(k, 0.0)) for k, v in d.items() if np.ndim(v) == 1}
  want = {"flip": p / 2, "luma_flip": p / 2, "quarter": p * 3 / 4, "pre_rotation": 1 - np.sqrt(1 - p),
          "post_rotation": 1 - np.sqrt(1 - p)}
  for k, r in rate.items():
    assert abs(r - want.get(k, p)) < 0.02, (k, r)


def _pixels_and_chroma(x):
  mean = x.mean(axis=-1, keepdims=True)
  return mean[..., 0], x - mean


def test_ada_colour_matrix_is_stylegan2_adas_transform_by_transform():
  """Each colour transform against what it is, on random RGB pixels: brightness adds, contrast scales (after
  it), the luma flip negates the grey part (the mean of the channels) and keeps the chroma, a hue turn keeps the
  grey part and turns the chroma by its angle about the luma axis (right-handed), saturation scales the chroma.
  All at their identity values: the pixels exactly. A grey image (1 channel) maps as the grey RGB image does."""
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (64, 3)), jnp.float32)
  apply = lambda b=0.0, c=1.0, luma=0.0, hue=0.0, s=1.0: ada.apply_colour(ada.colour_matrix(b, c, luma, hue, s), x)
  np.testing.assert_array_equal(apply(), x)
  np.testing.assert_allclose(apply(b=0.3, c=1.4), 1.4 * (x + 0.3), rtol=1e-6, atol=1e-6)
  grey, chroma = _pixels_and_chroma(x)
  grey_f, chroma_f = _pixels_and_chroma(apply(luma=1.0))
  np.testing.assert_allclose(grey_f, -grey, atol=1e-6)
  np.testing.assert_allclose(chroma_f, chroma, atol=1e-6)
  grey_s, chroma_s = _pixels_and_chroma(apply(s=1.7))
  np.testing.assert_allclose(grey_s, grey, atol=1e-6)
  np.testing.assert_allclose(chroma_s, 1.7 * chroma, atol=1e-6)
  theta = 0.7
  grey_h, chroma_h = _pixels_and_chroma(apply(hue=theta))
  np.testing.assert_allclose(grey_h, grey, atol=1e-6)
  norm2 = jnp.sum(chroma ** 2, axis=-1)
  np.testing.assert_allclose(jnp.sum(chroma * chroma_h, axis=-1), np.cos(theta) * norm2, atol=1e-6)
  axis = np.ones(3) / np.sqrt(3)
  np.testing.assert_allclose(jnp.cross(chroma, chroma_h) @ axis, np.sin(theta) * norm2, atol=1e-6)
  matrix = ada.colour_matrix(0.2, 1.3, 1.0, 2.1, 0.6)
  image = x[:, :1].reshape(8, 8, 1)
  rgb = ada.apply_colour(matrix, jnp.repeat(image, 3, axis=-1))
  np.testing.assert_allclose(ada.apply_colour(matrix, image), rgb[..., :1], atol=1e-6)
  np.testing.assert_allclose(rgb[..., 1:], jnp.repeat(rgb[..., :1], 2, axis=-1), atol=1e-6)


def test_ada_geometry_shifts_by_whole_pixels_before_zooming_and_by_fractions_after():
  """The official order: the whole-pixel shift comes before the zoom and the rotations (it is zoomed by them),
  the fractional one last. With a zoom of 2, a whole shift of 3 columns moves the centre 6 columns, a
  fractional one 3."""
  d = ada.draws(jax.random.key(0), 0.0, 28, 28)  # every transform at its identity value
  centre = np.array([13.5, 13.5, 1.0])
  for field, moved in (("whole_shift", 6.0), ("fraction_shift", 3.0)):
    matrix = ada.geometry_matrix({**d, "zoom": 2.0, field: jnp.array([0.0, 3.0])}, 28, 28)
    np.testing.assert_allclose(matrix @ (centre + [0.0, moved, 0.0]), centre[:2], atol=1e-5)
  with pytest.raises(ValueError, match="ada_augment: colour transforms of 1 .* or 3 .* channels, got 2"):
    ada.ada_augment(keys(1), jnp.zeros((1, 8, 8, 2)), 0.5)


@pytest.mark.parametrize("n", [450, 100])
def test_the_small_data_configs_train_on_their_subset_without_augmentation_as_measured(n):
  import importlib  # pylint: disable=g-import-not-at-top
  config = importlib.import_module(f"configs.dcgan_mnist5k_{n}").get_config()
  build.validate(config)
  assert config.dataset.train_examples == n and config.batch_size <= n
  assert config.gan.diffaugment == "" and config.gan.ada_target == 0.0  # docs/results.md: the lowest FID here
