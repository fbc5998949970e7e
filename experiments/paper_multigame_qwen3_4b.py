"""The reference's multi-game run: TicTacToe + Kuhn Poker + Simple Negotiation, equal shares."""
import ml_collections

from experiments import paper_kuhn_qwen3_4b


def get_config(eval_data_dir: str = ""):
  c = paper_kuhn_qwen3_4b.get_config(eval_data_dir)
  c.games = ("TicTacToe-v0", "KuhnPoker-v1", "SimpleNegotiation-v1")
  c.game_weights = (1.0, 1.0, 1.0)
  c.game_kwargs = ml_collections.ConfigDict({"KuhnPoker-v1": {"rounds": 5}})
  c.eval.extra_games = ()  # TicTacToe is trained here
  return c
