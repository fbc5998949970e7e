"""Soak test: the CPU default for many steps with frequent checkpoints and its evaluations; host
memory must stay flat and nothing may compile after the warm-up.

Runs ``experiments/tiny_cpu.py`` in-process for ``--steps`` policy steps with a checkpoint every
``--checkpoint_every`` and the config's evaluation every ``--eval_every`` steps. It records the
resident set size (and its anonymous part, the heap) after every step (its rollout, update,
evaluation, metrics and checkpoint) and every XLA compilation with the function compiled
(``jax.monitoring``), and prints JSON: RSS after the warm-up and at the end, its growth, and every
compilation after the warm-up (``<out>/soak.json`` also has every step's RSS). Exits 1 when RSS
grows more than ``--max_growth`` (5%) after the warm-up or anything compiles after it.

The warm-up is one full cycle: the first ``max(eval_every, checkpoint_every)`` steps. Step 1
compiles the sampler and the learner; the first checkpoint and evaluation after training starts
compile their few pieces once more, for the arrays' training shardings. From then on every shape
is fixed (``rl/batching.floor_for``, ``rollout.policy_sample_fn(batch_rows=)``).

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


def resident() -> tuple[int, int]:
  """This process's resident set size and its anonymous part (heap, not mapped files) now, in
  bytes (Linux ``/proc/self/status``)."""
  with open("/proc/self/status") as f:
    kib = {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in f)
           if k in ("VmRSS", "RssAnon")}
  return kib["VmRSS"] * 1024, kib["RssAnon"] * 1024


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
  import jax
  from experiments import tiny_cpu
  from spiral_jax import config as config_lib
  from spiral_jax.rl import trainer as trainer_lib

  c = tiny_cpu.get_config()
  c.num_steps, c.checkpoint_every = args.steps, args.checkpoint_every
  if args.eval_every is not None:
    c.eval_every = args.eval_every
  warmup = args.warmup if args.warmup is not None else max(c.eval_every, c.checkpoint_every)
  if not 0 < warmup < args.steps:
    parser.error(f"the warm-up ({warmup} steps) must lie in (0, --steps={args.steps})")
  cfg = config_lib.from_config_dict(c)

  step_now = [0]  # the policy step in progress; 0 before the first (warm-start, step-0 eval)
  compiles: list[tuple[int, str]] = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda event, _secs, fun_name="?", **_: compiles.append((step_now[0], fun_name))
      if event == "/jax/core/compile/backend_compile_duration" else None)

  shutil.rmtree(args.out, ignore_errors=True)
  trainer = trainer_lib.Trainer(cfg, args.out, progress=False)
  rss: dict[int, int] = {}  # after each step, all of its work done
  anon: dict[int, int] = {}
  live: dict[int, int] = {}
  collect = trainer.collect

  def after(step: int) -> None:
    (rss[step], anon[step]), live[step] = resident(), len(jax.live_arrays())

  def collect_and_track(state, *rest):  # a step starts: the one before is complete
    step = int(state.step)
    if step > 0:
      after(step)
    step_now[0] = step + 1
    return collect(state, *rest)

  trainer.collect = collect_and_track
  start = time.perf_counter()
  state = trainer.run()
  seconds = time.perf_counter() - start
  after(int(state.step))  # the last step, its checkpoint committed
  last = max(rss)
  mb = lambda x: round(x / 2**20, 1)
  growth = (rss[last] - rss[warmup]) / rss[warmup]
  late = [{"step": s, "function": name} for s, name in compiles if s > warmup]
  after_warmup = [s for s in sorted(rss) if s >= warmup]
  result = {
      "benchmark": "soak: experiments/tiny_cpu.py", "steps": args.steps, "warmup": warmup,
      "checkpoint_every": cfg.checkpoint_every, "eval_every": cfg.eval_every,
      "seconds": round(seconds, 1), "devices": jax.device_count(),
      "rss_mb_after_warmup": mb(rss[warmup]), "rss_mb_end": mb(rss[last]),
      "rss_growth": round(growth, 4),
      "rss_mb_min_max_after_warmup": [mb(min(rss[s] for s in after_warmup)),
                                      mb(max(rss[s] for s in after_warmup))],
      "anon_mb_after_warmup": mb(anon[warmup]), "anon_mb_end": mb(anon[last]),
      "anon_growth": round((anon[last] - anon[warmup]) / anon[warmup], 4),
      "live_arrays_after_warmup": live[warmup], "live_arrays_end": live[last],
      "compilations": len(compiles),
      "compilations_by_step": dict(collections.Counter(s for s, _ in compiles)),
      "compilations_after_warmup": len(late), "compiled_after_warmup": late,
      "rss_ok": growth <= args.max_growth, "compile_ok": not late,
  }
  result["ok"] = result["rss_ok"] and result["compile_ok"]
  print(json.dumps(result, indent=1))
  # The file also keeps every step's numbers, for plots.
  result["rss_mb_by_step"] = {s: mb(v) for s, v in sorted(rss.items())}
  result["anon_mb_by_step"] = {s: mb(v) for s, v in sorted(anon.items())}
  with open(os.path.join(args.out, "soak.json"), "w") as f:
    json.dump(result, f)
  return 0 if result["ok"] else 1

if __name__ == "__main__":
  sys.exit(main())
