"""Decode windows against one window: new tokens per second of ``sampling.generate`` as it runs
(the cache grows window by window, ``sampler.decode_windows``) and with one window holding the
whole budget from the start (the sampler before e072de0), in one run, interleaved.

Same tiny Qwen3 and random prompts as ``sampler.py`` (no stop token: every row makes exactly
``new`` tokens), greedy and sampled. Each row gives both rates, ``speedup`` (one window's best
seconds over the windowed best), the windows, both sides' analytic decode bytes
(``_models.sampler_bytes``: weights + the KV cache each step attends over) and their ratio, the
most the windows can save on a memory-bound decode. Prints one JSON object.

  python benchmarks/decode_windows.py [--device cpu|gpu|tpu] [--repeats 3]
                                      [--shapes 32x64x128,8x64x1024] [--dtypes float32,bfloat16]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import _hardware  # noqa: E402
import _models  # noqa: E402
from spiral_jax.model import Policy, transformer  # noqa: E402
from spiral_jax.sampling import generate, sampler  # noqa: E402

ONE_WINDOW = 1 << 30  # a first window no budget reaches


def measure(policy: Policy, batch: int, prompt_len: int, new: int, greedy: bool,
            repeats: int) -> dict:
  prompts = np.random.RandomState(batch + prompt_len).randint(
      0, policy.config.vocab_size, (batch, prompt_len)).tolist()
  default = sampler.DECODE_WINDOW

  def seconds(window: int) -> float:
    sampler.DECODE_WINDOW = window
    try:
      start = time.perf_counter()
      out = generate(policy, prompts, max_new_tokens=new, stop_ids=(), greedy=greedy, seed=0)
      elapsed = time.perf_counter() - start
    finally:
      sampler.DECODE_WINDOW = default
    assert out.lengths.min() == new, "a row stopped early: the comparison would be unfair"
    return elapsed

  best = {default: float("inf"), ONE_WINDOW: float("inf")}
  for window in best:  # compile both first
    seconds(window)
  for _ in range(repeats):  # interleaved, best of each
    for window in best:
      best[window] = min(best[window], seconds(window))
  c = policy.config
  out_len = sampler.bucket(new, minimum=16)
  prompt = sampler.bucket(prompt_len, minimum=16)
  rows = sampler.bucket(batch)
  moved = lambda windows: _models.sampler_bytes(c, rows, new, prompt, out_len, c.jnp_dtype.name,
                                                transformer.cache_dtype(c).name, windows)
  with_windows, one_window = moved(None), moved([out_len])
  return dict(dtype=c.jnp_dtype.name, batch=batch, prompt_len=prompt_len, new_tokens=new,
              mode="greedy" if greedy else "sampled", windows=sampler.decode_windows(out_len),
              windowed_tokens_per_s=round(batch * new / best[default], 1),
              one_window_tokens_per_s=round(batch * new / best[ONE_WINDOW], 1),
              speedup=round(best[ONE_WINDOW] / best[default], 3),
              windowed_decode_bytes=with_windows, one_window_decode_bytes=one_window,
              bytes_ratio=round(one_window / with_windows, 3))


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  _hardware.add_decode_flags(parser, shapes="32x64x128,8x64x1024")
  parser.add_argument("--model_overrides", default="",
                      help="JSON of ModelConfig fields that shrink the model (smoke tests)")
  args = parser.parse_args(argv)
  _hardware.select_device(args.device)
  shapes = _hardware.parse_shapes(args.shapes)
  results = []
  for dtype in args.dtypes.split(","):
    config = _models.tiny_qwen3(dtype, dtype, args.model_overrides or None)
    graphdef, params = transformer.create(config, jax.random.key(0))
    policy = Policy(config=config, graphdef=graphdef, params=params)
    results += [measure(policy, b, p, n, greedy, args.repeats)
                for b, p, n in shapes for greedy in (True, False)]
  print(json.dumps(dict(benchmark="decode windows against one window", model=_models.MODEL_NAME,
                        first_window=sampler.DECODE_WINDOW, **_hardware.device_info(),
                        results=results), indent=2))


if __name__ == "__main__":
  main()
