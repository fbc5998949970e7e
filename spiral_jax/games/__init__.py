"""Two-player zero-sum text games as pure JAX functions (see ``core.py`` for the protocol)."""
from spiral_jax.games import kuhn_poker, simple_negotiation, tic_tac_toe  # noqa: F401  (registers)
from spiral_jax.games.core import (EVAL_FORFEIT, INVALID, NO_SEAT, NUM_SEATS, TRAIN_FORFEIT,
                                   Forfeit, Game, State)
from spiral_jax.games.registry import list_games, make, register

__all__ = ["EVAL_FORFEIT", "INVALID", "NO_SEAT", "NUM_SEATS", "TRAIN_FORFEIT", "Forfeit", "Game",
           "State", "list_games", "make", "register"]
