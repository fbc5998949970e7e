"""Host samples to the learner's fixed-shape ``TrainBatch``, padded so shapes do not change.

Samples are grouped by shared prompt prefix, so the learner runs each group's prefix once (see
``rl/logprobs.py``); groups split greedily while that shrinks the padded token count. A one-off
batch is grouped and sized for itself. Training instead carries a ``ShapeFloor`` across steps,
decided before the first step (``floor_for``) from prompts of the configured games: a table of
shared prefixes that every sample is matched to, and padded sizes that fit them, so batch shapes
do not depend on which samples were drawn and the jitted learner compiles once. Only a prompt
that matches no prefix, or that is longer than any before, extends the floor (and recompiles).
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from spiral_jax.play.rollout import Move
from spiral_jax.rl.train_step import TrainBatch
from spiral_jax.sampling import prefixes as prefix_lib
from spiral_jax.sampling.prefixes import bucket

MAX_PREFIX_GROUPS = prefix_lib.MAX_GROUPS
PREFIX_STEP = 32  # prefix lengths pad to a multiple of this
SUFFIX_STEP = 16  # prompt-tail + response lengths pad to a multiple of this


def _padded_cost(groups: list[list[int]], shared: list[int], prompts,
                 extra: Sequence[int]) -> int:
  p = bucket(max(shared), minimum=0, step=PREFIX_STEP)
  tail = max(len(prompts[i]) - lcp + extra[i] for g, lcp in zip(groups, shared) for i in g)
  rows = len(prompts) * bucket(tail, minimum=16, step=SUFFIX_STEP)
  return bucket(len(groups), minimum=1) * p + rows


def prefix_groups(prompts: Sequence[Sequence[int]], extra: Sequence[int],
                  max_groups: int = MAX_PREFIX_GROUPS) -> tuple[list[list[int]], list[int]]:
  """Row indices grouped by shared prompt prefix, and each group's prefix length; ``extra[i]``
  is row i's response length."""
  return prefix_lib.prefix_groups(
      prompts, lambda groups, shared: _padded_cost(groups, shared, prompts, extra), max_groups)


@dataclasses.dataclass
class ShapeFloor:
  """The smallest padded sizes the next batch may have (each batch raises them to its own) and,
  for batches matched to it, the shared prefixes their samples start with (token ids)."""
  groups: int = 1   # prefix groups G
  prefix: int = 0   # prefix length P
  length: int = 16  # tail + response length L
  prefixes: list[list[int]] = dataclasses.field(default_factory=list, repr=False)


def _match_groups(prompts: Sequence[Sequence[int]], floor: ShapeFloor,
                  response_len: int) -> list[int]:
  """Each row's entry in ``floor.prefixes``; rows that match none are grouped greedily and their
  groups' prefixes appended (sized with full responses, as every row is padded for one)."""
  owner = [prefix_lib.longest_match(p, floor.prefixes) for p in prompts]
  unmatched = [i for i, j in enumerate(owner) if j < 0]
  if unmatched:
    rows = [prompts[i] for i in unmatched]
    for g, lcp in zip(*prefix_groups(rows, [response_len] * len(rows))):
      floor.prefixes.append([int(t) for t in rows[g[0]][:lcp]])
      for i in g:
        owner[unmatched[i]] = len(floor.prefixes) - 1
  return owner


def train_batch(moves: Sequence[Move], response_len: int, pad_id: int,
                floor: ShapeFloor | None = None, baselines: np.ndarray | None = None
                ) -> TrainBatch:
  """Left-padded group prefixes, then each row's prompt tail + response right-padded, and each
  row's ``Move.advantage``; ``baselines`` (f32[groups, kinds, 2], the RAE fold's result) go to
  the train state (zeros[1, 1, 2] by default, for a state of one kind and group).

  Returns numpy arrays (see ``TrainBatch``). Without ``floor`` the batch is grouped and sized for
  itself (``prefix_groups``; each axis padded to a bucket of what it holds). With a ``floor``
  (carried across steps) each row goes to the longest of ``floor.prefixes`` it starts with, every
  prefix is a group whether or not a row uses it, and tails are padded for a full
  ``response_len`` response, so the sizes do not depend on the draw. Every axis is padded to at
  least ``floor``, which is then raised to this batch's sizes.
  """
  b = len(moves)
  prompts = [m.prompt_ids for m in moves]
  responses = [m.response_ids[:response_len] for m in moves]
  if floor is None:
    floor, room = ShapeFloor(), [len(r) for r in responses]
    groups, shared = prefix_groups(prompts, room)
    prefixes = [list(prompts[g[0]][:n]) for g, n in zip(groups, shared)]
    owner = prefix_lib.owners(groups, b)
  else:
    room = [response_len] * b
    owner = _match_groups(prompts, floor, response_len)
    prefixes = floor.prefixes
  floor.prefix = p = max(floor.prefix, bucket(max(map(len, prefixes)), minimum=0,
                                              step=PREFIX_STEP))
  floor.groups = num_groups = max(floor.groups, bucket(len(prefixes), minimum=1))
  prefix = np.full((num_groups, p), pad_id, np.int32)
  prefix_mask = np.zeros((num_groups, p), bool)
  for gi in range(num_groups):
    shared = prefixes[gi] if gi < len(prefixes) else prefixes[0]  # padding groups: copies
    if shared:
      prefix[gi, p - len(shared):] = shared
      prefix_mask[gi, p - len(shared):] = True
  row_prefix = np.array(owner, np.int32)
  rows = [prompts[i][len(prefixes[owner[i]]):] + responses[i] for i in range(b)]
  tails = [len(prompts[i]) - len(prefixes[owner[i]]) + room[i] for i in range(b)]
  floor.length = length = max(floor.length, bucket(max(tails), minimum=16, step=SUFFIX_STEP))
  tokens = np.full((b, length), pad_id, np.int32)
  input_mask = np.zeros((b, length), bool)
  loss_mask = np.zeros((b, length), np.float32)
  for i, row in enumerate(rows):
    tokens[i, :len(row)] = row
    input_mask[i, :len(row)] = True
    loss_mask[i, len(row) - len(responses[i]):len(row)] = 1.0
  if baselines is None:
    baselines = np.zeros((1, 1, 2), np.float32)
  return TrainBatch(
      prefix=prefix, prefix_mask=prefix_mask, row_prefix=row_prefix, tokens=tokens,
      input_mask=input_mask, loss_mask=loss_mask,
      advantage=np.array([m.advantage for m in moves], np.float32),
      sample_valid=np.ones(b, bool), baselines=np.asarray(baselines, np.float32))


def prefix_table(floor: ShapeFloor, response_len: int) -> prefix_lib.PrefixTable | None:
  """The sampler's fixed prefixes and sizes for prompts that fit ``floor``: its prefixes, group
  count and prefix length, with tails padded for the prompt alone (a floor tail holds a prompt
  tail and a ``response_len`` response). None when the floor shares no prefix."""
  if not floor.prefix or not any(floor.prefixes):
    return None
  return prefix_lib.PrefixTable(prefixes=tuple(tuple(p) for p in floor.prefixes),
                                groups=floor.groups, prefix_len=floor.prefix,
                                tail_len=floor.length - response_len)


def floor_for(moves: Sequence[Move], response_len: int) -> ShapeFloor:
  """The floor training batches fit, decided up front from ``moves``: sample prompts of every
  game kind (e.g. every move of some random games, which reach the longest histories)."""
  floor = ShapeFloor()
  train_batch(moves, response_len, 0, floor)
  return floor
