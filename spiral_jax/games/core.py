"""The game protocol shared by every game: pure, fixed-shape, batched with ``jax.vmap``.

A game is a Python object holding static configuration (its id, its forfeit rewards) and pure
functions over a ``flax.struct`` state, in the style of pgx:

  state = game.init(key)               # pytree of fixed-shape arrays
  state = game.step(state, action)     # pure; jax.jit(jax.vmap(game.step)) works
  game.legal_action_mask(state)        # bool[num_actions]
  game.render(state, seat) -> str      # observation text, host side, one unbatched state
  game.parse(response, state) -> int   # action id or INVALID, host side

Shared rules live here: stepping a finished game is a no-op, and an illegal action (INVALID
included) ends the game at once against its maker with the configured forfeit rewards.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from spiral_jax.text import actions as text_actions

INVALID = -1
NUM_SEATS = 2
NO_SEAT = -1


@dataclasses.dataclass(frozen=True)
class Forfeit:
  """Terminal rewards when a seat makes an invalid or illegal move (SPIRAL.md section 2)."""
  offender: float
  other: float


TRAIN_FORFEIT = Forfeit(offender=-1.5, other=0.5)
EVAL_FORFEIT = Forfeit(offender=-1.0, other=1.0)


@struct.dataclass
class State:
  """Fields every game state has; games subclass it and add their own arrays.

  current_seat: i32[]  the seat to move (meaningless once terminated)
  terminated:   bool[] the game is over; further steps are no-ops
  rewards:      f32[2] terminal reward per seat; zeros until the game ends
  num_moves:    i32[]  moves made so far
  forfeited_by: i32[]  the seat that lost by an illegal move, or NO_SEAT
  history:      i32[max_moves] action ids in play order, INVALID-padded
  """
  current_seat: jax.Array
  terminated: jax.Array
  rewards: jax.Array
  num_moves: jax.Array
  forfeited_by: jax.Array
  history: jax.Array


def base_fields(max_moves: int, first_seat: int | jax.Array = 0) -> dict[str, jax.Array]:
  """The initial values of the shared ``State`` fields, for a game's ``init``."""
  return dict(
      current_seat=jnp.asarray(first_seat, jnp.int32),
      terminated=jnp.asarray(False),
      rewards=jnp.zeros((NUM_SEATS,), jnp.float32),
      num_moves=jnp.asarray(0, jnp.int32),
      forfeited_by=jnp.asarray(NO_SEAT, jnp.int32),
      history=jnp.full((max_moves,), INVALID, jnp.int32),
  )


# A scripted player: a pure ``(state, key) -> i32[]`` over one unbatched state, so
# ``jax.vmap(player)`` plays a whole batch (``games.experts``).
Player = Callable[[State, jax.Array], jax.Array]


def tree_select(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
  """``jnp.where`` over two pytrees of the same structure with a scalar predicate."""
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


class Game(abc.ABC):
  """Base class: subclasses define the rules in ``_init``, ``_apply`` and ``legal_action_mask``."""

  id: ClassVar[str]
  num_actions: ClassVar[int]
  max_moves: ClassVar[int]  # an upper bound on moves per game, the length of ``State.history``
  # Strings of the game's texts that a tokenizer trained on them (``trainer.build_tokenizer``)
  # keeps whole, one id each ("\u2581" is SentencePiece's space).
  tokenizer_pieces: ClassVar[tuple[str, ...]] = ()

  def __init__(self, forfeit: Forfeit = TRAIN_FORFEIT):
    self.forfeit = forfeit

  # ---- rules (pure, traceable) ----
  @abc.abstractmethod
  def init(self, key: jax.Array) -> State:
    """A new game; ``key`` draws any chance (cards)."""

  @abc.abstractmethod
  def legal_action_mask(self, state: State) -> jax.Array:
    """bool[num_actions]: the moves the current seat may make (all False once terminated)."""

  @abc.abstractmethod
  def _apply(self, state: State, action: jax.Array) -> State:
    """The state after a *legal* action; sets terminated and rewards when the game ends."""

  def step(self, state: State, action: jax.Array) -> State:
    """Plays ``action`` (i32[]) for the current seat. Pure; finished games are absorbing."""
    action = jnp.asarray(action, jnp.int32)
    in_range = (action >= 0) & (action < self.num_actions)
    safe_action = jnp.where(in_range, action, 0)
    legal = in_range & self.legal_action_mask(state)[safe_action]
    recorded = state.replace(
        history=state.history.at[jnp.minimum(state.num_moves, self.max_moves - 1)].set(action),
        num_moves=state.num_moves + 1)
    played = self._apply(recorded, safe_action)
    forfeited = self._forfeit(recorded)
    return tree_select(state.terminated, state, tree_select(legal, played, forfeited))

  def _forfeit(self, state: State) -> State:
    seat = state.current_seat
    rewards = jnp.where(jnp.arange(NUM_SEATS) == seat, self.forfeit.offender, self.forfeit.other)
    return state.replace(terminated=jnp.asarray(True), rewards=rewards.astype(jnp.float32),
                         forfeited_by=seat)

  def random_action(self, state: State, key: jax.Array) -> jax.Array:
    """i32[]: a uniformly random legal move (games with huge action spaces override this)."""
    mask = self.legal_action_mask(state)
    return jax.random.categorical(key, jnp.where(mask, 0.0, -jnp.inf)).astype(jnp.int32)

  # ---- text (host) ----
  @abc.abstractmethod
  def render(self, state: State, seat: int) -> str:
    """The observation text for ``seat`` of one unbatched state, in TextArena's wording."""

  def summary(self, state: State, seat: int) -> str:
    """A short first-person line of what ``seat`` knows now, e.g. ``"The opponent bet; I have K"``.

    Scripted responses (``rl/sft``) write it before their boxed move, as an LLM restates its
    observation before it decides; empty where a game has none.
    """
    del state, seat
    return ""

  def explain(self, state: State, seat: int, action: int) -> str:
    """What ``seat`` knows and what ``action`` does, in one or two short sentences: the text
    before the boxed move of scripted responses (``rl/sft``); ``summary`` unless a game says more.
    ``state`` holds NumPy arrays (host)."""
    del action
    return self.summary(state, seat)

  # ---- scripted play ----
  def expert(self, **kwargs) -> Player:
    """The game's scripted expert player (``games.experts.expert_player``)."""
    raise ValueError(f"no expert player for {self.id!r}")

  @abc.abstractmethod
  def action_text(self, action: int) -> str:
    """The canonical text of an action id, e.g. ``'[4]'`` or ``'[check]'``."""

  def action_from_text(self, move: str) -> int:
    """The action id whose canonical text is ``move`` exactly, or INVALID."""
    return self._action_ids().get(move, INVALID)

  def _action_ids(self) -> dict[str, int]:
    table = getattr(self, "_action_ids_cache", None)
    if table is None:
      table = {self.action_text(a): a for a in range(self.num_actions)}
      self._action_ids_cache = table
    return table

  def parse(self, response: str, state: State) -> int:
    """The legal action id a response names (SPIRAL's ``\\boxed{}`` rules), or INVALID."""
    action = self.action_from_text(text_actions.extract_action(response))
    if action == INVALID or not bool(np.asarray(self.legal_action_mask(state))[action]):
      return INVALID
    return action

  def __repr__(self) -> str:
    return f"{type(self).__name__}(id={self.id!r}, forfeit={self.forfeit})"
