"""Role-conditioned Advantage Estimation (RAE): one EMA baseline per (game, seat).

For each finished game of kind G, in collection order, and each seat p with return R_p:
  A_p = R_p - b[G, p]                      (the baseline *before* this game's update)
  b[G, p] <- alpha * b[G, p] + (1 - alpha) * R_p
Every move of seat p in that game gets the scalar A_p. Baselines start at 0 and live in the
train state, so they are checkpointed and restored with it (SPIRAL.md section 2).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from spiral_jax.games.core import NUM_SEATS

ALPHA = 0.95


def init(num_games: int) -> jax.Array:
  """f32[num_games, 2]: zero baselines for every (game kind, seat)."""
  return jnp.zeros((num_games, NUM_SEATS), jnp.float32)


def advantages(baselines: jax.Array, game_kinds: jax.Array, returns: jax.Array,
               valid: jax.Array | None = None, *, alpha: float = ALPHA,
               enabled: bool = True) -> tuple[jax.Array, jax.Array]:
  """Folds finished games into the baselines one at a time, in order.

  Args:
    baselines: f32[K, 2] per (game kind, seat).
    game_kinds: i32[N] the kind of each finished game, in collection order.
    returns: f32[N, 2] each seat's terminal reward.
    valid: bool[N] games to fold in (padding rows are skipped); all by default.
    alpha: the EMA decay.
    enabled: False gives plain REINFORCE advantages (A = R); baselines are still tracked, for logs.
  Returns:
    (advantages f32[N, 2], new baselines f32[K, 2]).
  """
  if valid is None:
    valid = jnp.ones(game_kinds.shape, bool)

  def fold(b, game):
    kind, ret, ok = game
    before = b[kind]
    after = alpha * before + (1.0 - alpha) * ret
    return b.at[kind].set(jnp.where(ok, after, before)), ret - before

  new_baselines, adv = jax.lax.scan(fold, baselines, (game_kinds, returns.astype(jnp.float32),
                                                      valid))
  return (adv if enabled else returns.astype(jnp.float32)), new_baselines


def keep_mask(advantage: jax.Array, filter_zero: bool = True) -> jax.Array:
  """bool[...]: samples to train on; exactly-zero advantages carry no gradient and are dropped."""
  return advantage != 0 if filter_zero else jnp.ones(advantage.shape, bool)
