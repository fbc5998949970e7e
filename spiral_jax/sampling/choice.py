"""Choosing the next token from logits: top-k / top-p filtering, greedy argmax and sampling by
inverting the CDF, each two-level over blocks of the vocabulary (one pass over the logits; XLA:CPU's
variadic argmax and a full cumulative sum are several times slower). Pure and jittable.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def filter_logits(scaled: jax.Array, top_k: int, top_p: jax.Array | None) -> jax.Array:
  """Sets logits outside the top-k / top-p (nucleus) set to -inf. scaled: f32[B, V].

  Top-p keeps the smallest set of most likely tokens whose mass reaches ``top_p`` (computed after
  top-k), as Hugging Face does. Both cut at a logit value, so tokens tied with the last kept one
  are kept too.
  """
  if top_k:
    kth = jax.lax.top_k(scaled, top_k)[0][:, -1:]
    scaled = jnp.where(scaled < kth, -jnp.inf, scaled)
  if top_p is not None:
    descending = -jnp.sort(-scaled, axis=-1)
    probs = jax.nn.softmax(descending, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    kept = jnp.sum(mass_before < top_p, axis=-1, keepdims=True)
    threshold = jnp.take_along_axis(descending, jnp.maximum(kept - 1, 0), axis=-1)
    scaled = jnp.where(scaled < threshold, -jnp.inf, scaled)
  return scaled


def _blocks(x: jax.Array, block: int, fill: float) -> jax.Array:
  """[B, V] -> [B, ceil(V / block), block], padding the tail with ``fill``."""
  pad = -x.shape[-1] % block
  return jnp.pad(x, ((0, 0), (0, pad)), constant_values=fill).reshape(x.shape[0], -1, block)


def _first_index(hit: jax.Array) -> jax.Array:
  """The first True along the last axis, per row."""
  iota = jax.lax.broadcasted_iota(jnp.int32, hit.shape, hit.ndim - 1)
  return jnp.min(jnp.where(hit, iota, hit.shape[-1]), axis=-1)


def block_argmax(x: jax.Array, block: int = 128) -> jax.Array:
  """i32[B]: the first index of each row's maximum of x: f32[B, V].

  Two levels (the block holding the maximum, then the index inside it): one pass over x instead
  of the ~8x slower variadic argmax reduction of XLA:CPU.
  """
  blocks = _blocks(x, block, -jnp.inf)
  block_max = blocks.max(axis=-1)
  top = block_max.max(axis=-1, keepdims=True)
  chosen = _first_index(block_max == top)
  row = jnp.take_along_axis(blocks, chosen[:, None, None], axis=1)[:, 0]
  return chosen * block + _first_index(row == top)


def _positive_range(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The first and last index with x > 0, per row."""
  iota = jax.lax.broadcasted_iota(jnp.int32, x.shape, x.ndim - 1)
  return (jnp.min(jnp.where(x > 0, iota, x.shape[-1] - 1), axis=-1),
          jnp.max(jnp.where(x > 0, iota, 0), axis=-1))


def _search(cdf: jax.Array, target: jax.Array, weights: jax.Array) -> jax.Array:
  """The i with cdf[i-1] <= target < cdf[i]; clipped to the positive weights against rounding."""
  index = jnp.sum(cdf <= target[:, None], axis=-1)
  first, last = _positive_range(weights)
  return jnp.clip(index, first, last)


def inverse_cdf(weights: jax.Array, uniform: jax.Array, block: int = 128) -> jax.Array:
  """Draws index i with probability weights[:, i] / sum(weights[:, i]) for each row.

  weights: f32[B, V] >= 0 (some positive); uniform: f32[B] in [0, 1). Two levels (blocks of
  ``block``, then inside the chosen block) replace a cumulative sum over the whole vocabulary;
  rounding can never pick a zero-weight index.
  """
  blocks = _blocks(weights, block, 0.0)
  block_mass = blocks.sum(axis=-1)
  block_cdf = jnp.cumsum(block_mass, axis=-1)
  target = uniform * block_cdf[:, -1]
  chosen = _search(block_cdf, target, block_mass)
  mass_before = (jnp.take_along_axis(block_cdf, chosen[:, None], axis=-1)[:, 0]
                 - jnp.take_along_axis(block_mass, chosen[:, None], axis=-1)[:, 0])
  row = jnp.take_along_axis(blocks, chosen[:, None, None], axis=1)[:, 0]
  inside = _search(jnp.cumsum(row, axis=-1), target - mass_before, row)
  return (chosen * block + inside).astype(jnp.int32)


def sample_logits(logits: jax.Array, key: jax.Array, temperature: jax.Array, top_p: jax.Array,
                  greedy: bool, top_k: int, use_top_p: bool) -> tuple[jax.Array, jax.Array]:
  """Draws one token per row; returns (i32[B] tokens, f32[B] log-probs, see module doc).

  logits: f32[B, V]; temperature, top_p: f32[] (dynamic, so changing them does not recompile).
  """
  scaled = logits if greedy else logits / temperature
  top = jnp.max(scaled, axis=-1, keepdims=True)
  weights = jnp.exp(scaled - top)
  log_total = jnp.log(jnp.sum(weights, axis=-1))
  if greedy:
    tokens = block_argmax(scaled)
  else:
    if top_k or use_top_p:
      kept = filter_logits(scaled, top_k, top_p if use_top_p else None) > -jnp.inf
      weights = jnp.where(kept, weights, 0.0)
    tokens = inverse_cdf(weights, jax.random.uniform(key, (logits.shape[0],), jnp.float32))
  picked = jnp.take_along_axis(scaled - top, tokens[:, None], axis=-1)[:, 0]
  return tokens, picked - log_total
