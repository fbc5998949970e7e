"""TicTacToe-v0's and SimpleNegotiation-v1's observations against the reference run's own
(``oracle.call("play")``), byte for byte, at every move and at the end, for both seats.

The reference: TextArena 0.6.4's ``TicTacToe-v0`` behind ``FirstLastObservationWrapper`` and
spiral-rl 0.2.0's ``SimpleNegotiationEnv`` behind ``LLMObservationWrapper``, as
``spiral.core.envs.make_env`` wraps them, stepped with an error allowance of 0. Each game is
played here (``game.init``, jitted ``game.step``, ``game.render``) and the same moves, as text,
go to the oracle: one oracle call per game type for all its games. Moves are drawn from seeded
NumPy generators, so every run compares the same games.

Games: uniformly random legal TicTacToe games and random legal Negotiation games (offers of every
size the offerer can pay for, ``[Accept]`` of payable offers, ``[Deny]`` with and without an offer
pending), games that end on an illegal move of each kind, and the named games of the difference
tests. The differences, each named by a test below (SPIRAL.md sections 2 and 6, and what our
action-id states cannot know):
- both games: a forfeit pays the configured ``Forfeit``, the reference env -1/0 (the text is the
  same);
- Negotiation: any payable offer is legal, where the reference's legal list is a random handful;
  ``[Deny]`` with nothing pending is a legal pass (the reference's list lacks it, its env ignores
  it); ``[Accept]`` with nothing pending forfeits (the reference's list lacks it too, its env
  ignores it and plays on); the echo and offer lines show the canonical move, not the seat's
  spelling, and chat is no move here.
"""
import collections
import functools
import re

import jax
import numpy as np
import pytest

from spiral_jax.games import core
from spiral_jax.games import simple_negotiation as sn
from spiral_jax.games import tic_tac_toe as ttt
from tests.reference import oracle

INVALID_ACTION = "[\uff5cINVALID_ACTION\uff5c]"  # spiral.tinker.renderer.INVALID_ACTION


def _replay(step, start, moves):
  """The states before each move and after the last, on the host."""
  states, state = [jax.device_get(start)], start
  for move in moves:
    state = step(state, np.int32(move))
    states.append(jax.device_get(state))
  return states


def _views(states, answer):
  """(state, seat, reference observation, at_end) for both seats at every move and at the end."""
  steps = answer["steps"]
  views = [(s, step["seat"], step["observation"], False) for s, step in zip(states, steps)]
  views += [(s, 1 - step["seat"], step["other_observation"], False)
            for s, step in zip(states, steps)]
  views += [(states[len(steps)], seat, answer["final"][str(seat)], True) for seat in (0, 1)]
  return views


# ================================================================ TicTacToe-v0
TTT = ttt.TicTacToe()
TTT_STEP = jax.jit(TTT.step)
TTT_RANDOM_GAMES, TTT_FORFEITS, TTT_SEED = 240, 60, 20250701


def _ttt_text(move):
  return f"[{move}]" if move >= 0 else INVALID_ACTION


def _ttt_moves(rng, forfeit_at=None):
  """A random game: uniformly random empty cells, or at ``forfeit_at`` an illegal move (an
  occupied cell, a cell past 8, or an unparseable one) if the game lasts that long."""
  board, moves = [ttt.EMPTY] * 9, []
  state = TTT.init(jax.random.key(0))
  while not bool(state.terminated):
    free = [c for c in range(9) if board[c] == ttt.EMPTY]
    if len(moves) == forfeit_at:
      taken = [c for c in range(9) if board[c] != ttt.EMPTY]
      move = int(rng.choice(taken + [9, 12, core.INVALID]))
    else:
      move = int(rng.choice(free))
      board[move] = len(moves) % 2
    moves.append(move)
    state = TTT_STEP(state, np.int32(move))
  return moves


@functools.cache
def _ttt_games():
  """[(moves, states, reference answer)] from one oracle call."""
  rng = np.random.default_rng(TTT_SEED)
  games = [_ttt_moves(rng) for _ in range(TTT_RANDOM_GAMES)]
  games += [_ttt_moves(rng, forfeit_at=i % 8) for i in range(TTT_FORFEITS)]
  request = [{"env_id": "TicTacToe-v0", "seed": i, "all_seats": True,
              "moves": [_ttt_text(m) for m in moves]} for i, moves in enumerate(games)]
  answers = oracle.call("play", games=request)
  start = TTT.init(jax.random.key(0))
  return [(moves, _replay(TTT_STEP, start, moves), answer)
          for moves, answer in zip(games, answers)]


def test_tictactoe_turns_legal_moves_and_endings_are_the_references():
  endings = collections.Counter()
  for moves, states, answer in _ttt_games():
    assert answer["done"] and len(answer["steps"]) == len(moves)
    for state, step in zip(states, answer["steps"]):
      assert step["seat"] == int(state.current_seat)
      legal = np.flatnonzero(np.asarray(TTT.legal_action_mask(state)))
      assert step["legal"] == [f"[{c}]" for c in legal]  # parsed from the reference's text
    end = states[-1]
    assert bool(end.terminated) and not any(bool(s.terminated) for s in states[:-1])
    rewards = [answer["rewards"]["0"], answer["rewards"]["1"]]
    if int(end.forfeited_by) == core.NO_SEAT:
      assert end.rewards.tolist() == rewards
      endings["draw" if rewards == [0, 0] else f"win{rewards.index(1)}"] += 1
    else:
      endings["forfeit"] += 1
  assert sum(endings.values()) == TTT_RANDOM_GAMES + TTT_FORFEITS
  assert min(endings.values()) >= 20, endings  # wins for each seat, draws and forfeits


def test_tictactoe_every_observation_is_identical():
  observations = identical = 0
  for _, states, answer in _ttt_games():
    for state, seat, theirs, _ in _views(states, answer):
      ours = TTT.render(state, seat)
      assert ours == theirs
      observations += 1
      identical += ours == theirs
  assert observations == identical >= 2 * 5 * TTT_RANDOM_GAMES
  print(f"\nTicTacToe: {len(_ttt_games())} games, {observations} observations, "
        f"{identical} identical")


def test_tictactoe_observation_layout():
  """The FirstLast layout: the prompt, a blank line, the board, the moves, ``Next Action:``; at
  the end of a full board the moves list is empty."""
  moves, states, answer = next(g for g in _ttt_games() if len(g[0]) == 9
                               and int(g[1][-1].forfeited_by) == core.NO_SEAT)
  first = answer["steps"][0]["observation"]
  assert first.startswith("You are Player 0 in Tic Tac Toe.\n")
  assert "while your opponent is 'X'.\n\n\nCurrent Board:\n\n 0 | 1 | 2 \n---+---+---\n" in first
  assert first.endswith("\n\nAvailable Moves: '[0]', '[1]', '[2]', '[3]', '[4]', '[5]', '[6]', "
                        "'[7]', '[8]'\n\nNext Action:")
  for seat in (0, 1):
    assert answer["final"][str(seat)].endswith("\n\nAvailable Moves: \n\nNext Action:")
    assert TTT.render(states[-1], seat) == answer["final"][str(seat)]
  assert "[GAME]" not in first and "[Player" not in answer["final"]["0"]


def test_named_difference_tictactoe_a_forfeit_pays_the_configured_forfeit():
  """SPIRAL.md section 2: -1.5/+0.5 in training; the reference env pays -1/0. Same text."""
  kinds = set()
  for moves, states, answer in _ttt_games():
    end = states[-1]
    seat = int(end.forfeited_by)
    if seat == core.NO_SEAT:
      continue
    kinds.add("invalid" if moves[-1] == core.INVALID else "off board" if moves[-1] > 8
              else "occupied")
    assert answer["rewards"] == {str(seat): -1, str(1 - seat): 0}
    assert end.rewards[seat] == TTT.forfeit.offender and end.rewards[1 - seat] == TTT.forfeit.other
    np.testing.assert_array_equal(end.board, states[-2].board)  # the illegal mark is not placed
    for s in (0, 1):
      assert TTT.render(end, s) == answer["final"][str(s)]
  assert kinds == {"invalid", "off board", "occupied"}


# ================================================================ SimpleNegotiation-v1
NEG = sn.SimpleNegotiation()
NEG_STEP = jax.jit(NEG.step)
NEG_IS_LEGAL = jax.jit(NEG.is_legal)
NEG_RANDOM_GAMES, NEG_SEED = 240, 20250702
FORFEIT_KINDS = ("unpaid offer", "empty offer", "unpaid accept", "accept of nothing", "invalid")
NEG_FORFEITS_PER_KIND = 10


def _neg_text(move):
  return NEG.action_text(move) if 0 <= move < NEG.num_actions else INVALID_ACTION


def _random_offer(rng, held):
  """A payable offer: half the time like the reference's list (1-3 of one resource for 1-3 of
  the other), else any non-empty bundle held for any non-empty bundle of up to 3, 10 or 20."""
  if rng.random() < 0.5:
    r = int(rng.integers(2))
    if held[r] == 0:
      r = 1 - r
    give, get = [0, 0], [0, 0]
    give[r], get[1 - r] = int(rng.integers(1, min(3, held[r]) + 1)), int(rng.integers(1, 4))
    return sn.offer_action(*give, *get)
  while True:
    give = [int(rng.integers(0, held[r] + 1)) for r in (0, 1)]
    cap = int(rng.choice([3, 10, 20]))
    get = [int(rng.integers(0, cap + 1)) for r in (0, 1)]
    if any(give) and any(get):
      return sn.offer_action(*give, *get)


def _random_move(rng, state):
  """A legal move: accept (when payable) or deny a pending offer, counter-offer, or with nothing
  pending mostly an offer, sometimes a pass (``[Deny]``)."""
  seat = int(state.current_seat)
  held = np.asarray(state.inventory)[seat].tolist()
  pending = int(state.offer_from) == 1 - seat
  can_accept = pending and all(np.asarray(state.offer)[2:] <= held)
  u = rng.random()
  if can_accept and u < 0.4:
    return sn.ACCEPT
  if (pending and u < 0.65) or (not pending and u < 0.15) or not any(held):
    return sn.DENY
  return _random_offer(rng, held)


def _neg_moves(rng, kind=None, forfeit_at=None):
  """A random legal game, or one that ends at ``forfeit_at`` (after a set-up move where the kind
  needs one) on an illegal move of ``kind``."""
  state, moves = NEG.init(jax.random.key(0)), []

  def play(move):
    nonlocal state
    moves.append(int(move))
    state = jax.device_get(NEG_STEP(state, np.int32(move)))

  while not bool(state.terminated):
    if len(moves) != forfeit_at:
      play(_random_move(rng, state))
      continue
    seat = int(state.current_seat)
    held = np.asarray(state.inventory)[seat]
    pending = int(state.offer_from) == 1 - seat
    if kind == "unpaid offer":  # one more than it holds of what it holds less of
      r = int(np.argmin(held))
      give, get = [0, 0], [0, 0]
      give[r], get[1 - r] = int(held[r]) + 1, 1
      play(sn.offer_action(*give, *get))
    elif kind == "empty offer":
      play(sn.offer_action(0, 0, 0, 2) if rng.random() < 0.5 else sn.offer_action(1, 0, 0, 0))
    elif kind == "unpaid accept":  # this seat asks one more than the other holds, who accepts
      theirs = np.asarray(state.inventory)[1 - seat]
      r = int(np.argmin(theirs))  # under 20, so this seat holds some of it
      give, get = [0, 0], [0, 0]
      give[1 - r if held[1 - r] else r], get[r] = 1, int(theirs[r]) + 1
      play(sn.offer_action(*give, *get))
      play(sn.ACCEPT)
    elif kind == "accept of nothing":  # a deny (or a pass) first, so nothing is pending
      play(sn.DENY)
      play(sn.ACCEPT)
    else:
      play(core.INVALID)
  return moves


def _named_games():
  """Games in the seats' own spellings: (name, move texts for the reference, our ids)."""
  o = sn.offer_action
  spelled = ["[Offer: 2 Gold, 3 Wood -> 1 Wood]", "[offer: 1 wood and 1 WOOD -> 2 golds.]",
             "[Accept]", "[Offer: I give 3 Gold -> 2 Wood]"]
  spelled_ids = [o(3, 2, 1, 0), o(2, 0, 0, 2), sn.ACCEPT, o(0, 3, 2, 0)]
  chat = ["[Offer: 2 Wood -> 1 Gold]", "I'm open to negotiation."]
  too_many = ["[Offer: 1 Wood -> 25 Gold]"]
  return [("spelled", spelled, spelled_ids), ("chat", chat, [o(2, 0, 0, 1), core.INVALID]),
          ("more than exists", too_many, [core.INVALID])]


@functools.cache
def _neg_games():
  """[(name, moves, states, reference answer)] from one oracle call."""
  rng = np.random.default_rng(NEG_SEED)
  games = [("random", _neg_moves(rng)) for _ in range(NEG_RANDOM_GAMES)]
  for i in range(NEG_FORFEITS_PER_KIND * len(FORFEIT_KINDS)):
    kind = FORFEIT_KINDS[i % len(FORFEIT_KINDS)]
    last = 8 if kind in ("unpaid accept", "accept of nothing") else 9  # room for a set-up move
    at = last if i < len(FORFEIT_KINDS) else int(rng.integers(0, last + 1))  # the 10th action
    games.append((kind, _neg_moves(rng, kind, at)))
  texts = [[_neg_text(m) for m in moves] for _, moves in games]
  named = _named_games()
  games += [(name, ids) for name, _, ids in named]
  texts += [spelling for _, spelling, _ in named]
  request = [{"env_id": "SimpleNegotiation-v1", "seed": i, "all_seats": True, "moves": t}
             for i, t in enumerate(texts)]
  answers = oracle.call("play", games=request)
  start = NEG.init(jax.random.key(0))
  return [(name, moves, _replay(NEG_STEP, start, moves), answer)
          for (name, moves), answer in zip(games, answers)]


def _neg_of(*names):
  return [g for g in _neg_games() if g[0] in names]


def _ended_by(state):
  """How our game ended: 'forfeit', 'draw' or 'win'."""
  if int(state.forfeited_by) != core.NO_SEAT:
    return "forfeit"
  return "draw" if (state.rewards == 0).all() else "win"


def test_negotiation_random_games_are_legal_and_end_as_the_references():
  endings = collections.Counter()
  moves_played = collections.Counter()
  for _, moves, states, answer in _neg_of("random"):
    assert len(moves) == 10 and answer["done"] and len(answer["steps"]) == 10
    for move, state, step in zip(moves, states, answer["steps"]):
      assert step["seat"] == int(state.current_seat)
      assert bool(NEG_IS_LEGAL(state, move))
      assert NEG.parse(f"So: \\boxed{{{NEG.action_text(move)}}}", state) == move
      pending = int(state.offer_from) != core.NO_SEAT
      moves_played["offer" if move >= sn.FIRST_OFFER else
                    ("deny" if pending else "pass") if move == sn.DENY else "accept"] += 1
    end = states[-1]
    ending = _ended_by(end)
    assert ending != "forfeit"
    assert end.rewards.tolist() == [answer["rewards"]["0"], answer["rewards"]["1"]]
    endings[ending] += 1
  assert endings["win"] >= 100 and endings["draw"] >= 5, endings
  assert min(moves_played.values()) >= 100, moves_played


def test_negotiation_every_observation_is_identical():
  """Random and forfeit games (the named spelling games differ on purpose: tests below)."""
  observations = identical = 0
  for _, _, states, answer in _neg_of("random", *FORFEIT_KINDS):
    for state, seat, theirs, _ in _views(states, answer):
      ours = NEG.render(state, seat)
      assert ours == theirs
      observations += 1
      identical += ours == theirs
  games = NEG_RANDOM_GAMES + NEG_FORFEITS_PER_KIND * len(FORFEIT_KINDS)
  assert observations == identical > 2 * 2 * games
  print(f"\nSimpleNegotiation: {games} games, {observations} observations, {identical} identical")


def test_negotiation_observation_layout():
  _, _, states, answer = _neg_of("random")[0]
  first = answer["steps"][0]["observation"]
  assert first.startswith("\n[GAME] You are Player 0 in the Negotiation Game.\n")
  assert "\t+ [Wood]    Qty: 10   Value: 5\n\t+ [Gold]    Qty: 10   Value: 15\n" in first
  assert first.endswith("The game lasts for 10 turns in total.\n")
  second = answer["steps"][1]["observation"]
  assert second.startswith("\n[GAME] You are Player 1 in the Negotiation Game.\n")
  assert "The game lasts for 10 turns in total.\n\n[Player 0] " in second
  assert re.search(r"\n\[GAME\] (Player [01] won the game|The game ended in a draw)\. Reason: "
                   r"[^\n]*\Z", answer["final"]["0"])


@pytest.mark.parametrize("kind", FORFEIT_KINDS)
def test_negotiation_forfeits_end_with_the_reference_envs_text(kind):
  """The echo, then the env's verdict where the env rejects the move; where it accepts it
  (``[Accept]`` with nothing pending, an unparseable move) the echo alone, or the outcome
  line on the 10th action. Ours pays the configured Forfeit; the reference -1/0 (or plays on)."""
  verdicts = {"unpaid offer": "tried to make a trade offer without having the necessary resources.",
              "empty offer": "made a trade offer in an incorrect format.",
              "unpaid accept": "tried accepting a trade without having the necessary resources."}
  games = _neg_of(kind)
  assert len(games) == NEG_FORFEITS_PER_KIND
  for _, moves, states, answer in games:
    end = states[-1]
    seat = int(end.forfeited_by)
    assert seat == answer["steps"][-1]["seat"] and len(answer["steps"]) == len(moves)
    assert end.rewards[seat] == NEG.forfeit.offender and end.rewards[1 - seat] == NEG.forfeit.other
    tail = f"\n[Player {seat}] {_neg_text(moves[-1])}"
    final = {s: answer["final"][str(s)] for s in (0, 1)}
    if kind in verdicts:
      assert answer["done"] and answer["rewards"] == {str(seat): -1, str(1 - seat): 0}
      tail += (f"\n[GAME] Player {seat} lost the game by way of invalid move. Reason: Player "
               f"{seat} {verdicts[kind]}")
      assert all(text.endswith(tail) for text in final.values())
    elif len(moves) < 10:  # the reference env plays on
      assert not answer["done"] and all(text.endswith(tail) for text in final.values())
    else:
      assert answer["done"] and all(f"{tail}\n[GAME] " in text for text in final.values())
    for s in (0, 1):
      assert NEG.render(end, s) == final[s]
  if kind in ("accept of nothing", "invalid"):
    assert {len(g[1]) == 10 for g in games} == {True, False}  # mid-game and on the 10th action


def test_named_difference_negotiation_any_payable_offer_is_legal():
  """SPIRAL.md section 6: the reference's legal list is three random offers of 1-3 items (sized
  from the prompt's starting quantities, not the seat's holdings), chat lines and, with an offer
  pending, [Accept]/[Deny]; here every offer the offerer can pay for is legal, and its env takes
  each such offer as the reference's own listed ones (identical text above)."""
  outside = inside = 0
  for _, moves, states, answer in _neg_of("random"):
    for move, state, step in zip(moves, states, answer["steps"]):
      held = np.asarray(state.inventory)[int(state.current_seat)]
      for listed in step["legal"]:
        action = NEG.action_from_text(listed)
        if listed.startswith("[Offer"):
          give = sn.offer_terms(np.int64(action))[:2]
          assert bool(NEG_IS_LEGAL(state, action)) == bool((give <= held).all()), listed
        elif listed not in ("[Accept]", "[Deny]"):
          assert action == core.INVALID, listed  # chat, and chat around [Accept]/[Deny]
      if move >= sn.FIRST_OFFER:
        if _neg_text(move) in step["legal"]:
          inside += 1
        else:
          outside += 1
  assert outside > 10 * inside > 0, (outside, inside)


def test_named_difference_negotiation_deny_with_nothing_pending_is_a_pass():
  """Legal here; absent from the reference's list (an invalid move in its run); its env ignores
  it, so the text is the echo alone, as here."""
  passes = 0
  for _, moves, states, answer in _neg_of("random"):
    for t, (move, state, step) in enumerate(zip(moves, states, answer["steps"])):
      if move != sn.DENY or int(state.offer_from) != core.NO_SEAT:
        continue
      passes += 1
      assert "[Deny]" not in step["legal"] and bool(NEG_IS_LEGAL(state, sn.DENY))
      seat, ours = int(state.current_seat), NEG.render(states[t + 1], int(state.current_seat))
      echoed = NEG.render(state, seat) + f"\n[Player {seat}] [Deny]"
      if t < 9:
        assert ours == echoed
      else:  # then the outcome line
        assert ours.startswith(echoed + "\n[GAME] ") and "\n" not in ours[len(echoed) + 1:]
  assert passes >= 50


def test_named_difference_negotiation_accept_with_nothing_pending_forfeits():
  """Illegal here (forfeit); absent from the reference's list too; its env ignores it and plays
  on (``done`` false, no rewards) unless it was the 10th action."""
  for _, moves, states, answer in _neg_of("accept of nothing"):
    step = answer["steps"][-1]
    assert moves[-1] == sn.ACCEPT and int(states[-2].offer_from) == core.NO_SEAT
    assert "[Accept]" not in step["legal"]
    assert int(states[-1].forfeited_by) == step["seat"]
    if len(moves) < 10:
      assert not answer["done"] and answer["rewards"] is None


def test_named_difference_negotiation_shows_canonical_moves_not_the_seats_spelling():
  """The state keeps ids: the echo shows the canonical move and the offer line lists Wood before
  Gold with repeats summed, where the reference shows what the seat wrote (and lists items in the
  order written). Rewritten in canonical form, the reference's text is ours."""
  (_, ids, states, answer), = _neg_of("spelled")
  _, spelled, _ = _named_games()[0]
  assert ids == [NEG.parse(f"\\boxed{{{m}}}", s) for m, s in zip(spelled, states)]
  final = answer["final"]["1"]
  for text in spelled:
    assert f"] {text}\n" in final
  assert "Offered items: 2 Gold, 3 Wood -> Requested items: 1 Wood" in final
  ours = NEG.render(states[-1], 1)
  assert "Offered items: 3 Wood, 2 Gold -> Requested items: 1 Wood" in ours
  assert "Offered items: 2 Wood -> Requested items: 2 Gold" in ours
  canonical = final
  for text, move in zip(spelled, ids):
    canonical = canonical.replace(f"] {text}\n", f"] {NEG.action_text(move)}\n", 1)
  canonical = canonical.replace("2 Gold, 3 Wood ->", "3 Wood, 2 Gold ->")
  assert ours == canonical != final


def test_named_difference_negotiation_chat_is_no_move_here():
  """The reference lists chat lines as legal and its env echoes them; here a response naming no
  move is INVALID (the forfeit shows the INVALID_ACTION placeholder), and an offer of more than
  exists is INVALID (the reference env announces it)."""
  (_, ids, states, answer), = _neg_of("chat")
  assert "I'm open to negotiation." in answer["steps"][1]["legal"]
  assert NEG.parse("\\boxed{I'm open to negotiation.}", states[1]) == core.INVALID
  assert answer["final"]["0"].endswith("\n[Player 1] I'm open to negotiation.")
  assert NEG.render(states[-1], 0).endswith(f"\n[Player 1] {INVALID_ACTION}")
  assert NEG.render(states[-1], 0).replace(INVALID_ACTION, "I'm open to negotiation.") == \
      answer["final"]["0"]
  (_, ids, states, answer), = _neg_of("more than exists")
  assert NEG.parse("\\boxed{[Offer: 1 Wood -> 25 Gold]}", states[0]) == core.INVALID
  assert answer["final"]["1"].endswith("Offered items: 1 Wood -> Requested items: 25 Gold")
  assert NEG.render(states[-1], 1).endswith(f"\n[Player 0] {INVALID_ACTION}")


def test_negotiation_parse_tolerates_the_lenient_extraction_contract(monkeypatch):
  """``parse`` reads ``extract_action``'s move; if it gives None (the earlier contract), INVALID."""
  from spiral_jax.text import actions
  state = NEG.init(jax.random.key(0))
  assert NEG.parse("[Offer: 3 Wood -> 2 Gold]", state) == sn.offer_action(3, 0, 0, 2)  # no box
  monkeypatch.setattr(actions, "extract_action", lambda text, **kw: None)
  assert NEG.parse("\\boxed{[Deny]}", state) == core.INVALID
