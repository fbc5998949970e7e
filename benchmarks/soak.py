"""Soak test: the CPU default for many steps with frequent checkpoints; host memory must stay flat
and no step may compile after the warm-up.

Runs ``experiments/tiny_cpu.py`` in-process (``--steps`` policy steps, checkpoints every
``--checkpoint_every``), records the resident set size after every step and every XLA compilation
(``jax.monitoring``), and prints JSON: RSS after warm-up and at the end, its growth, and the
compilations per step after warm-up. Exits 1 when RSS grows more than ``--max_growth`` (5%) after
``--warmup`` steps or anything compiles after them.

  python benchmarks/soak.py [--steps 200] [--checkpoint_every 10] [--warmup 20] [--out runs/soak]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time


def rss_bytes() -> int:
  """The resident set size of this process now (Linux ``/proc/self/statm``)."""
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--checkpoint_every", type=int, default=10)
  parser.add_argument("--warmup", type=int, default=20)
  parser.add_argument("--max_growth", type=float, default=0.05)
  parser.add_argument("--out", default="runs/soak")
  args = parser.parse_args()
  if not 0 < args.warmup < args.steps:
    parser.error(f"--warmup={args.warmup} must lie in (0, --steps={args.steps})")
  sys.path.insert(0, os.getcwd())
  import jax
  from experiments import tiny_cpu
  from spiral_jax import config as config_lib
  from spiral_jax.rl import trainer as trainer_lib

  compiles: list[int] = []  # the policy step at which each compilation happened
  step_now = [0]
  jax.monitoring.register_event_duration_secs_listener(
      lambda event, _secs, **_: compiles.append(step_now[0])
      if event == "/jax/core/compile/backend_compile_duration" else None)

  c = tiny_cpu.get_config()
  c.num_steps, c.checkpoint_every, c.eval_every = args.steps, args.checkpoint_every, 0
  cfg = config_lib.from_config_dict(c)
  shutil.rmtree(args.out, ignore_errors=True)
  trainer = trainer_lib.Trainer(cfg, args.out, progress=False)
  rss: dict[int, int] = {}
  writer_write = trainer_lib.metrics_lib.MetricsWriter.write

  def write(self, step, metrics):  # called once per policy step, after its update
    writer_write(self, step, metrics)
    rss[int(step)] = rss_bytes()
    step_now[0] = int(step) + 1

  trainer_lib.metrics_lib.MetricsWriter.write = write
  start = time.perf_counter()
  trainer.run()
  seconds = time.perf_counter() - start
  base, end = rss[args.warmup], rss[max(rss)]
  late = [s for s in compiles if s > args.warmup]
  growth = (end - base) / base
  result = {
      "benchmark": "soak: tiny_cpu", "steps": args.steps, "checkpoint_every": args.checkpoint_every,
      "seconds": round(seconds, 1), "rss_mb_after_warmup": round(base / 2**20, 1),
      "rss_mb_end": round(end / 2**20, 1), "rss_growth": round(growth, 4),
      "rss_mb_max": round(max(rss.values()) / 2**20, 1),
      "compilations_after_warmup": len(late), "compiled_at_steps": sorted(set(late)),
      "ok": growth <= args.max_growth and not late,
  }
  print(json.dumps(result, indent=1))
  return 0 if result["ok"] else 1


if __name__ == "__main__":
  sys.exit(main())
