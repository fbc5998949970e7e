"""The SPIRAL reference as a test oracle: its own envs and extraction, in a venv of their own.

The reference run used TextArena 0.6.4 and the SPIRAL authors' package (``spiral-rl==0.2.0``);
the test environment holds TextArena 0.7.4, so the oracle lives in ``.venv-oracle`` at the
repository root, created here on first use (about 30 s, 180 MB; ``make clean`` removes it).
``call(op, ...)`` runs ``worker.py`` there with one JSON request and returns its JSON answer.
"""
from __future__ import annotations

import functools
import json
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
VENV = REPO / ".venv-oracle"
WORKER = pathlib.Path(__file__).with_name("worker.py")
PACKAGES = (("textarena==0.6.4",), ("--no-deps", "spiral-rl==0.2.0"))


@functools.cache
def python() -> pathlib.Path:
  """The oracle venv's interpreter, creating the venv when it is missing or half-built."""
  exe, stamp = VENV / "bin" / "python", VENV / ".installed"
  if not stamp.exists():
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    for args in PACKAGES:
      subprocess.run([str(exe), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                      *args], check=True)
    stamp.touch()
  return exe


def call(op: str, timeout: float = 600, **request) -> object:
  """The worker's answer to ``{"op": op, **request}`` (see ``worker.py`` for the ops)."""
  out = subprocess.run([str(python()), str(WORKER)], input=json.dumps({"op": op, **request}),
                       capture_output=True, text=True, timeout=timeout)
  if out.returncode:
    raise RuntimeError(f"reference worker failed on {op!r}:\n{out.stderr[-4000:]}")
  return json.loads(out.stdout)
