"""The evaluation's numbers of inpainting (the share of held-out digits whose inpainting the shipped digit
classifier labels as it labels the whole digit, and their FID, over the whole split in padded batches), the masks,
and a conditional model's class accuracy."""

import types

import jax
import jax.numpy as jnp
import numpy as np

from genjax import data, evaluation, masks, quality


def _held(rows):
  examples = data.eval_examples("mnist5k", 500)
  return evaluation.HeldOut(examples["image"][rows], None, None), examples["label"][rows]


def _unscale(x):
  return jnp.round(x * 255.0).astype(jnp.uint8)


def test_class_accuracy_is_the_share_of_samples_the_classifier_labels_as_asked_overall_and_per_class():
  """A 'model' whose samples are held-out digits of the class it is asked for (or of the next class): its
  class accuracy is the classifier's accuracy on those very digits (or about none), counted per class too."""
  examples = data.eval_examples("mnist5k", 500)
  bank = jnp.asarray(np.stack([examples["image"][examples["label"] == c][:20] for c in range(10)]))  # [10, 20, ...]

  def sampler(shift):
    def sample(params, key, n, labels):
      del params, key
      return bank[(labels + shift) % 10, jnp.arange(n) % 20].astype(jnp.float32) / 255.0
    return sample

  probs = np.full(10, 0.1)
  got = quality.measure(sampler(0), _unscale, None, jax.random.key(0), "mnist5k", 300, label_probs=probs)
  images, asked = quality.generated_images(sampler(0), _unscale, None, jax.random.key(0), 300, probs)
  right = quality.digit_labels(images) == asked
  assert 0.9 < got["class_accuracy"] < 1.0  # a few of the classifier's mistakes: the number is not a constant
  np.testing.assert_allclose(got["class_accuracy"], right.mean())
  for c in range(10):
    np.testing.assert_allclose(got[f"class_accuracy_{c}"], right[asked == c].mean())
  assert len(set(asked.tolist())) == 10
  wrong = quality.measure(sampler(1), _unscale, None, jax.random.key(0), "mnist5k", 300, label_probs=probs)
  assert wrong["class_accuracy"] < 0.05
  assert "class_accuracy" not in quality.measure(lambda p, k, n: bank[0, :n].astype(jnp.float32) / 255.0, _unscale,
                                                 None, jax.random.key(0), "mnist5k", 20)


def test_inpainting_numbers_score_each_mask_by_kept_labels_and_fid():
  rows = np.arange(45) * 11
  held, labels = _held(rows)
  dataset = type("Dataset", (), {"name": "mnist5k", "data_dir": None})()
  seen = []

  def same(params, images, known, key, offset, labels):
    seen.append((images.shape[0], offset, np.asarray(known).mean()))
    x = images.astype(jnp.float32) / 255.0
    return x, x

  def neighbour(params, images, known, key, offset, labels):  # each digit inpainted from the one before it
    x = images.astype(jnp.float32) / 255.0
    previous = jnp.asarray(held.images[(np.arange(offset, offset + images.shape[0]) - 1) % 45], jnp.float32) / 255.0
    return x, jnp.where(known, x, previous)

  got = evaluation.inpainting_numbers(same, _unscale, None, None, dataset, held, batch_size=20)
  assert [got[f"inpaint_kept_{m}"] for m in masks.EVAL_MASKS] == [1.0, 1.0]
  assert seen[:3] == [(20, 0, 0.5), (20, 20, 0.5), (20, 40, 0.5)]  # lower half: half the pixels known
  assert seen[3][2] == 0.75  # the centre box of half the side: a quarter drawn
  fid_same = got["inpaint_fid_lower_half"]
  np.testing.assert_allclose(fid_same, quality.fid_of_images(held.images, "mnist5k"))
  got = evaluation.inpainting_numbers(neighbour, _unscale, None, None, dataset, held, batch_size=20)
  predicted = quality.digit_labels(held.images)
  for mask in masks.EVAL_MASKS:  # the labels of the mixed digits, computed here
    known = np.asarray(masks.known(mask, held.images.shape))
    mixed = np.where(known, held.images, np.roll(held.images, 1, axis=0))
    np.testing.assert_allclose(got[f"inpaint_kept_{mask}"], np.mean(quality.digit_labels(mixed) == predicted))
    assert 0.0 < got[f"inpaint_kept_{mask}"] < 1.0  # another digit's pixels change some labels
  assert got["inpaint_fid_lower_half"] != fid_same
  assert evaluation.inpainting_numbers(None, _unscale, None, None, dataset, held, 20) == {}
  cifar = type("Dataset", (), {"name": "cifar10", "data_dir": None})()
  assert evaluation.inpainting_numbers(lambda *a, **k: 1 / 0, _unscale, None, None, cifar, held, 20) == {}
  del labels


def test_masks_are_the_lower_half_the_centre_box_and_half_the_pixels_at_random():
  lower = np.asarray(masks.known("lower_half", (2, 28, 28, 3)))
  assert lower[:, :14].all() and not lower[:, 14:].any()
  box = np.asarray(masks.known("centre_box", (2, 28, 28, 1)))
  assert (~box).sum() == 2 * 14 * 14 and not box[:, 7:21, 7:21].any()
  keys = jax.random.split(jax.random.key(0), 2)
  pixels = np.asarray(masks.known("random_pixels", (2, 28, 28, 3), keys))
  assert (pixels == pixels[..., :1]).all()  # every channel of a pixel alike
  assert 0.4 < pixels.mean() < 0.6 and not np.array_equal(pixels[0], pixels[1])
  np.testing.assert_array_equal(np.asarray(masks.known("random_pixels", (1, 28, 28, 3), keys[1:])), pixels[1:])


def test_a_conditional_models_samples_ask_for_the_classes_of_the_whole_held_out_split():
  """The samples FID measures ask for the classes as often as the whole held-out split holds them, not as the
  first examples do. (mnist5k's held-out digits come class by class interleaved, so its first 100 are of every
  class; in its file, sorted by class, they were 0s and 1s.)"""
  dataset = type("Dataset", (), {"name": "mnist5k", "data_dir": None, "download": False})()
  held = evaluation.held_out(dataset, 100, 10)
  assert np.bincount(held.labels, minlength=10).tolist() == [10] * 10 and held.images.shape[0] == 100
  every = data.eval_examples("mnist5k", 500)["label"]
  np.testing.assert_allclose(held.label_probs, np.bincount(every, minlength=10) / 500)
  assert (held.label_probs > 0.05).all()
  assert evaluation.held_out(dataset, 100, 0).label_probs is None


def test_samples_are_drawn_500_at_a_time_or_all_at_once_each_batch_from_its_own_key():
  """A quick check of 64 samples draws 64, not 500 it throws away; 1,200 are three batches of 500 (the last cut
  to 200), batch b from fold_in(key, b)."""
  calls = []

  def sample(params, key, n):
    del params
    calls.append((n, jax.random.key_data(key).tolist()))
    return jnp.zeros((n, 28, 28, 1))

  key = jax.random.key(3)
  for n, sizes in ((64, [64]), (1200, [500, 500, 500])):
    calls.clear()
    images, _ = quality.generated_images(sample, _unscale, None, key, n)
    assert images.shape == (n, 28, 28, 1)
    assert [c[0] for c in calls] == sizes
    assert [c[1] for c in calls] == [jax.random.key_data(jax.random.fold_in(key, b)).tolist() for b in range(len(sizes))]


def test_each_number_of_the_samples_draws_from_a_key_of_its_own(monkeypatch):
  """Mode coverage, FID's samples and the inpaintings each take their own key of the eval stream, none of them
  the stream's key itself or a held-out example's fold_in(eval, i) (whose draws they would repeat)."""
  seen = {}

  def record(name):
    def fn(*args, **kwargs):
      seen[name] = next(a for a in args if isinstance(a, jax.Array) and jax.dtypes.issubdtype(a.dtype,
                                                                                               jax.dtypes.prng_key))
      return {}
    return fn

  monkeypatch.setattr(evaluation, "point_metrics", record("points"))
  monkeypatch.setattr(evaluation.quality, "measure", record("quality"))
  monkeypatch.setattr(evaluation, "inpainting_numbers", record("inpaint"))
  key = jax.random.key(0)
  held = evaluation.HeldOut(images=None, labels=None, label_probs=None)
  dataset = types.SimpleNamespace(name="mnist5k", data_dir=None)  # the config's dataset block
  evaluation.sample_numbers(None, None, None, key, dataset, 0, held=held, inception_weights=None)
  data_of = lambda k: tuple(np.asarray(jax.random.key_data(k)).ravel())
  drawn = [data_of(seen[name]) for name in ("points", "quality", "inpaint")]
  held_out = {data_of(jax.random.fold_in(key, i)) for i in range(1000)} | {data_of(key)}
  assert len(set(drawn)) == 3 and not set(drawn) & held_out
