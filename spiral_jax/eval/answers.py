"""Final answers of reasoning benchmarks: extraction, normalisation, equivalence, letter matching.

  extract_boxed(response)           # content of the LAST \\boxed{...} / \\fbox{...}, or None
  is_equivalent(pred, gold)         # "\\dfrac{1}{2}" == "0.5" == "1/2" == "50\\%"; sets, intervals
  extract_choice(response)          # "B" from \\boxed{(B)}, "The answer is (B)", "Answer: B"
  score_response(response, problem) # (correct, has_box) for a {answer, kind, choices} problem

The pieces: ``eval/boxed.py`` (extraction), ``eval/equivalence.py`` (normalisation and
equivalence), ``eval/choices.py`` (option letters); this module is the grader over them. Public
functions never raise on any string.
"""
from __future__ import annotations

from typing import Any, Mapping

from spiral_jax.eval.boxed import extract_boxed
from spiral_jax.eval.choices import CHOICE_LETTERS, extract_choice, parse_choice
from spiral_jax.eval.equivalence import REL_TOL, is_equivalent, normalize_answer
from spiral_jax.eval.latex import MAX_PARSE_CHARS, parse_latex_expr


def score_response(response: Any, problem: Mapping[str, Any]) -> tuple[bool, bool]:
  """(correct, has_box) of one response to a problem ``{answer, kind, choices?}``.

  kind 'math': the last box's content must be equivalent to ``answer``; kind 'choice': the chosen
  letter must equal ``answer`` (a letter).
  """
  has_box = extract_boxed(response) is not None
  if problem.get("kind") == "choice":
    choices = list(problem.get("choices") or ())
    count = len(choices) or len(CHOICE_LETTERS)
    gold = parse_choice(str(problem.get("answer", "")), count)
    return gold is not None and extract_choice(response, count, choices) == gold, has_box
  return has_box and is_equivalent(extract_boxed(response), str(problem.get("answer", ""))), has_box


__all__ = ["extract_boxed", "normalize_answer", "parse_latex_expr", "is_equivalent",
           "parse_choice", "extract_choice", "score_response", "CHOICE_LETTERS", "REL_TOL",
           "MAX_PARSE_CHARS"]
