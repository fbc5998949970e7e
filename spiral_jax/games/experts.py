"""Scripted players: uniformly random legal moves, and each game's own expert (``Game.expert``).

A player is a pure function ``(state, key) -> i32[]`` over one unbatched state (``core.Player``),
so ``jax.vmap(player)`` plays a whole batch of games. Experts serve as fixed opponents, evaluation
yardsticks and the source of SFT trajectories.
"""
from __future__ import annotations

from spiral_jax.games.core import Game, Player

__all__ = ["Player", "expert_player", "make_player", "random_player"]


def random_player(game: Game) -> Player:
  """Uniformly random over the legal moves."""
  return game.random_action


def expert_player(game: Game, **kwargs) -> Player:
  """The game's scripted expert: minimax (TicTacToe), Nash equilibrium (Kuhn Poker, ``alpha=``),
  a value-seeking negotiator (SimpleNegotiation); ``kwargs`` go to the game's ``expert``."""
  return game.expert(**kwargs)


def make_player(name: str, game: Game, **kwargs) -> Player:
  """A player by name: ``'random'`` or ``'expert'``."""
  if name == "random":
    return random_player(game)
  if name == "expert":
    return expert_player(game, **kwargs)
  raise ValueError(f"unknown player {name!r}; use 'random' or 'expert'")
