"""How step time grows with batch size, prompt length and response length, sampler and learner
apart, on the sampler benchmark's tiny Qwen3.

From a base shape (``--base`` batch x prompt x response, default 8x64x32) one axis at a time takes
each of its ``--{batch,prompt,response}_values``. At every shape:

* sampler: ``sampling.generate`` on random prompts of exactly ``prompt`` tokens, no stop token
  (every row makes exactly ``response`` new tokens), temperature 1;
* learner: the project's jitted train step (``benchmarks/learner.py``: one epoch, PPO + RAE) on
  ``batch`` rows of ``prompt + response`` tokens, the response trained on.

Times are the best of ``--repeats`` after a compiling call. Each axis gets a least-squares fit of
``log(time)`` on ``log(value)`` (``loglog_slope``: 1 means linear growth, 0 flat) and of time on
value (``seconds_per_unit`` and ``intercept_s``). Every point also reports its analytic FLOPs (and
the sampler's decode weight + KV bytes) as fractions of the peaks measured in the same run (MFU
and HBM utilisation against the card's spec on a GPU/TPU). Powers of two keep the sampler's
padding out of the numbers (it buckets batch, prompt and output lengths to powers of two).

  python benchmarks/scaling.py [--device cpu|gpu|tpu] [--base 8x64x32] [--batch_values 4,8,16]
                               [--prompt_values 32,64,128] [--response_values 16,32,64]
                               [--parts sampler,learner] [--repeats 3]
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
import learner as learner_bench  # noqa: E402

AXES = ("batch", "prompt", "response")


def fit(values: list[int], seconds: list[float]) -> dict[str, float]:
  """Log-log slope (the growth exponent) and the linear fit's slope and intercept."""
  x, y = np.asarray(values, float), np.asarray(seconds, float)
  loglog = np.polyfit(np.log(x), np.log(y), 1)[0]
  per_unit, intercept = np.polyfit(x, y, 1)
  return dict(loglog_slope=round(float(loglog), 3), seconds_per_unit=float(f"{per_unit:.4g}"),
              intercept_s=float(f"{intercept:.4g}"))


class Sampler:
  def __init__(self, model_cfg):
    from spiral_jax.model.policy import Policy
    self.config = model_cfg
    self.policy = Policy.init(model_cfg, None, jax.random.key(0))

  def measure(self, batch: int, prompt: int, response: int, repeats: int, peaks) -> dict:
    from spiral_jax.model import transformer
    from spiral_jax.sampling import generate
    rows = np.random.default_rng(batch + prompt).integers(
        1, self.config.vocab_size, (batch, prompt)).tolist()

    def once():
      out = generate(self.policy, rows, max_new_tokens=response, stop_ids=(), seed=0)
      assert out.lengths.min() == response, "a row stopped early"

    start = time.perf_counter()
    once()
    first = time.perf_counter() - start
    seconds = _hardware.best_time(once, repeats)
    flops, moved = _models.sampler_work(self.config, batch, prompt, response,
                                        self.config.jnp_dtype.name,
                                        transformer.cache_dtype(self.config).name)
    return dict(seconds=round(seconds, 5), compile_s=round(max(first - seconds, 0.0), 2),
                new_tokens_per_s=round(batch * response / seconds, 1), flops_analytic=flops,
                **peaks.utilisation(seconds, flops, moved))


class Learner:
  def __init__(self, model_cfg):
    self.config = model_cfg
    self.step, state, _, self.place = learner_bench.make_learner(model_cfg)
    self.state = [state]

  def measure(self, batch: int, prompt: int, response: int, repeats: int, peaks) -> dict:
    length = prompt + response
    data = self.place(learner_bench.make_batch(self.config.vocab_size, batch, length, response,
                                               0, 0))

    def once():
      self.state[0], metrics = self.step(self.state[0], data)
      _hardware.block(metrics)

    start = time.perf_counter()
    once()
    first = time.perf_counter() - start
    seconds = _hardware.best_time(once, repeats)
    flops = _models.train_step_flops(self.config, batch, length)
    return dict(seconds=round(seconds, 5), compile_s=round(max(first - seconds, 0.0), 2),
                tokens_per_s=round(batch * length / seconds, 1), flops_analytic=flops,
                **peaks.utilisation(seconds, flops))


def run(args) -> dict:
  dtype = args.dtype or ("float32" if jax.default_backend() == "cpu" else "bfloat16")
  model_cfg = _models.tiny_qwen3(dtype, "float32", args.model_overrides)
  peaks = _hardware.Peaks(dtype, args.repeats, args.matmul_n)
  base = dict(zip(AXES, (int(x) for x in args.base.split("x"))))
  values = {axis: [int(v) for v in getattr(args, f"{axis}_values").split(",")] for axis in AXES}
  parts = {"sampler": Sampler, "learner": Learner}
  results: dict[str, dict] = {}
  for part in args.parts.split(","):
    bench = parts[part](model_cfg)
    cache: dict[tuple[int, int, int], dict] = {}  # the base shape lies on every axis
    axes = {}
    for axis in AXES:
      points = []
      for value in values[axis]:
        shape = dict(base, **{axis: value})
        key = tuple(shape[a] for a in AXES)
        if key not in cache:
          cache[key] = bench.measure(*key, args.repeats, peaks)
        points.append(dict(shape, **cache[key]))
      axes[axis] = dict(values=values[axis], seconds=[p["seconds"] for p in points],
                        **fit(values[axis], [p["seconds"] for p in points]), points=points)
    results[part] = axes
  peaks.remeasure()
  return dict(benchmark="scaling", model=_models.MODEL_NAME if not args.model_overrides else
              f"tiny Qwen3 with {args.model_overrides}", **_hardware.device_info(),
              cpu_count=os.cpu_count(), compute_dtype=dtype, base=base,
              peak=peaks.describe(), **results,
              slopes={part: {axis: axes[axis]["loglog_slope"] for axis in AXES}
                      for part, axes in results.items()})


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  _hardware.add_device_flag(parser)
  parser.add_argument("--dtype", default=None, help="compute dtype (default float32 on CPU, "
                                                     "bfloat16 elsewhere)")
  parser.add_argument("--base", default="8x64x32", help="batch x prompt x response")
  parser.add_argument("--batch_values", default="4,8,16")
  parser.add_argument("--prompt_values", default="32,64,128")
  parser.add_argument("--response_values", default="16,32,64")
  parser.add_argument("--parts", default="sampler,learner")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--matmul_n", type=int, default=None,
                      help="side of the peak-measuring matmul (default 2048 on CPU, 8192 else)")
  parser.add_argument("--model_overrides", default="",
                      help='JSON ModelConfig fields replacing the tiny Qwen3\'s (smoke tests)')
  args = parser.parse_args(argv)
  for axis in AXES:
    if len(getattr(args, f"{axis}_values").split(",")) < 2:
      parser.error(f"--{axis}_values needs at least two values to fit a slope")
  if len(args.base.split("x")) != 3:
    parser.error(f"--base={args.base!r} must be batch x prompt x response, e.g. 8x64x32")
  unknown = set(args.parts.split(",")) - {"sampler", "learner"}
  if unknown:
    parser.error(f"--parts: unknown {sorted(unknown)}; use sampler and/or learner")
  _hardware.select_device(args.device)
  print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
  main()
