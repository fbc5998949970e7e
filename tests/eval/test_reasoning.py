"""pass@1 arithmetic with canned responses, and one tiny end-to-end run through the sampler."""
import pathlib

import jax
import pytest

from spiral_jax.eval import datasets, reasoning
from spiral_jax.model import Policy, preset
from spiral_jax.text import templates
from spiral_jax.text.tokenizer import train_sentencepiece

DATA = pathlib.Path(__file__).parent / "data"

MATH = [{"id": "m0", "question": "One half?", "answer": r"\frac{1}{2}", "kind": "math"},
        {"id": "m1", "question": "Ten squared?", "answer": "100", "kind": "math"},
        {"id": "m2", "question": "Interval?", "answer": r"[0, 1)", "kind": "math"}]
CHOICE = [{"id": "c0", "question": "Pick x.", "answer": "B", "kind": "choice",
           "choices": ["w", "x", "y", "z"]},
          {"id": "c1", "question": "Pick z.", "answer": "D", "kind": "choice",
           "choices": ["w", "x", "y", "z"]}]
# question -> the 4 responses a fake model gives (correct ones marked in the comments)
CANNED = {
    "One half?": [r"\boxed{0.5}", r"\boxed{\dfrac12}", r"so \boxed{1/2}.", r"\boxed{50\%}"],  # 4/4
    "Ten squared?": [r"\boxed{100}", r"\boxed{10^2}", r"\boxed{1000}", "100"],  # 2/4, 3 boxed
    "Interval?": [r"\boxed{(0, 1)}", r"\boxed{[0,1]}", r"\boxed{0", "no idea"],  # 0/4, 2 boxed
    "Pick x.": [r"\boxed{B}", "The answer is (B).", r"\boxed{(C)}", r"\boxed{x}"],  # 3/4
    "Pick z.": [r"\boxed{D}", r"\boxed{A}", "Answer: C", "I cannot tell"],  # 1/4
}


def canned_generate(calls):
  def generate_fn(prompts, n):
    calls.append((list(prompts), n))
    out = []
    for prompt in prompts:
      question = next(q for q in CANNED if f"Question: {q}" in prompt)
      out.append(CANNED[question][:n])
    return out
  return generate_fn


def test_pass_at_1_arithmetic():
  calls = []
  result = reasoning.evaluate_reasoning(canned_generate(calls), None,
                                        {"toy_math": MATH, "toy_choice": CHOICE})
  math, choice = result["benchmarks"]["toy_math"], result["benchmarks"]["toy_choice"]
  # f64 means of a few exact fractions, maybe summed in another order: ulps apart, far inside
  # approx's default rel 1e-6 (one sample more or less moves them by >= 1/12)
  assert math["pass@1"] == pytest.approx((4 / 4 + 2 / 4 + 0 / 4) / 3)
  assert math["boxed_rate"] == pytest.approx((4 + 3 + 2) / 12)
  assert choice["pass@1"] == pytest.approx((3 / 4 + 1 / 4) / 2)
  assert choice["boxed_rate"] == pytest.approx(5 / 8)
  assert result["average_pass@1"] == pytest.approx((0.5 + 0.5) / 2)
  all_math = [r for q in ("One half?", "Ten squared?", "Interval?") for r in CANNED[q]]
  assert math["mean_response_chars"] == pytest.approx(sum(map(len, all_math)) / 12)
  assert math["num_problems"] == 3 and math["num_samples"] == 4
  assert "mean_response_tokens" not in math  # no tokenizer given
  assert result["settings"]["temperature"] == 0.6 and result["settings"]["top_p"] == 0.95
  # the reference prompt: the question, then the boxed instruction, in Qwen's chat format
  assert calls[0] == ([templates.general_prompt(p["question"]) for p in MATH], 4)
  assert calls[0][0][0] == ("<|im_start|>user\nQuestion: One half?\nPlease reason step by step, "
                            "and put your final answer within \\boxed{}.<|im_end|>\n"
                            "<|im_start|>assistant\n")
  assert "\n\n(A) w\n(B) x\n(C) y\n(D) z\n\n" in calls[1][0][0]


def test_samples_per_benchmark_and_flat_metrics():
  calls = []
  result = reasoning.evaluate_reasoning(canned_generate(calls), None,
                                        {"toy_math": MATH, "toy_choice": CHOICE},
                                        num_samples={"toy_choice": 2}, keep_responses=True)
  assert [n for _, n in calls] == [4, 2]
  # f64 mean of halves: ulps apart at most (approx's default rel 1e-6); a sample moves it by 1/4
  assert result["benchmarks"]["toy_choice"]["pass@1"] == pytest.approx((2 / 2 + 1 / 2) / 2)
  assert result["benchmarks"]["toy_choice"]["responses"][1] == CANNED["Pick z."][:2]
  flat = reasoning.flat_metrics(result)
  assert flat["eval/reasoning/toy_choice/pass@1"] == pytest.approx(0.75)  # as above
  assert "eval/reasoning/toy_math/responses" not in flat


def test_gold_answers_score_one_on_every_sample_benchmark():
  problems = {name: datasets.read_examples(name, DATA) for name in datasets.NAMES}
  by_prompt = {reasoning.reasoning_prompt(p): p for ps in problems.values() for p in ps}

  def oracle(prompts, n):  # the gold answer, boxed; for choices the option's text
    out = []
    for prompt in prompts:
      p = by_prompt[prompt]
      text = p["answer"] if p["kind"] == "math" else p["choices"]["ABCDEFGHIJ".index(p["answer"])]
      out.append([f"Reasoning... so the answer is $\\boxed{{{text}}}$."] * n)
    return out

  result = reasoning.evaluate_reasoning(oracle, None, problems, num_samples=1)
  assert {name: m["pass@1"] for name, m in result["benchmarks"].items()} == dict.fromkeys(
      datasets.NAMES, 1.0)


def test_bad_inputs_raise_clear_errors():
  fn = canned_generate([])
  with pytest.raises(ValueError, match=r"toy\[0\]\['answer'\] must be a str"):
    reasoning.evaluate_reasoning(fn, None, {"toy": [{"question": "q", "kind": "math"}]})
  with pytest.raises(ValueError, match="no problems"):
    reasoning.evaluate_reasoning(fn, None, {"toy": []})
  with pytest.raises(ValueError, match="must return 4 responses"):
    reasoning.evaluate_reasoning(lambda prompts, n: [["x"]] * len(prompts), None, {"m": MATH})


@pytest.fixture(scope="module")
def tiny_policy():
  problems = {"math500": datasets.read_examples("math500", DATA)[:2],
              "gpqa_diamond": datasets.read_examples("gpqa_diamond", DATA)[:2]}
  prompts = [reasoning.reasoning_prompt(p) for ps in problems.values() for p in ps]
  tokenizer = train_sentencepiece(prompts + [r"so the answer is \boxed{1}"], 400)
  config = preset("tiny", vocab_size=tokenizer.vocab_size, num_layers=1, d_model=32, num_heads=2,
                  num_kv_heads=1, head_dim=16, mlp_dim=64, max_seq_len=160)
  longest = {name: max(len(tokenizer.encode(reasoning.reasoning_prompt(p))) for p in ps)
             for name, ps in problems.items()}
  return Policy.init(config, tokenizer, key=0), problems, longest


def test_end_to_end_with_a_tiny_policy(tiny_policy):
  policy, problems, longest = tiny_policy
  key = jax.random.key(3)
  # the paper's 8192-token budget does not fit max_seq_len 160: it is clipped and reported
  result = reasoning.evaluate_reasoning(policy, None, problems, num_samples=2, key=key,
                                        batch_size=4, keep_responses=True)
  assert set(result["benchmarks"]) == {"math500", "gpqa_diamond"}
  assert result["settings"]["max_new_tokens"] == 8192
  assert result["settings"]["max_new_tokens_used"] == 160 - max(longest.values())
  for name, metrics in result["benchmarks"].items():
    assert set(metrics) == {"pass@1", "pass@1_ci95", "boxed_rate", "mean_response_chars",
                            "mean_response_tokens", "truncated_rate", "num_problems",
                            "num_samples", "responses"}
    assert metrics["num_problems"] == 2 and metrics["num_samples"] == 2
    assert 0.0 <= metrics["pass@1"] <= 1.0 and 0.0 <= metrics["boxed_rate"] <= 1.0
    budget = 160 - longest[name]  # one chunk per benchmark here: its longest prompt sets it
    assert 1 <= metrics["mean_response_tokens"] <= budget
    if metrics["truncated_rate"] == 1.0:
      assert metrics["mean_response_tokens"] == budget
    assert [len(r) for r in metrics["responses"]] == [2, 2]
    assert all(isinstance(t, str) for row in metrics["responses"] for t in row)
  assert 0.0 <= result["average_pass@1"] <= 1.0
  again = reasoning.evaluate_reasoning(policy, None, problems, num_samples=2, key=key,
                                       batch_size=4, keep_responses=True)
  assert again == result  # same key, same samples
