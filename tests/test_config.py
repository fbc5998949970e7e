"""Config conversion and validation: each bad field fails early with its name in the message."""
import importlib

import pytest

from spiral_jax import config as config_lib
from experiments import tiny_cpu, paper_kuhn_qwen3_4b, ablation_no_rae, fixed_opponent_random


def test_the_cpu_default_converts_and_splits_the_batch():
  cfg = config_lib.from_config_dict(tiny_cpu.get_config())
  assert cfg.games[0].id == "KuhnPoker-v1" and dict(cfg.games[0].kwargs) == {"rounds": 1}
  assert cfg.game_quotas == (cfg.batch_size,)
  assert cfg.mesh_shape == {"data": 8, "fsdp": 1, "tensor": 1}
  assert config_lib.from_config_dict(ablation_no_rae.get_config()).rae is False
  assert config_lib.from_config_dict(fixed_opponent_random.get_config()).opponent == "random"


@pytest.mark.parametrize("name", ["fixed_opponent_checkpoint", "league_tiny"])
def test_opponent_experiments_convert(name):
  module = importlib.import_module(f"experiments.{name}")
  cfg = config_lib.from_config_dict(module.get_config())
  assert cfg.opponent == name.split("_")[-1 if name.startswith("fixed") else 0]


def test_league_needs_positive_size_and_period():
  c = tiny_cpu.get_config()
  c.opponent, c.league_size = "league", 0
  with pytest.raises(ValueError, match="league_size"):
    config_lib.from_config_dict(c)


def test_quotas_follow_the_weights_and_sum_to_the_batch():
  c = tiny_cpu.get_config()
  c.games = ("TicTacToe-v0", "KuhnPoker-v1", "SimpleNegotiation-v1")
  c.game_weights = (1.0, 1.0, 1.0)
  c.batch_size = 128
  assert sorted(config_lib.from_config_dict(c).game_quotas) == [42, 43, 43]


@pytest.mark.parametrize("field,value,match", [
    ("games", ("Chess-v0",), "unknown game id"),
    ("game_weights", (0.0,), "game_weights must sum"),
    ("game_weights", (1.0, 2.0), "game_weights has 2 entries"),
    ("batch_size", 0, "batch_size"),
    ("micro_batch_size", 7, "micro_batch_size"),
    ("opponent", "human", "opponent"),
    ("opponent", "checkpoint", "opponent_path"),
    ("rae_alpha", 1.0, "rae_alpha"),
    ("model", "/no/such/folder", "model="),
    ("tokenizer", "/no/such/folder", "tokenizer="),
    ("typo_field", 1, "unknown config fields"),
    ("optim.learning_rate", 0.0, "optim.learning_rate"),
    ("sampling.top_p", 0.0, "sampling.top_p"),
    ("loss.name", "dpo", "loss.name"),
    ("sampling.max_new_tokens", 1500, "exceeds the model's context"),
    ("max_prompt_tokens", 2040, "max_prompt_tokens \\+ sampling.max_new_tokens"),
    ("model_overrides.d_modle", 64, "model_overrides: unknown ModelConfig fields"),
    ("max_nonfinite_steps", 0, "max_nonfinite_steps"),
    ("eval_opponents", ("grandmaster",), "eval_opponents"),
    ("rollout_shards", -1, "rollout_shards"),
    ("rollout_shards", 3, "rollout_shards=3 must divide games_per_round"),
])
def test_bad_fields_are_named(field, value, match):
  c = tiny_cpu.get_config()
  with c.unlocked():
    target, name = c, field
    if "." in field:
      sub, name = field.split(".")
      target = c[sub]
    target[name] = value
  with pytest.raises(ValueError, match=match):
    config_lib.from_config_dict(c)


def test_mesh_and_batch_must_fit_the_devices():
  c = tiny_cpu.get_config()
  c.mesh_data, c.mesh_fsdp = 3, 1
  with pytest.raises(ValueError, match="mesh_data x mesh_fsdp x mesh_tensor"):
    config_lib.from_config_dict(c).mesh_shape
  c.mesh_data, c.batch_size = -1, 12
  with pytest.raises(ValueError, match="divisible by mesh_data x mesh_fsdp"):
    config_lib.from_config_dict(c).mesh_shape
  c.batch_size, c.mesh_data, c.mesh_fsdp, c.mesh_tensor = 64, 1, -1, 2  # -1 fills any one axis
  assert config_lib.from_config_dict(c).mesh_shape == {"data": 1, "fsdp": 4, "tensor": 2}
  c.mesh_data = -1
  with pytest.raises(ValueError, match="at most one may be -1"):
    config_lib.from_config_dict(c).mesh_shape


def test_rollout_shards_need_a_shardable_opponent():
  c = tiny_cpu.get_config()
  c.rollout_shards, c.opponent, c.opponent_path = 2, "checkpoint", "/tmp"
  with pytest.raises(ValueError, match="needs one rollout shard"):
    config_lib.from_config_dict(c)


def test_workdir_must_be_writable(tmp_path):
  config_lib.check_workdir(str(tmp_path / "new"))
  blocker = tmp_path / "file"
  blocker.write_text("x")
  with pytest.raises(ValueError, match="--workdir"):
    config_lib.check_workdir(str(blocker / "sub"))


def test_paper_config_needs_a_model_folder():
  with pytest.raises(ValueError, match="model="):
    config_lib.from_config_dict(paper_kuhn_qwen3_4b.get_config())
