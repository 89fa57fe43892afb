"""One metrics writer: a JSONL file and TensorBoard event files, side by side.

Both grow at their end through `genjax.paths.Appender`: a local file in append mode, or on a bucket (which has
no append) the whole object uploaded again at most every few seconds and on close.
"""

import io
import json
import os
import socket
import time

import numpy as np

from genjax import paths


class EventFile:
  """A TensorBoard event file of scalars, written with tensorboard's record writer and protos.

  Not `flax.metrics.tensorboard`: that one imports TensorFlow (seconds of
  start-up in every run) to write the same records.
  """

  def __init__(self, logdir: str):
    # Deferred: only a run that writes TensorBoard files pays for protobuf.
    from tensorboard.compat.proto import event_pb2, summary_pb2  # pylint: disable=g-import-not-at-top
    from tensorboard.summary.writer import record_writer  # pylint: disable=g-import-not-at-top
    self._event, self._summary = event_pb2.Event, summary_pb2.Summary
    paths.makedirs(logdir)
    name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.0"
    self._file = paths.Appender(paths.join(logdir, name), binary=True, truncate=True)
    self._records = record_writer.RecordWriter(self._file)
    self._write(self._event(wall_time=time.time(), file_version="brain.Event:2"))

  def _write(self, event) -> None:
    self._records.write(event.SerializeToString())

  def scalar(self, tag: str, value: float, step: int) -> None:
    summary = self._summary(value=[self._summary.Value(tag=tag, simple_value=value)])
    self._write(self._event(wall_time=time.time(), step=step, summary=summary))

  def flush(self) -> None:
    self._file.flush()

  def close(self) -> None:
    self._file.close()


_NON_FINITE = {"inf": float("inf"), "-inf": float("-inf"), "nan": float("nan")}


def json_safe(value):
  """`value` with every non-finite float written as the string 'inf', '-inf' or 'nan'.

  JSON has no such numbers: Python's `Infinity` breaks jq, JavaScript and strict parsers. A
  reverse KL is legitimately infinite when no sample is high-quality; `float(s)` reads it back.
  """
  if isinstance(value, dict):
    return {k: json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_safe(v) for v in value]
  if isinstance(value, float) and not np.isfinite(value):
    return "nan" if np.isnan(value) else ("inf" if value > 0 else "-inf")
  return value


def dumps(value, **kwargs) -> str:
  """Strict JSON of `value` (non-finite floats as strings, see `json_safe`)."""
  return json.dumps(json_safe(value), allow_nan=False, **kwargs)


def _rows(path: str) -> list[dict]:
  """The whole rows of a metrics.jsonl (a last line cut short by a crash is not one)."""
  rows = []
  try:
    text = paths.read_text(path)
  except FileNotFoundError:
    return rows
  for line in io.StringIO(text):  # lines as a file gives them
    try:
      row = json.loads(line)
    except ValueError:
      continue
    if isinstance(row, dict) and isinstance(row.get("step"), int):
      rows.append(row)
  return rows


def has_row(workdir: str, split: str, step: int) -> bool:
  """Whether the workdir's metrics.jsonl holds a whole `split` row of `step` (an evaluation's is written last)."""
  return any(row["step"] == step and row.get("split") == split
             for row in _rows(paths.join(workdir, METRICS_FILE)))


def last_row(workdir: str, split: str, step: int) -> dict[str, float]:
  """The scalars of the last `split` row of `step` in the workdir's metrics.jsonl; {} when there is none."""
  for row in reversed(_rows(paths.join(workdir, METRICS_FILE))):
    if row["step"] == step and row.get("split") == split:
      return {k: _NON_FINITE.get(v, v) if isinstance(v, str) else v
              for k, v in row.items() if k not in ("step", "split", "time")}
  return {}


METRICS_FILE = "metrics.jsonl"


class MetricWriter:
  """Appends {'step', 'split', 'time', **scalars} lines to metrics.jsonl and TensorBoard."""

  def __init__(self, workdir: str, tensorboard: bool = True, resume_step: int | None = None):
    """Opens the workdir's metrics; with `resume_step`, first drops the rows of later steps (atomically).

    A run resumed from the checkpoint of step s retrains the steps after s, and logs them again: the rows
    that the stopped run logged for them would be duplicates of other values.
    """
    self.jsonl_path = paths.join(workdir, METRICS_FILE)
    if resume_step is not None and paths.exists(self.jsonl_path):
      rows = _rows(self.jsonl_path)
      kept = [row for row in rows if row["step"] <= resume_step]
      text = paths.read_text(self.jsonl_path)
      if len(kept) < len(rows) or len(rows) < text.count("\n") or (text and not text.endswith("\n")):
        kept_text = "".join(dumps(row) + "\n" for row in kept)
        if paths.is_remote(self.jsonl_path):
          paths.write_atomically(self.jsonl_path, kept_text)  # one upload: the old object or the new one
        else:
          temporary = f"{self.jsonl_path}.{os.getpid()}.tmp"
          with open(temporary, "w", encoding="utf-8") as f:
            f.write(kept_text)
          os.replace(temporary, self.jsonl_path)
    self._jsonl = paths.Appender(self.jsonl_path)
    self._tb = EventFile(paths.join(workdir, "tensorboard")) if tensorboard else None

  def write(self, step: int, split: str, scalars: dict) -> None:
    values = {k: float(np.asarray(v)) for k, v in scalars.items()}
    record = {"step": int(step), "split": split, "time": round(time.time(), 3), **values}
    self._jsonl.write(dumps(record) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      for name, value in values.items():
        self._tb.scalar(f"{split}/{name}", value, int(step))
      self._tb.flush()

  def write_info(self, step: int, split: str, fields: dict) -> None:
    """A row of facts rather than scalars (the devices a run starts on): metrics.jsonl only, not TensorBoard."""
    self._jsonl.write(dumps({"step": int(step), "split": split, "time": round(time.time(), 3), **fields}) + "\n")
    self._jsonl.flush()

  def close(self) -> None:
    self._jsonl.close()
    if self._tb is not None:
      self._tb.close()
