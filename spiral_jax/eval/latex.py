"""A small LaTeX -> sympy translator for the common subset of final answers.

  parse_latex_expr(r"\\frac{1}{2}")   # Rational(1, 2)
  parse_latex_expr(r"2\\sqrt{3}x")    # 2*sqrt(3)*x
  parse_latex_expr(r"\\unknown{1}")   # None: outside the subset

Written here because sympy's own ``parse_latex`` needs antlr4 or lark (neither installed), and
nothing may be ``eval``'d. Work is bounded up front instead of by timeouts: texts over
``MAX_PARSE_CHARS`` are refused, nesting is capped at ``MAX_DEPTH``, and powers, factorials and
binomials whose value would be huge are refused. Input is expected already normalised
(``answers.normalize_answer``); ``parse_latex_expr`` never raises.
"""
from __future__ import annotations

import re

import sympy

MAX_PARSE_CHARS = 400
MAX_DEPTH = 50
MAX_RESULT_DIGITS = 5000  # refuse exact powers whose value would have more digits than this
MAX_FACTORIAL = 2000


class _Refused(Exception):
  """The text is outside the supported subset, or its value would be too large to build."""


_TOKEN = re.compile(r"(?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)"
                    r"|(?P<cmd>\\[A-Za-z]+|\\[{}|])|(?P<letter>[A-Za-z])"
                    r"|(?P<op>[-+*/^_()\[\]{}!|=,'])|(?P<space>\s+)")
_FUNCTIONS = {"sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "cot": sympy.cot,
              "sec": sympy.sec, "csc": sympy.csc, "arcsin": sympy.asin, "arccos": sympy.acos,
              "arctan": sympy.atan, "sinh": sympy.sinh, "cosh": sympy.cosh, "tanh": sympy.tanh,
              "ln": sympy.log, "log": sympy.log, "exp": sympy.exp}
_GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta",
          "vartheta", "iota", "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau",
          "upsilon", "phi", "varphi", "chi", "psi", "omega", "Gamma", "Delta", "Theta", "Lambda",
          "Xi", "Pi", "Sigma", "Phi", "Psi", "Omega"}
_PRODUCT_COMMANDS = {"\\cdot": "*", "\\times": "*", "\\div": "/", "\\ast": "*"}
_CLOSING = {"(": ")", "[": "]", "{": "}"}


def _tokens(text: str) -> list[tuple[str, str]]:
  out, pos = [], 0
  while pos < len(text):
    match = _TOKEN.match(text, pos)
    if match is None:
      raise _Refused(f"unsupported character {text[pos]!r}")
    if match.lastgroup != "space":
      kind = match.lastgroup
      value = _PRODUCT_COMMANDS.get(match.group(), match.group())
      out.append(("op" if value in ("*", "/") else kind, value))
    pos = match.end()
  return out


def _number(text: str) -> sympy.Expr:
  mantissa, _, exponent = text.lower().partition("e")
  whole, _, fraction = mantissa.partition(".")
  power = (int(exponent) if exponent else 0) - len(fraction)
  if abs(power) > 1000:
    raise _Refused("exponent too large")
  digits = int((whole or "0") + fraction)
  return sympy.Rational(digits * 10**max(power, 0), 10**max(-power, 0))


def _digits(value: sympy.Rational) -> int:
  return max(len(str(abs(value.p))), len(str(value.q)))


def _power(base: sympy.Expr, exponent: sympy.Expr) -> sympy.Expr:
  """base ** exponent, refused when an exact numeric result would be enormous."""
  if base.is_Rational and exponent.is_Rational:
    size = _digits(base) * abs(exponent.p)
    if exponent.p != 0 and base not in (0, 1, -1) and size > MAX_RESULT_DIGITS:
      raise _Refused("power too large")
  elif exponent.is_number and (exponent.is_Rational or exponent.is_Float):
    if abs(exponent) > 10**6 and base.is_number and base not in (0, 1, -1):
      raise _Refused("power too large")
  return sympy.Pow(base, exponent)


def _bounded_integer(value: sympy.Expr, limit: int) -> sympy.Expr:
  if value.is_number and not (value.is_Integer and 0 <= value <= limit):
    raise _Refused("factorial/binomial argument out of range")
  return value


class _Parser:
  """Recursive descent over tokens: expr := term (+|- term)*; term := unary (op|implicit unary)*;
  unary := -unary | power; power := postfix (^ exponent)?; postfix := atom !*."""

  def __init__(self, text: str):
    self.tokens = _tokens(text)
    self.pos = 0
    self.depth = 0

  def peek(self, offset: int = 0) -> tuple[str, str]:
    i = self.pos + offset
    return self.tokens[i] if i < len(self.tokens) else ("end", "")

  def take(self, value: str | None = None) -> tuple[str, str]:
    token = self.peek()
    if token[0] == "end" or (value is not None and token[1] != value):
      raise _Refused(f"expected {value!r}, got {token[1]!r}")
    self.pos += 1
    return token

  def parse(self) -> sympy.Expr:
    expr = self.expr()
    if self.peek()[0] != "end":
      raise _Refused(f"unexpected {self.peek()[1]!r}")
    return expr

  def enter(self) -> None:
    self.depth += 1
    if self.depth > MAX_DEPTH:
      raise _Refused("nested too deeply")

  def expr(self) -> sympy.Expr:
    self.enter()
    value = self.term()
    while self.peek()[1] in ("+", "-"):
      sign = self.take()[1]
      right = self.term()
      value = value + right if sign == "+" else value - right
    self.depth -= 1
    return value

  def starts_atom(self) -> bool:
    kind, value = self.peek()
    if kind in ("num", "letter"):
      return True
    if kind == "cmd":
      return value not in ("\\pm", "\\mp", "\\}", "\\|")
    return value in ("(", "[", "{")

  def term(self) -> sympy.Expr:
    value = self.unary()
    while True:
      if self.peek()[1] in ("*", "/"):
        op = self.take()[1]
        right = self.unary()
        value = value * right if op == "*" else value / right
      elif self.starts_atom():
        value = value * self.power()
      else:
        return value

  def unary(self) -> sympy.Expr:
    if self.peek()[1] in ("-", "+"):
      sign = self.take()[1]
      self.enter()
      value = self.unary()
      self.depth -= 1
      return -value if sign == "-" else value
    return self.power()

  def power(self) -> sympy.Expr:
    base = self.postfix()
    if self.peek()[1] == "^":
      self.take()
      exponent = self.unary() if self.peek()[1] in ("-", "+") else self.postfix()
      return _power(base, exponent)
    return base

  def postfix(self) -> sympy.Expr:
    value = self.atom()
    while self.peek()[1] == "!":
      self.take()
      value = sympy.factorial(_bounded_integer(value, MAX_FACTORIAL))
    return value

  def group(self) -> sympy.Expr:
    opening = self.take()[1]
    value = self.expr()
    self.take(_CLOSING[opening])
    return value

  def argument(self) -> sympy.Expr:
    """A command's argument: a braced group, or one token (``\\frac12``-style)."""
    if self.peek()[1] == "{":
      return self.group()
    kind, value = self.peek()
    if kind == "num" and len(value) > 1:
      self.tokens[self.pos] = ("num", value[1:])  # \sqrt23 = sqrt(2)*3 in LaTeX
      return _number(value[0])
    return self.atom()

  def subscript(self) -> str:
    self.take("_")
    if self.peek()[1] != "{":
      return self.take()[1]
    start, depth = self.pos, 0
    while True:
      value = self.take()[1]
      depth += {"{": 1, "}": -1}.get(value, 0)
      if depth == 0:
        return "".join(v for _, v in self.tokens[start + 1:self.pos - 1])

  def atom(self) -> sympy.Expr:
    kind, value = self.peek()
    if kind == "num":
      self.take()
      return _number(value)
    if kind == "letter":
      self.take()
      name = value + ("_" + self.subscript() if self.peek()[1] == "_" else "")
      return {"e": sympy.E, "i": sympy.I}.get(name, sympy.Symbol(name))
    if value in _CLOSING:
      return self.group()
    if value == "|":
      self.take()
      inner = self.expr()
      self.take("|")
      return sympy.Abs(inner)
    if kind == "cmd":
      return self.command()
    raise _Refused(f"unexpected {value!r}")

  def command(self) -> sympy.Expr:
    self.enter()
    value = self.command_value(self.take()[1][1:])
    self.depth -= 1
    return value

  def command_value(self, name: str) -> sympy.Expr:
    if name == "frac":
      numerator = self.argument()
      return numerator / self.argument()
    if name == "sqrt":
      index = self.group() if self.peek()[1] == "[" else sympy.Integer(2)
      return _power(self.argument(), 1 / index)
    if name == "binom":
      top = _bounded_integer(self.argument(), 10**4)
      return sympy.binomial(top, _bounded_integer(self.argument(), 10**4))
    if name == "pi":
      return sympy.pi
    if name == "infty":
      return sympy.oo
    if name in _GREEK:
      return sympy.Symbol(name)
    if name in _FUNCTIONS:
      return self.function(name)
    raise _Refused(f"unsupported command \\{name}")

  def function(self, name: str) -> sympy.Expr:
    base = None
    if name == "log" and self.peek()[1] == "_":
      self.take()
      base = self.argument()
    power = None
    if self.peek()[1] == "^":
      self.take()
      power = self.argument()
    argument = self.group() if self.peek()[1] in _CLOSING else self.power()
    value = _FUNCTIONS[name](argument) if base is None else sympy.log(argument, base)
    return value if power is None else _power(value, power)


def parse_latex_expr(text: str) -> sympy.Expr | None:
  """A sympy expression for a normalised LaTeX / plain-text math answer, or None.

  Supports numbers (decimals and ``1.5e3`` kept exact), letters with subscripts (``e`` and ``i``
  are the constants), + - * / ^, implicit products, ``\\frac \\sqrt \\binom \\pi \\infty``, Greek
  letters, ``|x|``, ``!`` and the usual functions. Never raises.
  """
  if not isinstance(text, str) or not text or len(text) > MAX_PARSE_CHARS:
    return None
  try:
    return _Parser(text).parse()
  except (_Refused, ArithmeticError, ValueError, TypeError, RecursionError, AttributeError):
    return None


__all__ = ["MAX_PARSE_CHARS", "parse_latex_expr"]
