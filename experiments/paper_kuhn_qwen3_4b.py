"""The reference's Kuhn Poker run (SPIRAL.md section 3): Qwen3-4B-Base on 8 accelerators.

Point ``model`` and ``tokenizer`` at a local Hugging Face folder of Qwen3-4B-Base:
  python -m spiral_jax.train --config=experiments/paper_kuhn_qwen3_4b.py \
      --config.model=/data/Qwen3-4B-Base --config.tokenizer=/data/Qwen3-4B-Base --workdir=...
"""
import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.games = ("KuhnPoker-v1",)
  c.game_weights = (1.0,)
  c.game_kwargs = {"KuhnPoker-v1": {"rounds": 5}}
  c.model = "/data/Qwen3-4B-Base"      # a local Hugging Face folder
  c.tokenizer = "/data/Qwen3-4B-Base"
  c.template = "qwen"
  c.seed = 0
  c.num_steps = 400
  c.batch_size = 128                    # move-samples per policy step
  c.games_per_round = 64
  c.max_prompt_tokens = 4096
  c.epochs = 2                          # 2 optimizer steps per policy step
  c.micro_batch_size = 16               # gradient accumulation so 128 x 8k tokens fit
  c.opponent = "self"
  c.rae = True
  c.rae_alpha = 0.95
  c.filter_zero_advantage = True
  c.sampling = ml_collections.ConfigDict(dict(max_new_tokens=4096, temperature=1.0, top_p=1.0,
                                              top_k=0))
  c.loss = ml_collections.ConfigDict(dict(name="ppo_clip", clip_eps=0.2, aggregation="drgrpo",
                                          drgrpo_constant=4096.0, kl_beta=0.0))
  c.optim = ml_collections.ConfigDict(dict(learning_rate=1e-6, b1=0.9, b2=0.95, weight_decay=0.0,
                                           clip_norm=1.0, warmup_steps=0, schedule="constant"))
  c.warm_start_steps = 0                # a pretrained model already knows the answer format
  c.eval_every = 16
  c.eval_games = 16
  c.eval_temperature = 0.6
  c.eval_top_p = 0.95
  c.checkpoint_every = 16
  c.keep_checkpoints = 3
  c.mesh_data = 1
  c.mesh_fsdp = -1                      # shard the 4B parameters and optimizer over every device
  c.mesh_tensor = 1
  c.param_dtype = "float32"
  c.compute_dtype = "bfloat16"
  return c
