"""``generate``: batched sampling with a KV cache: one jitted prefill, then a jitted
``lax.while_loop`` decode that takes the sampler state donated, so the cache updates in place.

  out = generate(policy, ["prompt", ...], max_new_tokens=64, temperature=1.0, top_p=1.0, seed=0)
  out.texts, out.tokens, out.logprobs, out.truncated, out.lengths

* Prompts are left-padded; batch size, prompt length and ``max_new_tokens`` are rounded up to
  buckets (powers of two by default) so repeated calls reuse compiled code. ``trace_counts()`` and
  ``compile_count()`` let tests check that.
* Each row stops after emitting a stop id (EOS and the tokenizer's stop ids by default; the stop
  token is kept in ``tokens``/``lengths`` and dropped from ``texts``) or after ``max_new_tokens``
  (then ``truncated``). The loop ends when every row is done.
* ``logprobs`` are log-probabilities of the sampled tokens under ``log_softmax(logits /
  temperature)`` of the *unfiltered* logits (top-k/top-p change what can be drawn, not the
  reported log-probs), matching a learner that divides logits by the sampling temperature. Greedy
  decoding (``greedy=True`` or ``temperature=0``) reports ``log_softmax(logits)``.
* Sampling draws one uniform per row and inverts the CDF of the filtered distribution (two-level,
  ``choice.inverse_cdf``): exact, and on CPU ~20x cheaper than Gumbel noise over the vocabulary.
* Prompts that share a prefix (SPIRAL's template and game rules) are grouped by it
  (``prefixes.prefix_groups``): each group's prefix runs once, every row takes a copy of its
  group's cache and prefills only its own tail. ``prefixes.prompt_layout`` uses this when it runs fewer
  padded prefill tokens than the whole prompts; ``share_prefix=False`` turns it off. A
  ``prefix_table`` fixes the prefixes and padded sizes, so a run's calls share one program.
* Decoding attends only to the cache it has filled, in windows: the cache first holds the prompt
  and ``DECODE_WINDOW`` new tokens, and doubles its new-token room for each next window
  (``decode_windows``), so a step reads the keys and values of at most twice the tokens so far
  instead of the whole ``max_new_tokens`` budget. Each window is one compiled decode loop.
* With a mesh, the batch is split over the sampling rules' batch axes (``data`` x ``fsdp``) and
  parameters/KV heads over ``tensor`` (``parallel.mesh.SAMPLE_RULES``).
"""
from __future__ import annotations

import collections
import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from spiral_jax.model import transformer
from spiral_jax.model.policy import Policy
from spiral_jax.parallel import mesh as mesh_lib
from spiral_jax.sampling import prefixes
from spiral_jax.sampling.choice import sample_logits
from spiral_jax.sampling.prefixes import bucket

DECODE_WINDOW = 64  # new-token slots of the first decode window; each next window doubles them

_TRACES: collections.Counter = collections.Counter()
_COMPILES = [0]


def _count_compiles(event: str, duration: float, **kwargs: Any) -> None:
  del duration, kwargs
  if event == "/jax/core/compile/backend_compile_duration":
    _COMPILES[0] += 1


jax.monitoring.register_event_duration_secs_listener(_count_compiles)


def trace_counts() -> dict[str, int]:
  """How many times the prefill and decode functions were traced (each trace compiles once)."""
  return dict(_TRACES)


def compile_count() -> int:
  """XLA compilations in this process so far (all of JAX, not only the sampler)."""
  return _COMPILES[0]


@dataclasses.dataclass(frozen=True)
class SampleOutput:
  """texts:     list[str] decoded responses without the stop token (None without a tokenizer)
  tokens:    i32[B, max_new_tokens] sampled ids, pad_id after each row's end
  logprobs:  f32[B, max_new_tokens] log-probs of ``tokens`` (0 after the end)
  truncated: bool[B] the row hit max_new_tokens without a stop id
  lengths:   i32[B] tokens generated per row, the stop token included"""
  texts: list[str] | None
  tokens: np.ndarray
  logprobs: np.ndarray
  truncated: np.ndarray
  lengths: np.ndarray


@struct.dataclass
class SamplerState:
  """Everything the decode loop carries (donated between prefill and decode).

  tokens: i32[B, N] generated ids; logprobs: f32[B, N]; last: i32[B] the token to feed next;
  positions: i32[B] its RoPE position; cache: the KV cache; stopped: bool[B] emitted a stop id;
  lengths: i32[B]; step: i32[] columns filled; key: the PRNG key.
  """
  tokens: jax.Array
  logprobs: jax.Array
  last: jax.Array
  positions: jax.Array
  cache: transformer.KVCache
  stopped: jax.Array
  lengths: jax.Array
  step: jax.Array
  key: jax.Array


@dataclasses.dataclass(frozen=True)
class _Static:
  """Hashable settings that change the compiled code."""
  greedy: bool
  top_k: int
  use_top_p: bool
  out_len: int
  cache_len: int
  mesh: Mesh | None
  rules: mesh_lib.Rules


def _constrain(tree: Any, static: _Static, names: tuple[str | None, ...]) -> Any:
  if static.mesh is None:
    return tree
  def one(x):
    spec = mesh_lib.logical_to_spec(names[:x.ndim], static.rules, static.mesh, x.shape)
    return jax.lax.with_sharding_constraint(x, NamedSharding(static.mesh, spec))
  return jax.tree.map(one, tree)


def _constrain_cache(cache: transformer.KVCache, static: _Static) -> transformer.KVCache:
  return cache.replace(k=_constrain(cache.k, static, ("batch", "kv_heads", None, None)),
                       v=_constrain(cache.v, static, ("batch", "kv_heads", None, None)),
                       mask=_constrain(cache.mask, static, ("batch", None)))


def _is_stop(tokens: jax.Array, stop_ids: jax.Array) -> jax.Array:
  return jnp.any(tokens[:, None] == stop_ids[None, :], axis=-1)


def _record(state: SamplerState, tokens: jax.Array, logprobs: jax.Array, stop_ids: jax.Array,
            pad_id: jax.Array) -> SamplerState:
  """Writes this step's tokens into column ``step`` (pad for rows already stopped)."""
  active = ~state.stopped
  column = jnp.where(active, tokens, pad_id)[:, None]
  new_logprobs = jnp.where(active, logprobs, 0.0)[:, None]
  return state.replace(
      tokens=jax.lax.dynamic_update_slice(state.tokens, column, (0, state.step)),
      logprobs=jax.lax.dynamic_update_slice(state.logprobs, new_logprobs, (0, state.step)),
      last=jnp.where(active, tokens, pad_id),
      stopped=state.stopped | _is_stop(tokens, stop_ids),
      lengths=state.lengths + active.astype(jnp.int32),
      step=state.step + 1)


def _sampling_model(graphdef: nnx.GraphDef, params: nnx.State) -> tuple[Any, jax.Array]:
  """The model with weights cast once to the compute dtype, and its output projection.

  Sampling never needs the float32 master weights, so casting here (once per call) keeps the
  decode loop from re-reading them. On CPU the projection is also materialised as [d, V]: XLA:CPU
  multiplies by a transposed (tied) embedding table up to 4x slower.
  """
  dtype = nnx.merge(graphdef, params).config.jnp_dtype
  params = jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x,
                        params)
  model = nnx.merge(graphdef, params)
  unembedding = model.unembedding()
  if jax.default_backend() == "cpu":
    unembedding = jax.lax.optimization_barrier(unembedding)
  return model, unembedding


@functools.partial(jax.jit, static_argnames=("graphdef", "static"))
def _prefill(graphdef, params, prompt, prompt_mask, row_valid, stop_ids, pad_id, temperature,
             top_p, key, prefix=None, prefix_mask=None, row_prefix=None, *,
             static: _Static) -> SamplerState:
  """Runs the prompts i32[B, P] through the model, filling the cache, and samples token 0.

  With ``prefix`` i32[G, Q] (left-padded, ``prefix_mask``), ``prompt`` holds the rows' tails: each
  group's prefix runs once, row b gets group ``row_prefix[b]``'s cache, and its tail continues it.
  """
  _TRACES["prefill"] += 1
  model, unembedding = _sampling_model(graphdef, params)
  batch = prompt.shape[0]
  positions = transformer.positions_from_mask(prompt_mask)
  if prefix is None:
    cache = transformer.init_cache(model.config, batch, static.cache_len)
  else:
    cache = transformer.init_cache(model.config, prefix.shape[0], static.cache_len)
    _, cache = model(prefix, transformer.positions_from_mask(prefix_mask), prefix_mask, cache)
    cache = jax.tree.map(lambda x: x[row_prefix] if x.ndim else x, cache)
    shared = jnp.sum(prefix_mask, axis=-1, dtype=jnp.int32)[row_prefix]
    positions = positions + shared[:, None]
  cache = _constrain_cache(cache, static)
  hidden, cache = model(prompt, positions, prompt_mask, cache)
  logits = model.logits(hidden[:, -1], unembedding)
  tokens, logprobs = sample_logits(logits, jax.random.fold_in(key, 0), temperature, top_p,
                                   static.greedy, static.top_k, static.use_top_p)
  state = SamplerState(
      tokens=jnp.full((batch, static.out_len), pad_id, jnp.int32),
      logprobs=jnp.zeros((batch, static.out_len), jnp.float32),
      last=tokens, positions=positions[:, -1] + 1, cache=_constrain_cache(cache, static),
      stopped=~row_valid, lengths=jnp.zeros((batch,), jnp.int32),
      step=jnp.zeros((), jnp.int32), key=key)
  return _record(state, tokens, logprobs, stop_ids, pad_id)


@functools.partial(jax.jit, static_argnames=("graphdef", "static"), donate_argnames=("state",))
def _decode(graphdef, params, state: SamplerState, stop_ids, pad_id, temperature, top_p,
            max_new_tokens, *, static: _Static) -> SamplerState:
  """Decodes one token per step until every row stopped or ``max_new_tokens`` columns are full
  (the current window's limit: the cache holds ``static.cache_len`` slots)."""
  _TRACES["decode"] += 1
  model, unembedding = _sampling_model(graphdef, params)

  def keep_going(state: SamplerState) -> jax.Array:
    return (state.step < max_new_tokens) & ~jnp.all(state.stopped)

  def one_step(state: SamplerState) -> SamplerState:
    ones = jnp.ones((state.last.shape[0], 1), bool)
    hidden, cache = model(state.last[:, None], state.positions[:, None], ones, state.cache)
    logits = model.logits(hidden[:, 0], unembedding)
    tokens, logprobs = sample_logits(logits, jax.random.fold_in(state.key, state.step),
                                     temperature, top_p, static.greedy, static.top_k,
                                     static.use_top_p)
    state = state.replace(cache=_constrain_cache(cache, static), positions=state.positions + 1)
    return _record(state, tokens, logprobs, stop_ids, pad_id)

  return jax.lax.while_loop(keep_going, one_step, state)


@functools.partial(jax.jit, static_argnames=("static",))
def _extend(state: SamplerState, *, static: _Static) -> SamplerState:
  """The state with its cache grown to ``static.cache_len`` slots for the next decode window."""
  cache = transformer.extend_cache(state.cache, static.cache_len)
  return state.replace(cache=_constrain_cache(cache, static))


def decode_windows(out_len: int) -> list[int]:
  """The new-token room of each decode window, the last one ``out_len``: ``DECODE_WINDOW``,
  then doubling (out_len 32 -> [32]; 128 -> [64, 128]; 4096 -> [64, 128, ..., 4096])."""
  ends, end = [], DECODE_WINDOW
  while end < out_len:
    ends.append(end)
    end *= 2
  return ends + [out_len]


def _to_host(x: jax.Array) -> np.ndarray:
  """The global value of an output on every process (multi-host arrays are gathered first)."""
  if not x.is_fully_addressable:
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(jax.device_get(x))


def _encode(policy: Policy, prompts: Sequence[Any]) -> list[list[int]]:
  if not prompts:
    raise ValueError("generate: prompts is empty; pass a list of strings or token-id lists")
  if all(isinstance(p, str) for p in prompts):
    if policy.tokenizer is None:
      raise ValueError("generate: text prompts need a policy with a tokenizer; pass token ids")
    rows = policy.tokenizer.encode_batch(list(prompts))
  else:
    rows = [[int(t) for t in p] for p in prompts]
  for i, row in enumerate(rows):
    if not row:
      raise ValueError(f"generate: prompt {i} is empty; every prompt needs at least one token")
    if min(row) < 0 or max(row) >= policy.config.vocab_size:
      raise ValueError(f"generate: prompt {i} has token ids outside "
                       f"[0, {policy.config.vocab_size})")
  return rows


def _stop_array(policy: Policy, stop_ids: Sequence[int] | None) -> np.ndarray:
  if stop_ids is None:
    tokenizer = policy.tokenizer
    stop_ids = () if tokenizer is None else (tokenizer.eos_id, *tokenizer.stop_ids)
  stops = sorted(set(int(s) for s in stop_ids))
  size = bucket(max(len(stops), 1), minimum=4)
  return np.array(stops + [-1] * (size - len(stops)), np.int32)


def generate(policy: Policy, prompts: Sequence[str] | Sequence[Sequence[int]],
             max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
             greedy: bool = False, seed: int = 0, stop_ids: Sequence[int] | None = None,
             mesh: Mesh | None = None, rules: mesh_lib.Rules = mesh_lib.SAMPLE_RULES,
             prompt_buckets: Sequence[int] | None = None,
             batch_buckets: Sequence[int] | None = None,
             share_prefix: bool = True,
             prefix_table: prefixes.PrefixTable | None = None) -> SampleOutput:
  """Samples up to ``max_new_tokens`` tokens for each prompt (see the module docstring).

  prompts: strings (encoded with the policy's tokenizer, no template applied) or token-id lists.
  temperature 0 means greedy. ``stop_ids`` default: the tokenizer's EOS and stop ids (none
  without a tokenizer). ``mesh`` default: the policy's mesh, else one device. ``share_prefix``:
  run prompts' shared prefixes once (see the module docstring; the results are the same up to
  float rounding); ``prefix_table`` fixes the prefixes and padded sizes when the prompts fit it.
  """
  if max_new_tokens < 1:
    raise ValueError(f"generate: max_new_tokens must be >= 1, got {max_new_tokens}")
  if temperature < 0:
    raise ValueError(f"generate: temperature must be >= 0 (0 = greedy), got {temperature}")
  if not 0 < top_p <= 1:
    raise ValueError(f"generate: top_p must be in (0, 1], got {top_p}")
  if top_k < 0 or top_k > policy.config.vocab_size:
    raise ValueError(f"generate: top_k must be in [0, vocab_size], got {top_k} (0 disables it)")
  greedy = greedy or temperature == 0
  rows = _encode(policy, prompts)
  longest = max(len(r) for r in rows)
  if longest + max_new_tokens > policy.config.max_seq_len:
    raise ValueError(f"generate: prompt ({longest}) + max_new_tokens ({max_new_tokens}) exceeds "
                     f"max_seq_len {policy.config.max_seq_len}; shorten one of them")
  mesh = mesh or policy.mesh
  divisor = 1 if mesh is None else mesh_lib.batch_divisor(mesh, rules)
  batch = bucket(len(rows), batch_buckets, multiple_of=divisor)
  out_len = bucket(max_new_tokens, minimum=16)
  windows = decode_windows(out_len)
  pad_id = policy.pad_id
  layout = prefixes.prompt_layout(rows, batch, pad_id, prompt_buckets, share_prefix,
                                  prefix_table)
  row_valid = np.arange(batch) < len(rows)
  static = _Static(greedy=greedy, top_k=int(top_k), use_top_p=top_p < 1.0, out_len=out_len,
                   cache_len=layout.slots + windows[0], mesh=mesh, rules=rules)
  params = policy.params
  inputs = (layout.tokens, layout.mask, row_valid)
  shared = {}
  if layout.prefix is not None:
    shared = dict(prefix=layout.prefix, prefix_mask=layout.prefix_mask,
                  row_prefix=layout.row_prefix)
  if mesh is not None:
    params = mesh_lib.shard_params(params, mesh, rules)
    # from the global host arrays every process holds: each process fills its own shards
    def put(x, spec):
      return jax.make_array_from_callback(x.shape, NamedSharding(mesh, spec), lambda i: x[i])
    inputs = tuple(put(x, mesh_lib.batch_spec(rules, x.ndim)) for x in inputs)
    shared = {name: put(x, mesh_lib.batch_spec(rules, 1) if name == "row_prefix" else P())
              for name, x in shared.items()}  # prefixes are few: every device holds them
  scalars = dict(stop_ids=jnp.asarray(_stop_array(policy, stop_ids)),
                 pad_id=jnp.asarray(pad_id, jnp.int32),
                 temperature=jnp.asarray(temperature if not greedy else 1.0, jnp.float32),
                 top_p=jnp.asarray(top_p, jnp.float32))
  state = _prefill(policy.graphdef, params, *inputs, key=jax.random.key(seed), static=static,
                   **scalars, **shared)
  for i, end in enumerate(windows):  # every window runs, so each call compiles the same programs
    if i:
      static = dataclasses.replace(static, cache_len=layout.slots + end)
      state = _extend(state, static=static)
    state = _decode(policy.graphdef, params, state,
                    max_new_tokens=jnp.asarray(min(max_new_tokens, end), jnp.int32),
                    static=static, **scalars)
  out_tokens, logprobs, stopped, lengths = (
      _to_host(x) for x in (state.tokens, state.logprobs, state.stopped, state.lengths))
  count = len(rows)
  out_tokens = np.asarray(out_tokens[:count, :max_new_tokens])
  lengths = np.asarray(lengths[:count])
  stopped = np.asarray(stopped[:count])
  texts = None
  if policy.tokenizer is not None:
    texts = [policy.tokenizer.decode(row[:n - int(s)].tolist())
             for row, n, s in zip(out_tokens, lengths, stopped)]
  return SampleOutput(texts=texts, tokens=out_tokens,
                      logprobs=np.asarray(logprobs[:count, :max_new_tokens]),
                      truncated=~stopped, lengths=lengths)
