"""SPIRAL's move extraction: the last ``\\boxed{...}`` of a response, normalised.

The rules (SPIRAL.md section 3): take the content of the *last* ``\\boxed{}``; if it holds no square
brackets and at most 5 words, wrap it as ``[content]``; collapse runs of whitespace. The result must
then equal a legal action string exactly (case-sensitive); that comparison is the game's job.

Model output is hostile input. Any ``str`` at all (a response cut off at the token cap, U+FFFD
where the tokenizer met invalid UTF-8, unbalanced or thousands of nested braces, hundreds of boxes,
text imitating the game's own ``[GAME]``/``[Player k]`` lines) gives a move string or None, the
same every time, in time linear in its length; nothing here raises on a ``str``. Injected text
cannot reach the other seat: game states keep only action ids, and observations are rendered
from those. The rollout records each such move as ``Move.invalid`` (no legal move: the mover
forfeits) and ``Move.truncated`` (the response hit the token cap; its last closed box still counts).
"""
from __future__ import annotations

import re

_BOXED = "\\boxed{"
_WHITESPACE = re.compile(r"\s+")
MAX_WORDS_TO_WRAP = 5


def last_boxed(text: str) -> str | None:
  """Content of the last ``\\boxed{...}`` with balanced braces, or None.

  Braces nest (``\\boxed{\\frac{1}{2}}`` keeps its fraction); a box inside another closed box is
  part of the outer one; an unclosed box (a truncated response) is ignored. One linear pass, so
  hostile inputs such as thousands of nested boxes cost O(len(text)).
  """
  _check_text(text)
  open_braces: list[int] = []  # content start of each open brace, -1 where it is not a box's
  spans: list[tuple[int, int]] = []  # closed boxes, outermost so far, in closing order
  for i, c in enumerate(text):
    if c == "{":
      open_braces.append(i + 1 if text.endswith(_BOXED, 0, i + 1) else -1)
    elif c == "}" and open_braces:
      start = open_braces.pop()
      if start >= 0:
        while spans and spans[-1][0] >= start:  # boxes nested in this one are its content
          spans.pop()
        spans.append((start, i))
  if not spans:
    return None
  start, end = spans[-1]
  return text[start:end]


def extract_action(text: str) -> str | None:
  """The normalised move string of a response, or None when it has no closed ``\\boxed{}``."""
  content = last_boxed(text)
  if content is None:
    return None
  content = _WHITESPACE.sub(" ", content).strip()
  if "[" not in content and "]" not in content and len(content.split()) <= MAX_WORDS_TO_WRAP:
    content = f"[{content}]"
  return content


def _check_text(text: object) -> None:
  if not isinstance(text, str):
    raise TypeError(f"response must be a str (the decoded model output), got "
                    f"{type(text).__name__}; decode token ids with the tokenizer (bytes with "
                    ".decode('utf-8', errors='replace')) before parsing")
