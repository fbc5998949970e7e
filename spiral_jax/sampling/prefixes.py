"""Prompts grouped by shared prefix, so each group's prefix runs through the model once.

SPIRAL prompts repeat a chat template and the game's rules; only a tail (seat, cards, history)
differs. The sampler's prefill (``sampler.generate``) and the learner's log-prob pass
(``rl/logprobs.py``, grouped by ``rl/batching.py``) both run each group's prefix once into a KV
cache, give every row its group's cache, and then run only the rows' own tails.

  groups, shared = prefix_groups(prompts, cost)  # [[row, ...], ...] and each one's prefix length

A ``PrefixTable`` fixes the prefixes and padded sizes across calls (a training run's turns), so
the sampler compiles once; the trainer derives it from the learner's ``batching.ShapeFloor``.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

MAX_GROUPS = 8

# cost(groups, shared): padded tokens of a grouping; shared[g] is group g's prefix length
Cost = Callable[[list[list[int]], list[int]], float]


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
