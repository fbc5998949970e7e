"""RAE as the reference computes it: learner seats only, in collection order, before the filter and
the exact draw, with independent baseline groups. The plain-Python folds here are the oracle
(SPIRAL.md section 2; ``train_spiral.py``'s ``prepare_trajectories`` and ``EMA``). Every
comparison is exact: the fold runs in float64, as Python floats do, with the same operations."""
import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import spiral_jax as sj
from spiral_jax.games import experts
from spiral_jax.play import rollout
from spiral_jax.rl import rae
from tests.play.test_rollout import CharTokenizer, fake_sampler

RETURNS = [-1.5, -1.0, 0.0, 0.5, 1.0]


def python_fold(games, groups=1, alpha=0.95):
  """The reference's EMAs, one per (group, kind, seat), as plain floats: (advantages by game and
  seat, None where not folded; final baselines)."""
  b = {}
  adv = []
  for g in games:
    group = g.row * groups // g.round_games
    row = [None, None]
    for p in g.learner_seats:
      key = (group, g.kind, p)
      before = b.get(key, 0.0)
      row[p] = float(g.returns[p]) - before
      b[key] = alpha * before + (1 - alpha) * float(g.returns[p])
    adv.append(row)
  return adv, b


def finished(kind, returns, seats=(0, 1), row=0, round_games=1):
  return rollout.FinishedGame(kind, np.asarray(returns, np.float32), -1, 1, tuple(seats), row,
                              round_games)


def assert_fold_equals(fold: rae.Baselines, adv, games, groups):
  want_adv, want_b = python_fold(games, groups, fold.alpha)
  for got, want in zip(adv, want_adv):
    for p in range(2):
      assert (np.isnan(got[p]) if want[p] is None else got[p] == want[p])
  for (group, kind, p), value in want_b.items():
    assert fold.values[group, kind, p] == value
  untouched = np.ones(fold.values.shape, bool)
  for key in want_b:
    untouched[key] = False
  assert (fold.values[untouched] == 0).all()


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.integers(1, 4), st.lists(
    st.tuples(st.integers(0, 2), st.sampled_from(RETURNS), st.sampled_from(RETURNS),
              st.sampled_from([(0, 1), (0,), (1,)]), st.integers(0, 7)), min_size=1, max_size=40))
def test_the_fold_is_a_plain_python_fold_over_learner_seats_and_groups(groups, spec):
  games = [finished(k, (r0, r1), seats, row, 8) for k, r0, r1, seats, row in spec]
  fold = rae.Baselines.start(rae.init(3, groups))
  assert_fold_equals(fold, fold.fold(games), games, groups)


def test_first_game_uses_a_zero_baseline_and_order_matters():
  fold = rae.Baselines.start(rae.init(1))
  adv = fold.fold([finished(0, (1.0, -1.0)), finished(0, (1.0, -1.0))])
  assert adv.tolist() == [[1.0, -1.0], [1.0 - 0.05, -1.0 + 0.05]]  # baseline after one: 0.05
  np.testing.assert_array_equal(fold.state(), np.float32([[[0.0975, -0.0975]]]))


def test_without_rae_advantages_are_returns_and_baselines_are_still_tracked():
  fold = rae.Baselines.start(rae.init(1), enabled=False)
  adv = fold.fold([finished(0, (1.0, -1.0)), finished(0, (-1.5, 0.5))])
  assert adv.tolist() == [[1.0, -1.0], [-1.5, 0.5]]
  assert fold.values[0, 0, 0] != 0


def test_n_groups_are_n_independent_emas():
  """A round of 8 games in 4 groups: games 2g and 2g + 1 fold into group g and nowhere else."""
  rng = np.random.default_rng(0)
  rounds = [[finished(0, rng.choice(RETURNS, 2), row=r, round_games=8) for r in range(8)]
            for _ in range(5)]
  fold = rae.Baselines.start(rae.init(1, 4))
  for games in rounds:
    fold.fold(games)
  for g in range(4):
    ema = [0.0, 0.0]
    for games in rounds:
      for game in games[2 * g:2 * g + 2]:
        for p in range(2):
          ema[p] = 0.95 * ema[p] + (1 - 0.95) * float(game.returns[p])  # as EMA.update
    assert fold.values[g, 0].tolist() == ema
  assert len({tuple(fold.values[g, 0]) for g in range(4)}) == 4  # they did move apart


def _play(opponent=None, quota=40, filter_zero=True, enabled=True, groups=1, seed=0):
  game = sj.games.make("TicTacToe-v0")
  runner = rollout.GameRunner(game, opponent(game) if opponent else None)
  fold = rae.Baselines.start(rae.init(1, groups), enabled=enabled)
  out = rollout.collect([runner], [quota], 8, fake_sampler(0.1), CharTokenizer(),
                        jax.random.key(seed), advantage_fn=fold, filter_zero=filter_zero)
  return out, fold


def test_with_a_fixed_opponent_only_the_learner_seats_are_folded():
  out, fold = _play(experts.random_player)
  assert {g.learner_seats for g in out.games} == {(0,), (1,)}
  _, want = python_fold(out.games)
  assert {k: fold.values[k] for k in want} == want
  both = [rollout.FinishedGame(**{**g.__dict__, "learner_seats": (0, 1)}) for g in out.games]
  _, folded_both = python_fold(both)
  assert folded_both != want  # folding the opponent's seats too would give other baselines


def test_each_move_gets_its_seats_advantage_in_its_game():
  out, _ = _play(experts.random_player, filter_zero=False)
  want, _ = python_fold(out.games)
  for m in out.moves:
    assert m.advantage == want[m.game][m.seat]


@pytest.mark.parametrize("enabled", [True, False])
def test_zero_advantages_are_dropped_before_the_draw_so_batches_are_whole(enabled):
  """Without RAE a draw's moves have advantage 0 (TicTacToe draws ~13% of random games); the
  filter runs first, so the draw still takes exactly the quota, none of them zero."""
  out, _ = _play(quota=60, enabled=enabled, seed=3)
  assert len(out.moves) == 60 and all(m.advantage != 0 for m in out.moves)
  assert out.num_kept_moves >= 60
  if not enabled:
    assert out.num_kept_moves < out.num_played_moves  # some draws were dropped


def test_games_fold_in_collection_order_whatever_their_lengths():
  out, fold = _play(quota=60, filter_zero=False, seed=1)
  rounds = [(g.row, g.kind) for g in out.games]
  starts = [i for i, (row, _) in enumerate(rounds) if row == 0]
  for a, b in zip(starts, starts[1:] + [len(rounds)]):
    assert [row for row, _ in rounds[a:b]] == list(range(b - a))  # each round by row
  lengths = [g.num_moves for g in out.games]
  assert lengths != sorted(lengths)  # games of several lengths, folded by row regardless
  _, want = python_fold(out.games)
  assert {k: fold.values[k] for k in want} == want


def test_collect_refuses_a_filter_without_scores():
  runner = rollout.GameRunner(sj.games.make("TicTacToe-v0"))
  with pytest.raises(ValueError, match="filter_zero needs an advantage_fn"):
    rollout.collect([runner], [4], 4, fake_sampler(), CharTokenizer(), jax.random.key(0),
                    filter_zero=True)
