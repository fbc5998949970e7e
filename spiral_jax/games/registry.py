"""Game ids to constructors: ``make('KuhnPoker-v1')`` and friends."""
from __future__ import annotations

from typing import Callable

from spiral_jax.errors import InputError
from spiral_jax.games.core import Game

_REGISTRY: dict[str, Callable[..., Game]] = {}


def register(game_id: str, factory: Callable[..., Game]) -> None:
  """Makes ``make(game_id, **kwargs)`` call ``factory(**kwargs)``."""
  if game_id in _REGISTRY:
    raise ValueError(f"game id {game_id!r} is already registered")
  _REGISTRY[game_id] = factory


def make(game_id: str, **kwargs) -> Game:
  """A game by id; kwargs (``forfeit=``, ``rounds=``) go to its constructor."""
  if game_id not in _REGISTRY:
    raise InputError(f"unknown game id {game_id!r}; registered ids: {', '.join(list_games())}")
  return _REGISTRY[game_id](**kwargs)


def list_games() -> list[str]:
  """Every registered id, sorted."""
  return sorted(_REGISTRY)
