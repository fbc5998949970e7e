"""Tiny random Hugging Face checkpoints (Qwen3, Qwen2, Llama), built offline with transformers.

RMSNorm weights (initialised to 1 by HF) and q/k/v biases (initialised to 0) are perturbed, so
loading them is actually checked (PITFALLS.md). Weights use std 0.1, not HF's 0.02, so the logits
are peaked enough that greedy decoding has no near-ties.
"""
from __future__ import annotations

import os

import numpy as np
import tokenizers
import torch
import transformers

from spiral_jax.model.policy import left_pad

VOCAB = 128
WORDS = [f"w{i}" for i in range(VOCAB - 3)]
SPECIALS = ["<pad>", "<unk>", "<|im_end|>"]

COMMON = dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, intermediate_size=128, initializer_range=0.1,
              max_position_embeddings=512)

FAMILIES = {
    "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM,
              dict(head_dim=16, tie_word_embeddings=True, rope_theta=1e6)),
    "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM,
              dict(tie_word_embeddings=False, rope_theta=1e4)),
    "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM,
              dict(tie_word_embeddings=False, rms_norm_eps=1e-5,
                   rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                     high_freq_factor=4.0, original_max_position_embeddings=32),
                   rope_theta=5e5)),
}


def build_model(family: str, seed: int = 0, **overrides) -> transformers.PreTrainedModel:
  config_cls, model_cls, extra = FAMILIES[family]
  torch.manual_seed(seed)
  model = model_cls(config_cls(**{**COMMON, **extra, **overrides})).eval()
  with torch.no_grad():
    for name, param in model.named_parameters():
      if "norm" in name:
        param.copy_(1.0 + 0.3 * torch.randn_like(param))
      elif name.endswith("bias"):
        param.copy_(0.3 * torch.randn_like(param))
  return model


def save(model: transformers.PreTrainedModel, folder: str, **kwargs) -> str:
  os.makedirs(folder, exist_ok=True)
  model.save_pretrained(folder, **kwargs)
  return folder


def word_tokenizer() -> tokenizers.Tokenizer:
  """A word-level tokenizer over ``w0 .. w124`` with pad/unk/end-of-turn specials."""
  vocab = {token: i for i, token in enumerate(SPECIALS + WORDS)}
  tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
  tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
  tok.decoder = tokenizers.decoders.WordPiece(prefix="##")  # joins words with spaces
  tok.add_special_tokens(SPECIALS)
  return tok


def save_tokenizer(folder: str) -> None:
  word_tokenizer().save(os.path.join(folder, "tokenizer.json"))
  with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
    f.write('{"eos_token": "<|im_end|>", "pad_token": "<pad>"}')


def random_prompts(seed: int, lengths: list[int]) -> list[list[int]]:
  rng = np.random.RandomState(seed)
  return [rng.randint(3, VOCAB, n).tolist() for n in lengths]


def _left_pad_i64(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
  """``policy.left_pad`` with pad id 0, as the i64 arrays torch expects."""
  tokens, mask = left_pad(rows, 0)
  return tokens.astype(np.int64), mask.astype(np.int64)


def hf_logits(model, rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
  """Left-padded logits of ``transformers`` with per-row positions, and the mask."""
  tokens, mask = _left_pad_i64(rows)
  positions = np.maximum(np.cumsum(mask, 1) - 1, 0)
  with torch.no_grad():
    logits = model(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask),
                   position_ids=torch.tensor(positions)).logits.float().numpy()
  return logits, mask.astype(bool)


def hf_greedy(model, rows: list[list[int]], new_tokens: int) -> np.ndarray:
  """transformers' greedy generate for a left-padded batch: i64[B, new_tokens]."""
  tokens, mask = _left_pad_i64(rows)
  length = tokens.shape[1]
  with torch.no_grad():
    out = model.generate(torch.tensor(tokens), attention_mask=torch.tensor(mask),
                         max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                         eos_token_id=None, pad_token_id=0)
  return out[:, length:].numpy()
