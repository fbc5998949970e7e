"""The paper's ablation on the CPU default: no RAE baseline (advantage = return, plain REINFORCE
advantages with the same PPO loss), which the reference run shows collapsing."""
from experiments import tiny_cpu


def get_config():
  c = tiny_cpu.get_config()
  c.rl.rae = False
  return c
