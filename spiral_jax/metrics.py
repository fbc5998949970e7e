"""Metrics to ``workdir/metrics.jsonl`` (one flat JSON object per line) and to TensorBoard."""
from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping

from absl import logging

from spiral_jax.errors import InputError
from spiral_jax.files import jsonable
from spiral_jax.workdir import Workdir


class MetricsWriter:
  """Appends ``{"step": s, name: value, ...}`` lines; mirrors scalars to TensorBoard if available."""

  def __init__(self, workdir: str, resume_step: int = 0, tensorboard: bool = True):
    os.makedirs(workdir, exist_ok=True)
    self.path = Workdir(workdir).metrics
    self._truncate_after(resume_step)
    self._tb = None
    if tensorboard:
      try:
        from tensorboardX import SummaryWriter
        self._tb = SummaryWriter(Workdir(workdir).tensorboard)
      except ImportError:
        pass

  def _truncate_after(self, step: int) -> None:
    """Drops lines past the resumed step (they came from work the checkpoint does not hold) and a
    last line that a killed run left cut short."""
    if not os.path.exists(self.path):
      return
    lines = [line for line, row in _lines(self.path) if row["step"] <= step]
    with open(self.path, "w") as f:
      f.writelines(line if line.endswith("\n") else line + "\n" for line in lines)

  def write(self, step: int, metrics: Mapping[str, Any]) -> None:
    row = {"step": int(step), **{k: jsonable(v) for k, v in metrics.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(row, allow_nan=False) + "\n")
    if self._tb is not None:
      for k, v in row.items():
        if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
          self._tb.add_scalar(k, v, step)
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def _lines(path: str) -> list[tuple[str, dict]]:
  """``(line, row)`` of each line of a JSONL file. A last line that does not parse is a write
  that a killed process did not finish: dropped with a warning. Any other bad line is an error."""
  with open(path) as f:
    lines = [line for line in f if line.strip()]
  out = []
  for i, line in enumerate(lines):
    try:
      out.append((line, json.loads(line)))
    except json.JSONDecodeError as e:
      if i < len(lines) - 1:
        raise InputError(f"{path}:{i + 1} is not JSON ({e.msg}); fix or delete that line") from e
      logging.warning("%s: the last line is cut short (%s), a write the run did not finish; "
                      "it is left out", path, e.msg)
  return out


def read(workdir: str) -> list[dict]:
  """All rows of a run's metrics.jsonl."""
  return [row for _, row in _lines(Workdir(workdir).metrics)]
