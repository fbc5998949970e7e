"""The arena: Wilson intervals against scipy and Newcombe (1998), perfect TicTacToe never loses,
the Kuhn equilibrium's -1/18, exact per-seat accounting, and a tiny text policy end to end."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spiral_jax as sj
from spiral_jax.eval import arena
from spiral_jax.games import core, kuhn_poker, tic_tac_toe
from spiral_jax.model import Policy, preset
from spiral_jax.play import agents, rollout
from spiral_jax.rl import sft
from spiral_jax.text import tokenizer as tokenizer_lib
from tests.play.test_rollout import CharTokenizer, counting, fake_sampler

# Newcombe, "Two-sided confidence intervals for the single proportion", Stat. Med. 1998,
# Table I, method 3 (score interval without continuity correction), to 4 decimals.
NEWCOMBE = [((81, 263), (0.2553, 0.3662)), ((15, 148), (0.0624, 0.1605)),
            ((0, 20), (0.0000, 0.1611)), ((1, 29), (0.0061, 0.1718))]


@pytest.mark.parametrize("counts,expected", NEWCOMBE)
def test_wilson_interval_matches_newcombe(counts, expected):
  np.testing.assert_allclose(arena.wilson_interval(*counts), expected, atol=5e-5)


def test_wilson_interval_matches_scipy():
  stats = pytest.importorskip("scipy.stats")
  z = float(stats.norm.ppf(0.975))
  for k, n in [(0, 1), (1, 1), (3, 7), (50, 100), (999, 1000), (0, 512), (512, 512)]:
    ci = stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
    np.testing.assert_allclose(arena.wilson_interval(k, n, z), (ci.low, ci.high), atol=1e-12)
  assert arena.wilson_interval(0, 0) == (0.0, 1.0)
  with pytest.raises(ValueError, match="successes"):
    arena.wilson_interval(3, 2)


def first_free(game):
  """Deterministic: the lowest free cell."""
  return lambda state, key: jnp.argmax(game.legal_action_mask(state)).astype(jnp.int32)


def test_perfect_tictactoe_never_loses_to_random():
  game = sj.games.make("TicTacToe-v0")
  result = arena.play_arena(game, tic_tac_toe.minimax_player(game), "random", num_games=2000,
                            key=0)
  assert result.overall.games == 2000 and result.overall.loss.count == 0
  assert all(seat.loss.count == 0 and seat.games > 900 for seat in result.seats)
  assert result.overall.agent_forfeit.count == result.overall.opponent_forfeit.count == 0
  assert result.overall.win.rate > 0.8 and result.agent_text is None
  assert result.agent == "minimax_player" and result.opponent == "random"


def test_random_tictactoe_seat_rates_match_the_exact_values():
  # Exact outcome probabilities of uniformly random TicTacToe (enumeration of all 255,168
  # games): first mover wins 0.5849, second 0.2881, draw 0.1270.
  game = sj.games.make("TicTacToe-v0")
  result = arena.play_arena(game, "random", "random", num_games=2000, key=1)
  for seat, win, loss in ((0, 0.5849, 0.2881), (1, 0.2881, 0.5849)):
    r = result.seats[seat]
    assert r.win.low <= win <= r.win.high and r.loss.low <= loss <= r.loss.high
    assert r.draw.low <= 0.1270 <= r.draw.high


def test_kuhn_equilibrium_against_itself_gives_the_first_mover_minus_one_eighteenth():
  game = sj.games.make("KuhnPoker-v1", rounds=1)
  result = arena.play_arena(game, kuhn_poker.equilibrium_player(game), arena.SELF,
                            num_games=20_000, key=2)
  first, second = kuhn_poker.opening_seat(0), 1 - kuhn_poker.opening_seat(0)
  opener, other = result.seats[first].reward, result.seats[second].reward
  assert opener.low <= -1 / 18 <= opener.high and opener.high < 0  # the interval excludes 0
  assert other.low <= 1 / 18 <= other.high and other.low > 0
  assert result.overall.reward.low <= 0 <= result.overall.reward.high
  assert result.seats[0].games + result.seats[1].games == 20_000
  assert result.overall.agent_forfeit.count == result.overall.opponent_forfeit.count == 0


def test_per_seat_accounting_is_exact_on_a_hand_checked_case():
  game = sj.games.make("TicTacToe-v0")  # training forfeits; the arena scores eval ones
  always_centre = lambda state, key: jnp.int32(4)
  result = arena.play_arena(game, first_free(game), always_centre, num_games=100, key=3,
                            games_per_batch=32, agent_name="lowest", opponent_name="centre")
  # Agent in seat 0: 0, 4, 1, then 4 again forfeits on move 4. In seat 1: 4, 0, 4 on move 3.
  n0, n1 = result.seats[0].games, result.seats[1].games
  assert n0 + n1 == 100 and n0 > 30 and n1 > 30
  for r, moves in ((result.overall, None), (result.seats[0], 4.0), (result.seats[1], 3.0)):
    assert r.win.count == r.opponent_forfeit.count == r.games
    assert r.loss.count == r.draw.count == r.agent_forfeit.count == 0
    assert (r.reward.mean, r.reward.low, r.reward.high) == (1.0, 1.0, 1.0)  # +1, the eval forfeit
    assert (r.win.low, r.win.high) == arena.wilson_interval(r.games, r.games)
    assert moves is None or r.moves_per_game == moves
  assert result.overall.moves_per_game == (4 * n0 + 3 * n1) / 100
  kept = arena.play_arena(game, first_free(game), always_centre, num_games=20, key=3,
                          forfeit=None)
  assert kept.overall.reward.mean == 0.5  # the game's own (training) forfeit reward

  # The lowest free cell on both sides: seat 0 completes the 2-4-6 diagonal on move 7.
  mirror = arena.play_arena(game, first_free(game), first_free(game), num_games=64, key=4)
  s0, s1 = mirror.seats
  assert s0.win.count == s0.games and s1.loss.count == s1.games and s0.games + s1.games == 64
  assert mirror.overall.win.count == s0.games
  assert mirror.overall.reward.mean == pytest.approx((s0.games - s1.games) / 64)
  table = mirror.to_markdown()
  assert table.count("\n| ") == 5 and "| 0 | " in table and "1.000 [" in table
  metrics = mirror.to_metrics()
  assert metrics["eval/TicTacToe-v0/vs_first_free/seat0/win_rate"] == 1.0
  assert metrics["eval/TicTacToe-v0/vs_first_free/seat0/moves_per_game"] == 7  # as the comment
  assert metrics["eval/TicTacToe-v0/vs_first_free/moves_per_game"] == mirror.overall.moves_per_game


def test_a_text_agent_against_itself_uses_one_sampler_call_per_turn():
  game = sj.games.make("TicTacToe-v0")
  sample = counting(fake_sampler(0.1))
  agent = rollout.TextAgent(sample, CharTokenizer(), name="fake")
  result = arena.play_arena(game, agent, arena.SELF, num_games=32, key=5)
  total_moves = round(result.overall.moves_per_game * 32)
  assert sum(sample.calls) == total_moves  # both seats' moves go through the same calls
  assert len(sample.calls) <= game.max_moves  # one call per turn
  text = result.agent_text
  assert 0 < text.moves < total_moves  # only the agent's seat is recorded
  assert text.invalid.count == result.overall.agent_forfeit.count > 0
  assert json.loads(json.dumps(result.to_json()))["agent_text"]["moves"] == text.moves


@pytest.fixture(scope="module")
def tiny_policy():
  game = sj.games.make("TicTacToe-v0")
  tok = tokenizer_lib.train_sentencepiece(sft.game_corpus([game], games_per_kind=8), 400)
  config = preset("tiny", vocab_size=tok.vocab_size, num_layers=1, d_model=32, num_heads=2,
                  num_kv_heads=1, head_dim=16, mlp_dim=64, max_seq_len=512)
  return Policy.init(config, tok, jax.random.key(0))


def test_a_tiny_text_policy_plays_random_and_reports_its_forfeits(tiny_policy):
  game = sj.games.make("TicTacToe-v0")
  agent = agents.text_agent(tiny_policy, max_new_tokens=8, temperature=1.0, top_p=1.0)
  result = arena.play_arena(game, agent, "random", num_games=16, key=6)
  text, overall = result.agent_text, result.overall
  assert overall.games == 16 and result.agent == "policy"
  # Each invalid move forfeits its game, at once: one per forfeited game.
  assert text.invalid.count == overall.agent_forfeit.count > 0
  assert overall.loss.count >= overall.agent_forfeit.count
  assert 0 < text.response_tokens <= 8 and text.response_chars > 0
  assert 0 <= overall.agent_forfeit.low <= overall.agent_forfeit.rate <= overall.agent_forfeit.high
  report = result.to_json()
  assert report["overall"]["agent_forfeit"]["rate"] == overall.agent_forfeit.rate
  assert "forfeit (agent)" in result.to_markdown()
  assert f"eval/{game.id}/vs_random/agent_forfeit_rate" in result.to_metrics()


def test_bad_arena_arguments_are_refused():
  game = sj.games.make("TicTacToe-v0")
  with pytest.raises(ValueError, match="opponent='minimax'"):
    arena.play_arena(game, "random", "minimax", key=0)
  with pytest.raises(ValueError, match="agent='self'"):
    arena.play_arena(game, "self", "random", key=0)
  with pytest.raises(ValueError, match="num_games"):
    arena.play_arena(game, "random", "random", num_games=0, key=0)
  assert arena.with_forfeit(game, core.EVAL_FORFEIT).forfeit == core.EVAL_FORFEIT
  assert game.forfeit == core.TRAIN_FORFEIT  # the caller's game is left alone
