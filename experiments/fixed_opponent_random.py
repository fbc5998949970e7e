"""The CPU default against a fixed uniformly random opponent instead of itself (seats drawn at
random per game; only the learner's moves train). ``--config.opponent=expert`` plays the scripted
expert instead."""
from experiments import tiny_cpu


def get_config():
  c = tiny_cpu.get_config()
  c.opponent = "random"
  return c
