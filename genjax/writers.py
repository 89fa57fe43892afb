"""One metrics writer: a JSONL file and TensorBoard event files, side by side."""

import json
import os
import time

import numpy as np


class MetricWriter:
  """Appends {'step', 'split', 'time', **scalars} lines to metrics.jsonl and TensorBoard.

  TensorBoard is imported lazily: it pulls in TensorFlow, which library users
  of genjax's pure functions should not pay for.
  """

  def __init__(self, workdir: str, tensorboard: bool = True):
    self.jsonl_path = os.path.join(workdir, "metrics.jsonl")
    self._jsonl = open(self.jsonl_path, "a", encoding="utf-8")
    self._tb = None
    if tensorboard:
      from flax.metrics import tensorboard as flax_tb  # pylint: disable=g-import-not-at-top
      self._tb = flax_tb.SummaryWriter(os.path.join(workdir, "tensorboard"), auto_flush=False)

  def write(self, step: int, split: str, scalars: dict) -> None:
    values = {k: float(np.asarray(v)) for k, v in scalars.items()}
    record = {"step": int(step), "split": split, "time": round(time.time(), 3), **values}
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      for name, value in values.items():
        self._tb.scalar(f"{split}/{name}", value, int(step))

  def flush(self) -> None:
    self._jsonl.flush()
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    self._jsonl.close()
    if self._tb is not None:
      self._tb.close()
