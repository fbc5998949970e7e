"""The learner's log-probs with shared prompt prefixes computed once per group of samples.

SPIRAL prompts repeat the same template and game rules; only a short tail (seat, cards, history)
differs. ``batching.train_batch`` groups the samples by shared prompt prefix; here each group's
prefix runs once into a KV cache, every row gathers its group's cache, and then runs only its own
tail and response. Gradients flow back through the gather, so this is exactly the full-sequence
computation for a fraction of the tokens (a single-round Kuhn prompt is ~340 tokens, a tail ~30).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from spiral_jax.model import transformer


def _picked_and_entropy(logits: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
  """log p(target) and the entropy, both f32[B, T], from logits f32[B, T, V], targets i32[B, T].

  ``logit[target] - logsumexp(logits)`` on [B * T, V] rows: the backward is one softmax, with no
  full ``log_softmax`` array and its backward (measured train step 3.5 s -> 2.8 s). The entropy
  is only logged (``train_step`` reports it under ``stop_gradient``), so it is computed without a
  gradient path.
  """
  batch, length, vocab = logits.shape
  flat = logits.reshape(batch * length, vocab)
  target = targets.reshape(batch * length, 1)
  log_total = jax.nn.logsumexp(flat, axis=-1)
  picked = jnp.take_along_axis(flat, target, axis=-1)[:, 0] - log_total
  fixed, fixed_total = jax.lax.stop_gradient(flat), jax.lax.stop_gradient(log_total)
  logp_all = fixed - fixed_total[:, None]
  entropy = -(jnp.exp(logp_all) * logp_all).sum(-1)
  return picked.reshape(batch, length), entropy.reshape(batch, length)


def make_logprob_fn(graphdef: nnx.GraphDef, temperature: float = 1.0):
  """The learner's ``LogprobFn`` (see ``train_step.TrainBatch`` for the shapes).

  ``(params, prefix i32[G, P], prefix_mask bool[G, P], row_prefix i32[B], tokens i32[B, L],
  mask bool[B, L]) -> (logp, entropy)``, both f32[B, L]. Prefixes are left-padded; each row's
  ``tokens`` continue its group's prefix and are right-padded. Entry t scores token t given the
  prefix and tokens < t under logits / temperature; entry 0 and pads are 0, so every row's tokens
  start with at least one prompt token. The entropy carries no gradient (it is a metric).
  """

  def logprob_fn(params, prefix, prefix_mask, row_prefix, tokens, mask):
    model = nnx.merge(graphdef, params)
    batch, length = tokens.shape
    groups, p = prefix.shape
    prefix_len = prefix_mask.sum(-1).astype(jnp.int32)
    positions = prefix_len[row_prefix][:, None] + jnp.arange(length, dtype=jnp.int32)[None]
    if p:
      cache = transformer.init_cache(model.config, groups, p + length)
      _, cache = model(prefix, transformer.positions_from_mask(prefix_mask), prefix_mask, cache)
      cache = jax.tree.map(lambda x: x[row_prefix] if x.ndim else x, cache)
      hidden, _ = model(tokens, positions, mask, cache)
    else:
      hidden, _ = model(tokens, positions, mask)
    picked, entropy = _picked_and_entropy(model.logits(hidden[:, :-1]) / temperature,
                                          tokens[:, 1:])
    real = mask[:, 1:] & mask[:, :-1]
    zero = jnp.zeros((batch, 1), jnp.float32)
    return (jnp.concatenate([zero, jnp.where(real, picked, 0.0)], 1),
            jnp.concatenate([zero, jnp.where(real, entropy, 0.0)], 1))

  return logprob_fn
