"""The final answer's box: the content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) of a
response, by brace matching (escaped braces do not count). Never raises on any input."""
from __future__ import annotations

import re
from typing import Any


_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def _escaped(text: str, i: int) -> bool:
  """Whether text[i] follows an odd run of backslashes (``\\{`` is a literal brace)."""
  slashes = 0
  while i - 1 - slashes >= 0 and text[i - 1 - slashes] == "\\":
    slashes += 1
  return slashes % 2 == 1


def closing_brace(text: str, start: int) -> int | None:
  """Index of the brace closing the one at ``start``, or None when it never closes."""
  depth = 0
  for i in range(start, len(text)):
    c = text[i]
    if c in "{}" and _escaped(text, i):
      continue
    if c == "{":
      depth += 1
    elif c == "}":
      depth -= 1
      if depth == 0:
        return i
  return None


def extract_boxed(response: Any) -> str | None:
  """The stripped content of the last ``\\boxed{...}`` (or ``\\fbox{...}``, or ``\\boxed 5``).

  Braces nest and escaped braces (``\\{``) do not count. When the last box never closes (a
  truncated response) the answer is None, as is an empty box or a response with no box.
  """
  if not isinstance(response, str):
    return None
  starts = [m.end() for m in _BOX.finditer(response)]
  if not starts:
    return None
  rest = response[starts[-1]:]
  stripped = rest.lstrip(" \t")
  if stripped.startswith("{"):
    begin = len(rest) - len(stripped)
    end = closing_brace(rest, begin)
    content = None if end is None else rest[begin + 1:end]
  elif rest[:1] in (" ", "\t"):  # "\boxed 5": one token
    content = re.match(r"[^\s$]*", stripped).group(0)
  else:
    content = None
  content = None if content is None else content.strip()
  return content or None
