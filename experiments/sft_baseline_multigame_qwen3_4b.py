"""The paper's "SFT on expert game trajectories" baseline at scale: Qwen3-4B-Base imitates the
scripted experts (minimax TicTacToe, the Kuhn equilibrium, the value-seeking negotiator) on the
multi-game mix, then is evaluated like the SPIRAL runs.

  python -m spiral_jax.sft --config=experiments/sft_baseline_multigame_qwen3_4b.py \
      --config.model=/data/Qwen3-4B-Base --config.tokenizer=/data/Qwen3-4B-Base --workdir=runs/sft
  python -m spiral_jax.evaluate --config=experiments/sft_baseline_multigame_qwen3_4b.py \
      --config.model=/data/Qwen3-4B-Base --config.tokenizer=/data/Qwen3-4B-Base --workdir=runs/sft

The paper does not publish its SFT settings; these are this project's: 200 steps of 128 expert
moves (about 25k samples, drawn from 2,048 games per kind), Adam at 1e-5. Responses are the short
scripted explanation and the boxed move (``rl/sft.explanation``).
"""
from experiments import paper_multigame_qwen3_4b


def get_config():
  c = paper_multigame_qwen3_4b.get_config()
  c.num_steps = 0                       # no self-play; `spiral_jax.train` on this workdir adds it
  c.warm_start.steps = 200              # the SFT steps (batch_size = 128 expert moves each)
  c.warm_start.learning_rate = 1e-5
  c.eval.every = 0                      # evaluate with `python -m spiral_jax.evaluate` afterwards
  c.eval.games = 512                    # SPIRAL.md section 5
  c.eval.games_per_batch = 128
  c.eval.opponents = ("random", "expert")
  c.eval.extra_games = ()
  c.eval.kuhn_samples = 0               # 5-round Kuhn has no exact exploitability
  c.eval.reasoning = ("math500", "aime24", "aime25", "amc23", "olympiadbench", "minerva_math",
                      "gpqa_diamond", "mmlu_pro")
  c.eval.data_dir = "/data/tensorflow_datasets"   # where the TFDS benchmarks are built
  c.eval.source_dir = "/data/benchmarks"          # <dir>/<benchmark>/ public files (datasets.py)
  c.eval.reasoning_limit = 0
  c.eval.reasoning_samples = 4
  c.eval.reasoning_max_new_tokens = 8192
  return c
