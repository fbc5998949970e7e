"""Metrics to ``workdir/metrics.jsonl`` (one flat JSON object per line) and to TensorBoard."""
from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping

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
    """Drops lines past the resumed step: they came from work the checkpoint does not hold."""
    if not os.path.exists(self.path):
      return
    with open(self.path) as f:
      lines = [line for line in f if line.strip() and json.loads(line)["step"] <= step]
    with open(self.path, "w") as f:
      f.writelines(lines)

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


def read(workdir: str) -> list[dict]:
  """All rows of a run's metrics.jsonl."""
  with open(Workdir(workdir).metrics) as f:
    return [json.loads(line) for line in f if line.strip()]
