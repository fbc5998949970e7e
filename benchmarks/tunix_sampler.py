"""New tokens per second of Tunix's JAX sampler (``tunix.generate.sampler.Sampler``), tiny Qwen3.

Run with the Python of a virtual environment that has ``google-tunix`` (0.1.7 measured), not the
project's: it imports neither spiral_jax nor torch. ``benchmarks/sampler.py --tunix_python PATH``
runs it as a subprocess and sets its numbers beside ours; alone it prints one JSON object:

  /path/to/tunix_venv/bin/python benchmarks/tunix_sampler.py [--device cpu|gpu|tpu]
      [--repeats 3] [--shapes 32x64x128,8x256x64] [--dtypes float32,bfloat16] [--config JSON]

The model is Tunix's own ``models.qwen3.Qwen3`` with the shape of ``TINY_QWEN3`` (HF config keys,
read from ``_models.py`` without importing it, or given as ``--config``) and Tunix's random
initialisation: only speed is compared, so the weights need not match ours. Prompts are the same
``RandomState(batch + prompt_len)`` token ids as ``sampler.py``'s, fed through a tokenizer that
maps space-separated integers to ids; its EOS and pad ids are negative, so no row can stop early
(every row is checked to hold exactly ``new`` tokens). Greedy is Tunix's ``temperature=0``;
sampled is ``temperature=1, top_p=1`` and no top-k, which Tunix draws straight from the full
softmax (as ours does). bfloat16 means weights, compute and KV cache in bfloat16 (``dtype`` and
``param_dtype``). The KV cache holds exactly prompt + new positions, as ours does for these shapes.
``compile_s`` is the first call minus the best warm call.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import time

import numpy as np

BENCH = os.path.dirname(os.path.abspath(__file__))


def tiny_qwen3_from_source(path: str = os.path.join(BENCH, "_models.py")) -> dict:
  """``TINY_QWEN3`` read from ``_models.py``'s source: that module imports spiral_jax, which the
  Tunix environment does not have."""
  for node in ast.parse(open(path).read()).body:
    if (isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "TINY_QWEN3"
        and isinstance(node.value, ast.Call)):
      return {k.arg: ast.literal_eval(k.value) for k in node.value.keywords}
  raise SystemExit(f"TINY_QWEN3 = dict(...) not found in {path}; pass --config JSON instead")


class IdTokenizer:
  """Tunix's tokenizer protocol over integer ids: a prompt is its ids joined by spaces. The EOS
  and pad ids are outside the vocabulary, so decoding never stops and no generated id is padding."""

  def encode(self, text: str, **_) -> list[int]:
    return [int(t) for t in text.split()]

  def decode(self, ids: list[int], **_) -> str:
    return " ".join(str(i) for i in ids)

  def bos_id(self) -> None:
    return None  # no BOS is prepended

  def eos_id(self) -> int:
    return -1

  def pad_id(self) -> int:
    return -2


def build_model(hf: dict, dtype: str):
  """Tunix's Qwen3 with the HF config ``hf``'s shape, randomly initialised, all in ``dtype``."""
  import jax.numpy as jnp
  from flax import nnx
  from tunix.models.qwen3 import model as qwen3

  config = qwen3.ModelConfig(
      num_layers=hf["num_hidden_layers"], vocab_size=hf["vocab_size"],
      embed_dim=hf["hidden_size"], hidden_dim=hf["intermediate_size"],
      num_heads=hf["num_attention_heads"], head_dim=hf["head_dim"],
      num_kv_heads=hf["num_key_value_heads"], rope_theta=int(hf.get("rope_theta", 1e6)),
      norm_eps=hf.get("rms_norm_eps", 1e-6),
      use_tied_embedding=hf.get("tie_word_embeddings", False),
      dtype=jnp.dtype(dtype), param_dtype=jnp.dtype(dtype))
  return qwen3.Qwen3(config, rngs=nnx.Rngs(params=0)), config


def measure(model, config, batch: int, prompt_len: int, new: int, sampled: bool, repeats: int,
            dtype: str) -> dict:
  from tunix.generate import sampler as tunix_sampler

  prompts = np.random.RandomState(batch + prompt_len).randint(0, 8192, (batch, prompt_len))
  prompts = prompts % config.vocab_size  # a shrunk vocabulary (smoke tests) keeps the ids valid
  texts = [" ".join(map(str, row)) for row in prompts]
  cache = tunix_sampler.CacheConfig(cache_size=prompt_len + new, num_layers=config.num_layers,
                                    num_kv_heads=config.num_kv_heads, head_dim=config.head_dim)
  sampler = tunix_sampler.Sampler(model, IdTokenizer(), cache)
  kwargs = (dict(temperature=1.0, top_p=1.0, top_k=None, seed=0) if sampled
            else dict(temperature=0.0))
  eos = [IdTokenizer().eos_id()]

  def theirs():
    out = sampler(texts, max_generation_steps=new, max_prompt_length=prompt_len, echo=False,
                  eos_tokens=eos, **kwargs)
    lengths = [len(t) for t in out.tokens]
    assert min(lengths) == max(lengths) == new, f"rows made {set(lengths)} tokens, not {new}"
    assert all(0 <= t.min() and t.max() < config.vocab_size for t in out.tokens)

  start = time.perf_counter()
  theirs()
  first = time.perf_counter() - start
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    theirs()
    best = min(best, time.perf_counter() - start)
  return dict(dtype=dtype, batch=batch, prompt_len=prompt_len, new_tokens=new,
              mode="sampled" if sampled else "greedy",
              tokens_per_s=round(batch * new / best, 1), seconds=round(best, 4),
              first_call_s=round(first, 3), compile_s=round(max(first - best, 0.0), 2))


def main() -> None:
  import _hardware  # jax and numpy only, so it imports in Tunix's environment too

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  _hardware.add_decode_flags(parser, shapes="32x64x128,8x256x64")
  parser.add_argument("--modes", default="greedy,sampled")
  parser.add_argument("--config", default="",
                      help="HF Qwen3 config keys as JSON (default: TINY_QWEN3 from _models.py)")
  args = parser.parse_args()
  _hardware.select_device(args.device)
  hf = json.loads(args.config) if args.config else tiny_qwen3_from_source()
  shapes = _hardware.parse_shapes(args.shapes)
  modes = args.modes.split(",")
  if not set(modes) <= {"greedy", "sampled"}:
    raise SystemExit(f"--modes must name greedy and/or sampled, got {args.modes!r}")

  import importlib.metadata

  import flax

  results = []
  for dtype in args.dtypes.split(","):
    model, config = build_model(hf, dtype)
    results += [measure(model, config, b, p, n, mode == "sampled", args.repeats, dtype)
                for b, p, n in shapes for mode in modes]
  print(json.dumps(dict(
      benchmark="tunix_sampler", tunix=importlib.metadata.version("google-tunix"),
      flax=flax.__version__, **_hardware.device_info(), cpu_count=os.cpu_count(),
      machine=platform.machine(), config=hf, results=results), indent=2))


if __name__ == "__main__":
  main()
