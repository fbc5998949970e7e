"""Soak test: the CPU default for many steps with frequent checkpoints and its evaluations; host
memory must stay flat and nothing may compile after the warm-up.

Runs ``experiments/tiny_cpu.py`` in-process for ``--steps`` policy steps with a checkpoint every
``--checkpoint_every`` and the config's evaluation every ``--eval_every`` steps. For every step
(its rollout, update, evaluation, metrics and checkpoint) it records the peak resident set size
(Linux ``VmHWM``, reset after each step), and it records every XLA compilation with the function
compiled (``jax.monitoring``). It prints JSON and writes it to ``<out>/soak.json`` (with every
step's numbers): the peak RSS over the first cycle after the warm-up and over the last cycle,
its growth, and every compilation after the warm-up. Exits 1 when the peak grows more than
``--max_growth`` (5%) or anything compiles after the warm-up.

The warm-up, and the cycle the peaks are taken over, is ``max(eval_every, checkpoint_every)``
steps. Step 1 compiles the sampler and the learner; the first checkpoint and evaluation after
training starts compile their pieces again where the arrays' training shardings differ (not on
one device). From then on every shape is fixed (``rl/batching.floor_for``,
``agents.policy_sample_fn(batch_rows=)``). Peaks over whole cycles compare like with like: the
RSS read at a step's end swings by ~0.7 GB (the update's temporaries are freed in the next tens
of milliseconds; checkpoint steps end later), which single readings would mistake for a trend.

  python benchmarks/soak.py [--steps 200] [--checkpoint_every 10] [--eval_every 10] [--warmup N]
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import sys
import time


def memory() -> dict[str, int]:
  """Bytes: ``rss`` and its anonymous part ``anon`` (heap, not mapped files) now, and ``peak``, the
  largest RSS since the last ``reset_peak`` (Linux ``/proc/self/status``)."""
  with open("/proc/self/status") as f:
    kib = {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in f)
           if k in ("VmRSS", "RssAnon", "VmHWM")}
  return {"rss": kib["VmRSS"] * 1024, "anon": kib["RssAnon"] * 1024, "peak": kib["VmHWM"] * 1024}


def reset_peak() -> None:
  """Starts a new ``peak`` window (Linux resets VmHWM when 5 is written to clear_refs)."""
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--checkpoint_every", type=int, default=10)
  parser.add_argument("--eval_every", type=int, default=None,
                      help="default: the config's (10); 0 turns evaluation off")
  parser.add_argument("--warmup", type=int, default=None,
                      help="default: max(eval_every, checkpoint_every), one full cycle")
  parser.add_argument("--max_growth", type=float, default=0.05)
  parser.add_argument("--out", default="runs/soak")
  args = parser.parse_args()
  sys.path.insert(0, os.getcwd())
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import jax

  import _hardware
  from experiments import tiny_cpu
  from spiral_jax import config as config_lib
  from spiral_jax.run import trainer as trainer_lib

  c = tiny_cpu.get_config()
  c.num_steps, c.checkpoint.every = args.steps, args.checkpoint_every
  if args.eval_every is not None:
    c.eval.every = args.eval_every
  warmup = args.warmup if args.warmup is not None else max(c.eval.every, c.checkpoint.every)
  if not 0 < 2 * warmup <= args.steps:
    parser.error(f"--steps={args.steps} must hold the warm-up ({warmup} steps) and one more cycle")
  cfg = config_lib.from_config_dict(c)

  # labelled with the policy step in progress; 0 before the first (warm-start, step-0 eval)
  compiles = _hardware.CompileLog(label=0)

  shutil.rmtree(args.out, ignore_errors=True)
  trainer = trainer_lib.Trainer(cfg, args.out, progress=False)
  steps: dict[int, dict[str, int]] = {}  # memory at each step's end; peak: during the step
  collect = trainer.collect

  def step_done(step: int) -> None:
    steps[step] = {**memory(), "live_arrays": len(jax.live_arrays())}
    reset_peak()

  def collect_and_track(state, *rest):  # a step starts: the one before is complete
    step = int(state.step)
    step_done(step)  # step 0: the warm-start, the step-0 evaluation and checkpoint
    compiles.label = step + 1
    return collect(state, *rest)

  trainer.collect = collect_and_track
  start = time.perf_counter()
  reset_peak()
  state = trainer.run()
  seconds = time.perf_counter() - start
  last = int(state.step)
  step_done(last)  # the last step, its checkpoint committed
  mb = lambda x: round(x / 2**20, 1)
  peak = lambda first, end: max(steps[s]["peak"] for s in range(first, end + 1))
  base, final = peak(warmup + 1, 2 * warmup), peak(last - warmup + 1, last)
  growth = (final - base) / base
  late = [{"step": s, "function": name} for s, name in compiles.events if s > warmup]
  result = {
      "benchmark": "soak: experiments/tiny_cpu.py", "steps": last, "warmup": warmup,
      "checkpoint_every": cfg.checkpoint.every, "eval_every": cfg.eval.every,
      "seconds": round(seconds, 1), "devices": jax.device_count(),
      "rss_mb_after_warmup": mb(base),  # peak over steps warmup+1 .. 2 warmup
      "rss_mb_end": mb(final),  # peak over the last warmup steps
      "rss_growth": round(growth, 4),
      "rss_mb_max": mb(max(m["peak"] for s, m in steps.items() if s > warmup)),
      "rss_mb_at_step_end": {s: mb(steps[s]["rss"]) for s in (warmup, last)},
      "anon_mb_at_step_end": {s: mb(steps[s]["anon"]) for s in (warmup, last)},
      "live_arrays": {s: steps[s]["live_arrays"] for s in (warmup, last)},
      "compilations": len(compiles.events),
      "compilations_by_step": dict(collections.Counter(s for s, _ in compiles.events)),
      "compilations_after_warmup": len(late), "compiled_after_warmup": late,
      "rss_ok": growth <= args.max_growth, "compile_ok": not late,
  }
  result["ok"] = result["rss_ok"] and result["compile_ok"]
  print(json.dumps(result, indent=1))
  result["by_step"] = {s: {k: mb(v) if k != "live_arrays" else v for k, v in m.items()}
                       for s, m in sorted(steps.items())}
  with open(os.path.join(args.out, "soak.json"), "w") as f:
    json.dump(result, f)
  return 0 if result["ok"] else 1


if __name__ == "__main__":
  sys.exit(main())
