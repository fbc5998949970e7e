"""The decoder (Qwen3 / Qwen2 / Llama) in Flax NNX, used functionally.

Build once, ``nnx.split`` once into ``(graphdef, params)``; every jitted function takes
``(graphdef, params, ...)`` and ``nnx.merge``s inside. Module and parameter names mirror Hugging
Face's (``layers.0.self_attn.q_proj``) so checkpoint conversion is a table of transposes. Kernels
are stored ``[in, out]`` and every parameter carries logical axis names (``out_sharding``
metadata) that ``parallel.mesh`` rules map onto the mesh.

Batches are left-padded: ``mask`` marks real tokens and ``positions`` counts them per row, so row
b's first real token has position 0 wherever it sits. The KV cache is an explicit struct; a forward
with a cache writes its keys/values at ``cache.index`` and attends to every valid slot up to its
own.
"""
from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from spiral_jax.model.config import ModelConfig

_NEG_INF = -1e30  # finite, so a query with no visible key (a pad row) gets a uniform, not NaN, row
_INIT_STD = 0.02


def _param(rngs: nnx.Rngs | None, shape: tuple[int, ...], axes: tuple[str | None, ...],
           dtype: jnp.dtype, value: float | None = None) -> nnx.Param:
  if value is not None:
    array = jnp.full(shape, value, dtype)
  else:
    array = _INIT_STD * jax.random.normal(rngs.params(), shape, dtype)
  return nnx.Param(array, out_sharding=axes, eager_sharding=False)


def dense(x: jax.Array, kernel: jax.Array, dtype: Any) -> jax.Array:
  """f32[..., out]: ``x @ kernel`` for x: [..., in] and kernel: [in, out], both cast to ``dtype``
  and accumulated in float32.

  The activations are flattened to one [N, in] matrix first: XLA:CPU runs the backward of a
  [B, T, in] dot about 2x slower than of the same 2-D dot (measured train step 4.9 s -> 3.5 s,
  ``benchmarks/learner.py``). The reshape merges leading axes only, so a batch sharding carries
  over to the merged axis.
  """
  flat = x.reshape(-1, x.shape[-1]).astype(dtype)
  # f32 accumulation: more exact, and XLA:CPU's bf16 dot with a bf16 result is 4x slower
  y = jnp.dot(flat, kernel.astype(dtype), preferred_element_type=jnp.float32)
  return y.reshape(*x.shape[:-1], kernel.shape[-1])


class Linear(nnx.Module):
  """``y = x @ kernel (+ bias)``, kernel ``[in, out]``, computed in the config's compute dtype."""

  def __init__(self, d_in: int, d_out: int, axes: tuple[str | None, str | None], bias: bool,
               config: ModelConfig, rngs: nnx.Rngs):
    self.dtype = config.jnp_dtype
    self.kernel = _param(rngs, (d_in, d_out), axes, config.jnp_param_dtype)
    self.bias = _param(rngs, (d_out,), (axes[1],), config.jnp_param_dtype, 0.0) if bias else None

  def __call__(self, x: jax.Array, out_dtype: Any = None) -> jax.Array:
    """Inputs in the compute dtype, float32 accumulation, output in ``out_dtype`` (default: the
    compute dtype). Callers that do more elementwise work ask for float32 and round once."""
    y = dense(x, self.kernel.get_value(), self.dtype)
    if self.bias is not None:
      y = y + self.bias.get_value().astype(jnp.float32)
    return y.astype(out_dtype or self.dtype)


class RMSNorm(nnx.Module):
  """Root-mean-square norm, statistics in float32 as in Hugging Face."""

  def __init__(self, dim: int, axis_name: str, config: ModelConfig):
    self.eps = config.rms_eps
    self.dtype = config.jnp_dtype
    self.weight = _param(None, (dim,), (axis_name,), config.jnp_param_dtype, 1.0)

  def __call__(self, x: jax.Array, out_dtype: Any = None) -> jax.Array:
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    # scaled in float32 and rounded once (XLA:CPU emulates every bf16 op with two converts)
    return (normed * self.weight.get_value().astype(jnp.float32)).astype(out_dtype or self.dtype)


def rope_inv_freq(config: ModelConfig) -> np.ndarray:
  """f32[head_dim / 2] inverse frequencies, with Llama-3 scaling when configured."""
  dim = config.head_dim
  inv = 1.0 / (np.float32(config.rope_theta) ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
  scaling = config.rope_scaling
  if scaling is None:
    return inv.astype(np.float32)
  original = scaling.original_max_position_embeddings
  low_wavelen = original / scaling.low_freq_factor
  high_wavelen = original / scaling.high_freq_factor
  wavelen = 2 * math.pi / inv
  scaled = np.where(wavelen > low_wavelen, inv / scaling.factor, inv)
  smooth = (original / wavelen - scaling.low_freq_factor) / (
      scaling.high_freq_factor - scaling.low_freq_factor)
  smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
  medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
  return np.where(medium, smoothed, scaled).astype(np.float32)


def rope_tables(config: ModelConfig, positions: jax.Array) -> tuple[jax.Array, jax.Array]:
  """cos, sin: f32[B, T, head_dim] for i32[B, T] positions (the rotate-half layout of HF)."""
  angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(rope_inv_freq(config))
  angles = jnp.concatenate([angles, angles], axis=-1)
  return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
  """Rotates x: dtype[B, T, heads, head_dim] by per-position angles (computed in float32)."""
  x32 = x.astype(jnp.float32)
  half = x.shape[-1] // 2
  rotated = jnp.concatenate([-x32[..., half:], x32[..., :half]], axis=-1)
  return (x32 * cos[:, :, None] + rotated * sin[:, :, None]).astype(x.dtype)


@struct.dataclass
class KVCache:
  """Keys and values of every layer, written in place during decoding.

  k:     one dtype[B, kv_heads, head_dim, S] per layer (keys stored transposed, see ``attend``)
  v:     one dtype[B, kv_heads, S, head_dim] per layer (separate buffers update in place)
  mask:  bool[B, S] slot holds a real (non-pad) token
  index: i32[]      next slot to write; all rows share it (batches are left-padded)
  """
  k: tuple[jax.Array, ...]
  v: tuple[jax.Array, ...]
  mask: jax.Array
  index: jax.Array

  @property
  def size(self) -> int:
    return self.mask.shape[1]


def cache_dtype(config: ModelConfig) -> jnp.dtype:
  """The compute dtype, except float32 on CPU, where XLA writes one slot of a 16-bit cache ~25x
  slower than of a float32 one (it round-trips the whole buffer through float32)."""
  return jnp.dtype(jnp.float32) if jax.default_backend() == "cpu" else config.jnp_dtype


def init_cache(config: ModelConfig, batch: int, size: int, dtype: Any = None) -> KVCache:
  """An empty cache of ``size`` slots (default dtype: ``cache_dtype(config)``)."""
  dtype = cache_dtype(config) if dtype is None else dtype
  k_shape = (batch, config.num_kv_heads, config.head_dim, size)
  v_shape = (batch, config.num_kv_heads, size, config.head_dim)
  return KVCache(k=tuple(jnp.zeros(k_shape, dtype) for _ in range(config.num_layers)),
                 v=tuple(jnp.zeros(v_shape, dtype) for _ in range(config.num_layers)),
                 mask=jnp.zeros((batch, size), bool), index=jnp.zeros((), jnp.int32))


def extend_cache(cache: KVCache, size: int) -> KVCache:
  """``cache`` with empty (masked) slots appended up to ``size`` slots; its ``index`` is kept."""
  extra = size - cache.size
  if extra < 0:
    raise ValueError(f"extend_cache: size {size} is below the cache's {cache.size} slots")
  return cache.replace(k=tuple(jnp.pad(k, ((0, 0), (0, 0), (0, 0), (0, extra))) for k in cache.k),
                       v=tuple(jnp.pad(v, ((0, 0), (0, 0), (0, extra), (0, 0))) for v in cache.v),
                       mask=jnp.pad(cache.mask, ((0, 0), (0, extra))))


def attend(q: jax.Array, k: jax.Array, v: jax.Array, visible: jax.Array) -> jax.Array:
  """Grouped-query attention without repeating k/v.

  q: [B, T, H, D]; k: [B, KV, D, S] (keys transposed); v: [B, KV, S, D]; visible: bool[B, T, S].
  Returns [B, T, H * D]. With these layouts both products are plain batched matmuls, so decoding
  never transposes the cache (an NT-layout q.k product cost 4x more on CPU).
  """
  batch, length, heads, dim = q.shape
  kv_heads, slots = k.shape[1], k.shape[3]
  groups = heads // kv_heads
  q = q.reshape(batch, length, kv_heads, groups, dim).transpose(0, 2, 3, 1, 4)
  q = q.reshape(batch, kv_heads, groups * length, dim)
  scores = jnp.einsum("bkqd,bkds->bkqs", q, k, preferred_element_type=jnp.float32)
  scores = scores.reshape(batch, kv_heads, groups, length, slots)
  scores = jnp.where(visible[:, None, None], scores * (dim ** -0.5), _NEG_INF)
  probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
  probs = probs.reshape(batch, kv_heads, groups * length, slots)
  out = jnp.einsum("bkqs,bksd->bkqd", probs, v, preferred_element_type=jnp.float32).astype(v.dtype)
  out = out.reshape(batch, kv_heads, groups, length, dim).transpose(0, 3, 1, 2, 4)
  return out.reshape(batch, length, heads * dim)


class Attention(nnx.Module):
  def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
    self.config = config
    d, hd = config.d_model, config.head_dim
    bias = config.qkv_bias
    self.q_proj = Linear(d, config.num_heads * hd, ("embed", "q_heads"), bias, config, rngs)
    self.k_proj = Linear(d, config.num_kv_heads * hd, ("embed", "kv_heads"), bias, config, rngs)
    self.v_proj = Linear(d, config.num_kv_heads * hd, ("embed", "kv_heads"), bias, config, rngs)
    self.o_proj = Linear(config.num_heads * hd, d, ("q_heads", "embed"), False, config, rngs)
    if config.qk_norm:
      self.q_norm = RMSNorm(hd, "head_dim", config)
      self.k_norm = RMSNorm(hd, "head_dim", config)
    else:
      self.q_norm = self.k_norm = None

  def __call__(self, x, cos, sin, visible, layer_cache=None, index=None):
    """x: [B, T, d]; layer_cache: (k [B, KV, D, S], v [B, KV, S, D]) or None.

    Returns (out [B, T, d], the updated layer cache or None)."""
    c = self.config
    batch, length, _ = x.shape
    f32 = jnp.float32  # q and k stay float32 through norm and RoPE, rounded once below
    q = self.q_proj(x, f32).reshape(batch, length, c.num_heads, c.head_dim)
    k = self.k_proj(x, f32).reshape(batch, length, c.num_kv_heads, c.head_dim)
    v = self.v_proj(x).reshape(batch, length, c.num_kv_heads, c.head_dim)
    if self.q_norm is not None:
      q, k = self.q_norm(q, f32), self.k_norm(k, f32)
    q = apply_rope(q, cos, sin).astype(x.dtype)
    k = apply_rope(k, cos, sin).astype(x.dtype)
    k, v = k.transpose(0, 2, 3, 1), v.transpose(0, 2, 1, 3)  # the cache layouts (see attend)
    if layer_cache is not None:
      cache_k, cache_v = layer_cache
      k = jax.lax.dynamic_update_slice(cache_k, k.astype(cache_k.dtype), (0, 0, 0, index))
      v = jax.lax.dynamic_update_slice(cache_v, v.astype(cache_v.dtype), (0, 0, index, 0))
      layer_cache = (k, v)
    # attention runs in the cache's dtype: casting q is cheaper than casting the whole cache
    out = attend(q.astype(k.dtype), k, v, visible).astype(x.dtype)
    return self.o_proj(out), layer_cache


class MLP(nnx.Module):
  def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
    d, m = config.d_model, config.mlp_dim
    self.gate_proj = Linear(d, m, ("embed", "mlp"), False, config, rngs)
    self.up_proj = Linear(d, m, ("embed", "mlp"), False, config, rngs)
    self.down_proj = Linear(m, d, ("mlp", "embed"), False, config, rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    gate, up = self.gate_proj(x, jnp.float32), self.up_proj(x, jnp.float32)
    return self.down_proj(jax.nn.silu(gate) * up)  # gated in float32, rounded once


class Block(nnx.Module):
  def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
    self.input_layernorm = RMSNorm(config.d_model, "norm", config)
    self.self_attn = Attention(config, rngs)
    self.post_attention_layernorm = RMSNorm(config.d_model, "norm", config)
    self.mlp = MLP(config, rngs)

  def __call__(self, x, cos, sin, visible, layer_cache=None, index=None):
    attn, layer_cache = self.self_attn(self.input_layernorm(x), cos, sin, visible, layer_cache,
                                       index)
    x = x + attn
    return x + self.mlp(self.post_attention_layernorm(x)), layer_cache


class Transformer(nnx.Module):
  """The decoder. ``__call__`` returns hidden states; ``logits`` projects them onto the vocab."""

  def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
    self.config = config
    self.embed_tokens = _param(rngs, (config.vocab_size, config.d_model), ("vocab", "embed"),
                               config.jnp_param_dtype)
    self.layers = nnx.List([Block(config, rngs) for _ in range(config.num_layers)])
    self.norm = RMSNorm(config.d_model, "norm", config)
    self.lm_head = (None if config.tie_embeddings else
                    Linear(config.d_model, config.vocab_size, ("embed", "vocab"), False, config,
                           rngs))

  def __call__(self, tokens: jax.Array, positions: jax.Array, mask: jax.Array,
               cache: KVCache | None = None) -> tuple[jax.Array, KVCache | None]:
    """Hidden states dtype[B, T, d] after the final norm, and the updated cache.

    tokens, positions: i32[B, T]; mask: bool[B, T] (False on left padding).
    """
    c = self.config
    length = tokens.shape[1]
    x = jnp.take(self.embed_tokens.get_value(), tokens, axis=0).astype(c.jnp_dtype)
    cos, sin = rope_tables(c, positions)
    if cache is None:
      causal = jnp.tril(jnp.ones((length, length), bool))
      visible = causal[None] & mask[:, None, :]
      index = None
    else:
      index = cache.index
      slot_mask = jax.lax.dynamic_update_slice(cache.mask, mask, (0, index))
      slots = jnp.arange(cache.size)
      causal = slots[None, :] <= index + jnp.arange(length)[:, None]
      visible = causal[None] & slot_mask[:, None, :]
    new_k, new_v = [], []
    for i, layer in enumerate(self.layers):
      layer_cache = None if cache is None else (cache.k[i], cache.v[i])
      x, layer_cache = layer(x, cos, sin, visible, layer_cache, index)
      if cache is not None:
        new_k.append(layer_cache[0])
        new_v.append(layer_cache[1])
    if cache is not None:
      cache = KVCache(k=tuple(new_k), v=tuple(new_v), mask=slot_mask, index=index + length)
    return self.norm(x), cache

  def unembedding(self) -> jax.Array:
    """The output projection dtype[d, V] (the transposed embedding table when tied)."""
    if self.lm_head is None:
      return self.embed_tokens.get_value().T
    return self.lm_head.kernel.get_value()

  def logits(self, hidden: jax.Array, unembedding: jax.Array | None = None) -> jax.Array:
    """f32[..., V] from hidden dtype[..., d]; ``unembedding`` overrides ``self.unembedding()``
    (the sampler passes one materialised before its decode loop)."""
    unembedding = self.unembedding() if unembedding is None else unembedding
    return dense(hidden, unembedding, self.config.jnp_dtype)


def positions_from_mask(mask: jax.Array) -> jax.Array:
  """i32[B, T]: the index of each token among its row's real tokens (0 on left padding)."""
  return jnp.maximum(jnp.cumsum(mask.astype(jnp.int32), axis=1) - 1, 0)


def create(config: ModelConfig, key: jax.Array) -> tuple[nnx.GraphDef, nnx.State]:
  """A randomly initialised model, split into ``(graphdef, params)``."""
  return nnx.split(Transformer(config, nnx.Rngs(params=key)))


def abstract(config: ModelConfig) -> tuple[nnx.GraphDef, nnx.State]:
  """``(graphdef, params)`` with ``jax.ShapeDtypeStruct`` leaves: shapes without memory."""
  model = nnx.eval_shape(lambda: Transformer(config, nnx.Rngs(params=0)))
  return nnx.split(model)


def forward(graphdef: nnx.GraphDef, params: nnx.State, tokens: jax.Array, positions: jax.Array,
            mask: jax.Array, cache: KVCache | None = None) -> tuple[jax.Array, KVCache | None]:
  """Logits f32[B, T, V] and the updated cache (None without one).

  tokens, positions: i32[B, T]; mask: bool[B, T] marks real tokens. Pad rows' logits are junk.
  """
  model = nnx.merge(graphdef, params)
  hidden, cache = model(tokens, positions, mask, cache)
  return model.logits(hidden), cache


def token_logprobs(graphdef: nnx.GraphDef, params: nnx.State, tokens: jax.Array, mask: jax.Array,
                   temperature: float | jax.Array = 1.0, chunk_size: int = 256) -> jax.Array:
  """f32[B, T]: log p(tokens[:, t] | tokens[:, <t]) under logits / temperature; 0 at t = 0 and pads.

  The vocabulary projection runs ``chunk_size`` positions at a time under ``jax.checkpoint``, so
  neither the forward nor the backward pass holds the whole f32[B, T, V] logits.
  tokens: i32[B, T]; mask: bool[B, T] (left or right padding).
  """
  model = nnx.merge(graphdef, params)
  hidden, _ = model(tokens, positions_from_mask(mask), mask)
  batch, length = tokens.shape
  steps = length - 1
  chunk = max(1, min(chunk_size, steps))
  num_chunks = -(-steps // chunk)
  pad = num_chunks * chunk - steps
  h = jnp.pad(hidden[:, :-1], ((0, 0), (0, pad), (0, 0)))
  targets = jnp.pad(tokens[:, 1:], ((0, 0), (0, pad)))
  h = h.reshape(batch, num_chunks, chunk, -1).swapaxes(0, 1)
  targets = targets.reshape(batch, num_chunks, chunk).swapaxes(0, 1)
  unembedding = model.unembedding()
  dtype = model.config.jnp_dtype

  @jax.checkpoint
  def chunk_logprobs(args):
    h_chunk, target_chunk = args
    logits = dense(h_chunk, unembedding, dtype) / temperature
    picked = jnp.take_along_axis(logits, target_chunk[..., None], axis=-1)[..., 0]
    return picked - jax.nn.logsumexp(logits, axis=-1)

  logprobs = jax.lax.map(chunk_logprobs, (h, targets))
  logprobs = logprobs.swapaxes(0, 1).reshape(batch, -1)[:, :steps]
  logprobs = jnp.where(mask[:, 1:] & mask[:, :-1], logprobs, 0.0)
  return jnp.concatenate([jnp.zeros((batch, 1), jnp.float32), logprobs], axis=1)
