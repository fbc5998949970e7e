"""``Policy``: a model config, its split NNX module ``(graphdef, params)`` and its tokenizer.

  policy = Policy.from_hf("/path/to/Qwen3-4B-Base", mesh=mesh)   # local Hugging Face folder
  policy = Policy.init(preset("tiny", vocab_size=tok.vocab_size), tok, jax.random.key(0))
  policy.logits(token_ids)                                       # f32[B, T, V]
  export_hf(policy, "/tmp/out")                                  # transformers / vLLM load this

A ``Policy`` is a pytree (only ``params`` are leaves), so it can cross ``jax.jit`` boundaries.
"""
from __future__ import annotations

import functools
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct
from jax.sharding import Mesh

from spiral_jax.errors import InputError
from spiral_jax.model import hf, transformer
from spiral_jax.model.config import ModelConfig
from spiral_jax.parallel import mesh as mesh_lib


@struct.dataclass
class Policy:
  """config: static hyper-parameters; graphdef + params: the split NNX ``Transformer``;
  tokenizer: a ``spiral_jax.text.tokenizer.Tokenizer`` (or None for token-id-only use);
  mesh: where ``params`` live (None: one device)."""
  config: ModelConfig = struct.field(pytree_node=False)
  graphdef: nnx.GraphDef = struct.field(pytree_node=False)
  params: nnx.State
  tokenizer: Any = struct.field(pytree_node=False, default=None)
  mesh: Mesh | None = struct.field(pytree_node=False, default=None)

  @classmethod
  def init(cls, config: ModelConfig, tokenizer: Any = None, key: jax.Array | int = 0,
           mesh: Mesh | None = None, rules: mesh_lib.Rules = mesh_lib.TRAIN_RULES) -> "Policy":
    """A randomly initialised policy, created directly on its shardings when a mesh is given."""
    if tokenizer is not None and tokenizer.vocab_size > config.vocab_size:
      raise InputError(f"tokenizer has {tokenizer.vocab_size} tokens but config.vocab_size is "
                       f"{config.vocab_size}; build the config with "
                       "vocab_size=tokenizer.vocab_size")
    key = jax.random.key(key) if isinstance(key, int) else key
    graphdef, abstract_params = transformer.abstract(config)
    shardings = mesh_lib.param_shardings(abstract_params, mesh or mesh_lib.single_device_mesh(),
                                         rules)
    params = jax.jit(lambda k: transformer.create(config, k)[1], out_shardings=shardings)(key)
    return cls(config=config, graphdef=graphdef, params=params, tokenizer=tokenizer, mesh=mesh)

  @classmethod
  def from_hf(cls, folder: str, mesh: Mesh | None = None,
              rules: mesh_lib.Rules = mesh_lib.TRAIN_RULES, dtype: str | None = None,
              param_dtype: str | None = None, tokenizer: Any = None) -> "Policy":
    """Loads a local Hugging Face folder: config.json, (sharded) safetensors and the tokenizer.

    dtype: compute dtype (default "auto": bf16 on accelerators, fp32 on CPU); param_dtype: master
    weight dtype (default fp32). ``tokenizer`` overrides the one read from the folder.
    """
    overrides = {k: v for k, v in dict(dtype=dtype, param_dtype=param_dtype).items() if v}
    config = ModelConfig.from_hf_config(hf.read_config(folder), **overrides)
    graphdef, params = hf.load_params(folder, config, mesh, rules)
    if tokenizer is None and any(os.path.exists(os.path.join(folder, f))
                                 for f in ("tokenizer.json", "tokenizer.model")):
      from spiral_jax.text.tokenizer import load_tokenizer  # lazy: text is a sibling package
      tokenizer = load_tokenizer(folder)
    return cls(config=config, graphdef=graphdef, params=params, tokenizer=tokenizer, mesh=mesh)

  def logits(self, token_ids: Any, mask: Any = None) -> jax.Array:
    """f32[B, T, V] next-token logits.

    token_ids: i32[B, T] (with ``mask`` bool[B, T] marking real tokens when padded) or a list of
    token-id lists of any lengths, which are left-padded (junk logits at pad positions).
    """
    tokens, mask = _as_batch(token_ids, mask, self.pad_id)
    positions = transformer.positions_from_mask(mask)
    return _logits(self.graphdef, self.params, tokens, positions, mask)

  def token_logprobs(self, tokens: jax.Array, mask: jax.Array,
                     temperature: float = 1.0) -> jax.Array:
    """f32[B, T]: log-prob of each token given those before it (transformer.token_logprobs)."""
    return _token_logprobs(self.graphdef, self.params, jnp.asarray(tokens, jnp.int32),
                           jnp.asarray(mask, bool), temperature)

  @property
  def pad_id(self) -> int:
    return 0 if self.tokenizer is None else int(self.tokenizer.pad_id)

  def shard(self, mesh: Mesh, rules: mesh_lib.Rules = mesh_lib.TRAIN_RULES) -> "Policy":
    """The same policy with its parameters moved onto ``mesh`` under ``rules``."""
    return self.replace(params=mesh_lib.shard_params(self.params, mesh, rules), mesh=mesh)

  @property
  def num_params(self) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(self.params))


@functools.partial(jax.jit, static_argnums=0)
def _logits(graphdef, params, tokens, positions, mask):
  return transformer.forward(graphdef, params, tokens, positions, mask)[0]


@functools.partial(jax.jit, static_argnums=0)
def _token_logprobs(graphdef, params, tokens, mask, temperature):
  return transformer.token_logprobs(graphdef, params, tokens, mask, temperature)


def _as_batch(token_ids: Any, mask: Any, pad_id: int) -> tuple[jax.Array, jax.Array]:
  if isinstance(token_ids, (list, tuple)) and token_ids and isinstance(token_ids[0],
                                                                       (list, tuple, np.ndarray)):
    tokens, mask = left_pad(token_ids, pad_id)
  else:
    tokens = np.asarray(token_ids)
    if tokens.ndim != 2:
      raise ValueError(f"token_ids must be i32[B, T] or a list of token lists, got shape "
                       f"{tokens.shape}")
    mask = np.ones(tokens.shape, bool) if mask is None else np.asarray(mask, bool)
  return jnp.asarray(tokens, jnp.int32), jnp.asarray(mask, bool)


def left_pad(rows: Sequence[Sequence[int]], pad_id: int,
             length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """i32[B, length] tokens right-aligned (left-padded with ``pad_id``) and bool[B, length] mask."""
  length = max(len(r) for r in rows) if length is None else length
  tokens = np.full((len(rows), length), pad_id, np.int32)
  mask = np.zeros((len(rows), length), bool)
  for i, row in enumerate(rows):
    if len(row) > length:
      raise ValueError(f"row {i} has {len(row)} tokens, more than the padded length {length}")
    if len(row):
      tokens[i, length - len(row):] = row
      mask[i, length - len(row):] = True
  return tokens, mask


def export_hf(policy: Policy, folder: str, dtype: str | None = None,
              max_shard_bytes: int = 4 * 1024 ** 3) -> None:
  """Writes a Hugging Face folder (config.json, safetensors, tokenizer) that transformers and vLLM
  load. ``dtype`` (e.g. "bfloat16") converts the weights; default: the parameter dtype."""
  os.makedirs(folder, exist_ok=True)
  hf.write_config(policy.config, folder, policy.tokenizer, dtype)
  hf.save_params(policy.params, policy.config, folder, dtype, max_shard_bytes)
  if policy.tokenizer is not None:
    policy.tokenizer.save(folder)
