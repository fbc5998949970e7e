"""The training loop end to end on a very small config: resume is exact, metrics are written."""
import json
import os

import jax
import numpy as np
import pytest

from spiral_jax import config as config_lib
from spiral_jax import metrics as metrics_lib
from spiral_jax.run import trainer as trainer_lib
from spiral_jax.run.trainer import Trainer
from tests import tiny_config as tiny_config_file


def tiny_config(**overrides):
  """``tests/tiny_config.py`` with ``overrides``, validated; a ``__`` in a name is a group's dot
  (``eval__every=1`` sets ``eval.every``)."""
  c = tiny_config_file.get_config()
  c.update_from_flattened_dict({k.replace("__", "."): v for k, v in overrides.items()})
  return config_lib.from_config_dict(c)


def _run(workdir, steps):
  cfg = tiny_config(num_steps=steps)
  return Trainer(cfg, str(workdir), progress=False).run()


def _without_times(rows):
  return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def test_resume_is_exact(tmp_path):
  straight = _run(tmp_path / "straight", 6)
  _run(tmp_path / "resumed", 3)
  resumed = _run(tmp_path / "resumed", 6)  # same workdir: restores step 3, runs 3 more
  assert int(resumed.step) == int(straight.step) == 6
  for a, b in zip(jax.tree.leaves(straight.params), jax.tree.leaves(resumed.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  np.testing.assert_array_equal(np.asarray(straight.rae), np.asarray(resumed.rae))
  assert np.abs(np.asarray(straight.rae)).sum() > 0
  rows_a = _without_times(metrics_lib.read(tmp_path / "straight"))
  rows_b = _without_times(metrics_lib.read(tmp_path / "resumed"))
  assert rows_a == rows_b and [r["step"] for r in rows_a if "train/loss" in r] == [1, 2, 3, 4, 5, 6]
  row = rows_a[-1]
  assert row["train/ratio_first_epoch"] == 1.0  # "old" log-probs are the pre-update policy's
  for name in ("train/KuhnPoker-v1/invalid_rate", "train/response_chars", "train/entropy",
               "train/rae_baseline/KuhnPoker-v1/seat0"):
    assert name in row
  assert os.path.exists(tmp_path / "straight" / "tensorboard")
  # The newest checkpoints and step 0 (the starting policy) are kept.
  kept = sorted(int(p) for p in os.listdir(tmp_path / "straight" / "checkpoints") if p.isdigit())
  assert kept == [0, 5, 6]
  with open(tmp_path / "straight" / "config.json") as f:
    assert json.load(f)["num_steps"] == 6
  for name in ("train/kept_moves", "train/advantage_min", "train/advantage_max",
               "train/log_ratio_min", "train/log_ratio_max"):
    assert name in row, name
  assert row["train/advantage_min"] <= row["train/advantage_max"]
  assert row["train/kept_samples"] == cfg_batch_size()  # filtered before the draw: never fewer
  _check_transcripts(tmp_path / "straight", steps=6)


def cfg_batch_size():
  return tiny_config().batch_size


def _check_transcripts(workdir, steps):
  """Every step wrote its first round's first games whole: in self-play every move is there,
  in order, each with the observation its seat saw and the response it gave."""
  folder = workdir / "transcripts"
  assert sorted(os.listdir(folder)) == sorted(f"step_{s:06d}.{ext}" for s in range(1, steps + 1)
                                              for ext in ("jsonl", "md"))
  with open(folder / "step_000001.jsonl") as f:
    games = [json.loads(line) for line in f]
  assert len(games) == tiny_config().transcript_games
  for g in games:
    assert g["game"] == "KuhnPoker-v1" and g["learner_seats"] == [0, 1]
    assert len(g["moves"]) == g["num_moves"] > 0
    assert all(m["observation"] and isinstance(m["response"], str) for m in g["moves"])
    assert all(isinstance(m["advantage"], float) for m in g["moves"])  # scored by RAE
  page = (folder / "step_000001.md").read_text()
  assert page.startswith("# Step 1: 2 games") and games[0]["moves"][0]["observation"] in page


def test_evaluation_writes_win_rates_and_exact_exploitability(tmp_path, monkeypatch):
  cfg = tiny_config(num_steps=1, eval__every=1, eval__games=8)
  drawn = []  # the metrics steps each drawing of the learning curves saw
  draw = trainer_lib.plots.learning_curves
  monkeypatch.setattr(trainer_lib.plots, "learning_curves", lambda runs, path: (
      drawn.append([r["step"] for r in runs["run"]]), draw(runs, path))[1])
  Trainer(cfg, str(tmp_path), progress=False).run()
  # Redrawn after each evaluation (step 0, then with step 1's row) and once more on the way out.
  assert [d[-1] for d in drawn] == [0, 1, 1] and drawn[1] == drawn[0] + [1] == drawn[2]
  assert (tmp_path / "learning_curves.png").stat().st_size
  evals = [r for r in metrics_lib.read(tmp_path) if "eval/KuhnPoker-v1/exploitability" in r]
  assert [r["step"] for r in evals] == [0, 1]
  for r in evals:
    assert 0.0 <= r["eval/KuhnPoker-v1/exploitability"] <= 2.0
    assert 0.0 <= r["eval/KuhnPoker-v1/off_format_mass"] <= 1.0
    assert 0.0 <= r["eval/KuhnPoker-v1/vs_random/win_rate"] <= 1.0
    # Evaluation forfeits pay -1 / +1, so rewards stay within the game's chip range.
    assert -2.0 <= r["eval/KuhnPoker-v1/vs_random/mean_reward"] <= 2.0


def test_the_run_stops_after_k_nonfinite_steps_in_a_row(tmp_path):
  """NaN returns make every update non-finite: each is skipped, then the run stops with a clear
  error naming the fix; the metrics stay strict JSON (NaN losses are written as null)."""
  trainer = Trainer(tiny_config(num_steps=5, rl__max_nonfinite_steps=2, checkpoint__every=10),
                    str(tmp_path), progress=False)
  clean = trainer.train_step

  def poisoned(state, batch, *reference):
    return clean(state, batch.replace(baselines=batch.baselines * np.nan), *reference)

  trainer.train_step = poisoned
  with pytest.raises(FloatingPointError, match="2 policy steps in a row"):
    trainer.run()
  assert (tmp_path / "learning_curves.png").stat().st_size  # drawn on the way out of an error
  rows = [r for r in metrics_lib.read(tmp_path) if "train/nonfinite" in r]
  assert [r["step"] for r in rows] == [1, 2] and all(r["train/nonfinite"] > 0 for r in rows)
  for line in open(tmp_path / "metrics.jsonl"):
    json.loads(line, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))


def test_a_fresh_run_with_a_kl_penalty_uses_its_step_0_policy(tmp_path):
  # The reference is the step-0 checkpoint, saved asynchronously just before self-play starts.
  cfg = tiny_config(num_steps=2, rl__loss=dict(drgrpo_constant=4.0, kl_beta=0.5))
  state = Trainer(cfg, str(tmp_path), progress=False).run()
  assert int(state.step) == 2
  rows = [r for r in metrics_lib.read(str(tmp_path)) if "train/kl" in r]
  assert [r["step"] for r in rows] == [1, 2]
  assert rows[0]["train/kl"] == 0.0 and rows[1]["train/kl"] > 0.0  # step 1 starts at the reference
