"""SPIRAL's move extraction: a response's move string, exactly as the reference forms it.

The default reproduces the reference run's ``extract_action`` for the qwen templates
(``train_spiral.py`` over ``spiral.core.utils.extract_boxed_answer`` and the formatting steps the
SPIRAL authors' package, spiral-rl 0.2.0, also carries in its Tinker renderer; SPIRAL.md sections
3 and 6), checked against that code in ``tests/reference/test_extraction.py``:

1. The box is the *last* ``\\boxed`` in the text (found by search from the end, so it may sit
   inside another box); braces are matched from the ``{`` right after it. ``\\fbox`` never counts:
   the reference finds it only where there is no ``\\boxed`` and then fails to strip it.
2. Its content, with one surrounding ``\\text{``..``}`` stripped (literally: the content starts
   with ``\\text{`` and ends with ``}``).
3. When that last ``\\boxed`` is not followed by ``{`` or its brace is never closed (a response cut
   off at the token cap), or there is no ``\\boxed`` at all: the whole text, stripped.
4. Every ``\\boxed{x}`` left in it (``x`` without ``}``, left to right) becomes ``[x]``.
5. With no ``[`` and no ``]`` and at most 5 words, it is wrapped as ``[...]``.
6. Runs of whitespace become one space, and the ends are stripped.

The empty response gives ``""``. Inner spaces survive the wrap (``\\boxed{ bet }`` gives
``[ bet ]``), and a brace-free answer without a box is a move (``bet`` gives ``[bet]``). The
result must then equal a legal action string exactly (case-sensitive); that comparison is the
game's job, so the reference's "invalid action" outcome is any string no game accepts.

``lenient=True`` is this project's earlier, kinder rule, kept as an option (off by default, and
not what the reference trained with): the last *closed* ``\\boxed{...}`` with balanced braces
that is not inside another closed box, its whitespace collapsed and trimmed before the wrap, and
None when there is no closed box.

Model output is hostile input. Any ``str`` at all (a response cut off at the token cap, U+FFFD
where the tokenizer met invalid UTF-8, unbalanced or thousands of nested braces, hundreds of boxes,
text imitating the game's own ``[GAME]``/``[Player k]`` lines) gives a move string, the same every
time, in time linear in its length; nothing here raises on a ``str``. Injected text cannot reach
the other seat: game states keep only action ids, and observations are rendered from those. The
rollout records each such move as ``Move.invalid`` (no legal move: the mover forfeits) and
``Move.truncated`` (the response hit the token cap; a box left open there makes the whole text the
move, which is invalid wherever it holds more than the move).
"""
from __future__ import annotations

import re
from typing import Literal, overload

_BOX = "\\boxed"
_BOXED = "\\boxed{"
_TEXT = "\\text{"
_BRACE = re.compile(r"[{}]")
_WHITESPACE = re.compile(r"\s+")
MAX_WORDS_TO_WRAP = 5


def last_boxed(text: str, *, lenient: bool = False) -> str | None:
  """Content of the last box, or None when there is none to take.

  Default (the reference's rule): the last ``\\boxed`` in the text, when a ``{`` follows it and
  that brace closes; braces nest (``\\boxed{\\frac{1}{2}}`` keeps its fraction), and a box inside
  another is found first when it comes last (``\\boxed{\\boxed{a} b}`` gives ``a``). None when the
  last ``\\boxed`` is unclosed or not followed by ``{``, even if an earlier box closed.

  ``lenient``: the last closed ``\\boxed{...}`` with balanced braces; a box inside another closed
  box is part of the outer one; an unclosed box is ignored.

  Both are one linear pass, so hostile inputs such as thousands of nested boxes cost O(len(text)).
  """
  _check_text(text)
  if lenient:
    return _last_closed_outer_box(text)
  start = text.rfind(_BOX)
  if start < 0 or not text.startswith("{", start + len(_BOX)):
    return None
  depth = 0
  for brace in _BRACE.finditer(text, start + len(_BOX)):
    depth += 1 if brace.group() == "{" else -1
    if depth == 0:
      return text[start + len(_BOXED):brace.start()]
  return None


@overload
def extract_action(text: str, *, lenient: Literal[False] = False) -> str: ...
@overload
def extract_action(text: str, *, lenient: bool) -> str | None: ...


def extract_action(text: str, *, lenient: bool = False) -> str | None:
  """The normalised move string of a response (see the module docstring).

  Default: the reference's move string, always a str (``""`` for the empty response).
  ``lenient=True``: the earlier rule, None when the response has no closed ``\\boxed{}``.
  """
  if lenient:
    content = last_boxed(text, lenient=True)
    if content is None:
      return None
    content = _WHITESPACE.sub(" ", content).strip()
    if "[" not in content and "]" not in content and _at_most_words(content, MAX_WORDS_TO_WRAP):
      content = f"[{content}]"
    return content
  _check_text(text)
  if not text:
    return ""
  content = last_boxed(text)
  if content is None:
    content = text.strip()
  elif content.startswith(_TEXT) and content.endswith("}"):
    content = content[len(_TEXT):-1]
  content = _inner_boxes_to_brackets(content)
  if "[" not in content and "]" not in content and _at_most_words(content, MAX_WORDS_TO_WRAP):
    content = f"[{content}]"
  return _WHITESPACE.sub(" ", content).strip()


def _inner_boxes_to_brackets(s: str) -> str:
  """Each ``\\boxed{x}`` (``x`` up to the first ``}`` after it), left to right, as ``[x]``.

  Linear: the search for a box resumes after the previous one's ``}``, and once no ``}`` follows a
  box no later box can close either."""
  parts, pos = [], 0
  while True:
    p = s.find(_BOXED, pos)
    if p < 0:
      break
    q = s.find("}", p + len(_BOXED))
    if q < 0:
      break
    parts += (s[pos:p], "[", s[p + len(_BOXED):q], "]")
    pos = q + 1
  if not parts:
    return s
  parts.append(s[pos:])
  return "".join(parts)


def _at_most_words(s: str, n: int) -> bool:
  """Whether ``s`` has at most ``n`` whitespace-separated words (without splitting all of it)."""
  return len(s.split(None, n)) <= n


def _last_closed_outer_box(text: str) -> str | None:
  open_braces: list[int] = []  # content start of each open brace, -1 where it is not a box's
  spans: list[tuple[int, int]] = []  # closed boxes, outermost so far, in closing order
  for brace in _BRACE.finditer(text):
    i = brace.start()
    if brace.group() == "{":
      open_braces.append(i + 1 if text.endswith(_BOXED, 0, i + 1) else -1)
    elif open_braces:
      start = open_braces.pop()
      if start >= 0:
        while spans and spans[-1][0] >= start:  # boxes nested in this one are its content
          spans.pop()
        spans.append((start, i))
  if not spans:
    return None
  start, end = spans[-1]
  return text[start:end]


def _check_text(text: object) -> None:
  if not isinstance(text, str):
    raise TypeError(f"response must be a str (the decoded model output), got "
                    f"{type(text).__name__}; decode token ids with the tokenizer (bytes with "
                    ".decode('utf-8', errors='replace')) before parsing")
