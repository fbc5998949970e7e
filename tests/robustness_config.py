"""A very small training config for the preemption and checkpoint tests (tests/test_robustness.py).

A config file (not a dict) so the command line, ``python -m spiral_jax.train --config=<this>``,
runs exactly what the in-process tests run.
"""
import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.games = ("KuhnPoker-v1",)
  c.game_kwargs = {"KuhnPoker-v1": {"rounds": 1}}
  c.model = "tiny"
  c.model_overrides = dict(num_layers=1, d_model=32, num_heads=2, num_kv_heads=1, head_dim=16,
                           mlp_dim=64, max_seq_len=1024)
  c.vocab_size = 400
  c.batch_size = 8
  c.games_per_round = 4
  c.epochs = 1
  c.sampling = dict(max_new_tokens=4)
  c.max_prompt_tokens = 1020  # prompt + response within the model's 1024-token context
  c.loss = dict(drgrpo_constant=4.0)
  c.optim = dict(learning_rate=1e-2)
  c.warm_start_steps = 0
  c.eval_every = 0
  c.checkpoint_every = 1
  c.keep_checkpoints = 10
  c.num_steps = 2
  c.mesh_data = -1
  c.mesh_fsdp = 1
  c.mesh_tensor = 1
  return c
