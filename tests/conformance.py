"""Configs and steps of every registered family and architecture, for the conformance suite and its device worker.

Every registered family (the library's, and the test family of
tests/gauss_family.py) and each of its architectures gets a small config:
configs/base.py with the family's `smoke` overrides and a few loop settings.

Run as a module it is the multi-device worker (the device count is fixed
when JAX starts):

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m tests.conformance --out=DIR
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

STEPS = 3
BATCH = 16
# One held-out batch: each evaluation of the loop inpaints every held-out example, for each mask, with the
# family's sampler (tests/test_conformance.py checks batching itself on 24 examples in batches of 8 and 16).
LOOP = {"batch_size": BATCH, "log_every": 2, "checkpoint_every": 2, "eval_every": 4, "eval.num_examples": 16,
        "eval.batch_size": 16, "eval.quality_samples": 64}
# The device and resume runs of image families augment their batches (genjax.augment): so they also prove that
# 1 and 8 devices augment the same examples the same way, and that a resumed run augments as an uninterrupted one.
AUGMENT = {"dataset.augment_rotate": 10.0, "dataset.augment_translate": 0.1}
# (path, devices) of the multi-device runs; each is compared with ('jit', 1).
PLACEMENTS = (("jit", 1), ("jit", 2), ("jit", 8), ("pmap", 8))


def cases(variants: bool = True) -> list[tuple[str, str]]:
  """(family, case) of every registered family and smoke case (each architecture, and with `variants` the
  other entries, such as a conditional one), the test family included.

  The checks of the loop's machinery alone (resume, devices, tracing, pictures) run on the architectures
  (`variants=False`): a variant changes the model, not how the loop drives it, and the test family's
  conditional architecture carries labels through all of them; the variants get every check of the model.
  """
  import tests.gauss_family  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import  (registers 'gauss')
  from genjax.models import family  # pylint: disable=g-import-not-at-top
  return [(name, arch) for name in family.names() for arch in family.get(name).smoke
          if variants or arch in family.get(name).archs]


def config_of(name: str, arch: str, **overrides):
  """configs/base.py with the family's smoke overrides of `arch`, the loop's small settings and `overrides`."""
  from configs import base  # pylint: disable=g-import-not-at-top
  from genjax.models import family  # pylint: disable=g-import-not-at-top
  from tests.helpers import set_fields  # pylint: disable=g-import-not-at-top
  return set_fields(base.get_config(name), {**family.get(name).smoke[arch], **LOOP, **overrides})


def augmented(name: str, arch: str) -> dict:
  """AUGMENT's fields where the case's examples are images, {} for 2-D points."""
  from genjax import data  # pylint: disable=g-import-not-at-top
  return {} if config_of(name, arch).dataset.name in data.POINT_DATASETS else AUGMENT


def device_config(name: str, arch: str, path: str, num_devices: int):
  """`config_of` for a run on `num_devices` devices on `path`, every EMA at its constant decay.

  Ramped up (the default), an EMA after 3 steps is its weights but for about
  1% of the last step (as little as twice the comparison's tolerance): a
  wrong average on some path could pass. At the constant decay it lags the
  weights by their 3 steps, and the comparison sees its arithmetic. (The
  fields are genjax.models.update.add_ema_fields', whichever block has them.)
  """
  config = config_of(name, arch, parallel=path, num_devices=num_devices, **augmented(name, arch))
  for block in config.values():
    if hasattr(block, "keys") and "ema_warmup" in block:
      block.ema_warmup = "none"
  return config


def assert_same_state(got: dict, want: dict, where: str = "") -> None:
  """Two flattened states ({'leaf path': array}, as `train_steps` gives them) hold the same numbers.

  Same leaves, shapes and dtypes; integers equal; every float leaf to 1e-5 of
  its largest entry, or of 1e-3 for a leaf smaller than that (a bias that
  started at zero and has taken a few small steps, whose own size says nothing
  about the precision of its updates); parameters, statistics and EMA also
  entry by entry, to 1e-5 of each plus 1e-6. Adam's moments are held to 1e-5
  of the whole array's largest entry, with no floor: those of weights whose
  gradient is nearly zero are tiny sums of terms that cancel, whose relative
  rounding error says nothing. The loop's FID and KID ('quality/...') to 1e-4
  of their value: samples of weights equal to 1e-5, quantised to uint8, give
  the same numbers (measured: equal to the last digit on every path).
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  assert got.keys() == want.keys(), where
  for leaf, expected in want.items():
    actual = got[leaf]
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, (where, leaf)
    if leaf.startswith("quality/"):
      assert abs(float(actual) - float(expected)) <= 1e-4 * abs(float(expected)), (where, leaf)
    elif expected.dtype.kind != "f":
      np.testing.assert_array_equal(actual, expected, err_msg=f"{where} {leaf}")
    else:
      largest = float(np.abs(expected).max(initial=0.0))
      scale = largest if "opt_state" in leaf else max(largest, 1e-3)
      assert float(np.abs(actual - expected).max(initial=0.0)) <= 1e-5 * scale, (where, leaf)
      if "opt_state" not in leaf:
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6, err_msg=f"{where} {leaf}")


def batches(config, n: int = STEPS) -> list[dict]:
  """The first n global batches of the config's dataset, the same whatever the devices."""
  from genjax import data  # pylint: disable=g-import-not-at-top
  from genjax import random as grandom  # pylint: disable=g-import-not-at-top
  it = data.train_iterator(config.dataset.name, batch_size=config.batch_size,
                           seed=grandom.integer_seed(grandom.streams(config.seed).data), process_index=0,
                           process_count=1)
  return [next(it) for _ in range(n)]


def train_steps(name: str, arch: str, path: str, num_devices: int) -> dict:
  """The canonical state after STEPS steps on `num_devices` devices, flattened to {'leaf path': numpy array},
  with the sample quality the loop measures of it ('quality/fid', ...) for a family of images."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from genjax import build, parallel, quality  # pylint: disable=g-import-not-at-top
  from genjax.models import family as family_lib  # pylint: disable=g-import-not-at-top
  from genjax import random as grandom  # pylint: disable=g-import-not-at-top

  config = device_config(name, arch, path, num_devices)
  build.validate(config)
  par = parallel.DataParallel(path, num_devices)
  family = build.family(config)
  keys = grandom.streams(config.seed)
  state = par.to_run(par.init(family.init, keys.init))
  step_fn, step_key = par.compile_step(family.train_step), par.step_keys(keys.train)
  for s, batch in enumerate(batches(config)):
    state, _ = step_fn(state, par.put_batch(batch), step_key(s))
  flat = jax.tree_util.tree_flatten_with_path(par.to_canonical(state))[0]
  out = {jax.tree_util.keystr(p): np.asarray(x.addressable_data(0)) for p, x in flat}
  # As the loop's evaluation does it: the eval weights of a local copy of the state (genjax.train_lib).
  params = jax.jit(family.eval_params, static_argnums=2)(par.local_copy(state), grandom.eval_params_key(keys.eval),
                                                         family_lib.get(name).weights[0])
  measured = quality.measure(jax.jit(family.sample, static_argnums=2), jax.jit(family.unscale), params, keys.eval,
                             config.dataset.name, config.eval.quality_samples)
  return {**out, **{f"quality/{k}": np.float64(v) for k, v in measured.items()}}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", required=True)
  args = parser.parse_args()
  import numpy as np  # pylint: disable=g-import-not-at-top
  os.makedirs(args.out, exist_ok=True)
  for name, arch in cases(variants=False):
    for path, devices in PLACEMENTS:
      leaves = train_steps(name, arch, path, devices)
      np.savez(os.path.join(args.out, f"{name}_{arch}_{path}_{devices}.npz"), **leaves)
      print(f"done {name} {arch} {path} {devices}", flush=True)


if __name__ == "__main__":
  main()
