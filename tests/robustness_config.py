"""The tiny run of the preemption and checkpoint tests (tests/test_robustness.py): the shared
``tests/tiny_config.py`` with one epoch, no warm-start, two steps and every checkpoint kept.

A config file (not a dict) so the command line, ``python -m spiral_jax.train --config=<this>``,
runs exactly what the in-process tests run.
"""
from tests import tiny_config


def get_config():
  c = tiny_config.get_config()
  c.rl.epochs = 1
  c.max_prompt_tokens = 1020  # prompt + response within the model's 1024-token context
  c.warm_start.steps = 0
  c.checkpoint.keep = 10
  c.num_steps = 2
  return c
