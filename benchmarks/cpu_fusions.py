"""Which XLA:CPU library fusions a training step (and the U-Net's sampler) should use, side by side in one process.

Command: python benchmarks/cpu_fusions.py [--configs=dcgan_mnist5k,vae_mnist5k,diffusion_mnist5k --rounds=5
         --variants=jaxlib,no_ynn_conv,genjax --sample_images=256]

XLA:CPU hands some operations to YNNPACK (the compile option xla_cpu_experimental_ynn_fusion_type lists which:
its dots, its reductions, its convolutions; each becomes a `__ynn_fusion`) and emits the rest itself. For each
config, its training step (genjax's, as train.py compiles it: one device, state donated) is compiled once per
variant with that option: 'jaxlib' (the option as jaxlib leaves it), 'no_ynn_conv' (dots and reductions only:
XLA's own convolutions) and 'no_ynn' (no library fusion); 'genjax' is 'no_ynn_conv' with threefry's rounds
unrolled (genjax.host.unroll_threefry), the two compile settings genjax.host.set_up_process makes (its memory
and dispatch settings hold for a whole process: benchmarks/host_settings.py compares those). The variants train
from the same state on the same batch and key, their losses are checked equal, and they are timed in
alternating rounds (benchmarks/speed.py's `timed_rounds`). For a diffusion config the DDIM sampler
(--sample_steps steps of --sample_images images, the config's net) is timed the same way. Prints steps/s of
each and the ratio to the first variant. CPU only; XLA_FLAGS should not name the option (the variants set it).
"""

import importlib
import os
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from benchmarks import speed  # noqa: E402

_CONFIGS = flags.DEFINE_list("configs", ["dcgan_mnist5k", "vae_mnist5k", "diffusion_mnist5k"], "configs/ modules.")
_VARIANTS = flags.DEFINE_list("variants", ["jaxlib", "no_ynn_conv", "genjax"], "Library fusion settings to time.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Timed rounds, the variants alternating.")
_SAMPLE_IMAGES = flags.DEFINE_integer("sample_images", 256, "Images of the DDIM sampler's run.")
_SAMPLE_STEPS = flags.DEFINE_integer("sample_steps", 10, "DDIM steps of the sampler's run.")


def main(argv):
  del argv
  # Not host.set_up_process: the variants set the option per compile, nothing is set for the whole process.
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from genjax import build, data, host  # pylint: disable=g-import-not-at-top
  from genjax import random as grandom  # pylint: disable=g-import-not-at-top

  if jax.default_backend() != "cpu":
    raise app.UsageError("cpu_fusions.py compares XLA:CPU's options: CPU only")
  own = {host.YNN_OPTION: host.YNN_WITHOUT_CONVOLUTIONS}
  options = {"jaxlib": None, "no_ynn_conv": own, "no_ynn": {host.YNN_OPTION: ""}, "genjax": own}
  print(f"JAX {jax.__version__}, {os.cpu_count()} CPU threads, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}",
        flush=True)
  for name in _CONFIGS.value:
    config = importlib.import_module(f"configs.{name}").get_config()
    family, keys = build.family(config), grandom.streams(config.seed)
    batch = jax.tree.map(jax.numpy.asarray, next(data.train_iterator(config.dataset.name, batch_size=config.batch_size,
                                                                     seed=config.seed)))
    key = grandom.step_key(keys.train, 0)
    contenders, losses = [], {}
    for variant in _VARIANTS.value:
      if variant == "genjax":
        host.unroll_threefry()
      # A new function each time, traced and lowered afresh under this variant's threefry rule.
      compiled = jax.jit(lambda *a: family.train_step(*a), donate_argnums=0).lower(  # noqa: PLW0108
          family.init(keys.init), batch, key).compile(compiler_options=options[variant])
      print(f"{name} {variant}: {compiled.as_text().count(' while(')} loops in the compiled step", flush=True)
      state, metrics = compiled(family.init(keys.init), batch, key)
      losses[variant] = {k: float(v) for k, v in metrics.items() if np.ndim(v) == 0}
      box = {"state": state}

      def run(n, compiled=compiled, box=box):
        for _ in range(n):
          box["state"], m = compiled(box["state"], batch, key)
        jax.block_until_ready(m)

      contenders.append(speed.Contender(f"{variant} step", lambda run=run: run(1), run))
      if config.family == "diffusion":
        params = jax.tree.map(jax.numpy.copy, family.eval_params(state, keys.eval, "ema"))  # the step donates state
        sampler = jax.jit(lambda p, k: family.sample(p, k, _SAMPLE_IMAGES.value, sampler="ddim",
                                                     steps=_SAMPLE_STEPS.value))
        compiled_sampler = sampler.lower(params, key).compile(compiler_options=options[variant])

        def sample(n, c=compiled_sampler, params=params):
          for _ in range(n):
            out = c(params, key)
          jax.block_until_ready(out)

        contenders.append(speed.Contender(f"{variant} DDIM", lambda s=sample: s(1), sample))
      host.unroll_threefry(False)  # JAX's own CPU rule again for the next variant
    first = losses[_VARIANTS.value[0]]
    for variant, metrics in losses.items():
      for k, v in metrics.items():
        if not np.isclose(v, first[k], rtol=1e-4, atol=1e-5):
          raise AssertionError(f"{name}: {variant}'s first step gives {k} {v}, {_VARIANTS.value[0]}'s {first[k]}")
    print(f"\n{name} (batch {config.batch_size}): first steps agree: {first}", flush=True)
    steps = 2 if config.family == "diffusion" else 20  # a round of a second or more
    rates = speed.timed_rounds(contenders, _ROUNDS.value, steps, 1)
    for kind in ("step", "DDIM"):
      rows = {c.name: statistics.median(rates[c.name]) for c in contenders if c.name.endswith(kind)}
      if rows:
        base = rows[f"{_VARIANTS.value[0]} {kind}"]
        print("  " + ", ".join(f"{n} {r:.2f}/s ({r / base:.2f}x)" for n, r in rows.items()), flush=True)


if __name__ == "__main__":
  app.run(main)
