"""Every reasoning figure has its 95% interval beside it: pass@1's is over problems (the unit a
benchmark samples; one problem's samples are not independent draws of the benchmark)."""
import math

import pytest

from spiral_jax.eval import reasoning
from spiral_jax.eval.report import _reasoning_markdown
from tests.eval.test_reasoning import CHOICE, MATH, canned_generate


def test_pass_at_1_has_a_normal_interval_over_problems():
  result = reasoning.evaluate_reasoning(canned_generate([]), None,
                                        {"toy_math": MATH, "toy_choice": CHOICE})
  math_metrics = result["benchmarks"]["toy_math"]
  # per-problem fractions 4/4, 2/4, 0/4: mean 0.5, sample standard deviation 0.5
  half = 1.96 * 0.5 / math.sqrt(3)
  # float64, the same formula in another order: a few ulps of ~0.57
  assert math_metrics["pass@1_ci95"] == pytest.approx(half, rel=1e-12)
  table = "\n".join(_reasoning_markdown(result))
  assert f"| toy_math | 0.500 [{0.5 - half:.3f}, {0.5 + half:.3f}] |" in table
  assert reasoning.flat_metrics(result)["eval/reasoning/toy_math/pass@1_ci95"] == \
      math_metrics["pass@1_ci95"]


def test_one_problem_has_no_interval():
  result = reasoning.evaluate_reasoning(canned_generate([]), None, {"one": MATH[:1]})
  assert math.isnan(result["benchmarks"]["one"]["pass@1_ci95"])
  assert "| one | 1.000 [n/a] |" in "\n".join(_reasoning_markdown(result))
