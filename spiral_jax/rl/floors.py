"""The learner's padded shapes, kept beside each checkpoint (``checkpoints/shape_floors.json``).

Padded shapes change float rounding (left-padded prefixes shift the reductions), so a resumed run
pads exactly as an unbroken one: each checkpoint's ``ShapeFloor`` is saved with it and read back.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable

from spiral_jax import files
from spiral_jax.rl import batching


def load(path: str, step: int) -> batching.ShapeFloor | None:
  """The floor saved with checkpoint ``step``, or None if there is none."""
  if not os.path.exists(path):
    return None
  with open(path) as f:
    saved = json.load(f).get(str(step))
  if not saved:
    return None
  saved.pop("games", None)  # floors written before RAE moved to the host padded game arrays
  return batching.ShapeFloor(**saved)


def save(path: str, step: int, floor: batching.ShapeFloor, kept_steps: Iterable[int]) -> None:
  """Adds ``step``'s floor; the floors of checkpoints no longer kept are dropped."""
  floors = {}
  if os.path.exists(path):
    with open(path) as f:
      floors = json.load(f)
  kept = {str(s) for s in kept_steps}
  floors = {s: f for s, f in floors.items() if s in kept}
  floors[str(step)] = dataclasses.asdict(floor)  # sizes and the prefix table (token ids)
  files.write_json(path, floors, indent=None)
