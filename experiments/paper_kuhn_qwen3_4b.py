"""The reference's Kuhn Poker run (SPIRAL.md section 3): Qwen3-4B-Base on 8 accelerators.

Point ``model`` and ``tokenizer`` at a local Hugging Face folder of Qwen3-4B-Base:
  python -m spiral_jax.train --config=experiments/paper_kuhn_qwen3_4b.py \
      --config.model=/data/Qwen3-4B-Base --config.tokenizer=/data/Qwen3-4B-Base --workdir=...
A TFDS data_dir after the path (``--config=experiments/paper_kuhn_qwen3_4b.py:/data/tfds``) turns
on the reference run's online math evaluation there every 16 steps: MATH500, AIME24, AMC23,
Minerva and OlympiadBench, 1 sample of at most 4096 tokens each.
"""
from spiral_jax import config as config_lib


REFERENCE_MATH = ("math500", "aime24", "amc23", "minerva_math", "olympiadbench")


def get_config(eval_data_dir: str = ""):
  c = config_lib.defaults()  # every field, so --config.x=y works for any of them
  c.games = ("KuhnPoker-v1",)
  c.game_weights = (1.0,)
  c.game_kwargs = {"KuhnPoker-v1": {"rounds": 5}}
  c.model = "/data/Qwen3-4B-Base"      # a local Hugging Face folder
  c.tokenizer = "/data/Qwen3-4B-Base"
  c.template = "qwen"
  c.seed = 0
  c.num_steps = 400
  c.batch_size = 128                    # move-samples per policy step
  # The reference's 8 actors each fold their own RAE baselines over the ~2 games they play a
  # step (one at a time, --num_envs 1): 8 groups of 2 games a round fold the same way.
  c.games_per_round = 16
  c.max_prompt_tokens = 4096
  c.opponent = "self"
  c.rl.epochs = 2                       # 2 optimizer steps per policy step
  c.rl.micro_batch_size = 16            # gradient accumulation so 128 x 8k tokens fit
  c.rl.update(dict(rae=True, rae_alpha=0.95, rae_groups=8, filter_zero_advantage=True))
  c.sampling.update(dict(max_new_tokens=4096, temperature=1.0, top_p=1.0, top_k=0))
  c.rl.loss.update(dict(name="ppo_clip", clip_eps=0.2, aggregation="drgrpo",
                        drgrpo_constant=4096.0, kl_beta=0.0))
  c.optim.update(dict(learning_rate=1e-6, b1=0.9, b2=0.95, weight_decay=0.0, clip_norm=1.0,
                      warmup_steps=0, schedule="constant"))
  c.warm_start.steps = 0                # a pretrained model already knows the answer format
  c.eval.every = 16
  c.eval.games = 16
  c.eval.extra_games = ("TicTacToe-v0",)  # the reference run evaluates TicTacToe-v0 and Kuhn
  c.eval.sampling.update(dict(temperature=0.6, top_p=0.95))
  if eval_data_dir:  # as the reference's --eval_data: its five benchmarks, 1 sample, 4096 tokens
    c.eval.update(dict(data_dir=eval_data_dir, reasoning=REFERENCE_MATH, reasoning_samples=1,
                       reasoning_max_new_tokens=4096))
  c.checkpoint.every = 16
  c.checkpoint.keep = 3
  c.mesh.update(dict(data=1, fsdp=-1, tensor=1))  # shard parameters and optimizer over all
  c.param_dtype = "float32"
  c.compute_dtype = "bfloat16"
  return c
