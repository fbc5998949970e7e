"""Whether two final answers are the same: normalisation (units, text commands, percent, thousands
separators), structure (sets and bare lists order-insensitive; tuples, intervals and matrices in
order; unions of intervals as sets), then each scalar as a string, then as a sympy expression
built by the small LaTeX translator (``eval/latex.py``, which bounds its work up front: answers over
``MAX_PARSE_CHARS`` are compared as strings only). Numbers compare with a relative tolerance
(``REL_TOL``); expressions with variables compare by evaluation at fixed points (no ``simplify``).
Public functions never raise on any string.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import sympy

from spiral_jax.eval.boxed import closing_brace
from spiral_jax.eval.latex import parse_latex_expr

REL_TOL = 1e-4  # Qwen2.5-Math's grader tolerance: 0.33333 matches 1/3, 0.333 does not
ABS_TOL = 1e-9
MAX_ITEMS = 20  # elements of a set/tuple/list compared pairwise


_TEXT_COMMANDS = ("text", "textbf", "textit", "textrm", "textsf", "texttt", "mbox", "mathrm",
                  "mathbf", "mathit", "mathsf", "boldsymbol", "operatorname", "boxed", "fbox")
_UNIT_WORDS = (r"(?:square|sq\.?|cubic)?\s*(?:units?|cm|mm|km|meters?|metres?|centimeters?|"
               r"kilometers?|millimeters?|miles?|mph|feet|foot|ft|inch(?:es)?|yards?|hours?|"
               r"hrs?|minutes?|mins?|seconds?|secs?|days?|weeks?|months?|years?|dollars?|"
               r"cents?|pounds?|lbs?|kg|grams?|liters?|litres?|ml|mL|degrees?|radians?|"
               r"percent|students?|people|ways|points?|inches|m/s|km/h)")
_MATH_WORDS = {"pi", "sqrt", "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "infty",
               "inf", "and", "or", "i", "e"}
_REPLACEMENTS = [
    (re.compile(r"\\[dtc]frac"), r"\\frac"), (re.compile(r"\\[dt]binom"), r"\\binom"),
    (re.compile(r"\\displaystyle|\\limits|\\nolimits"), ""),
    (re.compile(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|big|Big|bigg|Bigg)"
                r"(?![A-Za-z])\.?"), ""),
    (re.compile(r"(?<!\\)\\(?:[!,:; ]|quad|qquad|hspace\{[^}]*\})|~"), " "),
    (re.compile(r"\\lbrace|\\lbrack"), r"\\{"), (re.compile(r"\\rbrace|\\rbrack"), r"\\}"),
    (re.compile(r"\\langle"), "("), (re.compile(r"\\rangle"), ")"),
    (re.compile(r"\\(?:lvert|rvert|vert|mid)(?![A-Za-z])"), "|"),
    (re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|°|\\degree"), ""),
    (re.compile(r"\\varnothing"), r"\\emptyset"), (re.compile(r"\\infinity"), r"\\infty"),
    (re.compile(r"\\(?:le|leqslant)(?![A-Za-z])"), r"\\leq"),
    (re.compile(r"\\(?:ge|geqslant)(?![A-Za-z])"), r"\\geq"),
    (re.compile(r"\\ne(?![A-Za-z])"), r"\\neq"),
    (re.compile("−|–"), "-"), (re.compile("×"), r"\\times "), (re.compile("·|⋅"), r"\\cdot "),
    (re.compile("π"), r"\\pi "), (re.compile("∞"), r"\\infty "), (re.compile("√"), r"\\sqrt"),
    (re.compile(r"\{,\}"), ","),
]
_DELIMITERS = re.compile(r"\\?\$|\\\(|\\\)|\\\[|\\\]")
_TRAILING_TEXT_UNIT = re.compile(r"(?<=\S)\s*\\(?:text|mbox|textrm|mathrm)\s*\{(\s*)"
                                 r"([A-Za-z][A-Za-z ./]*)\}\s*(?:\^\s*\{?\d\}?)?\s*$")
_TRAILING_UNIT = re.compile(r"(?<=[\d}).])\s*(" + _UNIT_WORDS +
                            r")(?:\s*\^\s*\{?\d\}?)?\.?\s*$")
_TRAILING_WORDS = re.compile(r"(?<=[\d})])\s+([A-Za-z]{2,}(?:\s+[A-Za-z]{2,})*)\.?\s*$")
_PERCENT = re.compile(r"\\%|%|\\text\{\s*percent\s*\}|(?<=[\d}])\s*percent\b")
_LHS = re.compile(r"^(?:[A-Za-z](?:_\{?\w+\}?)?|\\[A-Za-z]+)\s*(?:=|\\in(?![A-Za-z]))(?!=)")
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_SPACE = re.compile(r"(\\[A-Za-z]+)?\s+(?=(.?))")
_SHORT_FRAC = [
    (re.compile(r"\\frac\s?([0-9A-Za-z])\s?([0-9A-Za-z])"), r"\\frac{\1}{\2}"),
    (re.compile(r"\\frac\s?([0-9A-Za-z])\{"), r"\\frac{\1}{"),
    (re.compile(r"\\frac\{([^{}]*)\}\s?([0-9A-Za-z])"), r"\\frac{\1}{\2}"),
    (re.compile(r"\\sqrt\s?([0-9A-Za-z])"), r"\\sqrt{\1}"),
]


def _unwrap(text: str, names: Sequence[str]) -> str:
  """Replaces ``\\name{content}`` by ``content`` for each command name (braces balanced)."""
  pattern = re.compile(r"\\(?:" + "|".join(names) + r")\s*(?=\{)")
  for _ in range(100):  # each pass removes one wrapper; bounded
    match = pattern.search(text)
    if match is None:
      break
    end = closing_brace(text, match.end())
    if end is None:
      text = text[:match.start()] + text[match.end():]
    else:
      text = text[:match.start()] + text[match.end() + 1:end] + text[end + 1:]
  return text


def _strip_units(text: str) -> str:
  """Drops trailing units: ``5\\text{ cm}^2``, ``12 inches``, ``30 degrees``."""
  for _ in range(3):
    before = text
    match = _TRAILING_TEXT_UNIT.search(text)
    if match and (len(match.group(2).strip()) >= 2 or match.group(1)):
      text = text[:match.start()]
    text = _TRAILING_UNIT.sub("", text)
    match = _TRAILING_WORDS.search(text)
    if match and not set(match.group(1).lower().split()) & _MATH_WORDS:
      text = text[:match.start()]
    if text == before:
      break
  return text


def _squeeze(text: str) -> str:
  """Removes whitespace, except one space between a command and a letter (``\\pi r``)."""
  def keep(match: re.Match) -> str:
    command = match.group(1) or ""
    return command + (" " if command and match.group(2).isalpha() else "")
  return _SPACE.sub(keep, text)


def _normalize(answer: str) -> tuple[str, bool]:
  """(normalised text, whether it carried a percent sign)."""
  text = answer.strip()
  for pattern, replacement in _REPLACEMENTS:
    text = pattern.sub(replacement, text)
  text = _DELIMITERS.sub("", text)
  percent = bool(_PERCENT.search(text))
  text = _PERCENT.sub("", text)
  text = _strip_units(text.strip())
  text = _unwrap(text, _TEXT_COMMANDS).strip()
  text = _strip_units(text)
  text = re.sub(r"^(?:the\s+)?(?:final\s+)?answer\s*(?:is|:)\s*", "", text, flags=re.I)
  if text.count("=") == 1 or re.match(r"^[A-Za-z]\s*\\in(?![A-Za-z])", text):
    text = _LHS.sub("", text, count=1)
  text = _squeeze(text.strip())
  for pattern, replacement in _SHORT_FRAC:
    text = pattern.sub(replacement, text)
  if _THOUSANDS.fullmatch(text):
    text = text.replace(",", "")
  text = text.rstrip(".").lstrip("+") if text not in (".", "+") else text
  return text, percent


def normalize_answer(answer: Any) -> str:
  """The canonical text of an answer (see the module docstring); '' for non-strings."""
  if not isinstance(answer, str):
    return ""
  try:
    return _normalize(answer)[0]
  except Exception:  # noqa: BLE001  (a normaliser must never crash an evaluation)
    return answer.strip()


# ---------------------------------------------------------------------------------------------
# Comparison

def _split_top(text: str, separator: str) -> list[str]:
  """Splits at ``separator`` outside (), [], {}, \\{ \\} and |..| is not tracked."""
  parts, depth, start, i = [], 0, 0, 0
  while i < len(text):
    c = text[i]
    if c in "([{":
      depth += 1
    elif c in ")]}":
      depth -= 1
    elif depth == 0 and text.startswith(separator, i):
      parts.append(text[start:i])
      start = i + len(separator)
      i = start
      continue
    i += 1
  parts.append(text[start:])
  return parts


def _one_group(text: str) -> bool:
  """Whether the first bracket of ``text`` closes at its last character."""
  depth = 0
  for i, c in enumerate(text):
    depth += 1 if c in "([{" else -1 if c in ")]}" else 0
    if depth == 0:
      return i == len(text) - 1
  return False


def _structure(text: str) -> tuple:
  """("union", parts) | ("set", items) | ("seq", open, close, items) | ("matrix", rows) |
  ("list", items) | ("scalar", text)."""
  matrix = re.fullmatch(r"\\begin\{[pbvB]?matrix\}(.*)\\end\{[pbvB]?matrix\}", text)
  if matrix:
    rows = [row.split("&") for row in matrix.group(1).split("\\\\") if row]
    return ("matrix", tuple(tuple(cell for cell in row) for row in rows))
  unions = _split_top(text, "\\cup")
  if len(unions) > 1:
    return ("union", tuple(unions))
  if text.startswith("\\{") and text.endswith("\\}") and _one_group(text[1:]):
    return ("set", tuple(_split_top(text[2:-2], ",")))
  if len(text) >= 2 and text[0] in "([" and text[-1] in ")]" and _one_group(text):
    items = _split_top(text[1:-1], ",")
    if len(items) > 1:
      return ("seq", text[0], text[-1], tuple(items))
  items = _split_top(text, ",")
  if len(items) > 1:
    return ("list", tuple(_LHS.sub("", item, count=1) for item in items))
  plus_minus = text.split("\\pm")
  if len(plus_minus) == 2:
    return ("list", (plus_minus[0] + "+" + plus_minus[1], plus_minus[0] + "-" + plus_minus[1]))
  return ("scalar", text)


def _value_close(a: sympy.Expr, b: sympy.Expr, rel_tol: float) -> bool:
  if a == b:
    return True
  if any(x.has(sympy.oo, -sympy.oo, sympy.zoo, sympy.nan) for x in (a, b)):
    return False
  difference = sympy.Abs(sympy.N(a - b, 30))
  scale = max(sympy.Abs(sympy.N(a, 30)), sympy.Abs(sympy.N(b, 30)))
  return bool(difference <= rel_tol * scale + ABS_TOL)


_PROBES = ("0.5407", "1.3183", "2.2296", "0.8512", "1.7069", "3.0913", "0.2718")


def _probe_values(expr: sympy.Expr, symbols: list[sympy.Symbol], trial: int) -> sympy.Expr | None:
  values = {s: sympy.Float(_PROBES[(k + 3 * trial) % len(_PROBES)]) + trial / 7
            for k, s in enumerate(symbols)}
  value = sympy.N(expr.subs(values), 30)
  if not value.is_number or value.has(sympy.oo, -sympy.oo, sympy.zoo, sympy.nan):
    return None
  return value


def _expressions_equal(a: sympy.Expr, b: sympy.Expr, rel_tol: float, ratio: bool = False) -> bool:
  """Equal as numbers, or (with variables) at three probe points; ``ratio``: equal up to a
  nonzero constant factor (for equations)."""
  symbols = sorted(a.free_symbols | b.free_symbols, key=str)
  if not symbols and not ratio:
    return _value_close(a, b, rel_tol)
  if len(symbols) > 6:
    return False
  seen = []
  for trial in range(3):
    va, vb = _probe_values(a, symbols, trial), _probe_values(b, symbols, trial)
    if va is None or vb is None:
      continue
    if ratio:
      if abs(vb) < ABS_TOL:
        continue
      seen.append(va / vb)
    elif not _value_close(va, vb, rel_tol):
      return False
    else:
      seen.append(va)
  if ratio:
    return len(seen) >= 2 and abs(seen[0]) > ABS_TOL and all(
        _value_close(r, seen[0], rel_tol) for r in seen)
  return len(seen) >= 2


def _scalars_equal(pred: str, gold: str, percent: bool, rel_tol: float) -> bool:
  if pred == gold:
    return True
  letter = re.compile(r"\(([A-Za-z])\)")  # "(C)" is the letter C
  pred, gold = letter.sub(r"\1", pred) if letter.fullmatch(pred) else pred, (
      letter.sub(r"\1", gold) if letter.fullmatch(gold) else gold)
  if pred == gold or (len(gold) > 1 and re.fullmatch(r"[A-Za-z ]+", gold)
                      and pred.casefold() == gold.casefold()):
    return True
  if pred.count("=") == 1 and gold.count("=") == 1:
    sides = [parse_latex_expr(side) for side in pred.split("=") + gold.split("=")]
    if None in sides:
      return False
    return _expressions_equal(sides[0] - sides[1], sides[2] - sides[3], rel_tol, ratio=True)
  a, b = parse_latex_expr(pred), parse_latex_expr(gold)
  if a is None or b is None:
    return False
  candidates = [a, a / 100, a * 100] if percent else [a]
  return any(_expressions_equal(c, b, rel_tol) for c in candidates)


def _matched(preds: Sequence[Any], golds: Sequence[Any], equal) -> bool:
  """Whether the items pair up one to one (order ignored) under ``equal``."""
  if len(preds) != len(golds) or len(golds) > MAX_ITEMS:
    return False
  unused = list(golds)
  for p in preds:
    for j, g in enumerate(unused):
      if equal(p, g):
        unused.pop(j)
        break
    else:
      return False
  return True


def _structures_equal(pred: tuple, gold: tuple, percent: bool, rel_tol: float) -> bool:
  def same(p: str, g: str) -> bool:
    return _scalars_equal(p, g, percent, rel_tol)

  def same_structure(p: str, g: str) -> bool:
    return _structures_equal(_structure(p), _structure(g), percent, rel_tol)

  kinds = {pred[0], gold[0]}
  if kinds <= {"set", "list"}:
    return _matched(pred[-1], gold[-1], same_structure)
  if kinds == {"seq", "list"}:  # "(1, 2)" answered as "1, 2": in order
    items_p, items_g = pred[-1], gold[-1]
    return len(items_p) == len(items_g) and all(map(same_structure, items_p, items_g))
  if pred[0] != gold[0]:
    return False
  if pred[0] == "scalar":
    return same(pred[1], gold[1])
  if pred[0] == "union":
    return _matched(pred[1], gold[1], same_structure)
  if pred[0] == "seq":
    return (pred[1:3] == gold[1:3] and len(pred[3]) == len(gold[3])
            and all(map(same_structure, pred[3], gold[3])))
  rows_p, rows_g = pred[1], gold[1]  # matrices
  return len(rows_p) == len(rows_g) and all(
      len(rp) == len(rg) and all(map(same, rp, rg)) for rp, rg in zip(rows_p, rows_g))


def is_equivalent(pred: Any, gold: Any, *, rel_tol: float = REL_TOL) -> bool:
  """Whether a predicted final answer (already extracted) equals the gold answer.

  Handles ``\\frac``/``\\dfrac``/``a/b``/decimals, ``\\text{}``, units and degrees, percentages
  (``50\\%`` matches ``50`` and ``0.5``), thousands separators, ``x = 5``, scientific notation,
  intervals (brackets must agree), sets, tuples, ``\\pm`` and expressions with variables.
  Never raises; None or an empty prediction is never correct.
  """
  if not isinstance(pred, str) or not isinstance(gold, str):
    return False
  try:
    (p, p_percent), (g, g_percent) = _normalize(pred), _normalize(gold)
    if not p or not g:
      return False
    if p == g:
      return True
    return _structures_equal(_structure(p), _structure(g), p_percent or g_percent, rel_tol)
  except Exception:  # noqa: BLE001  (sympy raises many types; a checker must answer False)
    return False
