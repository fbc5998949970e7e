"""The CPU default against a league of its own past selves (which the reference lacks): each step
draws one of the newest ``league_size`` snapshots, taken every ``league_every`` steps."""
from experiments import tiny_cpu


def get_config():
  c = tiny_cpu.get_config()
  c.opponent = "league"
  c.league_size = 4
  c.league_every = 10
  return c
