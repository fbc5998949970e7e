"""Multiple-choice answers: the option letter a response names (its last box, or "the answer is
(B)"), or the one option whose text its answer equals. Never raises on any input."""
from __future__ import annotations

import re
from typing import Any, Sequence

from spiral_jax.eval.boxed import extract_boxed
from spiral_jax.eval.equivalence import _DELIMITERS, _TEXT_COMMANDS, _unwrap, is_equivalent

CHOICE_LETTERS = "ABCDEFGHIJ"


_CHOICE_FORMS = [re.compile(p) for p in (
    r"[(\[]?([A-J])[)\]]?[.:]?", r"([a-j])", r"\(([A-J])\)\s*.+", r"([A-J])[.:)]\s+.+",
    r"(?i:option|choice|answer)\s*:?\s*\(?([A-J])\)?\.?",
    r"(?i:the\s+)?(?i:final\s+|correct\s+)?(?i:answer\s+is)\s*:?\s*\(?([A-J])\)?\.?")]
_ANSWER_IS = re.compile(r"(?i:answer)\s*(?:(?i:is)|:)\s*:?\s*(?:(?i:option)\s*)?\(?\s*([A-J])\s*\)?"
                        r"(?![A-Za-z0-9])")


def parse_choice(answer: Any, num_choices: int = 10,
                 choices: Sequence[str] | None = None) -> str | None:
  """The option letter an answer names (``B``, ``(B)``, ``B)``, ``\\text{(B)}``, ``B. 42``,
  ``Option B``), or the letter of the one option whose text it equals; else None."""
  if not isinstance(answer, str):
    return None
  try:
    text = _unwrap(_DELIMITERS.sub("", answer), _TEXT_COMMANDS).strip().rstrip(".").strip()
    letter = None
    for form in _CHOICE_FORMS:
      match = form.fullmatch(text)
      if match:
        letter = match.group(1).upper()
        break
    if letter is None and choices:
      hits = [i for i, c in enumerate(choices) if isinstance(c, str) and c.strip()
              and (c.strip().casefold() == text.casefold() or is_equivalent(text, c))]
      letter = CHOICE_LETTERS[hits[0]] if len(hits) == 1 else None
    if letter is None or CHOICE_LETTERS.index(letter) >= num_choices:
      return None
    return letter
  except Exception:  # noqa: BLE001
    return None


def extract_choice(response: Any, num_choices: int = 10,
                   choices: Sequence[str] | None = None) -> str | None:
  """The letter a response chose: from its last box when it has one, else from its last
  "the answer is (B)" / "Answer: B"; None when neither names a valid letter."""
  if not isinstance(response, str):
    return None
  boxed = extract_boxed(response)
  if boxed is not None:
    return parse_choice(boxed, num_choices, choices)
  matches = _ANSWER_IS.findall(response)
  if not matches:  # a bare "(B)" or "B" response
    bare = _CHOICE_FORMS[0].fullmatch(response.strip().rstrip(".").strip())
    matches = [bare.group(1)] if bare else []
  if not matches or CHOICE_LETTERS.index(matches[-1]) >= num_choices:
    return None
  return matches[-1]
