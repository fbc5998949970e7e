"""Role-conditioned Advantage Estimation (RAE): one EMA baseline per (group, game, seat).

For each finished game of kind G, in collection order, and each seat p the learner played, with
return R_p:
  A_p = R_p - b[group, G, p]                 (the baseline *before* this game's update)
  b[group, G, p] <- alpha * b[group, G, p] + (1 - alpha) * R_p
Every move of seat p in that game gets the scalar A_p (SPIRAL.md section 2). As in the reference
(``train_spiral.py``'s ``prepare_trajectories``):
- With a fixed opponent (random, expert, a checkpoint, a league) only the learner's seats are
  folded, so a baseline never absorbs the opponent's returns.
- The fold runs on the host as games finish, before the zero-advantage filter and the exact draw
  of ``batch_size`` samples (``play.rollout.collect``).
- ``groups`` independent baselines stand for the reference's actors (8 in its run, each with its
  own baselines folding the ~2 games it plays a step): a round's games of each kind are split
  into ``groups`` contiguous blocks, block g folding into group g. One group folds every game of
  a step into one baseline, which then moves ``groups`` times faster.
The fold is in float64, from and back to the f32 baselines that the train state checkpoints.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from spiral_jax.games.core import NUM_SEATS
from spiral_jax.play.rollout import FinishedGame, Move

ALPHA = 0.95


def init(num_games: int, groups: int = 1) -> jax.Array:
  """f32[groups, num_games, 2]: zero baselines for every (group, game kind, seat)."""
  return jnp.zeros((groups, num_games, NUM_SEATS), jnp.float32)


def group_of(game: FinishedGame, groups: int) -> int:
  """The baseline group of a game: its contiguous block of its kind's games in its round."""
  return game.row * groups // max(game.round_games, 1)


@dataclasses.dataclass
class Baselines:
  """The host-side fold over a run of rounds (``collect``'s ``advantage_fn``).

  values: f64[groups, kinds, 2], updated in place by every call
  enabled: False gives plain REINFORCE advantages (A = R); the baselines are still folded, for
    the logs
  """
  values: np.ndarray
  alpha: float = ALPHA
  enabled: bool = True

  @classmethod
  def start(cls, baselines: jax.Array | np.ndarray, **kwargs) -> "Baselines":
    return cls(np.asarray(jax.device_get(baselines), np.float64).copy(), **kwargs)

  def fold(self, games: Sequence[FinishedGame]) -> np.ndarray:
    """f64[N, 2]: each game's advantage per seat (NaN for seats not folded), folding ``games``
    in order."""
    adv = np.full((len(games), NUM_SEATS), np.nan)
    groups = self.values.shape[0]
    for i, game in enumerate(games):
      b = self.values[group_of(game, groups), game.kind]
      for p in game.learner_seats:
        ret = float(game.returns[p])
        adv[i, p] = ret - b[p] if self.enabled else ret
        b[p] = self.alpha * b[p] + (1.0 - self.alpha) * ret
    return adv

  def __call__(self, moves: Sequence[Move], games: Sequence[FinishedGame],
               game_offset: int) -> np.ndarray:
    """f64[len(moves)]: each move's advantage after folding ``games`` (numbered from
    ``game_offset``, as ``Move.game`` counts)."""
    adv = self.fold(games)
    return np.array([adv[m.game - game_offset, m.seat] for m in moves], np.float64)

  def state(self) -> np.ndarray:
    """f32[groups, kinds, 2]: the baselines as the train state keeps them."""
    return self.values.astype(np.float32)
