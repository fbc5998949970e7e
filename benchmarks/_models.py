"""The benchmark model and analytic counts of the FLOPs and bytes our code executes on it.

``TINY_QWEN3`` is the benchmarks' one tiny Qwen3 (``sampler.py`` builds it with transformers),
kept here so the learner and scaling benchmarks need neither torch nor transformers.

Counts follow the implementation, not an idealised model: matmuls are 2 FLOPs per multiply-add;
attention multiplies every query by every key slot it is given (the mask is applied after, so no
causal halving); the embedding lookup is a gather (0 FLOPs); a backward pass costs twice its
forward (input and weight gradients). Norms, RoPE and softmax are elementwise and not counted.
"""
from __future__ import annotations

import json

import jax.numpy as jnp

from spiral_jax.model.config import ModelConfig

TINY_QWEN3 = dict(vocab_size=8192, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=64, intermediate_size=1024,
                  tie_word_embeddings=True, rope_theta=1e6, max_position_embeddings=4096)

MODEL_NAME = "tiny Qwen3 (vocab 8192, d 256, 4 layers, 4/2 heads, head dim 64, MLP 1024, tied)"


def tiny_qwen3(dtype: str = "float32", param_dtype: str = "float32",
               overrides: str | dict | None = None) -> ModelConfig:
  """The benchmark model's config; ``overrides`` (a dict or JSON text of ModelConfig fields, e.g.
  '{"num_layers": 1}') shrink it for smoke tests."""
  if isinstance(overrides, str):
    try:
      overrides = json.loads(overrides) if overrides else {}
    except json.JSONDecodeError as e:
      raise SystemExit(f"--model_overrides must be a JSON object of ModelConfig fields, e.g. "
                       f"'{{\"num_layers\": 1}}': {e}") from e
  config = ModelConfig.from_hf_config({"model_type": "qwen3", **TINY_QWEN3}, dtype=dtype,
                                      param_dtype=param_dtype)
  return config.replace(**(overrides or {}))


def layer_matmul_params(c: ModelConfig) -> int:
  """Weights one token multiplies by in all layers (attention projections and MLP)."""
  attention = c.d_model * c.head_dim * (2 * c.num_heads + 2 * c.num_kv_heads)
  return c.num_layers * (attention + 3 * c.d_model * c.mlp_dim)


def attention_flops(c: ModelConfig, queries: int, keys: int) -> float:
  """Scores and weighted values of ``queries`` query positions against ``keys`` slots each."""
  return 4.0 * c.num_layers * c.num_heads * c.head_dim * queries * keys


def forward_flops(c: ModelConfig, tokens: int, keys: int, logit_rows: int) -> float:
  """One forward pass over ``tokens`` positions (each attending to ``keys`` slots), with the
  vocabulary projection for ``logit_rows`` of them."""
  return (2.0 * layer_matmul_params(c) * tokens + attention_flops(c, tokens, keys)
          + 2.0 * c.d_model * c.vocab_size * logit_rows)


def prefix_flops(c: ModelConfig, tokens: int, keys: int) -> float:
  """A prefix run only to fill the KV cache: its last layer's keys and values are all that is
  used, so XLA drops that layer's queries, attention, output projection and MLP (dead code)."""
  kv = 2.0 * c.d_model * c.head_dim * 2 * c.num_kv_heads * tokens
  per_layer = forward_flops(c, tokens, keys, 0) / c.num_layers
  return per_layer * (c.num_layers - 1) + kv


def learner_forward_flops(c: ModelConfig, batch: int, length: int, groups: int = 0,
                          prefix: int = 0) -> float:
  """``rl/logprobs.py``'s forward: ``groups`` shared prefixes of ``prefix`` tokens into a cache of
  ``prefix + length`` slots, then ``batch`` rows of ``length`` tokens with logits for all but the
  last; without a prefix, rows attend among their own ``length`` tokens."""
  if groups and prefix:
    slots = prefix + length
    return (prefix_flops(c, groups * prefix, slots)
            + forward_flops(c, batch * length, slots, batch * (length - 1)))
  return forward_flops(c, batch * length, length, batch * (length - 1))


def train_step_flops(c: ModelConfig, batch: int, length: int, groups: int = 0, prefix: int = 0,
                     epochs: int = 1) -> float:
  """``rl/train_step.py``: each epoch is one forward and one backward (2x) over the batch."""
  return 3.0 * epochs * learner_forward_flops(c, batch, length, groups, prefix)


def decode_caches(slots: int, new: int, out_len: int,
                  windows: list[int] | None = None) -> list[int]:
  """The cache slots each of the ``new - 1`` decode steps attends over: ``slots`` prompt slots plus
  the new-token room of its window (``windows``, default ``sampler.decode_windows(out_len)``)."""
  from spiral_jax.sampling import sampler
  sizes, done = [], 1  # column 0 comes from the prefill
  for end in windows or sampler.decode_windows(out_len):
    last = min(new, end)
    sizes += [slots + end] * max(last - done, 0)
    done = max(done, last)
  return sizes


def sampler_flops(c: ModelConfig, batch: int, prompt: int, new: int, slots: int, out_len: int,
                  groups: int = 0, prefix: int = 0) -> float:
  """``sampling.generate``: the prefill over padded prompts (logits for the last position only),
  then ``new - 1`` decode steps of one token each; every position attends to its whole cache:
  ``slots`` prompt slots plus the new-token room of its decode window (``out_len``: the padded
  ``new``). With ``groups`` shared prefixes of ``prefix`` tokens (``share_prefix``), ``prompt``
  is the rows' padded tails, ``slots`` prefix + tail, and the prefixes run once each, only to
  fill the cache."""
  from spiral_jax.sampling import sampler
  first = slots + sampler.decode_windows(out_len)[0]
  prefill = forward_flops(c, batch * prompt, first, batch)
  if groups and prefix:
    prefill += prefix_flops(c, groups * prefix, first)
  caches = decode_caches(slots, new, out_len)
  return prefill + sum(forward_flops(c, batch, cache, batch) for cache in caches)


def sampler_work(c: ModelConfig, batch: int, prompt_len: int, new: int, weight_dtype: str,
                 cache_dtype: str) -> tuple[float, float]:
  """FLOPs and decode bytes of ``generate`` on ``batch`` unrelated prompts of ``prompt_len``
  tokens (whole prompts), on the padded shapes it runs (its default buckets)."""
  from spiral_jax.sampling import sampler
  rows, prompt = sampler.bucket(batch), sampler.bucket(prompt_len, minimum=16)
  out_len = sampler.bucket(new, minimum=16)
  return (sampler_flops(c, rows, prompt, new, prompt, out_len),
          sampler_bytes(c, rows, new, prompt, out_len, weight_dtype, cache_dtype))


def dtype_bytes(dtype: str) -> int:
  return jnp.dtype(dtype).itemsize


def sampler_bytes(c: ModelConfig, batch: int, new: int, slots: int, out_len: int,
                  weight_dtype: str, cache_dtype: str, windows: list[int] | None = None) -> float:
  """Minimum memory traffic of the decode steps: every step reads every weight it multiplies by
  (the layers and the vocabulary projection, in the compute dtype) and its window's whole KV
  cache (``decode_caches``; ``windows=[out_len]``: one window, the sampler before e072de0)."""
  weights = (layer_matmul_params(c) + c.d_model * c.vocab_size) * dtype_bytes(weight_dtype)
  kv = 2 * c.num_layers * batch * c.num_kv_heads * c.head_dim * dtype_bytes(cache_dtype)
  caches = decode_caches(slots, new, out_len, windows)
  return float(sum(weights + kv * cache for cache in caches))
