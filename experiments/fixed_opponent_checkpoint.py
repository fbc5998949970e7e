"""The CPU default against a frozen policy: another run's workdir (its newest checkpoint and
tokenizer) or a Hugging Face folder. Seats are drawn per game; only the learner's moves train.

  python -m spiral_jax.train --config=experiments/fixed_opponent_checkpoint.py \
      --config.opponent_path=runs/tiny_cpu --workdir=runs/vs_tiny_cpu
"""
from experiments import tiny_cpu


def get_config():
  c = tiny_cpu.get_config()
  c.opponent = "checkpoint"
  c.opponent_path = "runs/tiny_cpu"
  return c
