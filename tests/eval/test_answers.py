"""The answer checker on a table of hard cases (positives and negatives), and never raising."""
import pytest
from hypothesis import given, settings, strategies as st

from spiral_jax.eval.answers import (extract_boxed, extract_choice, is_equivalent,
                                     normalize_answer, parse_choice, parse_latex_expr,
                                     score_response)

# (prediction, gold, equivalent)
EQUIVALENCE = [
    # fractions, \frac vs /, \dfrac, decimals
    (r"\dfrac{1}{2}", "0.5", True),
    ("1/2", r"\frac12", True),
    (r"\tfrac{3}{4}", "0.75", True),
    (r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt2}", True),
    (r"\frac{3\sqrt{3}}{2}", r"\frac{3}{2}\sqrt{3}", True),
    (r"\frac{1}{3}", "0.33333", True),
    (r"\frac{1}{3}", "0.333", False),
    ("0.1", r"\frac{1}{10}", True),
    ("4.0", "4", True),
    (r"\frac{x}{2}", "0.5x", True),
    (r"\frac{1}{2}", r"\frac{1}{3}", False),
    ("1/3", "0.3", False),
    # negative numbers
    ("-0.5", r"-\frac{1}{2}", True),
    (r"\frac{-3}{4}", "-0.75", True),
    (r"\frac{3}{-4}", r"-\frac34", True),
    ("−5", "-5", True),
    ("0.5", r"-\frac12", False),
    ("2", "-2", False),
    # radicals, constants, functions
    (r"\sqrt{12}", r"2\sqrt3", True),
    (r"2\sqrt{2}", r"\sqrt{8}", True),
    (r"\sqrt[3]{8}", "2", True),
    (r"\sqrt{2}", "1.4142", True),
    (r"\sqrt{2}", "1.41", False),
    (r"\pi/4", r"\frac{\pi}{4}", True),
    (r"e^{i\pi}", "-1", True),
    (r"\ln 2 + \ln 3", r"\ln 6", True),
    (r"\log_2 8", "3", True),
    (r"\binom{5}{2}", "10", True),
    ("9!", "362880", True),
    (r"2^{10}", "1024", True),
    ("3+4i", "4i+3", True),
    # expressions with variables
    ("x^2+2x+1", "(x+1)^2", True),
    ("x^2+2x+1", "(x-1)^2", False),
    (r"2\pi r", r"2r\pi", True),
    ("y = 2x + 3", "2x+3", True),
    (r"\sin(x)", r"\sin x", True),
    ("2(x+1)", "2x+2", True),
    ("x+1", "x-1", False),
    ("3", "3x", False),
    (r"\frac{1}{2}", r"\frac{1}{2}\pi", False),
    # scientific notation
    ("1.5e3", "1500", True),
    (r"1.5 \times 10^{3}", "1500", True),
    (r"2.5 \times 10^{-3}", "0.0025", True),
    (r"6.02 \cdot 10^{23}", "6.02E23", True),
    (r"10^{-3}", "0.001", True),
    ("1e5", "1e6", False),
    # percentages
    (r"50\%", "0.5", True),
    (r"50\%", "50", True),
    ("12.5%", r"\frac{1}{8}", True),
    (r"10\%", "0.01", False),
    ("0.5", "50", False),
    # units, degrees, money, thousands separators, trailing periods
    (r"5\text{ cm}^2", "5", True),
    (r"3 \cdot 10^{8}\text{ m/s}", "3e8", True),
    ("12 inches", "12", True),
    (r"\frac{7}{2}\text{ hours}", "3.5", True),
    (r"30^\circ", "30", True),
    (r"90^{\circ}", "90", True),
    (r"45^\circ", r"\frac{\pi}{4}", False),
    (r"\$5", "5", True),
    (r"\$1,000.50", "1000.5", True),
    ("1,000", "1000", True),
    (r"1\,000\,000", "10^6", True),
    ("1,000", "1", False),
    ("5.", "5", True),
    # \text{}, x =, choices written as text
    (r"\text{Monday}", "monday", True),
    (r"\text{odd}", r"\text{even}", False),
    (r"k = \dfrac{7}{2}", "3.5", True),
    (r"\text{(C)}", "C", True),
    ("(C)", "C", True),
    ("D", r"\text{(C)}", False),
    # intervals (brackets must agree) and unions
    (r"[2,\infty)", r"[2, \infty)", True),
    (r"\left[2, \infty\right)", r"[2,\infty)", True),
    (r"x \in [1, 3]", "[1,3]", True),
    (r"(-\infty,1)\cup(2,\infty)", r"(2,\infty)\cup(-\infty,1)", True),
    ("[2,5)", "(2,5]", False),
    (r"(-\infty, 0]", r"(-\infty,0)", False),
    ("(1,2)", "[1,2]", False),
    # sets (order-free), tuples (ordered), lists, \pm, matrices
    (r"\{1,2,3\}", r"\{3,2,1\}", True),
    (r"\{1,2\}", r"\{1,2,3\}", False),
    ("1, 2", "2,1", True),
    ("1,2", "1,2,3", False),
    ("3, 5, 7", r"\{7,5,3\}", True),
    (r"\left(3, -\frac{1}{2}\right)", "(3,-0.5)", True),
    ("(1,2)", "(2,1)", False),
    ("(0,0),(1,1)", "(1,1),(0,0)", True),
    (r"1\pm\sqrt{2}", r"1+\sqrt2, 1-\sqrt2", True),
    (r"\{-1, 1\}", r"\pm 1", True),
    (r"\pm 2", "-2, 2", True),
    ("-2, 2", "2", False),
    ("x = 1, y = 2", "(1, 2)", True),
    (r"\emptyset", r"\varnothing", True),
    (r"\begin{pmatrix}1\\2\end{pmatrix}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", True),
    (r"\begin{pmatrix}1\\2\end{pmatrix}", r"\begin{pmatrix}2\\1\end{pmatrix}", False),
    # no answer never matches
    ("", "0", False),
    (None, "0", False),
    (r"2^{2^{2^{2^{5}}}}", "1", False),  # refused as too large, not computed
]

# (response, extracted content of the last box)
BOXES = [
    (r"so the answer is \boxed{5}.", "5"),
    (r"first \boxed{1}, then \boxed{\frac{1}{2}} at last", r"\frac{1}{2}"),
    (r"\boxed{\frac{\sqrt{\frac{1}{2}}}{2}}", r"\frac{\sqrt{\frac{1}{2}}}{2}"),
    (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
    (r"\fbox{7}", "7"),
    (r"$\boxed 5$", "5"),
    (r"\boxed{ \text{(B)} }", r"\text{(B)}"),
    (r"\boxed{\boxed{3}}", "3"),
    (r"\boxed{1} and a truncated \boxed{\frac{1}{2}", None),
    (r"\boxed{}", None),
    ("no box at all", None),
    (r"\boxedx{3}", None),
]

# (response, num_choices, chosen letter)
CHOICES = [
    (r"\boxed{B}", 4, "B"),
    (r"\boxed{(B)}", 4, "B"),
    (r"\boxed{B)}", 4, "B"),
    (r"\boxed{\text{(C)}}", 4, "C"),
    (r"\boxed{\textbf{D}}", 4, "D"),
    (r"\boxed{A. Nitrogen}", 4, "A"),
    ("The answer is (B).", 4, "B"),
    ("so the correct answer is C because ...", 4, "C"),
    ("Answer: D", 4, "D"),
    ("(B)", 4, "B"),
    ("B", 4, "B"),
    (r"\boxed{b}", 4, "B"),
    (r"\boxed{E}", 4, None),  # out of range for 4 options
    (r"\boxed{AB}", 4, None),
    (r"\boxed{\text{Both}}", 4, None),
    ("The answer is Because of symmetry", 4, None),
    ("I think A is wrong and so is C", 4, None),
    (r"The answer is (A). \boxed{C}", 4, "C"),  # the box wins
]


@pytest.mark.parametrize("pred, gold, expected", EQUIVALENCE)
def test_equivalence_table(pred, gold, expected):
  assert is_equivalent(pred, gold) is expected
  if pred is not None and expected:  # equivalence is symmetric on this table
    assert is_equivalent(gold, pred) is expected


@pytest.mark.parametrize("response, content", BOXES)
def test_last_box(response, content):
  assert extract_boxed(response) == content


@pytest.mark.parametrize("response, num_choices, letter", CHOICES)
def test_choice_letters(response, num_choices, letter):
  assert extract_choice(response, num_choices) == letter


def test_table_size():
  negatives = sum(not e for *_, e in EQUIVALENCE) + sum(c is None for _, c in BOXES) + sum(
      c is None for *_, c in CHOICES)
  assert len(EQUIVALENCE) + len(BOXES) + len(CHOICES) >= 70 and negatives >= 25


def test_choice_by_option_text_and_gold_forms():
  options = ["Nitrogen", "Oxygen", "Argon", "Carbon dioxide"]
  assert parse_choice("nitrogen", 4, options) == "A"
  assert parse_choice("Helium", 4, options) is None
  assert extract_choice(r"\boxed{Carbon dioxide}", 4, options) == "D"
  assert parse_choice(r"\text{(B)}") == parse_choice("B)") == parse_choice("Option B") == "B"


def test_score_response():
  math = {"answer": r"\frac{1}{2}", "kind": "math"}
  assert score_response(r"... \boxed{0.5}", math) == (True, True)
  assert score_response(r"... \boxed{0.4}", math) == (False, True)
  assert score_response("the answer is 1/2", math) == (False, False)  # math needs a box
  choice = {"answer": "C", "kind": "choice", "choices": ["w", "x", "y", "z"]}
  assert score_response(r"\boxed{(C)}", choice) == (True, True)
  assert score_response("The answer is (C)", choice) == (True, False)
  assert score_response(r"\boxed{D}", choice) == (False, True)


def test_normalize_and_parse():
  assert normalize_answer(r"\left( \dfrac{1}{2}, 3 \right)") == r"(\frac{1}{2},3)"
  assert normalize_answer(r"$x = 12\text{ inches}.$") == "12"
  assert parse_latex_expr(r"\frac{1}{2}+\frac{1}{3}") == parse_latex_expr("5/6")
  assert parse_latex_expr("__import__('os')") is None  # nothing is evaluated as Python
  assert parse_latex_expr("9" * 500) is None  # too long: compared as a string only


LATEX_PIECES = ["\\boxed{", "\\fbox{", "{", "}", "\\frac", "\\sqrt", "^", "_", "\\{", "\\}", "(",
                ")", "[", "]", ",", "\\cup", "\\pm", "\\text{", "\\%", "$", "=", "\\in", "9",
                "99", "1.5e", "-", "x", "i", "e", "!", "\\infty", "\\pi", " ", "|", "\\left",
                "\\right", "\\begin{pmatrix}", "\\\\", "&", "\\log_", "\\binom", "(B)", "/",
                "\\cdot", "10^{", "0.", "\\circ", "cm"]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=60),
                 st.lists(st.sampled_from(LATEX_PIECES), max_size=25).map("".join)),
       st.one_of(st.text(max_size=20),
                 st.lists(st.sampled_from(LATEX_PIECES), max_size=12).map("".join)))
def test_never_raises(text, other):
  for response in (text, "\\boxed{" + text + "}", text + "\\boxed{" + other):
    content = extract_boxed(response)
    assert content is None or isinstance(content, str)
    assert isinstance(is_equivalent(text, other), bool)
    assert isinstance(is_equivalent(content, other), bool)
    letter = extract_choice(response)
    assert letter is None or letter in "ABCDEFGHIJ"
  assert isinstance(normalize_answer(text), str)
  assert score_response(text, {"answer": other, "kind": "math"})[1] in (True, False)
