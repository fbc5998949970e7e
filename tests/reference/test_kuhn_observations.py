"""KuhnPoker-v1's observations against the reference run's own (``oracle.call("play")``):
spiral-rl 0.2.0's ``KuhnPokerEnv`` (ante 1, 5 rounds) on TextArena 0.6.4 behind its
``LLMObservationWrapper``, byte for byte, except where SPIRAL.md section 6's chip decision changes
a number.

The games: ``RANDOM_GAMES`` uniformly random legal matches, ``FORFEITS`` matches that end on an
illegal move (an out-of-turn ``[fold]``/``[call]``/``[check]``/``[bet]``, which the reference's
regex reads and rejects, or an unparseable one, which the reference's evaluator plays as its
``INVALID_ACTION``), and the named games of the difference tests below. Every deal is the
reference's: Python's ``random`` seeded with the game's seed, then one in-place shuffle of the
env's deck a round (``_reference_deal``; the oracle's cards at every move are checked against it).
The moves are drawn from a seeded NumPy generator, so the set is the same on every run; all games
go to the oracle in one call. At every move both seats' observations are compared, and both
seats' observations after the end.

What may differ (and nothing else): the number in "Player k wins pot of N chips" (the reference's
pot is always 2, ours 2 + the bet and the call) and the game-over line after the last round (the
reference names the winner of round 5, ours the chip leader, or a draw on a chip tie).
"""
import functools
import random
import re

import jax
import numpy as np
import pytest

from spiral_jax.games import core
from spiral_jax.games import kuhn_poker as kp
from tests.reference import oracle

ROUNDS = 5
RANDOM_GAMES, RANDOM_SEED = 240, 20250614
FORFEITS = 40
TEXTS = ["[check]", "[bet]", "[fold]", "[call]"]  # written out: not the module's constants
INVALID_ACTION = "[\uff5cINVALID_ACTION\uff5c]"  # spiral.tinker.renderer.INVALID_ACTION

GAME = kp.KuhnPoker(rounds=ROUNDS)
STEP = jax.jit(GAME.step)
MASK = jax.jit(GAME.legal_action_mask)

_POT = re.compile(r"(\n\[GAME\] Showdown: Player [01]'s [JQK] beats Player [01]'s [JQK]\. "
                  r"Player [01] wins pot of )(\d+)( chips\.)")
_RESULT = re.compile(
    r"\n\[GAME\] (?:Player ([01]) won the game\. Reason: Player \1 won by having more chips at "
    rf"the end of all {ROUNDS} rounds\.|The game ended in a draw\. Reason: At the end of "
    rf"{ROUNDS} rounds, both players had the same number of chips\.)\Z")


def _reference_deal(seed):
  """The reference's cards[round][seat]: ``random.seed(seed)``, then each round
  ``random.shuffle`` of one deck kept between rounds; the first two cards are dealt."""
  state = random.getstate()
  try:
    random.seed(seed)
    deck, cards = [0, 1, 2], []
    for _ in range(ROUNDS):
      random.shuffle(deck)
      cards.append(deck[:2])
    return cards
  finally:
    random.setstate(state)


def split_chip_numbers(text):
  """``text`` with the pot numbers and the final game-over line masked, and what was masked:
  (masked text, [pot numbers], winner seat or "draw" or None where there is no such line)."""
  pots = [int(m.group(2)) for m in _POT.finditer(text)]
  masked = _POT.sub(r"\1N\3", text)
  result = _RESULT.search(masked)
  if result is None:
    return masked, pots, None
  outcome = "draw" if result.group(1) is None else int(result.group(1))
  return masked[:result.start()] + "\n[GAME] <match result>", pots, outcome


def _random_moves(rng, state, forfeit_at=None):
  """A random legal match from ``state`` (ids), with an illegal move at ``forfeit_at``."""
  moves = []
  while not bool(state.terminated):
    legal = np.flatnonzero(np.asarray(MASK(state)))
    if len(moves) == forfeit_at:
      illegal = [a for a in range(4) if a not in legal] + [core.INVALID]
      action = int(rng.choice(illegal))
    else:
      action = int(rng.choice(legal))
    moves.append(action)
    state = STEP(state, np.int32(action))
  return moves


def _first_seed(moves, wanted):
  """The first seed whose reference deal makes ``wanted(end state)`` true under ``moves``."""
  for seed in range(10_000):
    if wanted(_play(_reference_deal(seed), moves)[-1]):
      return seed
  raise AssertionError("no seed found")


def _play(cards, moves):
  state = GAME.init_with_cards(np.asarray(cards, np.int32))
  states = [state]
  for move in moves:
    state = STEP(state, np.int32(move))
    states.append(state)
  return states


B, C, CH, F = kp.BET, kp.CALL, kp.CHECK, kp.FOLD
BET_CALL_THEN_CHECKS = [B, C] + [CH, CH] * (ROUNDS - 1)


def _named_games():
  """The games the difference tests name: (name, seed, moves)."""
  def last_winner_trails(end):
    return int(end.round_winner[-1]) != int(np.argmax(end.chips)) and end.chips[0] != end.chips[1]

  return [
      ("called bet", 0, BET_CALL_THEN_CHECKS),
      ("leader lost round 5", _first_seed(BET_CALL_THEN_CHECKS, last_winner_trails),
       BET_CALL_THEN_CHECKS),
      ("chip tie", _first_seed(BET_CALL_THEN_CHECKS, lambda end: end.chips[0] == end.chips[1]),
       BET_CALL_THEN_CHECKS),
  ]


@functools.cache
def _games():
  """Every game here and the oracle's answer for it, from one oracle call:
  [(name, seed, cards, moves, reference answer)]."""
  rng = np.random.default_rng(RANDOM_SEED)
  games = []
  for i in range(RANDOM_GAMES + FORFEITS):
    seed = 1000 + i
    cards = _reference_deal(seed)
    start = GAME.init_with_cards(np.asarray(cards, np.int32))
    forfeit_at = int(rng.integers(0, 10)) if i >= RANDOM_GAMES else None
    name = "forfeit" if forfeit_at is not None else "random"
    games.append((name, seed, cards, _random_moves(rng, start, forfeit_at)))
  games += [(name, seed, _reference_deal(seed), moves) for name, seed, moves in _named_games()]
  request = [{"env_id": "KuhnPoker-v1", "seed": seed, "all_seats": True,
              "moves": [TEXTS[m] if 0 <= m < 4 else INVALID_ACTION for m in moves]}
             for _, seed, _, moves in games]
  answers = oracle.call("play", games=request)
  return [(*game, answer) for game, answer in zip(games, answers)]


def _named(name):
  (game,) = [g for g in _games() if g[0] == name]
  return game


def _compare(ours, theirs, state, final):
  """Asserts ``ours == theirs`` but for the masked chip numbers, and checks those numbers."""
  ours_masked, our_pots, our_result = split_chip_numbers(ours)
  theirs_masked, their_pots, their_result = split_chip_numbers(theirs)
  assert ours_masked == theirs_masked
  assert their_pots == [2] * len(their_pots), "the reference's pot never grows"
  s = jax.tree.map(np.asarray, state)
  showdowns = [r for r in range(ROUNDS)
               if s.round_winner[r] != core.NO_SEAT and (s.round_moves[r] != F).all()]
  assert our_pots == [int(s.round_pot[r]) for r in showdowns]  # 2 plus the bet and the call
  assert (our_result is None) == (their_result is None) == (not final or s.forfeited_by >= 0)
  return ours == theirs, our_result, their_result


def test_deals_turns_and_legal_moves_are_the_references():
  games = _games()
  assert len(games) >= 200 + FORFEITS
  for _, _, cards, moves, answer in games:
    states = _play(cards, moves)
    assert len(answer["steps"]) == len(moves) and answer["done"]
    for state, step in zip(states, answer["steps"]):
      r = int(state.round)
      assert step["seat"] == int(state.current_seat)
      assert [step["cards"]["0"], step["cards"]["1"]] == cards[r]  # the replayed deal
      legal = np.flatnonzero(np.asarray(MASK(state)))
      assert step["legal"] == [TEXTS[a] for a in legal]
    assert bool(states[-1].terminated)


def test_every_observation_identical_but_the_chip_numbers():
  observations = identical = 0
  chip_numbers_differ = result_differs = 0
  for name, _, cards, moves, answer in _games():
    states = _play(cards, moves)
    views = [(state, step["seat"], step["observation"], False) for state, step in
             zip(states, answer["steps"])]
    views += [(state, 1 - step["seat"], step["other_observation"], False) for state, step in
              zip(states, answer["steps"])]
    views += [(states[-1], seat, answer["final"][str(seat)], True) for seat in (0, 1)]
    for state, seat, theirs, final in views:
      same, ours_result, theirs_result = _compare(GAME.render(state, seat), theirs, state, final)
      observations += 1
      identical += same
      chip_numbers_differ += not same
      result_differs += ours_result != theirs_result
  # matches of 10-15 moves (a forfeit: 1-10); both seats at each move and at the end
  assert observations > 2 * 10 * (RANDOM_GAMES + FORFEITS)
  assert 0 < chip_numbers_differ < observations and result_differs > 0
  print(f"\n{observations} observations compared, {identical} identical byte for byte, "
        f"{chip_numbers_differ} identical once the chip numbers are masked")


def test_random_matches_are_uniform_legal_play():
  names = [g[0] for g in _games()]
  assert names.count("random") == RANDOM_GAMES and names.count("forfeit") == FORFEITS
  moves = [m for g in _games() if g[0] == "random" for m in g[3]]
  counts = np.bincount(moves, minlength=4)
  assert (counts > 100).all(), counts  # every kind of move occurs often


def test_forfeit_observations_are_the_references():
  """An illegal move ends the match (error allowance 0): the move, then the reference's verdict."""
  kinds = set()
  for name, _, cards, moves, answer in _games():
    if name != "forfeit":
      continue
    end = _play(cards, moves)[-1]
    seat = int(end.forfeited_by)
    assert seat == answer["steps"][-1]["seat"]
    assert answer["rewards"] == {str(seat): -1, str(1 - seat): 0}  # ours: the configured Forfeit
    illegal = moves[-1]
    kinds.add(illegal)
    reason = ("Action must be [Check], [Bet], [Call], or [Fold]." if illegal == core.INVALID else
              "Action must be [check], [bet]." if illegal in (F, C) else
              "Action must be [fold], [call].")
    tail = (f"\n[Player {seat}] {INVALID_ACTION if illegal == core.INVALID else TEXTS[illegal]}"
            f"\n[GAME] Player {seat} lost the game by way of invalid move. Reason: {reason}")
    for s in (0, 1):
      theirs = answer["final"][str(s)]
      assert theirs.endswith(tail)
      assert split_chip_numbers(GAME.render(end, s))[0] == split_chip_numbers(theirs)[0]
  assert kinds == {CH, B, F, C, core.INVALID}


def test_named_difference_a_called_bet_pot_is_4_here_and_2_in_the_reference():
  """SPIRAL.md section 6: the reference's bets and calls move no chips, so its pot stays 2."""
  _, _, cards, moves, answer = _named("called bet")
  after_call = _play(cards, moves)[2]  # round 1: seat 1 bets, seat 0 calls; seat 0 opens round 2
  assert [step["seat"] for step in answer["steps"][:3]] == [1, 0, 0]
  ours, theirs = GAME.render(after_call, 0), answer["steps"][2]["observation"]
  winner = int(np.argmax(cards[0]))
  line = (f"\n[GAME] Showdown: Player {winner}'s {'JQK'[cards[0][winner]]} beats Player "
          f"{1 - winner}'s {'JQK'[cards[0][1 - winner]]}. Player {winner} wins pot of ")
  assert line + "4 chips." in ours and line + "2 chips." in theirs
  assert ours.replace(line + "4 chips.", line + "2 chips.") == theirs  # the only difference
  assert int(after_call.chips[winner]) - int(after_call.chips[1 - winner]) == 4  # +2 vs -2


def test_named_difference_the_match_goes_to_the_chip_leader():
  """SPIRAL.md section 6: the reference gives the match to round 5's winner whatever the chips."""
  _, _, cards, moves, answer = _named("leader lost round 5")
  end = _play(cards, moves)[-1]
  leader, last = int(np.argmax(end.chips)), int(end.round_winner[-1])
  assert leader != last
  assert end.rewards.tolist() == ([1.0, -1.0] if leader == 0 else [-1.0, 1.0])
  assert answer["rewards"] == {str(last): 1, str(leader): -1}
  line = "\n[GAME] Player {0} won the game. Reason: Player {0} won by having more chips at the " \
         "end of all 5 rounds."
  for seat in (0, 1):
    ours, theirs = GAME.render(end, seat), answer["final"][str(seat)]
    assert ours.endswith(line.format(leader)) and theirs.endswith(line.format(last))
    ours_masked, _, ours_result = split_chip_numbers(ours)
    theirs_masked, _, theirs_result = split_chip_numbers(theirs)
    assert (ours_result, theirs_result) == (leader, last) and ours_masked == theirs_masked


def test_named_difference_a_chip_tie_draws():
  """A chip tie draws here, in the reference env's own draw words (a path it never reaches)."""
  _, _, cards, moves, answer = _named("chip tie")
  end = _play(cards, moves)[-1]
  assert end.chips.tolist() == [0, 0] and end.rewards.tolist() == [0.0, 0.0]
  last = int(end.round_winner[-1])
  assert answer["rewards"] == {str(last): 1, str(1 - last): -1}
  for seat in (0, 1):
    ours, theirs = GAME.render(end, seat), answer["final"][str(seat)]
    assert ours.endswith("\n[GAME] The game ended in a draw. Reason: At the end of 5 rounds, both "
                         "players had the same number of chips.")
    assert split_chip_numbers(ours)[2] == "draw" and split_chip_numbers(theirs)[2] == last
    assert split_chip_numbers(ours)[0] == split_chip_numbers(theirs)[0]


@pytest.mark.parametrize("seat", [0, 1])
def test_no_bet_no_difference(seat):
  """Where no bet is called and round 5's winner leads the chips, the texts are identical."""
  same = 0
  for name, _, cards, moves, answer in _games():
    states = _play(cards, moves)
    end = jax.tree.map(np.asarray, states[-1])
    if C in moves or end.forfeited_by >= 0 or end.round_winner[-1] != np.argmax(end.chips):
      continue
    assert GAME.render(states[-1], seat) == answer["final"][str(seat)]
    same += 1
  assert same > 5
