"""Which EMA generator samples best: warm-up rules and BatchNorm statistics, side by side in one DCGAN run.

Command: python benchmarks/ema_gan.py [--steps=3000 --eval_every=250 --samples=5000] > ema_gan.json

Trains configs/dcgan_mnist5k.py's classic() (its step as the loop compiles it) and
keeps, outside the step, one EMA of the generator's weights per warm-up rule
of genjax.losses.ema (decay 0.999), each updated after every step from the
same raw weights. At every evaluation, FID (genjax.quality: 5,000 samples
against mnist5k's training digits, digit-classifier features) of:
  * the raw generator with its running statistics;
  * each EMA with the raw generator's running statistics ('raw_stats': what
    genjax did before issue 18);
  * each EMA with its own standing statistics ('standing': batch statistics
    of the EMA generator on 1,024 latents, GAN.standing_stats);
  * each EMA with an EMA of its own statistics ('ema_stats': after every step
    the EMA generator runs in training mode on 128 fresh latents and its
    running statistics move with BatchNorm's decay 0.9).
Prints one JSON line per evaluation (step, seconds of training, the FIDs).
"""

import json
import os
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_STEPS = flags.DEFINE_integer("steps", 3000, "Training steps.")
_EVAL_EVERY = flags.DEFINE_integer("eval_every", 250, "Steps between evaluations.")
_SAMPLES = flags.DEFINE_integer("samples", 5000, "Samples per FID.")
_RULES = flags.DEFINE_list("rules", ["none", "num_updates", "rampup"],
                           "EMA warm-up rules (genjax.losses.ema); 'rampup:R' sets the rampup ratio R (default 0.05).")
_STATS = flags.DEFINE_list("stats", ["raw_stats", "standing", "ema_stats"], "Which statistics to pair each EMA with.")


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top

  from configs import dcgan_mnist5k  # pylint: disable=g-import-not-at-top
  from genjax import build, data, quality  # pylint: disable=g-import-not-at-top
  from genjax import random as grandom  # pylint: disable=g-import-not-at-top
  from genjax.losses import ema  # pylint: disable=g-import-not-at-top

  config = dcgan_mnist5k.classic()
  config.num_steps = _STEPS.value
  gan = build.family(config)
  keys = grandom.streams(config.seed)
  state = jax.jit(gan.init)(keys.init)
  step_fn = jax.jit(gan.train_step, donate_argnums=0)
  batches = data.train_iterator("mnist5k", batch_size=config.batch_size, seed=grandom.integer_seed(keys.data),
                                process_index=0, process_count=1)
  decay = config.gan.ema_decay
  emas = {rule: jax.tree.map(lambda x: x.copy(), state.g_params) for rule in _RULES.value}
  ema_stats = {rule: jax.tree.map(lambda x: x.copy(), state.g_stats) for rule in _RULES.value}

  def rule_of(name):  # 'rampup:0.02' -> ('rampup', 0.02)
    rule, _, ratio = name.partition(":")
    return rule, float(ratio or 0.05)

  @jax.jit
  def update_ema(ema_params, g_params, n, rule_index):
    d = jax.lax.switch(rule_index, [lambda n, r=r: ema.decay(rule_of(r)[0], decay, n, rule_of(r)[1])
                                    for r in _RULES.value], n)
    return ema.update(ema_params, g_params, d)

  @jax.jit
  def update_stats(params, stats, key):
    _, stats = gan.generate(params, stats, gan.latents(key, config.batch_size), train=True)
    return stats

  standing = jax.jit(gan.standing_stats, static_argnums=3)
  sample_fn = jax.jit(gan.sample, static_argnums=2)
  unscale_fn = jax.jit(gan.unscale)
  stats_key = jax.random.fold_in(keys.train, 1 << 30)
  params_key = grandom.eval_params_key(keys.eval)  # as the loop's eval_params

  def fid(params, stats):
    return quality.measure(sample_fn, unscale_fn, {"params": params, "batch_stats": stats}, keys.eval, "mnist5k",
                           _SAMPLES.value)["fid"]

  trained = 0.0
  for step in range(1, _STEPS.value + 1):
    t = time.perf_counter()
    state, _ = step_fn(state, next(batches), grandom.step_key(keys.train, step - 1))  # as the loop: fold_in(train, s - 1)
    for i, rule in enumerate(_RULES.value):
      emas[rule] = update_ema(emas[rule], state.g_params, step, i)
      if "ema_stats" in _STATS.value:
        ema_stats[rule] = update_stats(emas[rule], ema_stats[rule], jax.random.fold_in(stats_key, step))
    jax.block_until_ready(state)
    trained += time.perf_counter() - t
    if step % _EVAL_EVERY.value == 0:
      row = {"step": step, "train_seconds": round(trained, 1), "raw": fid(state.g_params, state.g_stats)}
      for rule in _RULES.value:
        stats = {"raw_stats": lambda: state.g_stats, "ema_stats": lambda: ema_stats[rule],
                 "standing": lambda: standing(emas[rule], state.g_stats, params_key, gan.standing_latents)}
        for name in _STATS.value:
          row[f"{rule}/{name}"] = fid(emas[rule], stats[name]())
      print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()}), flush=True)


if __name__ == "__main__":
  app.run(main)
