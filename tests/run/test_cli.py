"""The command lines on bad input: one line on stderr naming the field or file and the fix, exit
status 2, no traceback (``--debug`` shows it), and nothing created on disk."""
import os
import subprocess
import sys

import pytest

CONFIG = "experiments/tiny_cpu.py"

# (command and flags, what the one line must say); {w} is a workdir that must not appear.
CASES = [
    ("train --workdir={w} --config.batch_size=0", "batch_size=0 must be positive"),
    ("train --workdir={w} --config.batchsize=3", '--config.batchsize: unknown config field '
     "'batchsize'; did you mean \"batch_size\""),
    ("train --workdir={w} --config.rl.rae_alfa=0.5", "--config.rl.rae_alfa: unknown config field"),
    ("train --workdir={w} --config.rl.rae_alpha=2", "rl.rae_alpha=2.0 must lie in [0, 1)"),
    ("train --workdir={w} --config.batch_size=abc", "--config.batch_size=abc"),
    ("train --workdir={w} --no_such_flag", "Unknown command line flag 'no_such_flag'"),
    ("train --workdir={w} --verbosity=1 --config.batch_size=0",  # absl's own flags pass through
     "batch_size=0 must be positive"),
    ("train --workdir={w} --config=no/such/config.py", "--config=no/such/config.py could not be "
     "loaded: [Errno 2] No such file or directory"),
    ("evaluate --workdir={w}", "{w}/config.json does not exist"),
    ("evaluate --workdir={w} --config=" + CONFIG + " --config.batchsize=3",
     "unknown config field 'batchsize': did you mean 'batch_size'?"),
    ("sft --workdir={w} --config.warm_start.stepz=3",
     "unknown config field 'warm_start.stepz': did you mean 'warm_start.steps'?"),
    ("plan --config=" + CONFIG + " --headroom=2", "--headroom=2.0 must lie in (0, 1]"),
    ("plan --config=" + CONFIG + " --topology=v9x-3", "--topology='v9x-3' is unknown"),
]


def _run(args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
  command, *flags = args.split()
  env = {**os.environ, **(env_extra or {})}
  return subprocess.run([sys.executable, "-m", f"spiral_jax.{command}", *flags], env=env,
                        capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args,says", CASES, ids=[c[0].split(" ")[0] + str(i)
                                                  for i, c in enumerate(CASES)])
def test_bad_input_prints_one_line_and_exits_2(tmp_path, args, says):
  workdir = tmp_path / "run"
  done = _run(args.format(w=workdir))
  assert done.returncode == 2, done.stderr[-3000:]
  assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr[-3000:]
  assert done.stderr.startswith("error: ") and says.format(w=workdir) in done.stderr, done.stderr
  assert "Traceback" not in done.stderr and done.stdout == ""
  assert not workdir.exists()  # a command that fails creates nothing


def test_debug_shows_the_traceback(tmp_path):
  for extra, env in (("--debug", None), ("", {"SPIRAL_DEBUG": "1"})):
    done = _run(f"train --workdir={tmp_path / 'run'} --config.batch_size=0 {extra}", env)
    assert done.returncode == 1 and "Traceback" in done.stderr, done.stderr[-3000:]
    assert "InputError: batch_size=0 must be positive" in done.stderr
    assert not (tmp_path / "run").exists()
