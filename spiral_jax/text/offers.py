"""Trade offers in free text, e.g. ``[Offer: 3 Wood, 1 Gold -> 2 Gold]`` (give -> receive): the
parser behind ``SimpleNegotiation``'s moves, for any named resources. Host side; model output is
untrusted, so every quantity is bounded before it becomes an int.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Mapping

_OFFER_TOKEN = re.compile(r"\[offer:([^\[\]]*)\]", re.IGNORECASE)
_GIVE_PREFIX = re.compile(r"i\s+(?:give|offer)\s+", re.IGNORECASE)
_ITEM_SEPARATOR = re.compile(r",\s*|\s+and\s+", re.IGNORECASE)
_ITEM = re.compile(r"(\d+)\s+(.+)")


def parse_offer(move: str, resources: Mapping[str, int], max_quantity: int
                ) -> tuple[int, ...] | None:
  """The give quantities then the get quantities (one per resource index) of one offer token such
  as ``[Offer: 2 Gold, 3 Wood -> 1 Wood]``; ``resources`` maps each spelling of a name (title
  case) to its index. None when malformed, empty on a side, or a total exceeds ``max_quantity``."""
  token = _OFFER_TOKEN.fullmatch(move)
  if token is None:
    return None
  body = " ".join(token.group(1).rstrip(".").split()).rstrip(".,!?")
  prefix = _GIVE_PREFIX.match(body)
  if prefix is not None:
    body = body[prefix.end():]
  sides = re.split(r"\s*->\s*", body)
  if len(sides) != 2:
    return None
  give, get = (_parse_bundle(side, resources, max_quantity) for side in sides)
  if give is None or get is None:
    return None
  return (*give, *get)


def _parse_bundle(text: str, resources: Mapping[str, int], max_quantity: int
                  ) -> tuple[int, ...] | None:
  """Quantities per resource of ``3 Wood, 2 Gold`` / ``1 gold and 2 woods``; None if malformed or
  empty."""
  totals = [0] * (max(resources.values()) + 1)
  named_any = False
  for item in _ITEM_SEPARATOR.split(text):
    item = item.strip()
    if not item:
      continue
    match = _ITEM.fullmatch(item)
    if match is None:
      return None
    resource = resources.get(match.group(2).strip().title())
    quantity = _small_int(match.group(1), max_quantity)
    if resource is None or quantity == 0:
      return None
    totals[resource] += quantity
    named_any = True
  if not named_any or max(totals) > max_quantity:
    return None
  return tuple(totals)


def _small_int(digits: str, cap: int) -> int:
  """The value of a run of (any script's) decimal digits, capped just above ``cap``: a thousand
  digits never make a huge int."""
  significant = "".join(str(unicodedata.decimal(c)) for c in digits).lstrip("0") or "0"
  return min(int(significant[:len(str(cap)) + 1]), cap + 1)
