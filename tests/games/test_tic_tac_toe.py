"""TicTacToe-v0: rules, a TextArena 0.7.4 differential of the outcomes, random-play statistics,
the minimax expert against a plain-Python negamax, and parse/board properties.

The observation text is the reference run's (TextArena 0.6.4 behind
``FirstLastObservationWrapper``), compared byte for byte in
``tests/reference/test_observations.py``; 0.7.4's rules are the same, so this file still plays
every game against it for the outcomes."""
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import textarena as ta
from hypothesis import given, settings
from hypothesis import strategies as st

from spiral_jax.games import core, registry
from spiral_jax.games import tic_tac_toe as ttt

GAME = ttt.TicTacToe()
STEP = jax.jit(GAME.step)
BATCH_STEP = jax.jit(jax.vmap(GAME.step))


def _play(moves, game=GAME, step=STEP):
  state = game.init(jax.random.key(0))
  states = [state]
  for move in moves:
    state = step(state, move)
    states.append(state)
  return states


def _assert_trees_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# The eight lines, written out here so the test does not trust the module's own table.
WIN_LINES = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [0, 3, 6], [1, 4, 7], [2, 5, 8], [0, 4, 8], [2, 4, 6]]


def _unbatch(batched, i):
  return jax.tree.map(lambda x: x[i], batched)


# ---------------------------------------------------------------- rules
def test_registered_with_configurable_forfeit():
  game = registry.make("TicTacToe-v0", forfeit=core.EVAL_FORFEIT)
  assert isinstance(game, ttt.TicTacToe) and game.forfeit == core.EVAL_FORFEIT
  assert ttt.TicTacToe().forfeit == core.TRAIN_FORFEIT == core.Forfeit(-1.5, 0.5)
  assert [GAME.action_text(a) for a in range(9)] == [f"[{c}]" for c in range(9)]
  with pytest.raises(ValueError, match="action=9"):
    GAME.action_text(9)


def _winning_sequence(line, winner):
  """Moves in which ``winner`` completes ``line`` with its third mark and the loser has no line."""
  others = [c for c in range(9) if c not in line]
  fillers = next(f for f in itertools.permutations(others, 3)
                 if sorted(f) not in WIN_LINES)
  if winner == 0:
    return [line[0], fillers[0], line[1], fillers[1], line[2]]
  return [fillers[0], line[0], fillers[1], line[1], fillers[2], line[2]]


@pytest.mark.parametrize("winner", [0, 1])
def test_every_line_wins(winner):
  for line in WIN_LINES:
    moves = _winning_sequence(line, winner)
    states = _play(moves)
    for before_end in states[:-1]:
      assert not bool(before_end.terminated), (line, moves)
    end = states[-1]
    assert bool(end.terminated), (line, moves)
    expected = [1.0, -1.0] if winner == 0 else [-1.0, 1.0]
    np.testing.assert_array_equal(end.rewards, expected)
    assert int(end.forfeited_by) == core.NO_SEAT
    assert int(end.num_moves) == len(moves)
    assert (np.asarray(end.board)[line] == winner).all()


def test_full_board_without_line_draws():
  moves = [0, 1, 2, 4, 3, 5, 7, 6, 8]  # O X O / O X X / X O O
  states = _play(moves)
  assert not any(bool(s.terminated) for s in states[:-1])
  end = states[-1]
  assert bool(end.terminated) and int(end.forfeited_by) == core.NO_SEAT
  np.testing.assert_array_equal(end.rewards, [0.0, 0.0])
  np.testing.assert_array_equal(end.board, [0, 1, 0, 0, 1, 1, 1, 0, 0])
  assert not bool(GAME.legal_action_mask(end).any())


@pytest.mark.parametrize("forfeit", [core.TRAIN_FORFEIT, core.EVAL_FORFEIT])
@pytest.mark.parametrize("moves, offender", [
    ([4, 4], 1),             # seat 1 marks the occupied centre
    ([4, 0, 0], 0),          # seat 0 marks seat 1's cell
    ([4, 0, 4], 0),          # seat 0 marks its own cell
    ([core.INVALID], 0),     # unparseable response
    ([4, 9], 1),             # out of range
])
def test_illegal_move_forfeits(forfeit, moves, offender):
  game = ttt.TicTacToe(forfeit=forfeit)
  states = _play(moves, game, jax.jit(game.step))
  end = states[-1]
  assert bool(end.terminated) and int(end.forfeited_by) == offender
  expected = np.empty(2)
  expected[offender], expected[1 - offender] = forfeit.offender, forfeit.other
  np.testing.assert_array_equal(end.rewards, expected)
  np.testing.assert_array_equal(end.board, states[-2].board)  # the illegal mark is not placed
  assert int(end.history[len(moves) - 1]) == moves[-1]


def test_legal_mask_is_the_empty_cells_until_the_end():
  states = _play([4, 0, 8])
  np.testing.assert_array_equal(GAME.legal_action_mask(states[-1]),
                                [False, True, True, True, False, True, True, True, False])
  assert int(states[-1].current_seat) == 1
  end = STEP(states[-1], 4)
  assert not bool(GAME.legal_action_mask(end).any())


def test_stepping_after_the_end_is_a_no_op():
  ends = [_play([0, 3, 1, 4, 2])[-1],                # seat 0 wins
          _play([0, 1, 2, 4, 3, 5, 7, 6, 8])[-1],    # draw
          _play([4, 4])[-1]]                         # forfeit
  for end in ends:
    for move in [*range(9), core.INVALID, 9]:
      _assert_trees_equal(STEP(end, move), end)


# ---------------------------------------------------------------- differential vs TextArena 0.7.4
NUM_DIFF_GAMES = 300
ILLEGAL_RATE = 0.06


def _random_moves(rng):
  """9 moves: mostly random empty cells, sometimes an occupied cell, an id past 8, or INVALID."""
  free, taken, moves = list(range(9)), [], []
  while free:
    if rng.random() < ILLEGAL_RATE:
      moves.append(int(rng.choice(taken + [core.INVALID, 9, 10])))
    else:
      moves.append(free.pop(rng.integers(len(free))))
      taken.append(moves[-1])
  return moves[:9]


def _ta_text(move):
  return "[invalid]" if move == core.INVALID else f"[{move}]"


def test_matches_textarena_outcomes():
  rng = np.random.default_rng(0)
  moves = np.array([_random_moves(rng) for _ in range(NUM_DIFF_GAMES)], np.int32)
  state = jax.vmap(GAME.init)(jax.random.split(jax.random.key(0), NUM_DIFF_GAMES))
  trajectory = [jax.device_get(state)]
  for t in range(9):
    state = BATCH_STEP(state, jnp.asarray(moves[:, t]))
    trajectory.append(jax.device_get(state))
  endings = {"win0": 0, "win1": 0, "draw": 0, "forfeit": 0}
  for game_index in range(NUM_DIFF_GAMES):
    env = ta.make("TicTacToe-v0")
    env.reset(num_players=2, seed=game_index)
    env.state.error_allowance = 0  # SPIRAL: an invalid move ends the game, no retry
    done, t = False, 0
    while not done:
      ours = _unbatch(trajectory[t], game_index)
      assert not bool(ours.terminated)
      seat, _ = env.get_observation()
      assert seat == int(ours.current_seat)
      done, _ = env.step(_ta_text(int(moves[game_index, t])))
      t += 1
      assert bool(trajectory[t].terminated[game_index]) == done, (game_index, t)
    end = _unbatch(trajectory[9], game_index)
    _assert_trees_equal(end, _unbatch(trajectory[t], game_index))  # absorbing afterwards
    ta_rewards, ta_info = env.close()
    ta_rewards = np.array([ta_rewards[0], ta_rewards[1]], np.float32)
    offender = int(end.forfeited_by)
    if offender == core.NO_SEAT:
      np.testing.assert_array_equal(end.rewards, ta_rewards)
      assert not ta_info[0]["invalid_move"] and not ta_info[1]["invalid_move"]
      endings["draw" if ta_rewards[0] == 0 else f"win{int(np.argmax(ta_rewards))}"] += 1
    else:  # TextArena pays -1/+1; ours the training forfeit: the same seat loses
      assert ta_info[offender]["invalid_move"] and not ta_info[1 - offender]["invalid_move"]
      assert ta_rewards[offender] == -1 and ta_rewards[1 - offender] == 1
      np.testing.assert_array_equal(end.rewards[[offender, 1 - offender]], [-1.5, 0.5])
      endings["forfeit"] += 1
  assert min(endings.values()) >= 10, endings  # every kind of ending was compared


# ---------------------------------------------------------------- random play statistics
def _play_batch(players, num_games, key):
  """Plays ``num_games`` with ``players[seat](state, key)`` under jit(vmap); returns end states."""
  init_keys, move_keys = jax.random.split(key)

  @jax.jit
  def run(keys):
    state = jax.vmap(GAME.init)(keys)

    def turn(t, state):
      keys_t = jax.vmap(lambda k: jax.random.fold_in(k, t))(jax.random.split(move_keys, num_games))
      actions = [jax.vmap(player)(state, keys_t) for player in players]
      action = jnp.where(state.current_seat == 0, actions[0], actions[1])
      return jax.vmap(GAME.step)(state, action)

    return jax.lax.fori_loop(0, GAME.max_moves, turn, state)

  return jax.device_get(run(jax.random.split(init_keys, num_games)))


def test_random_play_outcome_rates():
  end = _play_batch([GAME.random_action, GAME.random_action], 20_000, jax.random.key(7))
  assert end.terminated.all() and (end.forfeited_by == core.NO_SEAT).all()
  seat0, seat1 = (end.rewards[:, 0] == 1).mean(), (end.rewards[:, 1] == 1).mean()
  draw = (end.rewards == 0).all(1).mean()
  assert abs(seat0 - 0.58) <= 0.015, seat0
  assert abs(seat1 - 0.29) <= 0.015, seat1
  assert abs(draw - 0.13) <= 0.015, draw


# ---------------------------------------------------------------- minimax
MINIMAX = ttt.minimax_player(GAME)


def test_minimax_never_loses_to_random():
  for minimax_seat in (0, 1):
    players = [GAME.random_action] * 2
    players[minimax_seat] = MINIMAX
    end = _play_batch(players, 1_000, jax.random.key(minimax_seat))
    assert end.terminated.all() and (end.forfeited_by == core.NO_SEAT).all()
    assert (end.rewards[:, minimax_seat] >= 0).all()
    # It also converts (measured: 97% as seat 0, 77% as seat 1).
    assert (end.rewards[:, minimax_seat] == 1).mean() > (0.9, 0.7)[minimax_seat]


def test_minimax_self_play_always_draws_along_varied_lines():
  end = _play_batch([MINIMAX, MINIMAX], 500, jax.random.key(3))
  assert end.terminated.all() and (end.forfeited_by == core.NO_SEAT).all()
  np.testing.assert_array_equal(end.rewards, 0.0)
  assert (end.num_moves == 9).all()
  assert len({tuple(h) for h in end.history.tolist()}) >= 50  # ties are broken at random


def _has_line(board, seat):
  return any(all(board[c] == seat for c in line) for line in WIN_LINES)


@functools.lru_cache(maxsize=None)
def _negamax(board, mover, by_speed=False):
  """Plain recursive negamax for ``mover``: win 1 / draw 0 / loss -1, or with ``by_speed`` the
  table's scoring (win = 1 + empty cells left, loss the negative)."""
  empty = board.count(ttt.EMPTY)
  if _has_line(board, 1 - mover):
    return -(1 + empty) if by_speed else -1
  if empty == 0:
    return 0
  return max(-_negamax(board[:c] + (mover,) + board[c + 1:], 1 - mover, by_speed)
             for c in range(9) if board[c] == ttt.EMPTY)


def _reachable_live_positions():
  seen, stack = set(), [((ttt.EMPTY,) * 9, 0)]
  while stack:
    board, mover = stack.pop()
    if (board, mover) in seen or _has_line(board, 1 - mover) or ttt.EMPTY not in board:
      continue
    seen.add((board, mover))
    stack.extend((board[:c] + (mover,) + board[c + 1:], 1 - mover)
                 for c in range(9) if board[c] == ttt.EMPTY)
  return sorted(seen)


def _batched_states(positions):
  n = len(positions)
  state = jax.vmap(GAME.init)(jax.random.split(jax.random.key(0), n))
  boards = np.array([board for board, _ in positions], np.int32)
  return state.replace(board=jnp.asarray(boards),
                       current_seat=jnp.asarray([mover for _, mover in positions], jnp.int32),
                       num_moves=jnp.asarray((boards != ttt.EMPTY).sum(1), jnp.int32))


def test_minimax_keeps_the_game_value_from_every_reachable_position():
  positions = _reachable_live_positions()
  assert len(positions) == 4520  # the known count of non-terminal TicTacToe positions
  states = _batched_states(positions)
  optimal = np.asarray(jax.jit(jax.vmap(ttt.optimal_moves))(states))
  chosen = np.asarray(jax.jit(jax.vmap(MINIMAX))(
      states, jax.random.split(jax.random.key(5), len(positions))))
  for i, (board, mover) in enumerate(positions):
    children = {c: board[:c] + (mover,) + board[c + 1:] for c in range(9) if board[c] == ttt.EMPTY}
    value = _negamax(board, mover)
    keeps_value = {c for c, child in children.items() if -_negamax(child, 1 - mover) == value}
    fastest = max(-_negamax(child, 1 - mover, True) for child in children.values())
    best = {c for c, child in children.items() if -_negamax(child, 1 - mover, True) == fastest}
    assert set(np.nonzero(optimal[i])[0].tolist()) == best, (board, mover)
    assert best <= keeps_value, (board, mover)
    assert int(chosen[i]) in best, (board, mover)


def test_minimax_takes_the_fastest_win():
  # O O . / X X . / X . . with O to move: [2] wins now; [5] only blocks.
  state = _batched_states([((0, 0, -1, 1, 1, -1, 1, -1, -1), 0)])
  np.testing.assert_array_equal(jax.vmap(ttt.optimal_moves)(state)[0],
                                [c == 2 for c in range(9)])


def test_minimax_ties_are_random_at_the_start():
  state = GAME.init(jax.random.key(0))
  assert bool(ttt.optimal_moves(state).all())  # every opening draws under perfect play
  picks = jax.jit(jax.vmap(MINIMAX, in_axes=(None, 0)))(state, jax.random.split(jax.random.key(1),
                                                                                  200))
  assert len(set(np.asarray(picks).tolist())) == 9


def test_minimax_returns_a_cell_in_finished_games():
  player = jax.jit(MINIMAX)
  won = _play([0, 3, 1, 4, 2])[-1]
  drawn = _play([0, 1, 2, 4, 3, 5, 7, 6, 8])[-1]
  for key in range(5):
    move = int(player(won, jax.random.key(key)))
    assert 0 <= move < 9 and int(won.board[move]) == ttt.EMPTY
    assert 0 <= int(player(drawn, jax.random.key(key))) < 9
  with pytest.raises(ValueError, match="TicTacToe"):
    ttt.minimax_player(object())


# ---------------------------------------------------------------- parse and properties
def test_parse_examples():
  start, after_centre = _play([4])
  assert GAME.parse("I take the centre. \\boxed{4}", start) == 4
  assert GAME.parse("\\boxed{[4]}", start) == 4
  assert GAME.parse("\\boxed{  4 }", start) == core.INVALID  # wrapped as "[ 4 ]": inner spaces
  assert GAME.parse("\\boxed{[3]} no wait \\boxed{5}", start) == 5  # the last box counts
  assert GAME.parse("\\boxed{[ 4 ]}", start) == core.INVALID  # exact match only
  assert GAME.parse("[4]", start) == 4                        # no box: the whole text
  assert GAME.parse("I pick [4]", start) == core.INVALID      # ... which must be the move
  assert GAME.parse("\\boxed{9}", start) == core.INVALID
  assert GAME.parse("\\boxed{4}", after_centre) == core.INVALID  # occupied
  assert GAME.parse("\\boxed{0}", after_centre) == 0


_PARSE_STATES = [_play(moves)[-1] for moves in ([], [4, 0], [4, 0, 8, 2, 1], [0, 3, 1, 4, 2])]
_BOX_CONTENT = st.one_of(
    st.text(max_size=20), st.integers(-3, 12).map(str),
    st.integers(-3, 12).map(lambda c: f"[{c}]"),
    st.sampled_from(["", " ", "[]", "4 5", "[4] [5]", "\\boxed{4}", "{4}", "four", "[ 4]"]))


@st.composite
def _responses(draw):
  parts = draw(st.lists(st.one_of(st.text(max_size=30),
                                  _BOX_CONTENT.map(lambda s: "\\boxed{" + s + "}"),
                                  st.just("\\boxed{"), st.just("}")), max_size=5))
  return "".join(parts)


@settings(max_examples=300, deadline=None)
@given(response=_responses(), which=st.integers(0, len(_PARSE_STATES) - 1))
def test_parse_never_raises_and_returns_legal_ids(response, which):
  state = _PARSE_STATES[which]
  action = GAME.parse(response, state)
  assert isinstance(action, int)
  legal = np.asarray(GAME.legal_action_mask(state))
  assert action == core.INVALID or (0 <= action < 9 and legal[action])


@settings(max_examples=150, deadline=None)
@given(moves=st.lists(st.one_of(st.integers(0, 8), st.integers(-2, 11)), max_size=12))
def test_marks_alternate_and_never_exceed_nine(moves):
  state = GAME.init(jax.random.key(0))
  for move in moves:
    state = STEP(state, move)
    board = np.asarray(state.board)
    marks = [(board == seat).sum() for seat in (0, 1)]
    assert marks[0] + marks[1] <= 9 and marks[0] - marks[1] in (0, 1)
    played = int(state.num_moves) - (int(state.forfeited_by) != core.NO_SEAT)
    assert marks[0] + marks[1] == played
    # The i-th legal move is the i-th recorded one and its mark belongs to seat i % 2.
    for i, cell in enumerate(np.asarray(state.history)[:played].tolist()):
      assert board[cell] == i % 2
