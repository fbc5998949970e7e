"""Multi-host training on JAX's own runtime: 2 processes x 4 CPU devices on localhost equal 1 process
x 8 devices (same rollout shards, so the same games), parameters and RAE baselines alike."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

WORKER = os.path.join(os.path.dirname(__file__), "multihost_worker.py")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _env() -> dict:
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)  # each worker sets its own device count
  env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")])
  return env


def _run(num_processes: int, devices: int, workdir: str, out: str, eval_every: int) -> None:
  port = _free_port()
  procs = [subprocess.Popen([sys.executable, WORKER, str(p), str(num_processes), str(port),
                             str(devices), workdir, out, str(eval_every)], env=_env(),
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
           for p in range(num_processes)]
  logs = [p.communicate(timeout=600)[0] for p in procs]
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-4000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("multihost")
  out = {}
  # Evaluation runs on the chief alone and leaves training untouched: only the 2-process run has it.
  for name, (procs, devices, eval_every) in {"one": (1, 8, 0), "two": (2, 4, 3)}.items():
    _run(procs, devices, str(root / name), str(root / f"{name}.npz"), eval_every)
    out[name] = (root / name, np.load(root / f"{name}.npz"))
  return out


def test_two_processes_train_like_one(runs):
  (_, one), (_, two) = runs["one"], runs["two"]
  assert int(one["step"]) == int(two["step"]) == 3
  np.testing.assert_allclose(two["rae"], one["rae"], rtol=1e-6, atol=1e-6)
  assert sorted(one.files) == sorted(two.files)
  for name in one.files:
    np.testing.assert_allclose(two[name], one[name], rtol=1e-5, atol=1e-6, err_msg=name)
  assert np.any(one["rae"] != 0)  # the baselines moved: games were played and folded in


def test_only_the_chief_writes_logs(runs):
  workdir, _ = runs["two"]
  rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  assert [r["step"] for r in rows if "train/loss" in r] == [1, 2, 3]  # once per step, not twice
  one = {r["step"]: r for r in map(json.loads, open(runs["one"][0] / "metrics.jsonl"))
         if "train/loss" in r}
  for row in (r for r in rows if "train/loss" in r):  # the same games: the same statistics
    for k in ("train/games", "train/played_moves", "train/KuhnPoker-v1/seat0_win_rate"):
      assert row[k] == one[row["step"]][k], k
  assert (workdir / "eval" / "3.json").exists()
  steps = lambda run: sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.isdigit())
  assert steps(workdir) == steps(runs["one"][0]) and "3" in steps(workdir)  # saved once, jointly
