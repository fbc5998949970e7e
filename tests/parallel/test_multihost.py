"""Multi-host training on JAX's own runtime: 2 processes x 4 CPU devices on localhost train bit for
bit like 1 process x 8 devices (same rollout shards, so the same games; the same gloo all-reduce,
so the same sums): parameters, optimizer state, RAE baselines, games and logged statistics."""
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
    _run(procs, devices, str(root / name), str(root / f"{name}.out"), eval_every)
    out[name] = (root / name, [np.load(root / f"{name}.out" / f"process{p}.npz")
                               for p in range(procs)])
  return out


def _logged(workdir) -> dict:
  """Step -> what the chief logged for it, less wall-clock times and the 2-process run's evals."""
  logged = {}
  for row in map(json.loads, open(workdir / "metrics.jsonl")):
    logged.setdefault(row.pop("step"), {}).update(
        {k: v for k, v in row.items() if not k.startswith(("time/", "eval/"))})
  return logged


def test_two_processes_train_like_one(runs):
  """Exact, with no tolerance: both layouts play the same games and sum the same partial gradients
  in the same order (see multihost_worker.py), so every number is the same float. A process that
  trained on other rows, played other games or folded the baselines twice changes some of them."""
  (one_dir, (one,)), (two_dir, twos) = runs["one"], runs["two"]
  assert int(one["step"]) == 3 and {"step3_games", "p0", "opt0"} <= set(one.files)
  assert np.any(one["rae"] != 0)  # the baselines moved: games were played and folded in
  # The rollouts (step<n>_*) first, then the baselines and step, then parameters and optimizer
  # state: other games fail as themselves, not as the parameters they led to.
  order = lambda name: (0 if "_" in name else 2 if name.startswith(("p", "opt")) else 1, name)
  names = sorted(one.files, key=order)
  for process, two in enumerate(twos):  # each process's own copy of the state and rollouts
    assert sorted(two.files) == sorted(one.files)
    for name in names:
      np.testing.assert_array_equal(two[name], one[name], err_msg=f"process {process}: {name}")
  one_logged, two_logged = _logged(one_dir), _logged(two_dir)
  assert sorted(one_logged) == sorted(two_logged) == [0, 1, 2, 3]
  for step, row in one_logged.items():  # rollout statistics and learner metrics, as floats
    assert two_logged[step] == row, step


def test_only_the_chief_writes_logs(runs):
  workdir, _ = runs["two"]
  rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  assert [r["step"] for r in rows if "train/loss" in r] == [1, 2, 3]  # once per step, not twice
  assert (workdir / "eval" / "3.json").exists()
  steps = lambda run: sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.isdigit())
  assert steps(workdir) == steps(runs["one"][0]) and "3" in steps(workdir)  # saved once, jointly
