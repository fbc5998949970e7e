"""The tiny training run the tests share: a 1-layer d32 decoder on single-round Kuhn Poker, 8
move-samples per step, no evaluation. A config file, so the command-line tests run exactly what
the in-process ones do; each test file overrides the few fields it is about."""
from spiral_jax import config as config_lib


def get_config():
  c = config_lib.defaults()  # every field, so any --config.x=y override applies
  c.games = ("KuhnPoker-v1",)
  c.game_kwargs = {"KuhnPoker-v1": {"rounds": 1}}
  c.model = "tiny"
  c.model_overrides = dict(num_layers=1, d_model=32, num_heads=2, num_kv_heads=1, head_dim=16,
                           mlp_dim=64, max_seq_len=1024)
  c.vocab_size = 400
  c.batch_size = 8
  c.max_prompt_tokens = 1000  # prompt + response within the 1024-token context
  c.games_per_round = 4
  c.sampling.max_new_tokens = 4
  c.rl.loss.drgrpo_constant = 4.0
  c.optim.learning_rate = 1e-2
  c.warm_start.steps = 1
  c.eval.every = 0
  c.checkpoint.every = 1
  c.checkpoint.keep = 2
  c.num_steps = 6
  c.mesh.data = -1
  c.mesh.fsdp = 1
  c.mesh.tensor = 1
  return c
