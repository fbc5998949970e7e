"""The tiny training run the tests share: a 1-layer d32 decoder on single-round Kuhn Poker, 8
move-samples per step, no evaluation. A config file, so the command-line tests run exactly what
the in-process ones do; each test file overrides the few fields it is about."""
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
  c.max_prompt_tokens = 1000  # prompt + response within the 1024-token context
  c.games_per_round = 4
  c.sampling = dict(max_new_tokens=4)
  c.loss = dict(drgrpo_constant=4.0)
  c.optim = dict(learning_rate=1e-2)
  c.warm_start_steps = 1
  c.eval_every = 0
  c.checkpoint_every = 1
  c.keep_checkpoints = 2
  c.num_steps = 6
  c.mesh_data = -1
  c.mesh_fsdp = 1
  c.mesh_tensor = 1
  return c
