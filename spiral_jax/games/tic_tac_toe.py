"""TicTacToe-v0: the 3x3 game on the core protocol, the reference run's text, a minimax expert.

Rules (SPIRAL.md section 4): seat 0 is 'O' and moves first, seat 1 is 'X'. Action ``c`` (text
``[c]``) marks cell ``c`` of the row-major board::

   0 | 1 | 2
  ---+---+---
   3 | 4 | 5
  ---+---+---
   6 | 7 | 8

An occupied cell is an illegal move (``core.Game.step`` forfeits it). Three in a row wins (+1/-1);
a full board without a line draws (0/0).

``render(state, seat)`` reproduces the reference run's observation byte for byte: TextArena
0.6.4's ``TicTacToe-v0`` behind TextArena's ``FirstLastObservationWrapper``, as spiral-rl 0.2.0's
``spiral.core.envs.make_env("TicTacToe-v0", False)`` wraps it. That wrapper shows only the first
message the seat received (its rules prompt, whose own trailing newline leaves a blank line after
it) and the last one (the env's current board, sent after every move), then ``Next Action:``::

  You are Player 0 in Tic Tac Toe.
  ...
  As Player 0, you will be 'O', while your opponent is 'X'.
  <blank>
  <blank>
  Current Board:
  <blank>
   X | 1 | 2
  ---+---+---
  ...
  <blank>
  Available Moves: '[1]', '[2]', ...
  <blank>
  Next Action:

No ``[GAME]`` or ``[Player k]`` tags, no move history: the board is the whole state. The board is
the last message at the end too (the env sends it after its win, draw or invalid-move verdict), so a
finished game shows its final board, ``Available Moves:`` listing the empty cells (empty on a
full board) and ``Next Action:``, as the reference does. ``tests/reference/test_observations.py``
compares both seats' observations at every move and at the end with the reference's. What it
deliberately does not reproduce is in the rules, not the text: an illegal move ends the game at
once with the configured ``Forfeit`` rewards (SPIRAL.md section 2); the reference env, stepped with
an error allowance of 0 as the reference run does, pays -1/0, and its illegal mark is not placed
either, so the text is the same.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from spiral_jax.games import core, registry

EMPTY = -1
SYMBOLS = ("O", "X")  # by seat
LINES = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8],  # rows
                  [0, 3, 6], [1, 4, 7], [2, 5, 8],  # columns
                  [0, 4, 8], [2, 4, 6]], np.int32)  # diagonals


@struct.dataclass
class TicTacToeState(core.State):
  """board: i32[9], EMPTY or the seat whose mark fills the cell (row-major)."""
  board: jax.Array


class TicTacToe(core.Game):
  """The 3x3 game; ``TicTacToe(forfeit=core.EVAL_FORFEIT)`` for evaluation rewards."""

  id = "TicTacToe-v0"
  num_actions = 9
  max_moves = 9

  # ---- rules (pure, traceable) ----
  def init(self, key: jax.Array) -> TicTacToeState:
    """An empty board, seat 0 to move; ``key`` is unused (no chance in this game)."""
    del key
    return TicTacToeState(board=jnp.full((9,), EMPTY, jnp.int32),
                          **core.base_fields(self.max_moves, first_seat=0))

  def legal_action_mask(self, state: TicTacToeState) -> jax.Array:
    """bool[9]: the empty cells, or nothing once the game is over."""
    return (state.board == EMPTY) & ~state.terminated

  def _apply(self, state: TicTacToeState, action: jax.Array) -> TicTacToeState:
    seat = state.current_seat
    board = state.board.at[action].set(seat)
    won = jnp.any(jnp.all(board[LINES] == seat, axis=1))
    full = jnp.all(board != EMPTY)
    winner_rewards = jnp.where(jnp.arange(core.NUM_SEATS) == seat, 1.0, -1.0)
    rewards = jnp.where(won, winner_rewards, 0.0).astype(jnp.float32)
    terminated = won | full
    # Like TextArena, the seat does not rotate once the game is over.
    return state.replace(board=board, terminated=terminated, rewards=rewards,
                         current_seat=jnp.where(terminated, seat, 1 - seat))

  # ---- text (host) ----
  def action_text(self, action: int) -> str:
    """``'[c]'`` for cell ``c`` in 0..8."""
    if not 0 <= int(action) < self.num_actions:
      raise ValueError(f"action={action} is not a TicTacToe cell; use an id in 0..8")
    return f"[{int(action)}]"

  def explain(self, state: TicTacToeState, seat: int, action: int) -> str:
    """The free cells, and whether ``action`` completes the seat's line or blocks the other's."""
    board = np.asarray(state.board)
    free = [str(c) for c in np.nonzero(board == EMPTY)[0]]
    line = f"I am {SYMBOLS[seat]}; the free cells are {', '.join(free)}."
    others = [board[[c for c in cells if c != action]] for cells in LINES if action in cells]
    if any((o == seat).all() for o in others):
      return f"{line} Cell {action} completes my line."
    if any((o == 1 - seat).all() for o in others):
      return f"{line} Cell {action} blocks {SYMBOLS[1 - seat]}'s line."
    return line

  def expert(self, **kwargs) -> core.Player:
    """Perfect play (minimax)."""
    return minimax_player(self, **kwargs)

  def render(self, state: TicTacToeState, seat: int) -> str:
    """The observation text for ``seat`` of one unbatched state (the reference run's: the rules
    prompt, the current board with the available moves, ``Next Action:``)."""
    if seat not in (0, 1):
      raise ValueError(f"seat={seat!r} is not a seat; use 0 or 1")
    board = np.asarray(state.board)
    if board.ndim != 1:
      raise ValueError(f"state.board has shape {board.shape}: render takes one unbatched "
                       "state; slice a batch with jax.tree.map(lambda x: x[i], state)")
    return f"{_prompt(seat)}\n\n{_board_message(board.tolist())}\n\nNext Action:"


def _prompt(seat: int) -> str:
  return (f"You are Player {seat} in Tic Tac Toe.\n"
          "Your goal is to win three in a row (horizontally, vertically, or diagonally) on the "
          "board.\n"
          "On your turn, you should select the square number (0-8) you want to put your mark in "
          "next.\n"
          "For example, '[4]' places your mark in the center cell of the board.\n\n"
          f"As Player {seat}, you will be '{SYMBOLS[seat]}', "
          f"while your opponent is '{SYMBOLS[1 - seat]}'.\n")


def _board_message(board: list[int]) -> str:
  cells = [SYMBOLS[mark] if mark != EMPTY else str(cell) for cell, mark in enumerate(board)]
  rows = ["|".join(f" {cells[3 * row + col]} " for col in range(3)) for row in range(3)]
  moves = ", ".join(f"'[{cell}]'" for cell, mark in enumerate(board) if mark == EMPTY)
  return ("Current Board:\n\n" + "\n---+---+---\n".join(rows) +
          f"\n\nAvailable Moves: {moves}")


# ---- perfect play ----
NUM_BOARDS = 3 ** 9
_POWERS = 3 ** np.arange(9)
_NO_MOVE = -128  # score of an occupied cell in the move table


@functools.lru_cache(maxsize=1)
def move_scores() -> np.ndarray:
  """i8[2, 3^9, 9]: the negamax score of each move for the seat to move, on every board.

  Index: ``[mover, sum((board + 1) * 3**cell), cell]``. A win scores ``1 + empty cells left``
  after it and a loss the negative (faster wins and slower losses score higher); a draw is 0; an
  occupied cell is -128. Boards already holding a line (over, or unreachable) give every empty
  cell the same score. Built once with numpy, from full boards back to the empty one.
  """
  digits = (np.arange(NUM_BOARDS)[:, None] // _POWERS) % 3  # 0 empty, 1 seat 0, 2 seat 1
  empties = (digits == 0).sum(1)
  has_line = [np.all(digits[:, LINES] == seat + 1, axis=2).any(1) for seat in (0, 1)]
  value = np.zeros((2, NUM_BOARDS), np.int32)  # for the seat to move
  scores = np.full((2, NUM_BOARDS, 9), _NO_MOVE, np.int32)
  for left in range(10):  # a board's children have one empty cell fewer
    boards = np.nonzero(empties == left)[0]
    for mover in (0, 1):
      lost, won = has_line[1 - mover][boards], has_line[mover][boards]
      over = np.where(lost, -(1 + left), np.where(won, 1 + left, 0))
      done = lost | won | (left == 0)
      child_scores = np.full((len(boards), 9), _NO_MOVE, np.int32)
      for cell in range(9):
        free = digits[boards, cell] == 0
        child = np.where(free, boards + (mover + 1) * _POWERS[cell], 0)
        child_scores[:, cell] = np.where(free, np.where(done, over, -value[1 - mover, child]),
                                         _NO_MOVE)
      scores[mover, boards] = child_scores
      value[mover, boards] = np.where(done, over, child_scores.max(1))
  return scores.astype(np.int8)


def optimal_moves(state: TicTacToeState) -> jax.Array:
  """bool[9]: the empty cells with the best minimax score for ``state.current_seat``.

  Traceable (jit, vmap). On a full board every cell is marked so callers always get some id.
  """
  index = jnp.sum((state.board + 1) * jnp.asarray(_POWERS, jnp.int32))
  scores = jnp.asarray(move_scores())[state.current_seat, index].astype(jnp.int32)
  scores = jnp.where(state.board == EMPTY, scores, -1000)
  return scores == scores.max()


def minimax_player(game: TicTacToe) -> core.Player:
  """Perfect play ``(state, key) -> i32[]``, random among equally good moves (jit and vmap work).

  Never makes an illegal move on a live game; on a finished game it still returns a cell id.
  """
  if not isinstance(game, TicTacToe):
    raise ValueError(f"minimax_player needs a TicTacToe game, got {game!r}")
  move_scores()  # build the table now, outside any trace

  def play(state: TicTacToeState, key: jax.Array) -> jax.Array:
    best = optimal_moves(state)
    return jax.random.categorical(key, jnp.where(best, 0.0, -jnp.inf)).astype(jnp.int32)

  return play


registry.register(TicTacToe.id, TicTacToe)
