"""Scripted players: uniformly random legal moves and one expert per game.

A player is a pure function ``(state, key) -> i32[]`` over one unbatched state, so
``jax.vmap(player)`` plays a whole batch of games. Experts serve as fixed opponents, evaluation
yardsticks and the source of SFT trajectories.
"""
from __future__ import annotations

from typing import Callable

import jax

from spiral_jax.games import kuhn_poker, simple_negotiation, tic_tac_toe
from spiral_jax.games.core import Game, State

Player = Callable[[State, jax.Array], jax.Array]


def random_player(game: Game) -> Player:
  """Uniformly random over the legal moves."""
  return game.random_action


def expert_player(game: Game, **kwargs) -> Player:
  """The game's scripted expert: minimax (TicTacToe), Nash equilibrium (Kuhn Poker, ``alpha=``),
  a value-seeking negotiator (SimpleNegotiation)."""
  if isinstance(game, tic_tac_toe.TicTacToe):
    return tic_tac_toe.minimax_player(game, **kwargs)
  if isinstance(game, kuhn_poker.KuhnPoker):
    return kuhn_poker.equilibrium_player(game, **kwargs)
  if isinstance(game, simple_negotiation.SimpleNegotiation):
    return simple_negotiation.heuristic_player(game, **kwargs)
  raise ValueError(f"no expert player for {game.id!r}")


def make_player(name: str, game: Game, **kwargs) -> Player:
  """A player by name: ``'random'`` or ``'expert'``."""
  if name == "random":
    return random_player(game)
  if name == "expert":
    return expert_player(game, **kwargs)
  raise ValueError(f"unknown player {name!r}; use 'random' or 'expert'")
