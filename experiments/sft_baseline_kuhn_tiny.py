"""The SFT baseline on the CPU default: the tiny policy imitates the Kuhn equilibrium player.

  python -m spiral_jax.sft --config=experiments/sft_baseline_kuhn_tiny.py --workdir=runs/sft_kuhn
  python -m spiral_jax.evaluate --workdir=runs/sft_kuhn      # (or --config=this file + overrides)

The same model, tokenizer and evaluation as ``tiny_cpu.py``; ``warm_start.steps`` supervised steps
on expert (Nash equilibrium, alpha 1/6) games replace the random-move warm-start and self-play.
Compare its exploitability with the self-play run's. A few minutes on 2 CPU cores.
"""
from experiments import tiny_cpu


def get_config():
  c = tiny_cpu.get_config()
  c.num_steps = 0                       # no self-play; `spiral_jax.train` on this workdir adds it
  c.warm_start.steps = 150              # the SFT steps (batch_size expert moves each)
  c.warm_start.learning_rate = 3e-3
  # Expert responses restate the card ("The opponent bet; I have K \boxed{[call]}"): up to
  # 16 tokens with the end of turn in the 512-piece tokenizer.
  c.sampling.update(dict(max_new_tokens=24, temperature=1.0, top_p=1.0, top_k=0))
  c.rl.loss.drgrpo_constant = 24.0
  # eval.every, eval.games and eval.games_per_batch stay tiny_cpu's (100, 1024, 256): the SFT
  # policy is evaluated at its step 0 whenever eval.every > 0, and self-play continued from this
  # workdir (`spiral_jax.train` with this config) evaluates as the CPU default does, not every step.
  c.eval.opponents = ("random", "expert", "self")
  c.eval.kuhn_samples = 50              # also the exploitability of sampled play
  c.eval.extra_games = ()
  c.eval.reasoning = ()                 # a 2-layer model has no reasoning to measure
  c.eval.data_dir = ""
  c.eval.source_dir = ""
  c.eval.reasoning_limit = 0
  c.eval.reasoning_samples = 4
  c.eval.reasoning_max_new_tokens = 512
  return c
