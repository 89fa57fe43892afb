"""Trains the digit classifier whose features FID and KID use on 28x28x1 datasets.

  python -m genjax.train_classifier --dataset=mnist5k --out=genjax/metrics/weights/mnist5k_classifier.npz
  python -m genjax.train_classifier --dataset=fashion_mnist --out=fashion_mnist_classifier.npz   # TFDS

It trains on the dataset's training split only, prints the accuracy on its
held-out split, and writes the weights as an .npz of named arrays (no
pickle), which `genjax.metrics.features.load_digit_classifier` reads.
"""

import itertools
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from genjax import cli  # noqa: E402

_DATASET = flags.DEFINE_string("dataset", "mnist5k", "A 28x28x1 dataset: mnist5k, mnist, fashion_mnist, ...")
_OUT = flags.DEFINE_string("out", None, "Where to write the weights (.npz); default: <dataset>_classifier.npz.")
_STEPS = flags.DEFINE_integer("steps", 3000, "Adam steps of 128 examples.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the initialisation and of the batches.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data directory.")


def fit(batches, steps: int, seed: int):
  """The parameters of a digit classifier trained for `steps` Adam steps (cosine decay from 1e-3) on `batches`,
  an iterator of {'image': uint8 [B, 28, 28, 1], 'label': int [B]} (the data pipeline's, or `array_batches`'s)."""
  import jax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top

  from genjax.errors import UserError  # pylint: disable=g-import-not-at-top
  from genjax.metrics import features  # pylint: disable=g-import-not-at-top
  from genjax.nets import classifier  # pylint: disable=g-import-not-at-top

  if steps <= 0:
    raise UserError(f"--steps: must be a positive integer, got {steps}")
  net = classifier.DigitClassifier()
  params = features.init_digit_classifier(jax.random.key(seed))
  optimizer = optax.adam(optax.cosine_decay_schedule(1e-3, steps))
  opt_state = optimizer.init(params)

  @jax.jit
  def step(params, opt_state, image, label):
    def loss_fn(p):
      logits, _ = net.apply({"params": p}, classifier.images_to_unit(image))
      return optax.softmax_cross_entropy_with_integer_labels(logits, label).mean()
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  for _ in range(steps):
    batch = next(batches)
    params, opt_state = step(params, opt_state, batch["image"], batch["label"])
  return params


def array_batches(images, labels, batch_size: int, seed: int):
  """Endless batches of arrays of examples (a subset, generated digits, or both), each epoch a fresh seeded
  shuffle; an epoch's last incomplete batch is dropped, as the data pipeline does."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  n = len(labels)
  batch_size = min(batch_size, n)
  for epoch in itertools.count():
    order = np.random.default_rng([seed, epoch]).permutation(n)
    for s in range(n // batch_size):
      rows = order[s * batch_size:(s + 1) * batch_size]
      yield {"image": images[rows], "label": labels[rows]}


def accuracy(params, images, labels) -> float:
  """The share of `images` whose most likely class is their label."""
  import numpy as np  # pylint: disable=g-import-not-at-top

  from genjax.metrics import features  # pylint: disable=g-import-not-at-top
  logits = np.concatenate([np.asarray(features.digit_logits(params, images[i:i + 500]))
                           for i in range(0, len(labels), 500)])
  return float(np.mean(logits.argmax(-1) == labels))


def train(dataset: str, steps: int, seed: int, data_dir: str | None = None, batch_size: int = 128):
  """(params, held-out accuracy) of a classifier trained on `dataset`'s training split."""
  from genjax import data  # pylint: disable=g-import-not-at-top
  from genjax.errors import UserError  # pylint: disable=g-import-not-at-top
  from genjax.nets import classifier  # pylint: disable=g-import-not-at-top

  if data.image_shape(dataset) != (28, 28, 1):
    raise UserError(f"--dataset: the digit classifier takes 28x28x1 images; {dataset!r} has"
                    f" {data.image_shape(dataset)}")
  if data.num_classes(dataset) != classifier.DigitClassifier.classes:  # binarized_mnist: every label would be 0
    raise UserError(f"--dataset: the digit classifier learns {classifier.DigitClassifier.classes} labelled classes;"
                    f" {dataset!r} has {data.num_classes(dataset) or 'no'} labels")
  if steps <= 0:
    raise UserError(f"--steps: must be a positive integer, got {steps}")
  batches = data.train_iterator(dataset, batch_size=batch_size, seed=seed, data_dir=data_dir, process_index=0,
                                process_count=1)
  params = fit(batches, steps, seed)
  held_out = data.eval_examples(dataset, 10**9, split="test", data_dir=data_dir)
  return params, accuracy(params, held_out["image"], held_out["label"])


def main(argv):
  del argv
  with cli.user_errors_exit():
    from genjax.metrics import features  # pylint: disable=g-import-not-at-top
    params, accuracy = train(_DATASET.value, _STEPS.value, _SEED.value, _DATA_DIR.value)
    out = _OUT.value or f"{_DATASET.value}_classifier.npz"
    features.save_params(out, params)
  print(f"held-out accuracy {accuracy:.4f} on {_DATASET.value}; wrote {out}")


if __name__ == "__main__":
  cli.run(main)
