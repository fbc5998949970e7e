"""Sample accounting of the multi-turn, multi-game rollout, with scripted stand-in samplers and
scripted or text opponents."""
import re

import jax
import numpy as np
import pytest

import spiral_jax as sj
from spiral_jax.games import core, experts
from spiral_jax.play import rollout
from spiral_jax.rl import batching


class CharTokenizer:
  """One id per character: enough to carry observation text to the fake sampler and back."""
  pad_id, eos_id = 0, 1

  def encode_batch(self, texts):
    return [[ord(c) for c in t] for t in texts]

  def decode(self, ids):
    return "".join(chr(i) for i in ids if i > 1)


def fake_sampler(invalid_rate=0.2):
  """Reads the legal moves off the observation; sometimes answers garbage or an illegal move."""

  def sample(prompts, seed):
    rng = np.random.default_rng(seed)
    texts = []
    for ids in prompts:
      text = "".join(map(chr, ids))
      last = text.rsplit("Available Moves:", 1)[-1] if "Available Moves" in text else text
      legal = re.findall(r"'(\[[^\]]+\])'", last.split("\n")[0]) or ["[check]"]
      r = rng.random()
      move = legal[rng.integers(len(legal))] if r > invalid_rate else (
          "nonsense" if r < invalid_rate / 2 else "[9]")
      texts.append(f"I think. \\boxed{{{move}}}")
    ids = [[ord(c) for c in t] + [1] for t in texts]
    return texts, ids, [False] * len(texts)

  return sample


def test_every_move_of_every_game_is_one_sample_with_the_right_seat_and_reward():
  game = sj.games.make("TicTacToe-v0")
  runner = rollout.GameRunner(game)
  moves, games = rollout.play_round([runner], [24], fake_sampler(), CharTokenizer(),
                                    jax.random.key(0), rng=np.random.default_rng(0))
  assert len(games) == 24
  assert len(moves) == sum(g.num_moves for g in games)
  forfeits = 0
  for gi, g in enumerate(games):
    mine = [m for m in moves if m.game == gi]
    assert [m.seat for m in mine] == [t % 2 for t in range(g.num_moves)]  # seats alternate
    assert [m.invalid for m in mine[:-1]] == [False] * (len(mine) - 1)
    if g.forfeited_by != core.NO_SEAT:
      forfeits += 1
      assert mine[-1].invalid and mine[-1].seat == g.forfeited_by
      np.testing.assert_allclose(g.returns[g.forfeited_by], -1.5)
      np.testing.assert_allclose(g.returns[1 - g.forfeited_by], 0.5)
    else:
      assert not mine[-1].invalid and g.returns.sum() == 0
  assert 0 < forfeits < 24


def test_collect_draws_exactly_the_quotas_without_replacement_across_kinds():
  runners = [rollout.GameRunner(sj.games.make("TicTacToe-v0")),
             rollout.GameRunner(sj.games.make("KuhnPoker-v1", rounds=1))]
  out = rollout.collect(runners, [30, 10], 4, fake_sampler(0.0), CharTokenizer(),
                        jax.random.key(1))
  kinds = [m.kind for m in out.moves]
  assert kinds.count(0) == 30 and kinds.count(1) == 10
  assert len({id(m) for m in out.moves}) == 40
  assert out.num_played_moves >= 40
  for m in out.moves:  # every drawn move belongs to a finished game of its own kind
    assert out.games[m.game].kind == m.kind
  batch = batching.train_batch(out.moves, response_len=32, pad_id=0)
  assert batch.tokens.shape[0] == 40 and batch.advantage.shape == (40,)
  # Each row's loss mask covers exactly its response.
  np.testing.assert_array_equal(batch.loss_mask.sum(1),
                                [min(len(m.response_ids), 32) for m in out.moves])


def test_a_fixed_opponent_moves_for_its_seat_and_only_learner_moves_are_samples():
  game = sj.games.make("TicTacToe-v0")
  runner = rollout.GameRunner(game, experts.random_player(game))
  moves, games = rollout.play_round([runner], [16], fake_sampler(0.0), CharTokenizer(),
                                    jax.random.key(2), rng=np.random.default_rng(2))
  seats = {g.learner_seats for g in games}
  assert seats == {(0,), (1,)}  # seats assigned at random per game
  for gi, g in enumerate(games):
    mine = [m for m in moves if m.game == gi]
    assert all(m.seat == g.learner_seats[0] for m in mine)
    learner_moves = (g.num_moves + (g.learner_seats[0] == 0)) // 2
    assert len(mine) == learner_moves


def counting(sample_fn):
  """The sampler, with the row count of each call recorded in ``.calls``."""

  def sample(prompts, seed):
    sample.calls.append(len(prompts))
    return sample_fn(prompts, seed)

  sample.calls = []
  return sample


def test_a_text_opponent_samples_its_own_moves_which_forfeit_but_never_become_samples():
  game = sj.games.make("TicTacToe-v0")
  learner, theirs = counting(fake_sampler(0.0)), counting(fake_sampler(0.5))
  runner = rollout.GameRunner(game, rollout.TextOpponent(theirs, name="frozen"))
  moves, games = rollout.play_round([runner], [16], learner, CharTokenizer(), jax.random.key(3),
                                    rng=np.random.default_rng(3))
  assert {g.learner_seats for g in games} == {(0,), (1,)}
  opponent_forfeits = 0
  for gi, g in enumerate(games):
    mine = [m for m in moves if m.game == gi]
    seat = g.learner_seats[0]
    assert all(m.seat == seat for m in mine) and not any(m.invalid for m in mine)
    assert len(mine) == (g.num_moves + (seat == 0)) // 2  # exactly the learner's turns
    assert all(m.response_text.startswith("I think.") for m in mine)
    assert g.forfeited_by in (core.NO_SEAT, 1 - seat)  # the learner never errs here
    if g.forfeited_by == 1 - seat:
      opponent_forfeits += 1
      assert (g.returns[1 - seat], g.returns[seat]) == (-1.5, 0.5)  # training forfeit
  assert 0 < opponent_forfeits < 16
  # One sampler call per turn for each side, each covering every row that side moves in.
  assert sum(learner.calls) == len(moves)
  assert sum(theirs.calls) == sum(g.num_moves for g in games) - len(moves)
  assert max(len(learner.calls), len(theirs.calls)) <= game.max_moves


def test_same_seed_same_games_with_text_and_scripted_sides():
  game = sj.games.make("KuhnPoker-v1", rounds=1)

  def run(seed):
    runners = [rollout.GameRunner(game, rollout.TextOpponent(fake_sampler(0.3))),
               rollout.GameRunner(game, experts.expert_player(game))]
    moves, games = rollout.play_round(runners, [8, 8], fake_sampler(0.1), CharTokenizer(),
                                      jax.random.key(seed), rng=np.random.default_rng(seed))
    return ([(m.kind, m.seat, m.game, m.response_text) for m in moves],
            [(g.kind, g.returns.tolist(), g.forfeited_by, g.learner_seats) for g in games])

  assert run(4) == run(4)
  assert run(4) != run(5)


def test_scripted_learner_against_a_scripted_opponent_records_no_samples():
  game = sj.games.make("TicTacToe-v0")
  first_free = lambda state, key: jax.numpy.argmax(game.legal_action_mask(state)).astype(
      jax.numpy.int32)
  runner = rollout.GameRunner(game, opponent=first_free, learner=first_free)
  moves, games = rollout.play_round([runner], [10], None, None, jax.random.key(0),
                                    rng=np.random.default_rng(0))
  assert moves == [] and len(games) == 10
  for g in games:  # cells 0..6 in order: seat 0 completes the 2-4-6 diagonal on move 7
    assert g.num_moves == 7 and g.returns.tolist() == [1.0, -1.0]
  with pytest.raises(ValueError, match="no learner"):
    rollout.play_round([rollout.GameRunner(game)], [2], None, None, jax.random.key(0),
                       rng=np.random.default_rng(0))
