"""The metrics writer: JSONL lines and TensorBoard event files that TensorBoard reads back."""

import json
import os
import sys

import pytest

from genjax.writers import MetricWriter, dumps, last_row


def test_metrics_reach_jsonl_and_tensorboard_without_tensorflow(tmp_path):
  had_tf = "tensorflow" in sys.modules
  writer = MetricWriter(str(tmp_path))
  writer.write(3, "train", {"loss": 1.5, "kl": 0.25})
  writer.write(6, "train", {"loss": 1.25, "kl": 0.5})
  writer.write(6, "eval", {"nll": 93.4})
  writer.close()
  if not had_tf:  # writing event files must not cost a TensorFlow import
    assert "tensorflow" not in sys.modules
  with open(os.path.join(tmp_path, "metrics.jsonl"), encoding="utf-8") as f:
    lines = [json.loads(line) for line in f]
  assert [(r["step"], r["split"]) for r in lines] == [(3, "train"), (6, "train"), (6, "eval")]
  assert lines[1]["loss"] == 1.25 and lines[2]["nll"] == 93.4

  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # pylint: disable=g-import-not-at-top
  events = EventAccumulator(os.path.join(tmp_path, "tensorboard"))
  events.Reload()
  assert sorted(events.Tags()["scalars"]) == ["eval/nll", "train/kl", "train/loss"]
  assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(3, 1.5), (6, 1.25)]
  assert [(e.step, round(e.value, 4)) for e in events.Scalars("eval/nll")] == [(6, 93.4)]


def test_non_finite_values_are_strict_json_and_read_back(tmp_path):
  """A reverse KL is infinite when no sample is high-quality: the line stays JSON that any parser reads."""
  writer = MetricWriter(str(tmp_path), tensorboard=False)
  writer.write(4, "eval", {"reverse_kl": float("inf"), "modes": 3.0, "low": float("-inf")})
  writer.close()
  with open(os.path.join(tmp_path, "metrics.jsonl"), encoding="utf-8") as f:
    text = f.read()
  assert "Infinity" not in text and "NaN" not in text
  row = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))
  assert (row["reverse_kl"], row["low"], row["modes"]) == ("inf", "-inf", 3.0)
  assert last_row(str(tmp_path), "eval", 4) == {"reverse_kl": float("inf"), "modes": 3.0, "low": float("-inf")}
  assert dumps({"a": [float("nan"), 1.0]}) == '{"a": ["nan", 1.0]}'
