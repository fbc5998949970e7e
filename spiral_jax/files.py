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

from spiral_jax.errors import InputError

LFS_POINTER = b"version https://git-lfs"  # what a git clone without git-lfs leaves for a big file


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


def check_readable(path: str | os.PathLike, what: str) -> None:
  """Raises ``InputError`` naming ``path`` when it is not the real file: a git-LFS pointer left by
  a clone without git-lfs, or empty. ``what`` says what it should be ("a safetensors file")."""
  with open(path, "rb") as f:
    head = f.read(len(LFS_POINTER))
  if head.startswith(LFS_POINTER):
    raise InputError(f"{os.fspath(path)} is a git-LFS pointer, not {what}: fetch the file itself "
                     "(git lfs pull, or huggingface-cli download)")
  if not head:
    raise InputError(f"{os.fspath(path)} is empty, not {what}: copy the file again")


def read_json(path: str | os.PathLike) -> dict[str, Any]:
  """The JSON object in ``path`` ({} when there is no file); a bad file is an error naming it."""
  if not os.path.exists(path):
    return {}
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except json.JSONDecodeError as error:
    raise InputError(f"{os.fspath(path)!r} is not valid JSON ({error}); fix or remove it") from error
