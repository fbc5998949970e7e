"""The CPU default with and without RAE, side by side (the paper's ablation at toy scale).

Runs ``experiments/tiny_cpu.py`` twice (``rl.rae=True`` and ``rl.rae=False``, same seed and steps),
writes both runs' curves (exploitability, win rate against random, invalid rate, response length)
to ``OUT/learning.json`` and one PNG, ``OUT/learning.png``, and prints a JSON summary.

  python benchmarks/learning.py [--out runs/learning] [--steps 200]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CURVES = ("exploitability", "vs_random/win_rate", "vs_random/mean_reward", "invalid_rate",
          "response_chars")


def run(workdir: str, steps: int, rae: bool) -> list[dict]:
  cmd = [sys.executable, "-m", "spiral_jax.train", "--config=experiments/tiny_cpu.py",
         f"--workdir={workdir}", f"--config.num_steps={steps}", f"--config.rl.rae={rae}",
         "--progress=false"]
  subprocess.run(cmd, check=True)
  from spiral_jax import metrics
  return metrics.read(workdir)


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--out", default="runs/learning")
  parser.add_argument("--steps", type=int, default=None, help="default: the config's num_steps")
  args = parser.parse_args()
  sys.path.insert(0, os.getcwd())
  from experiments import tiny_cpu
  from spiral_jax import plots
  steps = args.steps or tiny_cpu.get_config().num_steps
  runs = {name: run(os.path.join(args.out, name), steps, rae)
          for name, rae in (("rae", True), ("no_rae", False))}
  curves = {name: {k: [(r["step"], r[k]) for r in rows if k in r]
                   for k in sorted({k for r in rows for k in r})
                   if any(c in k for c in CURVES)} for name, rows in runs.items()}
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "learning.json"), "w") as f:
    json.dump(curves, f, indent=1)
  png = plots.learning_curves(runs, os.path.join(args.out, "learning.png"))
  summary = {name: {k: {"first": v[0][1], "last": v[-1][1]} for k, v in c.items() if v}
             for name, c in curves.items()}
  print(json.dumps({"benchmark": "learning: tiny_cpu with and without RAE", "steps": steps,
                    "png": png, "summary": summary}, indent=1))


if __name__ == "__main__":
  main()
