"""Multi-host training on JAX's own runtime: 2 processes x 4 CPU devices on localhost train like 1
process x 8 devices with the same rollout shards: the same games, tokens, advantages, RAE baselines
and rollout statistics, bit for bit; the same parameters within what Adam's bounded step allows.

Why not every number bit for bit: both layouts compile the same optimized HLO and sum with gloo,
yet XLA's CPU kernels round differently with the number of devices a process holds (measured on
this test: 1x8, 2x4 and 4x2 give three different step-1 gradients, by up to 3.7e-9 in 2 of 13
leaves, while each layout repeats itself bit for bit, on 1 core or 2). Adam divides by sqrt(nu),
so a last-bit difference in a near-zero gradient grows to a sizeable part of one update. What
cannot differ by rounding is compared exactly: the two processes of one run against each other
(one SPMD program on replicated state), and the rollouts, baselines and rollout statistics of the
two layouts (tokens are discrete: a sampled token flips only where two Gumbel-perturbed scores tie
within the ~1e-7 parameter difference)."""
import json
import math
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


def _adam_step_bound(b1: float, b2: float, t: int) -> float:
  """Largest |update| / learning rate of Adam's t-th step, for any gradients: by Cauchy-Schwarz
  |m_t| <= (1 - b1) / sqrt(1 - b2) * sqrt(sum_k (b1^2 / b2)^k) * sqrt(v_t), then the bias
  corrections (1 at t = 1, where the update is g / |g|); eps only makes it smaller."""
  return ((1 - b1) * math.sqrt(1 - b2 ** t) / ((1 - b1 ** t) * math.sqrt(1 - b2))
          * math.sqrt(sum((b1 * b1 / b2) ** k for k in range(t))))


def _parameter_tolerance(steps: int) -> float:
  """How far two runs' parameters can drift apart, elementwise, whatever their gradients: each
  moves at most lr * bound_t per Adam step (warm-start Adam(1e-3, 0.9, 0.999), then every epoch of
  every policy step; no weight decay), so they differ by at most twice the sum. Training on other
  rows moves a parameter by about lr per step, in most of them; rounding (see above) stays far
  below the bound everywhere but in a few near-zero gradients."""
  from spiral_jax import config as config_lib
  from tests import tiny_config
  c = config_lib.from_config_dict(tiny_config.get_config())
  assert c.optim.weight_decay == 0 and c.optim.schedule != "cosine" and not c.optim.warmup_steps
  warm = sum(_adam_step_bound(0.9, 0.999, t) for t in range(1, c.warm_start.steps + 1))
  updates = steps * c.rl.epochs
  rl = sum(_adam_step_bound(c.optim.b1, c.optim.b2, t) for t in range(1, updates + 1))
  return 2 * (c.warm_start.learning_rate * warm + c.optim.learning_rate * rl)


def test_two_processes_train_like_one(runs):
  """The two processes of the 2-process run hold the same state and rollouts bit for bit; the two
  layouts play the same games, fold the same baselines and log the same rollout statistics bit
  for bit, and end within Adam's bound of each other. A process that trained on other rows, played
  other games or folded the baselines twice changes the games from step 2 on, or the baselines."""
  (one_dir, (one,)), (two_dir, twos) = runs["one"], runs["two"]
  assert int(one["step"]) == 3 and {"step3_games", "p0", "opt0"} <= set(one.files)
  assert np.any(one["rae"] != 0)  # the baselines moved: games were played and folded in
  # The rollouts (step<n>_*) first, then the baselines and step, then parameters and optimizer
  # state: other games fail as themselves, not as the parameters they led to.
  order = lambda name: (0 if "_" in name else 2 if name.startswith(("p", "opt")) else 1, name)
  names = sorted(one.files, key=order)
  assert sorted(twos[1].files) == sorted(twos[0].files) == sorted(one.files)
  for name in names:  # one SPMD program: every process's copy is the same bits
    np.testing.assert_array_equal(twos[1][name], twos[0][name], err_msg=f"process 1: {name}")
  two = twos[0]
  tolerance = _parameter_tolerance(int(one["step"]))
  for name in names:
    if name.startswith("p"):
      np.testing.assert_allclose(two[name], one[name], rtol=0, atol=tolerance, err_msg=name)
    elif name.startswith("opt"):  # Adam's moments follow the gradients; its counts are exact
      assert two[name].shape == one[name].shape and np.all(np.isfinite(two[name])), name
      if not np.issubdtype(one[name].dtype, np.floating):
        np.testing.assert_array_equal(two[name], one[name], err_msg=name)
    else:
      np.testing.assert_array_equal(two[name], one[name], err_msg=name)
  one_logged, two_logged = _logged(one_dir), _logged(two_dir)
  assert sorted(one_logged) == sorted(two_logged) == [0, 1, 2, 3]
  for step, row in one_logged.items():  # rollout statistics exactly; the learner's as below
    assert {k: v for k, v in two_logged[step].items() if not k.startswith("train/")} == \
        {k: v for k, v in row.items() if not k.startswith("train/")}, step
    learner = sorted(k for k in row if k.startswith("train/"))
    assert learner == sorted(k for k in two_logged[step] if k.startswith("train/")), step
    values = lambda logged: np.array([logged[step][k] for k in learner], float)
    assert np.all(np.isfinite(values(two_logged))), step
    if step == 1:  # later steps' parameters carry Adam's amplified rounding (the module docstring)
      # Step 1 learns from parameters one warm-start step g / |g| from the same init, so only
      # rounding separates its per-token means over <= 8 x 1024 tokens of O(1) terms: reordering
      # a float32 sum of n terms moves it by at most (n - 1) * 2^-24 of their size.
      rounding = (8 * 1024 - 1) * 2.0 ** -24
      np.testing.assert_allclose(values(two_logged), values(one_logged), rtol=rounding,
                                 atol=rounding, err_msg=f"step {step}: {learner}")


def test_only_the_chief_writes_logs(runs):
  workdir, _ = runs["two"]
  rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  assert [r["step"] for r in rows if "train/loss" in r] == [1, 2, 3]  # once per step, not twice
  assert (workdir / "eval" / "3.json").exists()
  steps = lambda run: sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.isdigit())
  assert steps(workdir) == steps(runs["one"][0]) and "3" in steps(workdir)  # saved once, jointly
