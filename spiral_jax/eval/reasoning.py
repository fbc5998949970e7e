"""Math and general-reasoning evaluation: the reference's prompt and decoding, pass@1 per benchmark.

  problems = {"math500": datasets.load("math500", data_dir), ...}
  result = evaluate_reasoning(policy, None, problems, max_new_tokens=8192, key=jax.random.key(0))
  result["benchmarks"]["math500"]["pass@1"], result["average_pass@1"]

Protocol (SPIRAL.md section 5): the question as the only user turn of the chat template, followed
by "Please reason step by step, and put your final answer within \\boxed{}." (the reference's
``qwen3_general`` prompt, ``templates.general_prompt``); multiple-choice questions list their
options as (A), (B), ... and ask for the letter. Sampling at temperature 0.6, top-p 0.95, 4 samples
per problem; a benchmark's pass@1 is the mean over problems of the fraction of correct samples.
The paper's token budget is 8192; prompts plus budget must fit the model's ``max_seq_len``, so the
budget is clipped where needed and the budget actually used is reported.

``policy`` may also be any callable ``generate_fn(prompts: list[str], n: int) -> list[list[str]]``
returning n responses per prompt (a Hugging Face model, a server, or a test's canned answers).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from spiral_jax.eval import answers, arena
from spiral_jax.text import templates

TEMPERATURE = 0.6
TOP_P = 0.95
NUM_SAMPLES = 4
MAX_NEW_TOKENS = 8192  # the paper's budget
PAPER_NUM_SAMPLES = {"gpqa_diamond": 10}  # the paper repeats GPQA-Diamond 10 times
CHOICE_INSTRUCTION = "Answer with the letter of the correct option."

GenerateFn = Callable[[list[str], int], list[list[str]]]


def choice_question(question: str, choices: Sequence[str]) -> str:
  """A multiple-choice question with its options listed as ``(A) ...`` lines."""
  if not 2 <= len(choices) <= len(answers.CHOICE_LETTERS):
    raise ValueError(f"choices has {len(choices)} options; between 2 and "
                     f"{len(answers.CHOICE_LETTERS)} are supported")
  options = "\n".join(f"({answers.CHOICE_LETTERS[i]}) {c}" for i, c in enumerate(choices))
  return f"{question.strip()}\n\n{options}\n\n{CHOICE_INSTRUCTION}"


def reasoning_prompt(problem: Mapping[str, Any], template: str = "qwen") -> str:
  """The full prompt for one problem ``{question, kind, choices?}`` in a chat template."""
  question = problem["question"]
  if problem.get("kind") == "choice":
    question = choice_question(question, problem["choices"])
  return templates.general_prompt(question, template)


def _check_problems(problems_by_benchmark: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
  if not isinstance(problems_by_benchmark, Mapping) or not problems_by_benchmark:
    raise ValueError("problems_by_benchmark must be a non-empty {benchmark: [problem, ...]} dict")
  for name, problems in problems_by_benchmark.items():
    if not problems:
      raise ValueError(f"benchmark {name!r} has no problems; drop it or load its dataset")
    for i, problem in enumerate(problems):
      for field in ("question", "answer", "kind"):
        if not isinstance(problem.get(field), str):
          raise ValueError(f"{name}[{i}]['{field}'] must be a str; problems come from "
                           "datasets.load() as {id, question, answer, choices, kind}")
      if problem["kind"] not in ("math", "choice"):
        raise ValueError(f"{name}[{i}]['kind'] is {problem['kind']!r}; use 'math' or 'choice'")
      if problem["kind"] == "choice" and not problem.get("choices"):
        raise ValueError(f"{name}[{i}] is a choice problem without 'choices'")


@dataclasses.dataclass
class _Samples:
  """texts[p][s]; token_counts[p][s] (None when unknown); truncated[p][s] (None when unknown)."""
  texts: list[list[str]]
  token_counts: list[list[int]] | None
  truncated: list[list[bool]] | None
  budget_used: int | None = None


def _seed(key: jax.Array, index: int) -> int:
  return int(jax.random.randint(jax.random.fold_in(key, index), (), 0, 2**31 - 1))


def _sample_policy(policy: Any, tokenizer: Any, prompts: list[str], n: int, *,
                   max_new_tokens: int, temperature: float, top_p: float, key: jax.Array,
                   batch_size: int) -> _Samples:
  """n samples per prompt from a ``Policy`` with the KV-cache sampler, in length-sorted chunks
  (similar prompt lengths share a compiled bucket and waste little padding)."""
  from spiral_jax.sampling import sampler  # lazy: a generate_fn caller needs no model code
  if tokenizer is not None:  # an explicit tokenizer wins over the policy's
    policy = dataclasses.replace(policy, tokenizer=tokenizer)
  if policy.tokenizer is None:
    raise ValueError("evaluate_reasoning: the policy has no tokenizer; pass tokenizer=")
  encoded = policy.tokenizer.encode_batch(prompts)
  rows = [p for p in range(len(prompts)) for _ in range(n)]
  order = sorted(range(len(rows)), key=lambda r: -len(encoded[rows[r]]))
  texts: list[str | None] = [None] * len(rows)
  counts, truncated = [0] * len(rows), [False] * len(rows)
  budget_used = max_new_tokens
  for chunk_index, start in enumerate(range(0, len(order), batch_size)):
    chunk = order[start:start + batch_size]
    longest = max(len(encoded[rows[r]]) for r in chunk)
    budget = min(max_new_tokens, policy.config.max_seq_len - longest)
    if budget < 1:
      raise ValueError(f"a prompt of {longest} tokens leaves no room to answer within "
                       f"max_seq_len {policy.config.max_seq_len}")
    budget_used = min(budget_used, budget)
    out = sampler.generate(policy, [encoded[rows[r]] for r in chunk], max_new_tokens=budget,
                           temperature=temperature, top_p=top_p, seed=_seed(key, chunk_index))
    for j, r in enumerate(chunk):
      texts[r], counts[r], truncated[r] = out.texts[j], int(out.lengths[j]), bool(out.truncated[j])
  per_prompt = lambda values: [values[p * n:(p + 1) * n] for p in range(len(prompts))]  # noqa: E731
  return _Samples(per_prompt(texts), per_prompt(counts), per_prompt(truncated), budget_used)


def _sample_fn(generate_fn: GenerateFn, tokenizer: Any, prompts: list[str], n: int) -> _Samples:
  texts = generate_fn(prompts, n)
  if len(texts) != len(prompts) or any(len(t) != n for t in texts):
    raise ValueError(f"generate_fn must return {n} responses for each of the {len(prompts)} "
                     "prompts (a list of lists)")
  counts = None
  if tokenizer is not None:
    counts = [[len(tokenizer.encode(t)) for t in row] for row in texts]
  return _Samples([[str(t) for t in row] for row in texts], counts, None)


def _mean(values: list[float]) -> float:
  return float(np.mean(values)) if values else 0.0


def _benchmark_metrics(problems: Sequence[Mapping[str, Any]], samples: _Samples) -> dict:
  correct = [[answers.score_response(text, problem) for text in row]
             for problem, row in zip(problems, samples.texts)]
  per_problem = [_mean([float(ok) for ok, _ in row]) for row in correct]
  # the interval is over problems (the unit a benchmark samples), not over one problem's samples
  interval = arena.Mean.of(per_problem)
  metrics = {
      "pass@1": _mean(per_problem),
      "pass@1_ci95": (interval.high - interval.low) / 2 if len(per_problem) > 1 else math.nan,
      "boxed_rate": _mean([float(box) for row in correct for _, box in row]),
      "mean_response_chars": _mean([len(t) for row in samples.texts for t in row]),
      "num_problems": len(problems),
      "num_samples": len(samples.texts[0]),
  }
  if samples.token_counts is not None:
    metrics["mean_response_tokens"] = _mean([c for row in samples.token_counts for c in row])
  if samples.truncated is not None:
    metrics["truncated_rate"] = _mean([float(t) for row in samples.truncated for t in row])
  return metrics


def evaluate_reasoning(policy: Any, tokenizer: Any,
                       problems_by_benchmark: Mapping[str, Sequence[Mapping[str, Any]]], *,
                       num_samples: int | Mapping[str, int] = NUM_SAMPLES,
                       max_new_tokens: int = MAX_NEW_TOKENS, temperature: float = TEMPERATURE,
                       top_p: float = TOP_P, key: jax.Array | None = None,
                       template: str = "qwen", batch_size: int = 64,
                       keep_responses: bool = False) -> dict[str, Any]:
  """pass@1 per benchmark (mean over problems of the fraction of correct samples).

  policy: a ``spiral_jax.model.Policy`` (sampled with ``sampling.generate``; ``tokenizer``
    defaults to the policy's) or a ``generate_fn(prompts, n) -> list[list[str]]`` (then
    ``tokenizer``, if given, only counts response tokens).
  problems_by_benchmark: ``{name: [{id, question, answer, kind, choices?}, ...]}``, as
    ``datasets.load`` returns them.
  num_samples: per problem; an int, or ``{benchmark: n}`` (missing names use 4;
    ``PAPER_NUM_SAMPLES`` gives the paper's 10 for GPQA-Diamond).
  key: the sampling key (default ``jax.random.key(0)``); each benchmark folds in its index.

  Returns ``{"benchmarks": {name: {"pass@1", "boxed_rate", "mean_response_chars",
  "mean_response_tokens"?, "truncated_rate"?, "num_problems", "num_samples", "responses"?}},
  "average_pass@1": mean over benchmarks, "settings": {...}}``.
  """
  _check_problems(problems_by_benchmark)
  if max_new_tokens < 1:
    raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  key = jax.random.key(0) if key is None else key
  is_policy = hasattr(policy, "graphdef") and hasattr(policy, "params")
  if not is_policy and not callable(policy):
    raise ValueError("policy must be a spiral_jax Policy or a generate_fn(prompts, n) callable")
  results, budgets = {}, []
  for index, (name, problems) in enumerate(problems_by_benchmark.items()):
    n = num_samples if isinstance(num_samples, int) else num_samples.get(name, NUM_SAMPLES)
    if n < 1:
      raise ValueError(f"num_samples for {name!r} must be >= 1, got {n}")
    prompts = [reasoning_prompt(p, template) for p in problems]
    if is_policy:
      samples = _sample_policy(policy, tokenizer, prompts, n, max_new_tokens=max_new_tokens,
                               temperature=temperature, top_p=top_p,
                               key=jax.random.fold_in(key, index), batch_size=batch_size)
      budgets.append(samples.budget_used)
    else:
      samples = _sample_fn(policy, tokenizer, prompts, n)
    results[name] = _benchmark_metrics(problems, samples)
    if keep_responses:
      results[name]["responses"] = samples.texts
  settings = {"temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens,
              "template": template,
              "num_samples": num_samples if isinstance(num_samples, int) else dict(num_samples)}
  if budgets:
    settings["max_new_tokens_used"] = min(budgets)
  return {"benchmarks": results,
          "average_pass@1": _mean([r["pass@1"] for r in results.values()]),
          "settings": settings}


def flat_metrics(result: Mapping[str, Any], prefix: str = "eval/reasoning") -> dict[str, float]:
  """``evaluate_reasoning``'s numbers as ``{prefix/benchmark/metric: value}`` (metrics.jsonl)."""
  flat = {f"{prefix}/average_pass@1": float(result["average_pass@1"])}
  for name, metrics in result["benchmarks"].items():
    for metric, value in metrics.items():
      if isinstance(value, (int, float)):
        flat[f"{prefix}/{name}/{metric}"] = float(value)
  return flat
