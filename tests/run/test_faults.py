"""Faults during a checkpoint write (#24 item 5), on the robustness run of tests/test_robustness.py:

* ``kill -9`` at three points of the asynchronous save of step 1 (its temporary folder just made;
  every file written but not yet renamed into place; renamed, before the trainer's own
  bookkeeping): the rerun resumes from the newest complete step and ends bit-identical to an
  unbroken run.
* the disk filling up (ENOSPC injected at every write into step N's temporary folder): the run
  stops with one ``CheckpointWriteError`` naming the step and the cause, the previous checkpoint is
  intact, and the rerun, with space again, ends as the unbroken run does.
"""
import builtins
import errno
import os
import subprocess
import sys

import jax
import pytest

from spiral_jax import checkpoint as checkpoint_lib
from tests.test_robustness import (N, ROOT, _assert_same_run, _run, _steps,  # noqa: F401
                                   compile_once, straight)

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

# The robustness run in a process that SIGKILLs itself at one point of step 1's save, in Orbax's
# background thread. Orbax commits a step by renaming "<step>.orbax-checkpoint-tmp" to "<step>".
KILLED = r"""
import os, signal, sys
point, workdir = sys.argv[1], sys.argv[2]
TMP = "1.orbax-checkpoint-tmp"

def die():
  os.kill(os.getpid(), signal.SIGKILL)

real_mkdir, real_rename = os.mkdir, os.rename

def mkdir(path, *args, **kwargs):
  real_mkdir(path, *args, **kwargs)
  if point == "folder made" and os.path.basename(os.fspath(path)).startswith(TMP):
    die()

def rename(src, dst, *args, **kwargs):
  committing = os.path.basename(os.fspath(src)).startswith(TMP)
  if committing and point == "files written":
    die()
  real_rename(src, dst, *args, **kwargs)
  if committing and point == "renamed":
    die()

os.mkdir, os.rename = mkdir, rename
from tests.test_robustness import _run
_run(workdir)
print("not killed")
"""


def _cache_env() -> dict:
  """The module's compilation cache (``compile_once``), shared with the child process."""
  return {**os.environ, "PYTHONPATH": ROOT, "JAX_COMPILATION_CACHE_DIR":
          jax.config.jax_compilation_cache_dir,
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
          "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


@pytest.mark.parametrize("point, resumes_from", [("folder made", 0), ("files written", 0),
                                                 ("renamed", 1)])
def test_kill_9_during_an_async_save_resumes_from_the_newest_complete_step(
    tmp_path, straight, point, resumes_from, capsys):
  workdir = tmp_path / "run"
  killed = subprocess.run([sys.executable, "-c", KILLED, point, str(workdir)], cwd=ROOT,
                          env=_cache_env(), capture_output=True, text=True, timeout=600)
  assert killed.returncode == -9, killed.stdout + killed.stderr[-3000:]  # died at that point
  assert _steps(workdir) == list(range(resumes_from + 1))
  capsys.readouterr()
  resumed = _run(workdir)
  assert f"resumed from step {resumes_from}" in capsys.readouterr().out
  _assert_same_run(workdir, resumed, *straight)
  assert _steps(workdir) == _steps(straight[0])
  assert not [p for p in os.listdir(workdir / "checkpoints") if "tmp" in p]  # cleaned up


def test_a_full_disk_stops_the_run_with_one_clear_error_and_the_previous_step_intact(
    tmp_path, straight, monkeypatch):
  real_open = builtins.open
  refused = []

  def full_disk(file, mode="r", *args, **kwargs):
    if any(c in mode for c in "wax") and f"{N}.orbax-checkpoint-tmp" in os.fspath(file):
      refused.append(os.fspath(file))
      raise OSError(errno.ENOSPC, "No space left on device", os.fspath(file))
    return real_open(file, mode, *args, **kwargs)

  workdir = tmp_path / "run"
  monkeypatch.setattr(builtins, "open", full_disk)
  with pytest.raises(checkpoint_lib.CheckpointWriteError) as error:
    _run(workdir)
  monkeypatch.setattr(builtins, "open", real_open)
  assert refused  # the injection was reached
  message = str(error.value)
  assert "\n" not in message
  assert f"checkpoint {N} under {workdir / 'checkpoints'} could not be written" in message
  assert "No space left on device" in message
  assert f"step {N - 1}, is intact: rerun to resume from it" in message
  assert _steps(workdir) == list(range(N))  # step N never committed; the earlier ones stay
  ref_workdir, ref = straight
  reader = checkpoint_lib.Checkpointer(str(workdir / "checkpoints"), read_only=True)
  previous = checkpoint_lib.Checkpointer(str(ref_workdir / "checkpoints"), read_only=True)
  for a, b in zip(jax.tree.leaves(previous.restore(N - 1, ref)),
                  jax.tree.leaves(reader.restore(N - 1, ref)), strict=True):
    assert (jax.device_get(a) == jax.device_get(b)).all()  # exact: the same bytes read back
  resumed = _run(workdir)  # space again: the rerun redoes step N
  _assert_same_run(workdir, resumed, ref_workdir, ref)
