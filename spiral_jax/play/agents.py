"""Text agents: a text policy that plays like the learner, and the sample functions behind it.

A ``TextAgent`` holds a ``SampleFn`` (``policy_sample_fn`` builds one over ``sampling.generate``)
and, where it differs from the learner's, its own tokenizer, template and prompt budget.
``text_agent`` is the one way to make a policy an arena player: the evaluation decoding by
default, or any sampler settings.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from spiral_jax.games.core import Player
from spiral_jax.sampling import prefixes, sampler

# (prompt ids per row, seed) -> (response texts, response ids per row, truncated flags)
SampleFn = Callable[[list[list[int]], int], tuple[list[str], list[list[int]], list[bool]]]


@dataclasses.dataclass(frozen=True, eq=False)
class TextAgent:
  """A text policy that plays like the learner; compared by identity (one sampler call each).

  sample_fn: its sampler (``policy_sample_fn`` builds one from a ``Policy``)
  tokenizer, template, max_prompt_tokens: None takes ``play_round``'s (the learner's) values;
    another model family needs its own tokenizer and template (``'llama3'``, ...)
  name: how reports call it
  """
  sample_fn: SampleFn
  tokenizer: Any = None
  template: str | None = None
  max_prompt_tokens: int | None = None
  name: str = "text"


TextOpponent = TextAgent  # the same class, named for its usual place in a GameRunner
Agent = Player | TextAgent


def policy_sample_fn(policy, *, max_new_tokens: int, temperature: float = 1.0,
                     top_p: float = 1.0, top_k: int = 0, batch_rows: int = 0,
                     share_prefix: bool = False,
                     prefix_table: prefixes.PrefixTable | None = None) -> SampleFn:
  """A ``SampleFn`` over ``sampling.generate``: response ids keep the stop token, texts drop it.

  ``policy`` needs a tokenizer (``policy.replace(tokenizer=tok)``) so the sampler returns texts.
  ``batch_rows``: the most rows a call will have (e.g. games per round x kinds); every call is
  padded to it, so all turns share one compiled sampler however many games are still running.
  0, or a larger call: rows padded to a power of two. ``share_prefix``: run the prompts' shared
  prefixes once (``sampling.generate``); ``prefix_table`` fixes its prefixes and sizes, so the
  calls keep one shape (without one, shapes follow each call's prefix groups).
  """
  if policy.tokenizer is None:
    raise ValueError("policy_sample_fn: the policy has no tokenizer; pass "
                     "policy.replace(tokenizer=tokenizer) so responses can be parsed")

  def sample(prompts: list[list[int]], seed: int):
    rows = (batch_rows,) if len(prompts) <= batch_rows else None
    out = sampler.generate(policy, prompts, max_new_tokens=max_new_tokens,
                           temperature=temperature, top_p=top_p, top_k=top_k, seed=seed,
                           batch_buckets=rows, share_prefix=share_prefix,
                           prefix_table=prefix_table)
    return (out.texts, [t[:n].tolist() for t, n in zip(out.tokens, out.lengths)],
            out.truncated.tolist())

  return sample


def text_agent(policy, tokenizer=None, *, max_new_tokens: int, template: str | None = "qwen",
               temperature: float = 0.6, top_p: float = 0.95, top_k: int = 0,
               max_prompt_tokens: int | None = None, name: str = "policy", batch_rows: int = 0,
               prefix_table: prefixes.PrefixTable | None = None) -> TextAgent:
  """A ``TextAgent`` sampling from ``policy`` (a ``model.Policy``), with SPIRAL's evaluation
  decoding by default (temperature 0.6, top-p 0.95). ``tokenizer`` defaults to the policy's;
  ``batch_rows`` and ``prefix_table`` as in ``policy_sample_fn`` (a prefix table turns on the
  shared-prefix prefill)."""
  tokenizer = tokenizer if tokenizer is not None else policy.tokenizer
  if tokenizer is None:
    raise ValueError("text_agent: the policy has no tokenizer; pass tokenizer=")
  if policy.tokenizer is None:
    policy = policy.replace(tokenizer=tokenizer)
  sample = policy_sample_fn(policy, max_new_tokens=max_new_tokens, temperature=temperature,
                            top_p=top_p, top_k=top_k, batch_rows=batch_rows,
                            share_prefix=prefix_table is not None, prefix_table=prefix_table)
  return TextAgent(sample, tokenizer, template, max_prompt_tokens, name)
