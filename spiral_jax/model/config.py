"""``ModelConfig``: the frozen, validated hyper-parameters of a Qwen3 / Qwen2 / Llama decoder.

One dataclass covers the three families through switches: grouped-query attention
(``num_kv_heads < num_heads``), RoPE theta and Llama-3 RoPE scaling, Qwen3's per-head q/k RMSNorm
(``qk_norm``), Qwen2's q/k/v biases (``qkv_bias``) and tied or untied embeddings. Presets carry the
real hyper-parameters of the published checkpoints; ``from_hf_config`` reads a ``config.json``.

Dtypes are strings so the config stays hashable (jitted code takes it as a static argument):
``param_dtype`` is the master-weight dtype, ``dtype`` the compute dtype; ``"auto"`` resolves to
bfloat16 on accelerators and float32 on CPU.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp

from spiral_jax.errors import InputError

_DTYPES = ("float32", "bfloat16", "float16")
FAMILIES = ("qwen3", "qwen2", "llama")


@dataclasses.dataclass(frozen=True)
class RopeScaling:
  """Llama-3 RoPE frequency scaling (``rope_type: llama3`` in Hugging Face configs)."""
  factor: float
  low_freq_factor: float
  high_freq_factor: float
  original_max_position_embeddings: int

  def __post_init__(self):
    if (self.factor <= 0 or self.low_freq_factor <= 0
        or self.high_freq_factor <= self.low_freq_factor):
      raise InputError(f"RopeScaling: need factor > 0 and 0 < low_freq_factor < high_freq_factor, "
                       f"got {self}; copy the values from the checkpoint's rope_scaling")
    if self.original_max_position_embeddings <= 0:
      raise InputError("RopeScaling.original_max_position_embeddings must be positive")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Decoder hyper-parameters. Field names follow the maths, not Hugging Face's spellings."""
  vocab_size: int
  d_model: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  mlp_dim: int
  family: str = "qwen3"
  rope_theta: float = 1_000_000.0
  rope_scaling: RopeScaling | None = None
  qk_norm: bool = True
  qkv_bias: bool = False
  tie_embeddings: bool = True
  rms_eps: float = 1e-6
  max_seq_len: int = 4096
  param_dtype: str = "float32"
  dtype: str = "auto"

  def __post_init__(self):
    for name in ("vocab_size", "d_model", "num_layers", "num_heads", "num_kv_heads", "head_dim",
                 "mlp_dim", "max_seq_len"):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InputError(f"ModelConfig.{name} must be a positive int, got {value!r}")
    if self.num_heads % self.num_kv_heads:
      raise InputError(f"ModelConfig.num_heads ({self.num_heads}) must be a multiple of "
                       f"num_kv_heads ({self.num_kv_heads}) for grouped-query attention")
    if self.head_dim % 2:
      raise InputError(f"ModelConfig.head_dim must be even for RoPE, got {self.head_dim}")
    if self.family not in FAMILIES:
      raise InputError(f"ModelConfig.family must be one of {FAMILIES}, got {self.family!r}")
    if self.rope_theta <= 0:
      raise InputError(f"ModelConfig.rope_theta must be positive, got {self.rope_theta}")
    if not 0 < self.rms_eps < 1:
      raise InputError(f"ModelConfig.rms_eps must be in (0, 1), got {self.rms_eps}")
    if self.rope_scaling is not None and not isinstance(self.rope_scaling, RopeScaling):
      raise InputError("ModelConfig.rope_scaling must be a RopeScaling or None; "
                       "build one with RopeScaling(factor=..., ...)")
    if self.param_dtype not in _DTYPES:
      raise InputError(f"ModelConfig.param_dtype must be one of {_DTYPES}, "
                       f"got {self.param_dtype!r}")
    if self.dtype not in _DTYPES + ("auto",):
      raise InputError(f"ModelConfig.dtype must be 'auto' or one of {_DTYPES}, got {self.dtype!r}")

  @property
  def jnp_param_dtype(self) -> jnp.dtype:
    return jnp.dtype(self.param_dtype)

  @property
  def jnp_dtype(self) -> jnp.dtype:
    """The compute dtype; ``auto`` is bfloat16 on accelerators, float32 on CPU."""
    if self.dtype == "auto":
      return jnp.dtype(jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16)
    return jnp.dtype(self.dtype)

  def replace(self, **changes: Any) -> "ModelConfig":
    return dataclasses.replace(self, **changes)

  @property
  def num_params(self) -> int:
    """Parameter count (embeddings included once when tied)."""
    attention = self.d_model * self.head_dim * (2 * self.num_heads + 2 * self.num_kv_heads)
    if self.qkv_bias:
      attention += self.head_dim * (self.num_heads + 2 * self.num_kv_heads)
    if self.qk_norm:
      attention += 2 * self.head_dim
    layer = attention + 3 * self.d_model * self.mlp_dim + 2 * self.d_model
    embeddings = self.vocab_size * self.d_model * (1 if self.tie_embeddings else 2)
    return self.num_layers * layer + embeddings + self.d_model

  @classmethod
  def from_hf_config(cls, hf: Mapping[str, Any], **overrides: Any) -> "ModelConfig":
    """Reads a Hugging Face ``config.json`` dict (Qwen3, Qwen2, Llama; transformers 4 or 5 keys)."""
    model_type = hf.get("model_type")
    families = {"qwen3": "qwen3", "qwen2": "qwen2", "llama": "llama"}
    if model_type not in families:
      raise InputError(f"config.json model_type must be one of {sorted(families)}, got "
                       f"{model_type!r}; only dense Qwen3/Qwen2/Llama decoders are supported")
    if hf.get("use_sliding_window"):
      raise InputError("config.json use_sliding_window=true is not supported; set it to false "
                       "(Qwen2.5 checkpoints ship with it off)")
    if hf.get("hidden_act", "silu") != "silu":
      raise InputError(f"config.json hidden_act must be 'silu', got {hf.get('hidden_act')!r}")
    # transformers 5 nests RoPE settings in rope_parameters; 4.x keeps rope_theta / rope_scaling
    rope = dict(hf.get("rope_parameters") or {})
    theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
    scaling_dict = hf.get("rope_scaling") or (rope if rope.get("rope_type") not in (None, "default")
                                              else None)
    scaling = None
    if scaling_dict:
      kind = scaling_dict.get("rope_type", scaling_dict.get("type"))
      if kind == "default":
        scaling = None
      elif kind != "llama3":
        raise InputError(f"config.json rope scaling type {kind!r} is not supported (only 'llama3')")
      else:
        scaling = RopeScaling(
            factor=float(scaling_dict["factor"]),
            low_freq_factor=float(scaling_dict["low_freq_factor"]),
            high_freq_factor=float(scaling_dict["high_freq_factor"]),
            original_max_position_embeddings=int(scaling_dict["original_max_position_embeddings"]))
    num_heads = int(hf["num_attention_heads"])
    d_model = int(hf["hidden_size"])
    head_dim = hf.get("head_dim") or d_model // num_heads
    family = families[model_type]
    if family == "llama" and (hf.get("attention_bias") or hf.get("mlp_bias")):
      raise InputError("config.json attention_bias / mlp_bias for Llama are not supported")
    if family == "qwen3" and hf.get("attention_bias"):
      raise InputError("config.json attention_bias=true for Qwen3 is not supported")
    kwargs = dict(
        vocab_size=int(hf["vocab_size"]), d_model=d_model, num_layers=int(hf["num_hidden_layers"]),
        num_heads=num_heads, num_kv_heads=int(hf.get("num_key_value_heads", num_heads)),
        head_dim=int(head_dim), mlp_dim=int(hf["intermediate_size"]), family=family,
        rope_theta=float(theta), rope_scaling=scaling, qk_norm=family == "qwen3",
        qkv_bias=family == "qwen2", tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        rms_eps=float(hf.get("rms_norm_eps", 1e-6)),
        max_seq_len=int(hf.get("max_position_embeddings", 4096)))
    kwargs.update(overrides)
    return cls(**kwargs)

  def to_hf_config(self) -> dict[str, Any]:
    """A ``config.json`` dict that transformers (4.x and 5.x) and vLLM read."""
    architectures = {"qwen3": "Qwen3ForCausalLM", "qwen2": "Qwen2ForCausalLM",
                     "llama": "LlamaForCausalLM"}
    hf: dict[str, Any] = dict(
        architectures=[architectures[self.family]], model_type=self.family,
        vocab_size=self.vocab_size, hidden_size=self.d_model, num_hidden_layers=self.num_layers,
        num_attention_heads=self.num_heads, num_key_value_heads=self.num_kv_heads,
        head_dim=self.head_dim, intermediate_size=self.mlp_dim, hidden_act="silu",
        rms_norm_eps=self.rms_eps, max_position_embeddings=self.max_seq_len,
        tie_word_embeddings=self.tie_embeddings, rope_theta=self.rope_theta, use_cache=True,
        torch_dtype=self.param_dtype, attention_dropout=0.0)
    rope_parameters: dict[str, Any] = dict(rope_theta=self.rope_theta, rope_type="default")
    if self.rope_scaling is not None:
      scaling = dict(rope_type="llama3", **dataclasses.asdict(self.rope_scaling))
      hf["rope_scaling"] = scaling
      rope_parameters.update(scaling)
    # transformers 5 reads rope_parameters; older readers (vLLM, transformers 4) the flat keys
    hf["rope_parameters"] = rope_parameters
    if self.family == "llama":
      hf.update(attention_bias=False, mlp_bias=False)
    elif self.family == "qwen3":
      hf.update(attention_bias=False, use_sliding_window=False)
    else:
      hf.update(use_sliding_window=False)
    return hf


def _qwen3(**kw: Any) -> ModelConfig:
  base = dict(vocab_size=151936, head_dim=128, num_kv_heads=8, family="qwen3", rope_theta=1e6,
              qk_norm=True, qkv_bias=False, rms_eps=1e-6, max_seq_len=40960)
  return ModelConfig(**{**base, **kw})


def _llama3(**kw: Any) -> ModelConfig:
  base = dict(vocab_size=128256, head_dim=128, num_kv_heads=8, family="llama", rope_theta=500000.0,
              qk_norm=False, qkv_bias=False, rms_eps=1e-5, max_seq_len=131072)
  return ModelConfig(**{**base, **kw})


def _llama3_scaling(factor: float) -> RopeScaling:
  return RopeScaling(factor=factor, low_freq_factor=1.0, high_freq_factor=4.0,
                     original_max_position_embeddings=8192)


PRESETS: dict[str, ModelConfig] = {
    # the CPU default; its vocab is replaced by the tokenizer's (``preset('tiny', vocab_size=...)``)
    "tiny": ModelConfig(vocab_size=8192, d_model=256, num_layers=4, num_heads=4, num_kv_heads=2,
                        head_dim=64, mlp_dim=1024, family="qwen3", rope_theta=1e6,
                        tie_embeddings=True, max_seq_len=4096),
    "qwen3_0_6b": _qwen3(d_model=1024, num_layers=28, num_heads=16, mlp_dim=3072,
                         tie_embeddings=True),
    "qwen3_1_7b": _qwen3(d_model=2048, num_layers=28, num_heads=16, mlp_dim=6144,
                         tie_embeddings=True),
    "qwen3_4b": _qwen3(d_model=2560, num_layers=36, num_heads=32, mlp_dim=9728,
                       tie_embeddings=True),
    "qwen3_4b_base": _qwen3(d_model=2560, num_layers=36, num_heads=32, mlp_dim=9728,
                            tie_embeddings=True, max_seq_len=32768),
    "qwen3_8b": _qwen3(d_model=4096, num_layers=36, num_heads=32, mlp_dim=12288,
                       tie_embeddings=False),
    # also the architecture of DeepSeek-R1-Distill-Qwen-7B (which uses rope_theta 1e4)
    "qwen2_5_7b": ModelConfig(vocab_size=152064, d_model=3584, num_layers=28, num_heads=28,
                              num_kv_heads=4, head_dim=128, mlp_dim=18944, family="qwen2",
                              rope_theta=1e6, qk_norm=False, qkv_bias=True, tie_embeddings=False,
                              rms_eps=1e-6, max_seq_len=131072),
    "llama3_2_3b": _llama3(d_model=3072, num_layers=28, num_heads=24, mlp_dim=8192,
                           tie_embeddings=True, rope_scaling=_llama3_scaling(32.0)),
    "llama3_1_8b": _llama3(d_model=4096, num_layers=32, num_heads=32, mlp_dim=14336,
                           tie_embeddings=False, rope_scaling=_llama3_scaling(8.0)),
}


def preset(name: str, **overrides: Any) -> ModelConfig:
  """A named preset (``tiny``, ``qwen3_4b_base``, ...) with fields replaced by ``overrides``."""
  if name not in PRESETS:
    raise InputError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
  return PRESETS[name].replace(**overrides)
