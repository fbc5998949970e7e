"""Writing files a run keeps: whole or not at all, and JSON that stays strict.

``atomic_write`` writes beside the target and renames, so a reader (or a crash) never sees half a
file; ``jsonable`` turns NumPy values and non-finite floats into what strict JSON allows.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np


def jsonable(x: Any) -> Any:
  """``x`` with NumPy scalars and arrays as plain values, tuples as lists, dict keys as strings,
  and non-finite floats as None (``json.dumps(..., allow_nan=False)`` then accepts it)."""
  if isinstance(x, dict):
    return {str(k): jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [jsonable(v) for v in x]
  if isinstance(x, (np.generic, np.ndarray)) or hasattr(x, "__array__"):
    return jsonable(np.asarray(x).tolist())
  if isinstance(x, float) and not math.isfinite(x):
    return None
  return x


def atomic_write(path: str | os.PathLike, text: str) -> None:
  """Writes ``text`` to ``path`` (parent folders created) through a temporary file and a rename."""
  path = os.fspath(path)
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = f"{path}.tmp.{os.getpid()}"  # one per process: hosts sharing a filesystem never collide
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(tmp, path)


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> None:
  """``obj`` as strict JSON (``jsonable``), written atomically."""
  atomic_write(path, json.dumps(jsonable(obj), indent=indent, allow_nan=False) + "\n")
