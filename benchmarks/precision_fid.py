"""Does bfloat16 training cost sample quality? The same configs trained in float32 and in bfloat16, seed by seed.

Command: python benchmarks/precision_fid.py [--configs=vae_mnist5k,diffusion_mnist5k --seeds=3,1
         --precisions=float32,bfloat16 --root=/tmp/genjax_precision] > precision_fid.json

Trains each config of configs/ once per seed (`config.seed`: the initial weights, the batches and every key) and
per precision policy (`config.precision`, genjax.precision), in its own workdir under --root (a finished workdir is
not trained again, only read), and takes the run's last evaluation, as train.py evaluates: FID of the config's
eval.quality_samples samples (the VAE's 5,000, the diffusion model's 1,000) against mnist5k's training digits
(genjax.quality) and the family's held-out numbers. A seed's runs start
from the same weights and see the same batches, so they differ only by the policy's rounding; how far two
float32 runs of different seeds lie apart is printed beside it, as the scale that difference is read on.
Training's rounding moves a run as another seed would, so the policy's cost is also measured apart from it: the
float32 run's last checkpoint sampled under each policy, with the loop's keys (the same latents and noise), so
that only the sampler's rounding differs (--sampling).
Prints a table to stderr and one JSON object to stdout.
"""

import importlib
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

_CONFIGS = flags.DEFINE_list("configs", ["vae_mnist5k", "diffusion_mnist5k"], "Config modules of configs/.")
_SEEDS = flags.DEFINE_list("seeds", ["3", "1"], "How many seeds (config.seed 0, 1, ...): one number for every"
                           " config or one per config.")
_PRECISIONS = flags.DEFINE_list("precisions", ["float32", "bfloat16"], "Policies; the first is the reference.")
_ROOT = flags.DEFINE_string("root", "/tmp/genjax_precision", "Where the workdirs go (CONFIG_PRECISION_sSEED).")
_STEPS = flags.DEFINE_integer("num_steps", None, "Override each config's num_steps (a quick check of the script).")
_SAMPLING = flags.DEFINE_bool("sampling", True, "Also sample each reference run's weights under every policy.")


def sampled_fids(workdir: str, policies: list[str], own_fid: float) -> dict[str, float]:
  """FID of the latest checkpoint of `workdir`, its samples drawn under each policy with the keys of the loop's
  evaluation; under the run's own policy that is the run's last FID, `own_fid`, not measured again (the
  same weights, keys and program)."""
  import jax  # pylint: disable=g-import-not-at-top
  from genjax import build, checkpoint, paths, quality  # pylint: disable=g-import-not-at-top
  from genjax import random as grandom  # pylint: disable=g-import-not-at-top
  from genjax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  from genjax.models import family as family_lib  # pylint: disable=g-import-not-at-top
  config = workdir_lib.load_config(workdir)
  keys = grandom.streams(config.seed)
  ckpt = checkpoint.Checkpointer(paths.join(workdir, "checkpoints"), config.keep_checkpoints, read_only=True)
  try:  # weights, optimizer state and statistics are float32 under every policy: one restore serves all
    _, state = ckpt.restore_latest(jax.jit(build.family(config).init)(keys.init))
  finally:
    ckpt.close()
  fids = {config.precision: own_fid}
  for policy in [p for p in policies if p not in fids]:
    config.precision = policy
    family = build.family(config)
    params = jax.jit(family.eval_params, static_argnums=2)(state, grandom.eval_params_key(keys.eval),
                                                           family_lib.get(config.family).weights[0])
    fids[policy] = quality.measure(jax.jit(family.sample, static_argnums=2), jax.jit(family.unscale), params,
                                   jax.random.fold_in(keys.eval, grandom.EVAL_QUALITY), config.dataset.name,
                                   config.eval.quality_samples)["fid"]
  return fids


def spread(values: list[float]) -> str:
  if len(values) < 2:
    return f"{values[0]:8.2f}"
  return f"{statistics.mean(values):8.2f} ± {statistics.stdev(values):5.2f}"


def main(argv):
  del argv
  from genjax import train_lib  # pylint: disable=g-import-not-at-top
  counts = [int(n) for n in _SEEDS.value]
  if len(counts) not in (1, len(_CONFIGS.value)):
    raise app.UsageError(f"--seeds: one count, or one per config ({len(_CONFIGS.value)}), not {len(counts)}")
  rows = []
  for name, count in zip(_CONFIGS.value, counts * len(_CONFIGS.value) if len(counts) == 1 else counts):
    module = importlib.import_module(f"configs.{name}")
    for seed in range(count):
      for policy in _PRECISIONS.value:
        config = module.get_config()
        config.seed, config.precision = seed, policy
        if _STEPS.value:
          config.num_steps = config.eval_every = _STEPS.value
        workdir = os.path.join(_ROOT.value, f"{name}_{policy}_s{seed}")
        t0 = time.perf_counter()
        result = train_lib.train_and_evaluate(config, workdir)
        row = {"config": name, "seed": seed, "precision": policy, "train_s": round(time.perf_counter() - t0, 1),
               **{k: float(v) for k, v in result.items() if isinstance(v, (int, float))}}
        if _SAMPLING.value and policy == _PRECISIONS.value[0]:
          row["sampled_fid"] = sampled_fids(workdir, _PRECISIONS.value, row["fid"])
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
  reference = _PRECISIONS.value[0]
  summary = {}
  print(f"\n{'config':18s} {'precision':10s} {'number':12s} {'mean ± sd over seeds':>21s} {'x ' + reference:>11s}"
        f" {'per seed':>22s}", file=sys.stderr)

  def compare(key: str, label: str, value: dict, ref: dict, digits: int) -> None:
    """One line of the table and of the summary: `value` by seed against the reference's `ref` by seed."""
    ratio = statistics.mean(value.values()) / statistics.mean(ref.values())
    paired = [value[s] / ref[s] for s in value]
    summary[key] = {"by_seed": value, "mean_ratio": ratio, "paired_ratios": paired}
    print(f"{label} {spread(list(value.values())):>21s} {ratio:11.3f}"
          f" {' '.join(f'{p:.{digits}f}' for p in paired):>22s}", file=sys.stderr)

  for name in _CONFIGS.value:
    runs = [r for r in rows if r["config"] == name]
    # FID, and the family's held-out number: the VAE's negative ELBO, the diffusion bound, the PixelCNN's NLL.
    numbers = ["fid"] + [k for k in ("neg_elbo", "bpd", "nll") if all(k in r for r in runs)][:1]
    for number in numbers:
      ref = {r["seed"]: r[number] for r in runs if r["precision"] == reference}
      for policy in _PRECISIONS.value:
        compare(f"{name} {policy} {number}", f"{name:18s} {policy:10s} {number:12s}",
                {r["seed"]: r[number] for r in runs if r["precision"] == policy}, ref, 3)
    sampled = {r["seed"]: r["sampled_fid"] for r in runs if "sampled_fid" in r}
    for policy in _PRECISIONS.value if sampled else []:
      compare(f"{name} {reference} weights sampled in {policy} fid", f"{name:18s} {policy:10s} {'fid sampled':12s}",
              {s: fids[policy] for s, fids in sampled.items()}, {s: fids[reference] for s, fids in sampled.items()}, 4)
  print("(x " + reference + ": the mean over the reference's; per seed: each seed's number over the reference's"
        f" of the same seed; fid sampled: the {reference} runs' weights, sampled under each policy)",
        file=sys.stderr)
  print(json.dumps({"rows": rows, "summary": summary}))


if __name__ == "__main__":
  app.run(main)
