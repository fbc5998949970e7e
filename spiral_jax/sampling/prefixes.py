"""Prompts grouped by shared prefix, so each group's prefix runs through the model once.

SPIRAL prompts repeat a chat template and the game's rules; only a tail (seat, cards, history)
differs. The sampler's prefill (``sampler.generate``) and the learner's log-prob pass
(``rl/logprobs.py``, grouped by ``rl/batching.py``) both run each group's prefix once into a KV
cache, give every row its group's cache, and then run only the rows' own tails.

  groups, shared = prefix_groups(prompts, cost)  # [[row, ...], ...] and each one's prefix length

A ``PrefixTable`` fixes the prefixes and padded sizes across calls (a training run's turns), so
the sampler compiles once; the trainer derives it from the learner's ``batching.ShapeFloor``.
``bucket`` is the one padding rule of every padded size (sampler, learner, memory plan).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from spiral_jax.model.policy import left_pad

MAX_GROUPS = 8

# cost(groups, shared): padded tokens of a grouping; shared[g] is group g's prefix length
Cost = Callable[[list[list[int]], list[int]], float]


def bucket(n: int, buckets: Sequence[int] | None = None, multiple_of: int = 1, minimum: int = 1,
           step: int = 0) -> int:
  """A padded size for ``n``: the smallest of ``buckets`` >= n if given, else the next multiple
  of ``step`` if given, else the next power of two; at least ``minimum``, then rounded up to a
  multiple of ``multiple_of``. Few distinct shapes mean few compilations."""
  if buckets:
    fitting = [b for b in sorted(buckets) if b >= n]
    if not fitting:
      raise ValueError(f"{n} exceeds the largest bucket {max(buckets)}; add a larger bucket")
    size = fitting[0]
  elif step:
    size = max(minimum, -(-n // step) * step)
  else:
    size = max(minimum, 1 << max(0, n - 1).bit_length())
  return -(-size // multiple_of) * multiple_of


def shared_length(rows: Sequence[Sequence[int]]) -> int:
  """The length of the longest prefix all rows share, leaving each at least one token."""
  first, n = rows[0], min(len(r) for r in rows) - 1
  for other in rows[1:]:
    i = 0
    while i < n and other[i] == first[i]:
      i += 1
    n = i
  return max(n, 0)


def prefix_groups(prompts: Sequence[Sequence[int]], cost: Cost,
                  max_groups: int = MAX_GROUPS) -> tuple[list[list[int]], list[int]]:
  """Row indices grouped by shared prefix, and each group's ``shared_length``: starting from one
  group, the split (of one group by the token after its shared prefix) that lowers ``cost`` most
  is taken, while one does."""
  groups = [list(range(len(prompts)))]
  shared = [shared_length(prompts)]
  best = cost(groups, shared)
  while True:
    candidates = []
    for gi, (g, at) in enumerate(zip(groups, shared)):
      split: dict[int, list[int]] = {}
      for i in g:
        split.setdefault(prompts[i][at] if at < len(prompts[i]) - 1 else -1, []).append(i)
      if len(split) > 1 and len(groups) - 1 + len(split) <= max_groups:
        parts = list(split.values())
        new = groups[:gi] + parts + groups[gi + 1:]
        new_shared = (shared[:gi] + [shared_length([prompts[i] for i in p]) for p in parts]
                      + shared[gi + 1:])
        candidates.append((cost(new, new_shared), new, new_shared))
    if not candidates:
      return groups, shared
    value, new, new_shared = min(candidates, key=lambda c: c[0])
    if value >= best:
      return groups, shared
    best, groups, shared = value, new, new_shared


def owners(groups: Sequence[Sequence[int]], count: int) -> list[int]:
  """Each of ``count`` rows' group index, from ``groups`` (row indices per group)."""
  owner = [0] * count
  for gi, g in enumerate(groups):
    for i in g:
      owner[i] = gi
  return owner


def longest_match(prompt: Sequence[int], prefixes: Sequence[Sequence[int]]) -> int:
  """The index of the longest prefix ``prompt`` starts with, leaving it a token; -1 if none."""
  best, best_len = -1, -1
  for j, p in enumerate(prefixes):
    if best_len < len(p) < len(prompt) and list(prompt[:len(p)]) == list(p):
      best, best_len = j, len(p)
  return best


@dataclasses.dataclass(frozen=True)
class PrefixTable:
  """Prefixes and padded sizes that a run's sampler calls share, so their shapes never change.

  prefixes: each group's prefix (token ids); groups: padded group count (>= len(prefixes));
  prefix_len: padded prefix length (>= the longest prefix); tail_len: padded tail length (the
  prompt after its prefix)."""
  prefixes: tuple[tuple[int, ...], ...]
  groups: int
  prefix_len: int
  tail_len: int

  def __post_init__(self):
    if not self.prefixes or self.groups < len(self.prefixes):
      raise ValueError(f"PrefixTable: groups={self.groups} must be >= the {len(self.prefixes)} "
                       "prefixes (and there must be at least one)")
    if self.prefix_len < max(map(len, self.prefixes)) or self.tail_len < 1:
      raise ValueError(f"PrefixTable: prefix_len={self.prefix_len} must hold the longest prefix "
                       f"({max(map(len, self.prefixes))}) and tail_len={self.tail_len} be >= 1")

  def assign(self, prompts: Sequence[Sequence[int]]) -> list[int] | None:
    """Each prompt's prefix (the longest it starts with), or None if a prompt starts with none
    of them or its tail is longer than ``tail_len`` (the caller then groups the prompts itself)."""
    owners = [longest_match(p, self.prefixes) for p in prompts]
    if any(j < 0 or len(p) - len(self.prefixes[j]) > self.tail_len
           for p, j in zip(prompts, owners)):
      return None
    return owners


# ---- a sampler call's prompts in the KV cache ----
@dataclasses.dataclass(frozen=True)
class PromptLayout:
  """How a batch of prompts enters the KV cache (host arrays).

  Without sharing: ``tokens``/``mask`` i32/bool[B, P] are the whole prompts, left-padded. With a
  shared prefix: ``prefix``/``prefix_mask`` i32/bool[G, Q] hold each group's prefix (left-padded,
  run once per group), ``row_prefix`` i32[B] each row's group, and ``tokens``/``mask`` only the
  rows' tails (left-padded). ``slots``: cache slots the prompts take (Q + P)."""
  tokens: np.ndarray
  mask: np.ndarray
  prefix: np.ndarray | None = None
  prefix_mask: np.ndarray | None = None
  row_prefix: np.ndarray | None = None

  @property
  def slots(self) -> int:
    return self.tokens.shape[1] + (0 if self.prefix is None else self.prefix.shape[1])

  @property
  def prefill_tokens(self) -> int:
    """Padded token positions the prefill runs (its cost)."""
    return self.tokens.size + (0 if self.prefix is None else self.prefix.size)


def prompt_layout(rows: Sequence[Sequence[int]], batch: int, pad_id: int,
                  prompt_buckets: Sequence[int] | None = None, share_prefix: bool = True,
                  table: PrefixTable | None = None) -> PromptLayout:
  """Pads ``rows`` (token ids) to ``batch`` rows. With ``share_prefix``: the ``table``'s prefixes
  and sizes when every row fits them (steady shapes), else rows grouped by shared prefix
  (``prefix_groups``) when that runs fewer padded prefill tokens than the whole prompts.
  Padded lengths not set by the table are buckets of ``prompt_buckets`` (default: powers of 2)."""
  def length(n: int) -> int:
    return bucket(n, prompt_buckets, minimum=16)

  def whole() -> PromptLayout:
    layout = PromptLayout(*left_pad(list(rows) + [[pad_id]] * (batch - len(rows)), pad_id,
                                    length(max(map(len, rows)))))
    layout.mask[len(rows):] = False
    return layout

  if not share_prefix:
    return whole()
  assigned = None if table is None else table.assign(rows)
  if assigned is not None:
    return _shared_layout(rows, batch, pad_id, [list(p) for p in table.prefixes], assigned,
                          table.groups, table.prefix_len, table.tail_len)

  def cost(groups: list[list[int]], shared: list[int]) -> int:
    tail = max(len(rows[i]) - n for g, n in zip(groups, shared) for i in g)
    return bucket(len(groups)) * length(max(shared)) + batch * length(tail)

  groups, shared = prefix_groups(rows, cost)
  if cost(groups, shared) >= batch * length(max(map(len, rows))):  # whole prompts' positions
    return whole()
  row_groups = owners(groups, len(rows))
  tail = max(len(row) - shared[j] for row, j in zip(rows, row_groups))
  return _shared_layout(rows, batch, pad_id, [list(rows[g[0]][:n]) for g, n in zip(groups, shared)],
                        row_groups, bucket(len(groups)), length(max(shared)), length(tail))


def _shared_layout(rows: Sequence[Sequence[int]], batch: int, pad_id: int,
                   heads: list[list[int]], owners: list[int], groups: int, prefix_len: int,
                   tail_len: int) -> PromptLayout:
  """Row i continues ``heads[owners[i]]``; ``groups`` prefix rows (empty past the heads)."""
  prefix, prefix_mask = left_pad(heads + [[]] * (groups - len(heads)), pad_id, prefix_len)
  tails = [list(row[len(heads[j]):]) for row, j in zip(rows, owners)]
  tokens, mask = left_pad(tails + [[pad_id]] * (batch - len(rows)), pad_id, tail_len)
  mask[len(rows):] = False
  row_prefix = np.zeros(batch, np.int32)
  row_prefix[:len(rows)] = owners
  return PromptLayout(tokens, mask, prefix, prefix_mask, row_prefix)
