"""Multi-turn, multi-game self-play: play batches of games of every configured kind at once.

Each turn renders every unfinished game for its current seat, applies SPIRAL's prompt template,
tokenizes, samples the moves of all games of all kinds in one sampler call, parses them and steps
each kind's batch with one ``jax.vmap``. Every move a learner seat makes is recorded as a sample.
Games are played round after round until each kind has at least its quota of samples; then exactly
the quota is drawn without replacement (SPIRAL.md section 3). Seats run by a fixed opponent (random,
scripted expert) move with a vmapped player and produce no samples.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from spiral_jax.games import core
from spiral_jax.games.experts import Player
from spiral_jax.text import templates

# (prompt ids per row, seed) -> (response texts, response ids per row, truncated flags)
SampleFn = Callable[[list[list[int]], int], tuple[list[str], list[list[int]], list[bool]]]


@dataclasses.dataclass
class Move:
  """One sample: a learner seat's prompt and response in one game."""
  prompt_ids: list[int]
  response_ids: list[int]
  kind: int          # index of the game kind in the config
  seat: int
  game: int          # index into Rollout.games (collection order)
  truncated: bool
  invalid: bool      # the response named no legal move (the game was forfeited)


@dataclasses.dataclass
class FinishedGame:
  kind: int
  returns: np.ndarray  # f32[2]
  forfeited_by: int
  num_moves: int
  learner_seats: tuple[int, ...]


@dataclasses.dataclass
class Rollout:
  moves: list[Move]        # exactly the drawn samples, grouped by kind
  games: list[FinishedGame]  # every game finished while collecting, in finish order
  num_played_moves: int    # learner moves before the draw
  response_chars: float    # mean characters per learner response before the draw


def _seat_owners(opponent: Player | None, rng: np.random.Generator, n: int) -> np.ndarray:
  """bool[n, 2]: which seats the learner plays (both in self-play; one at random otherwise)."""
  if opponent is None:
    return np.ones((n, core.NUM_SEATS), bool)
  learner = rng.integers(0, core.NUM_SEATS, n)
  return np.arange(core.NUM_SEATS)[None, :] == learner[:, None]


@dataclasses.dataclass
class GameRunner:
  """The jitted batched functions of one game kind, built once."""
  game: core.Game
  opponent: Player | None = None

  def __post_init__(self):
    self.init = jax.jit(jax.vmap(self.game.init))
    self.step = jax.jit(jax.vmap(self.game.step))
    if self.opponent is not None:
      self.opponent_moves = jax.jit(jax.vmap(self.opponent))


def play_round(runners: Sequence[GameRunner], counts: Sequence[int], sample_fn: SampleFn,
               tokenizer, key: jax.Array, *, template: str = "qwen",
               rng: np.random.Generator, max_prompt_tokens: int = 1 << 20,
               game_offset: int = 0) -> tuple[list[Move], list[FinishedGame]]:
  """Plays ``counts[k]`` games of each kind to the end; returns their moves and finished games."""
  states, owners = [], []
  for k, (runner, n) in enumerate(zip(runners, counts)):
    keys = jax.random.split(jax.random.fold_in(key, k), max(n, 1))
    states.append(runner.init(keys) if n else None)
    owners.append(_seat_owners(runner.opponent, rng, n))
  host = [jax.device_get(s) for s in states]  # one transfer per kind and turn, reused below
  pending: list[list[tuple[int, int, Move]]] = [[] for _ in runners]  # (game row, ...) per kind
  finished: list[FinishedGame] = []
  finish_index: dict[tuple[int, int], int] = {}
  moves: list[Move] = []
  turn = 0
  while True:
    active_any = False
    prompts, where = [], []  # learner prompts and their (kind, row, seat)
    opponent_kinds = set()  # kinds where a fixed opponent is to move somewhere
    for k, (runner, s) in enumerate(zip(runners, host)):
      if s is None:
        continue
      for row in np.nonzero(~s.terminated)[0]:
        active_any = True
        seat = int(s.current_seat[row])
        if owners[k][row, seat]:
          one = jax.tree.map(lambda x: x[row], s)
          text = templates.spiral_prompt(runner.game.render(one, seat), template)
          prompts.append(text)
          where.append((k, int(row), seat))
        else:
          opponent_kinds.add(k)
    if not active_any:
      break
    ids = tokenizer.encode_batch(prompts) if prompts else []
    for i, p in enumerate(ids):
      if len(p) > max_prompt_tokens:  # keep the most recent history; the template end survives
        ids[i] = p[-max_prompt_tokens:]
    texts, responses, truncated = (sample_fn(ids, int(jax.random.randint(
        jax.random.fold_in(key, 1000 + turn), (), 0, 2**31 - 1))) if ids else ([], [], []))
    actions = [np.full(len(o), core.INVALID, np.int32) for o in owners]
    for (k, row, seat), prompt, text, resp, trunc in zip(where, ids, texts, responses, truncated):
      one = jax.tree.map(lambda x: x[row], host[k])
      action = runners[k].game.parse(text, one)
      actions[k][row] = action
      pending[k].append((row, seat, Move(prompt, list(resp), k, seat, -1, bool(trunc),
                                         action == core.INVALID)))
    for k, runner in enumerate(runners):
      if states[k] is None:
        continue
      if k in opponent_kinds:
        opp = np.asarray(runner.opponent_moves(states[k], jax.random.split(
            jax.random.fold_in(key, 2000 + turn * 64 + k), counts[k])))
        mine = owners[k][np.arange(counts[k]), host[k].current_seat]
        actions[k] = np.where(mine, actions[k], opp).astype(np.int32)
      states[k] = runner.step(states[k], jnp.asarray(actions[k]))
      new_host = jax.device_get(states[k])
      for row in np.nonzero(new_host.terminated & ~host[k].terminated)[0]:
        finish_index[(k, int(row))] = game_offset + len(finished)
        finished.append(FinishedGame(k, np.asarray(new_host.rewards[row], np.float32),
                                     int(new_host.forfeited_by[row]),
                                     int(new_host.num_moves[row]),
                                     tuple(np.nonzero(owners[k][row])[0].tolist())))
      host[k] = new_host
    turn += 1
  for k in range(len(runners)):
    for row, seat, move in pending[k]:
      move.game = finish_index[(k, row)]
      moves.append(move)
  return moves, finished


def collect(runners: Sequence[GameRunner], quotas: Sequence[int], games_per_round: int,
            sample_fn: SampleFn, tokenizer, key: jax.Array, *, template: str = "qwen",
            max_prompt_tokens: int = 1 << 20, max_rounds: int = 1000) -> Rollout:
  """Plays rounds until each kind has ``quotas[k]`` learner moves, then draws exactly that many."""
  rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
  by_kind: list[list[Move]] = [[] for _ in runners]
  games: list[FinishedGame] = []
  for r in range(max_rounds):
    short = [q - len(m) for q, m in zip(quotas, by_kind)]
    if all(s <= 0 for s in short):
      break
    counts = [games_per_round if s > 0 else 0 for s in short]
    moves, finished = play_round(runners, counts, sample_fn, tokenizer, jax.random.fold_in(key, r),
                                 template=template, rng=rng, max_prompt_tokens=max_prompt_tokens,
                                 game_offset=len(games))
    games.extend(finished)
    for m in moves:
      by_kind[m.kind].append(m)
  else:
    raise RuntimeError(f"collected too few samples after {max_rounds} rounds: "
                       f"{[len(m) for m in by_kind]} for quotas {list(quotas)}")
  played = [m for ms in by_kind for m in ms]
  drawn = []
  for k, ms in enumerate(by_kind):
    pick = rng.choice(len(ms), quotas[k], replace=False)
    drawn.extend(ms[i] for i in sorted(pick))
  chars = [len(tokenizer.decode(m.response_ids)) for m in played]
  return Rollout(moves=drawn, games=games, num_played_moves=len(played),
                 response_chars=float(np.mean(chars)) if chars else 0.0)
