"""Opponents: league snapshots and draws, frozen checkpoints, and the trainer against each."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spiral_jax import metrics as metrics_lib
from spiral_jax.play import opponents, rollout
from spiral_jax.run.trainer import Trainer
from tests.rl.test_rae import python_fold
from tests.run.test_trainer import tiny_config


def _params(x):
  return {"w": jnp.full((4,), x, jnp.float32), "b": {"c": jnp.arange(3.0) * x}}


def test_league_pool_keeps_the_newest_before_the_step(tmp_path):
  league = opponents.League(str(tmp_path / "league"), size=2, every=5)
  for step in range(0, 21):
    league.save(step, _params(float(step)))  # only multiples of 5 are kept
  assert league.checkpointer.steps() == [10, 15, 20]  # size + 1 on disk
  assert league.pool(19) == [10, 15]
  assert league.pool(20) == [15, 20]
  picks = [league.pick(s, seed=3) for s in range(15, 40)]
  assert picks == [league.pick(s, seed=3) for s in range(15, 40)]  # a function of (seed, step)
  assert set(picks) == {15, 20} and {league.pick(s, seed=3) for s in range(15, 20)} <= {10, 15}
  got = league.params(15, _params(0.0))
  np.testing.assert_array_equal(got["w"], np.full(4, 15.0))
  np.testing.assert_array_equal(got["b"]["c"], np.arange(3.0) * 15)
  league.close()


def test_league_without_snapshots_says_why(tmp_path):
  league = opponents.League(str(tmp_path / "league"), size=2, every=5)
  with pytest.raises(RuntimeError, match="no snapshot"):
    league.pick(3, seed=0)
  league.close()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A 2-step self-play run to read opponents from."""
  workdir = tmp_path_factory.mktemp("self")
  state = Trainer(tiny_config(num_steps=2), str(workdir), progress=False).run()
  return workdir, state


def test_restore_params_reads_only_the_weights(trained):
  workdir, state = trained
  params, step = opponents.restore_params(str(workdir / "checkpoints"), state.params)
  assert step == 2
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  with pytest.raises(FileNotFoundError, match="nothing does not exist"):
    opponents.restore_params(str(workdir / "nothing"), state.params)


def test_training_against_a_frozen_checkpoint(trained, tmp_path):
  workdir, _ = trained
  trainer = Trainer(tiny_config(num_steps=1, opponent="checkpoint", opponent_path=str(workdir)),
                    str(tmp_path / "vs_ckpt"), progress=False)
  agent = trainer.runners[0].opponent
  assert isinstance(agent, rollout.TextAgent) and agent.name.endswith("@2")
  state = trainer.initial_state()
  r, baselines = trainer.collect(state)
  assert len(r.moves) == 8
  for move in r.moves:  # only the learner's seat of each game trains
    assert r.games[move.game].learner_seats == (move.seat,)
  _, want = python_fold(r.games)  # over the learner's seats only
  want = np.array([[want.get((0, k, p), 0.0) for p in range(2)]
                   for k in range(len(trainer.games))])
  np.testing.assert_array_equal(baselines[0], want.astype(np.float32))
  assert trainer.run().step == 1


def test_opponent_path_must_be_a_folder(tmp_path):
  with pytest.raises(ValueError, match="opponent_path"):
    Trainer(tiny_config(opponent="checkpoint", opponent_path=str(tmp_path / "missing")),
            str(tmp_path / "w"), progress=False)


def test_league_training_draws_past_snapshots(tmp_path):
  cfg = tiny_config(num_steps=4, opponent="league", league_size=2, league_every=2)
  Trainer(cfg, str(tmp_path), progress=False).run()
  rows = [r for r in metrics_lib.read(tmp_path) if "train/loss" in r]
  drawn = [r["train/league_opponent_step"] for r in rows]
  assert [r["step"] for r in rows] == [1, 2, 3, 4]
  assert drawn[0] == 0 and drawn[1] == 0 and drawn[2] in (0, 2) and drawn[3] in (0, 2)
  assert sorted(int(p.name) for p in (tmp_path / "league").iterdir() if p.name.isdigit()) == [
      0, 2, 4]
