"""Two or more models trained in turns on one machine, so that each sees the same load and drift: the harness of
the benchmarks that compare models at equal training time (pixelcnn_vs_vae.py, conditional_vs_unconditional.py).
"""

import itertools
import json
import os
import time

import jax

from genjax import build, checkpoint, data
from genjax import random as grandom
from genjax.models import family as family_lib


class Run:
  """One config's training, advanced segment by segment, its training seconds counted apart from evaluations.

  The loop's keys (`genjax.random.streams`) and one batch per step, on one device; the step compiled before any
  training time is counted.
  """

  def __init__(self, name: str, config, directory: str | None = None):
    """`directory`: where `save` keeps this run, and whence it resumes (its newest save) if one is there."""
    build.validate(config)
    self.name, self.config = name, config
    self.family = build.family(config)
    self.keys = grandom.streams(config.seed)
    self.state = self.family.init(self.keys.init)
    self.train_s, self.step, self.rows = 0.0, 0, []
    self._directory = directory
    self._checkpoints = checkpoint.Checkpointer(directory, keep=1) if directory else None
    if self._checkpoints is not None and (saved := self._checkpoints.restore_latest(self.state)) is not None:
      self.step, self.state = saved
      with open(os.path.join(directory, f"{self.step}.json"), encoding="utf-8") as f:
        self.train_s = json.load(f)["train_s"]
    # The batches a run trained from the start would see from here on (resumed: bitwise the same run).
    batches = data.train_iterator(config.dataset.name, batch_size=config.batch_size, seed=config.seed,
                                  train_examples=config.dataset.train_examples, skip_batches=self.step)
    first = next(batches)
    self.batches = itertools.chain([first], batches)
    # Compiled here, so that no run's training time holds its compilation; the state donated, as the loop's.
    self.step_fn = jax.jit(self.family.train_step, donate_argnums=0).lower(
        self.state, first, grandom.step_key(self.keys.train, self.step)).compile()

  def save(self) -> None:
    """Keeps this run's state, step and training time in its directory (the previous save is replaced)."""
    os.makedirs(self._directory, exist_ok=True)
    with open(os.path.join(self._directory, f"{self.step}.json"), "w", encoding="utf-8") as f:
      json.dump({"train_s": self.train_s}, f)
    self._checkpoints.save(self.step, self.state)
    self._checkpoints.wait()

  def train_until(self, seconds: float) -> None:
    """Steps until this run's training time reaches `seconds` (the step in flight finishes)."""
    start = time.perf_counter()
    done = self.train_s
    while done < seconds:
      batch = next(self.batches)
      self.state, metrics = self.step_fn(self.state, batch, grandom.step_key(self.keys.train, self.step))
      jax.block_until_ready(metrics)
      self.step += 1
      done = self.train_s + time.perf_counter() - start
    self.train_s = done

  def train_to_step(self, step: int) -> None:
    """Steps until this run has taken `step` steps, its training time counted as `train_until`'s."""
    start = time.perf_counter()
    while self.step < step:
      batch = next(self.batches)
      self.state, metrics = self.step_fn(self.state, batch, grandom.step_key(self.keys.train, self.step))
      jax.block_until_ready(metrics)
      self.step += 1
    self.train_s += time.perf_counter() - start

  def params(self, weights: str | None = None):
    """The weights sampling and evaluation use (the family's default: an EMA where it keeps one)."""
    weights = weights or family_lib.get(self.config.family).weights[0]
    return jax.jit(self.family.eval_params, static_argnums=2)(
        self.state, grandom.eval_params_key(self.keys.eval), weights)


def train_in_turns(runs: list[Run], seconds: float, segment_s: float) -> None:
  """Trains every run to `seconds` of its own training time, `segment_s` at a time, in turns."""
  while min(run.train_s for run in runs) < seconds:
    for run in runs:
      run.train_until(min(seconds, run.train_s + segment_s))
