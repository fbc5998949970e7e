"""Host samples to the learner's fixed-shape ``TrainBatch``, bucketed so shapes rarely change.

Prompts are grouped by shared prefix (greedily splitting groups while that shrinks the padded
token count), so the learner runs each group's prefix once (see ``rl/logprobs.py``). A
``ShapeFloor`` carried across steps pads every batch to the largest shapes seen so far, so the
jitted learner compiles only when a batch outgrows all earlier ones: a few times per run.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from spiral_jax.rl.rollout import FinishedGame, Move
from spiral_jax.rl.train_step import TrainBatch

MAX_PREFIX_GROUPS = 8
PREFIX_STEP = 32  # prefix lengths pad to a multiple of this
SUFFIX_STEP = 16  # prompt-tail + response lengths pad to a multiple of this


def bucket(n: int, minimum: int = 16, step: int = 0) -> int:
  """A padded length for ``n``: the next multiple of ``step``, or by default the next power of
  two (at least ``minimum``). Few distinct shapes mean few compilations."""
  if step:
    return max(minimum, -(-n // step) * step)
  return max(minimum, 1 << max(0, (n - 1).bit_length()))


def _lcp(rows: Sequence[Sequence[int]]) -> int:
  """The length of the longest prefix all rows share, leaving each at least one token."""
  first, n = rows[0], min(len(r) for r in rows) - 1
  for other in rows[1:]:
    i = 0
    while i < n and other[i] == first[i]:
      i += 1
    n = i
  return max(n, 0)


def _padded_cost(groups: list[list[int]], prompts, extra: Sequence[int]) -> int:
  lcps = [_lcp([prompts[i] for i in g]) for g in groups]
  p = bucket(max(lcps), minimum=0, step=PREFIX_STEP)
  tail = max(len(prompts[i]) - lcp + extra[i] for g, lcp in zip(groups, lcps) for i in g)
  return bucket(len(groups), minimum=1) * p + len(prompts) * bucket(tail, step=SUFFIX_STEP)


def prefix_groups(prompts: Sequence[Sequence[int]], extra: Sequence[int],
                  max_groups: int = MAX_PREFIX_GROUPS) -> list[list[int]]:
  """Row indices grouped by shared prompt prefix; ``extra[i]`` is row i's response length."""
  groups = [list(range(len(prompts)))]
  best = _padded_cost(groups, prompts, extra)
  while True:
    candidates = []
    for gi, g in enumerate(groups):
      at = _lcp([prompts[i] for i in g])
      split: dict[int, list[int]] = {}
      for i in g:
        split.setdefault(prompts[i][at] if at < len(prompts[i]) - 1 else -1, []).append(i)
      if len(split) > 1 and len(groups) - 1 + len(split) <= max_groups:
        new = groups[:gi] + list(split.values()) + groups[gi + 1:]
        candidates.append((_padded_cost(new, prompts, extra), new))
    if not candidates:
      return groups
    cost, new = min(candidates, key=lambda c: c[0])
    if cost >= best:
      return groups
    best, groups = cost, new


@dataclasses.dataclass
class ShapeFloor:
  """The smallest padded sizes the next batch may have: the largest of every earlier batch."""
  groups: int = 1   # prefix groups G
  prefix: int = 0   # prefix length P
  length: int = 16  # tail + response length L
  games: int = 8    # finished games


def train_batch(moves: Sequence[Move], games: Sequence[FinishedGame], response_len: int,
                pad_id: int, floor: ShapeFloor | None = None) -> TrainBatch:
  """Left-padded group prefixes, then each row's prompt tail + response right-padded.

  Returns numpy arrays (see ``TrainBatch``); the group and game axes are padded to buckets, and
  every axis to at least ``floor``, which is then raised to this batch's sizes.
  """
  floor = ShapeFloor() if floor is None else floor
  b = len(moves)
  prompts = [m.prompt_ids for m in moves]
  responses = [m.response_ids[:response_len] for m in moves]
  groups = prefix_groups(prompts, [len(r) for r in responses])
  lcps = [_lcp([prompts[i] for i in g]) for g in groups]
  floor.prefix = p = max(floor.prefix, bucket(max(lcps), minimum=0, step=PREFIX_STEP))
  floor.groups = num_groups = max(floor.groups, bucket(len(groups), minimum=1))
  prefix = np.full((num_groups, p), pad_id, np.int32)
  prefix_mask = np.zeros((num_groups, p), bool)
  row_prefix = np.zeros(b, np.int32)
  row_start = np.zeros(b, np.int32)
  for gi in range(num_groups):
    g, lcp = (groups[gi], lcps[gi]) if gi < len(groups) else (groups[0], lcps[0])  # pad: copies
    if lcp:
      prefix[gi, p - lcp:] = prompts[g[0]][:lcp]
      prefix_mask[gi, p - lcp:] = True
    if gi < len(groups):
      row_prefix[g], row_start[g] = gi, lcp
  rows = [prompts[i][row_start[i]:] + responses[i] for i in range(b)]
  floor.length = length = max(floor.length, bucket(max(len(r) for r in rows), step=SUFFIX_STEP))
  tokens = np.full((b, length), pad_id, np.int32)
  input_mask = np.zeros((b, length), bool)
  loss_mask = np.zeros((b, length), np.float32)
  for i, row in enumerate(rows):
    tokens[i, :len(row)] = row
    input_mask[i, :len(row)] = True
    loss_mask[i, len(row) - len(responses[i]):len(row)] = 1.0
  floor.games = g = max(floor.games, bucket(len(games), 8))
  game_kind = np.zeros(g, np.int32)
  game_returns = np.zeros((g, 2), np.float32)
  game_valid = np.zeros(g, bool)
  for j, game in enumerate(games):
    game_kind[j], game_returns[j], game_valid[j] = game.kind, game.returns, True
  return TrainBatch(
      prefix=prefix, prefix_mask=prefix_mask, row_prefix=row_prefix, tokens=tokens,
      input_mask=input_mask, loss_mask=loss_mask,
      sample_game=np.array([m.game for m in moves], np.int32),
      sample_seat=np.array([m.seat for m in moves], np.int32),
      sample_valid=np.ones(b, bool), game_kind=game_kind, game_returns=game_returns,
      game_valid=game_valid)
