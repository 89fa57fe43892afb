"""The entry points' process-wide settings (genjax.host) compared on train.py's own loop, side by side in one run.

Command: python benchmarks/host_settings.py [--configs=dcgan_mnist5k,vae_mnist5k,pixelcnn_mnist5k,diffusion_mnist5k
         --steps=600,600,240,90 --variants=inline=,queued=--cpu_async_dispatch --rounds=2]

A setting such as how JAX dispatches CPU programs or how glibc serves memory holds for a whole process, so each
variant (a name and the flags it adds to train.py's command line) trains in a process of its own: for each
config, every variant runs `python train.py` for that config's --steps in turn, --rounds times, so that the
machine's drift hits all alike. A variant's speed is the median of the steps/s that the loop's progress lines
report (the first line left out: it counts the start of the loop), and its minor page faults and system time a
step are read from the child's resource usage (the whole process, compile and final evaluation included). Prints
each variant's median and its ratio to the first variant's.
"""

import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile

from absl import app, flags

_HERE = os.path.dirname(os.path.abspath(__file__))
_CONFIGS = flags.DEFINE_list("configs", ["dcgan_mnist5k", "vae_mnist5k", "pixelcnn_mnist5k", "diffusion_mnist5k"],
                             "configs/ modules to train.")
_STEPS = flags.DEFINE_list("steps", ["600", "600", "240", "90"], "Training steps of each config's runs.")
_VARIANTS = flags.DEFINE_list("variants", ["inline=", "queued=--cpu_async_dispatch"],
                              "name=flags: what each variant adds to train.py's command line (flags apart by spaces).")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Runs of each variant per config, the variants alternating.")


def train_once(config: str, steps: int, extra: list[str], workdir: str) -> tuple[float, float, float]:
  """(median steps/s of the progress lines after the first, minor page faults a step, system ms a step)."""
  log_every = max(1, steps // 4)
  command = [sys.executable, os.path.join(os.path.dirname(_HERE), "train.py"),
             f"--config={os.path.join(os.path.dirname(_HERE), 'configs', config + '.py')}", f"--workdir={workdir}",
             f"--config.num_steps={steps}", f"--config.log_every={log_every}", f"--config.eval_every={10 * steps}",
             "--config.eval.quality_samples=0", "--config.eval.num_examples=100", *extra]  # a short last evaluation
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  out = subprocess.run(command, capture_output=True, text=True, check=False)
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  if out.returncode:
    raise RuntimeError(f"{' '.join(command)} exited {out.returncode}: {out.stderr.strip().splitlines()[-1:]}")
  rates = [float(r) for r in re.findall(r"\|\s+([\d.]+) steps/s", out.stderr)]
  if len(rates) < 2:
    raise RuntimeError(f"{config}: {len(rates)} progress lines with steps/s in train.py's log")
  return (statistics.median(rates[1:]), (after.ru_minflt - before.ru_minflt) / steps,
          (after.ru_stime - before.ru_stime) / steps * 1e3)


def main(argv):
  del argv
  if len(_STEPS.value) != len(_CONFIGS.value):
    raise app.UsageError(f"--steps: {len(_STEPS.value)} values for {len(_CONFIGS.value)} configs")
  variants = [v.partition("=") for v in _VARIANTS.value]
  variants = [(name, extra.split()) for name, _, extra in variants]
  print(f"{os.cpu_count()} CPU threads; variants: " + "; ".join(f"{n}: {' '.join(e) or '(defaults)'}"
                                                               for n, e in variants), flush=True)
  with tempfile.TemporaryDirectory() as root:
    for config, steps in zip(_CONFIGS.value, _STEPS.value):
      results = {name: [] for name, _ in variants}
      for r in range(_ROUNDS.value):
        for name, extra in variants:
          workdir = os.path.join(root, f"{config}_{name}_{r}")
          results[name].append(train_once(config, int(steps), extra, workdir))
          rate, faults, system_ms = results[name][-1]
          print(f"  {config} round {r + 1} {name}: {rate:.2f} steps/s, {faults:,.0f} page faults and"
                f" {system_ms:.1f} system ms a step", flush=True)
      first = statistics.median(r[0] for r in results[variants[0][0]])
      for name, rows in results.items():
        rate = statistics.median(r[0] for r in rows)
        print(f"{config} {name}: {rate:.2f} steps/s ({rate / first:.2f}x), {statistics.median(r[1] for r in rows):,.0f}"
              f" page faults a step", flush=True)


if __name__ == "__main__":
  app.run(main)
