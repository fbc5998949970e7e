"""Config conversion and validation: each bad field fails early with its name in the message."""
import importlib
import json

import pytest

from spiral_jax import config as config_lib
from spiral_jax.workdir import Workdir
from experiments import tiny_cpu, paper_kuhn_qwen3_4b, ablation_no_rae, fixed_opponent_random


def test_the_cpu_default_converts_and_splits_the_batch():
  cfg = config_lib.from_config_dict(tiny_cpu.get_config())
  assert cfg.games[0].id == "KuhnPoker-v1" and dict(cfg.games[0].kwargs) == {"rounds": 1}
  assert cfg.game_quotas == (cfg.batch_size,)
  assert cfg.mesh_shape == {"data": 8, "fsdp": 1, "tensor": 1}
  assert config_lib.from_config_dict(ablation_no_rae.get_config()).rl.rae is False
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
    ("rl.micro_batch_size", 7, "rl.micro_batch_size"),
    ("opponent", "human", "opponent"),
    ("opponent", "checkpoint", "opponent_path"),
    ("rl.rae_alpha", 1.0, "rl.rae_alpha"),
    ("typo_field", 1, "unknown config field 'typo_field'"),
    ("eval_every", 1, "'eval_every': it is now 'eval.every'"),
    ("eval.evry", 1, "'eval.evry': did you mean 'eval.every'"),
    ("optim.learning_rate", 0.0, "optim.learning_rate"),
    ("sampling.top_p", 0.0, "sampling.top_p"),
    ("rl.loss.name", "dpo", "loss.name"),
    ("eval.sampling.top_p", 0.0, "eval.sampling.top_p"),
    ("eval.sampling.max_new_tokens", 1500, "eval.sampling.max_new_tokens"),
    ("sampling.max_new_tokens", 1500, "exceeds the model's context"),
    ("max_prompt_tokens", 2040, "max_prompt_tokens \\+ sampling.max_new_tokens"),
    ("model_overrides.d_modle", 64, "model_overrides: unknown ModelConfig fields"),
    ("rl.max_nonfinite_steps", 0, "rl.max_nonfinite_steps"),
    ("rollout_shards", -1, "rollout_shards"),
    ("rollout_shards", 3, "rollout_shards=3 must divide games_per_round"),
])
def test_bad_fields_are_named(field, value, match):
  c = tiny_cpu.get_config()
  with c.unlocked():
    *groups, name = field.split(".")
    target = c
    for group in groups:
      target = target[group]
    target[name] = value
  with pytest.raises(ValueError, match=match):
    config_lib.from_config_dict(c)


def test_mesh_and_batch_must_fit_the_devices():
  c = tiny_cpu.get_config()
  c.mesh.data, c.mesh.fsdp = 3, 1
  with pytest.raises(ValueError, match="mesh.data x mesh.fsdp x mesh.tensor"):
    config_lib.from_config_dict(c).mesh_shape
  c.mesh.data, c.batch_size = -1, 12
  with pytest.raises(ValueError, match="divisible by mesh.data x mesh.fsdp"):
    config_lib.from_config_dict(c).mesh_shape
  c.batch_size, c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 64, 1, -1, 2  # -1 fills any one axis
  assert config_lib.from_config_dict(c).mesh_shape == {"data": 1, "fsdp": 4, "tensor": 2}
  c.mesh.data = -1
  with pytest.raises(ValueError, match="at most one may be -1"):
    config_lib.from_config_dict(c).mesh_shape


def test_rollout_shards_need_a_shardable_opponent():
  c = tiny_cpu.get_config()
  c.rollout_shards, c.opponent, c.opponent_path = 2, "checkpoint", "/tmp"
  with pytest.raises(ValueError, match="needs one rollout shard"):
    config_lib.from_config_dict(c)


def test_workdir_must_be_writable(tmp_path):
  Workdir(str(tmp_path / "new")).check_writable()
  blocker = tmp_path / "file"
  blocker.write_text("x")
  with pytest.raises(ValueError, match="--workdir"):
    Workdir(str(blocker / "sub")).check_writable()


@pytest.mark.parametrize("field,value,match", [
    ("model", "/no/such/folder", "model="),
    ("tokenizer", "/no/such/folder", "tokenizer="),
    ("eval.opponents", ("grandmaster",), "eval.opponents"),
])
def test_filesystem_fields_are_checked_in_their_own_step(field, value, match):
  c = tiny_cpu.get_config()
  *groups, name = field.split(".")
  (c[groups[0]] if groups else c)[name] = value
  cfg = config_lib.from_config_dict(c)  # converting reads no files
  with pytest.raises(ValueError, match=match):
    config_lib.check_files(cfg)


def test_paper_config_needs_a_model_folder():
  cfg = config_lib.from_config_dict(paper_kuhn_qwen3_4b.get_config())
  with pytest.raises(ValueError, match="model="):
    config_lib.check_files(cfg)


def test_defaults_hold_every_field_and_round_trip(tmp_path):
  c = config_lib.defaults()
  c.games, c.sampling.max_new_tokens = ("KuhnPoker-v1",), 64
  cfg = config_lib.from_config_dict(c)
  assert cfg == config_lib.TrainConfig(games=(config_lib.GameSpec("KuhnPoker-v1"),),
                                       sampling=config_lib.SamplingConfig(max_new_tokens=64))
  assert cfg.eval.sampling.max_new_tokens == 64  # 0 in the defaults: training's budget
  cpu = config_lib.from_config_dict(tiny_cpu.get_config())
  config_lib.save(cpu, str(tmp_path / "config.json"))
  assert config_lib.load_run(str(tmp_path)) == cpu


def test_groups_answer_the_questions_asked_in_many_places():
  c = tiny_cpu.get_config()
  c.rl.micro_batch_size = 16
  cfg = config_lib.from_config_dict(c)
  assert (cfg.micro_batch, cfg.num_micro_batches, cfg.rl.needs_reference) == (16, 4, True)
  c.rl.micro_batch_size, c.rl.loss.kl_beta = 0, 0.0
  cfg = config_lib.from_config_dict(c)
  assert (cfg.micro_batch, cfg.num_micro_batches, cfg.rl.needs_reference) == (64, 1, False)


def test_a_config_json_written_before_the_groups_still_loads(tmp_path):
  # The flat dataclasses.asdict form earlier runs saved: evaluation sampled with training's top_k.
  old = {"games": [{"id": "KuhnPoker-v1", "weight": 1.0, "kwargs": [["rounds", 1]]}],
         "model": "tiny", "vocab_size": 400, "max_prompt_tokens": 1000, "epochs": 1, "rae": False,
         "eval_every": 5, "eval_temperature": 0.9, "warm_start_steps": 3, "mesh_data": -1,
         "sampling": {"max_new_tokens": 8, "temperature": 1.0, "top_p": 1.0, "top_k": 5,
                      "share_prefix": False},
         "loss": {"name": "ppo_clip", "clip_eps": 0.2, "aggregation": "drgrpo",
                  "drgrpo_constant": 8.0, "kl_beta": 0.0}}
  (tmp_path / "config.json").write_text(json.dumps(old))
  cfg = config_lib.load_run(str(tmp_path))
  assert (cfg.rl.epochs, cfg.rl.rae, cfg.eval.every, cfg.warm_start.steps) == (1, False, 5, 3)
  assert cfg.eval.sampling == config_lib.SamplingConfig(8, 0.9, 0.95, 5, False)
  assert dict(cfg.games[0].kwargs) == {"rounds": 1} and cfg.rl.loss.drgrpo_constant == 8.0


def test_every_field_can_be_overridden_on_the_command_line():
  from absl import flags
  from ml_collections import config_flags
  fv = flags.FlagValues()
  argv = ["train", "--config.eval.sampling.top_p=0.5", "--config.rl.loss.kl_beta=0.25",
          "--config.eval.reasoning_limit=3", "--config.warm_start.steps=7"]
  config_flags.DEFINE_config_file("config", "experiments/tiny_cpu.py", flag_values=fv,
                                  sys_argv=argv)  # as train.py: the file's config stays locked
  fv(argv)
  cfg = config_lib.from_config_dict(fv.config)
  assert (cfg.eval.sampling.top_p, cfg.rl.loss.kl_beta) == (0.5, 0.25)
  assert (cfg.eval.reasoning_limit, cfg.warm_start.steps) == (3, 7)


def test_paper_configs_evaluate_and_fold_as_the_reference_run():
  """``run.sh`` of spiral-rl: --eval_env_ids TicTacToe-v0 KuhnPoker-v1, --eval_steps 16, math
  every 16 steps when --eval_data is given; 8 actors with their own RAE baselines."""
  plain = config_lib.from_config_dict(paper_kuhn_qwen3_4b.get_config())
  assert plain.eval.extra_games == ("TicTacToe-v0",) and plain.eval.every == 16
  assert plain.eval.reasoning == () and plain.rl.rae_groups == 8
  assert plain.games_per_round == 16  # 2 games per baseline group a round, as ~2 per actor
  math = config_lib.from_config_dict(paper_kuhn_qwen3_4b.get_config("/data/tfds"))
  assert math.eval.reasoning == ("math500", "aime24", "amc23", "minerva_math", "olympiadbench")
  assert (math.eval.data_dir, math.eval.reasoning_samples,
          math.eval.reasoning_max_new_tokens) == ("/data/tfds", 1, 4096)


def test_rae_groups_must_split_over_the_rollout_shards():
  c = tiny_cpu.get_config()
  c.rl.rae_groups = 0
  with pytest.raises(ValueError, match="rl.rae_groups=0 must be >= 1"):
    config_lib.from_config_dict(c)
  c.rl.rae_groups, c.rollout_shards = 3, 2
  with pytest.raises(ValueError, match="rl.rae_groups=3 must be a multiple of the 2 rollout"):
    config_lib.from_config_dict(c)
  c.rl.rae_groups = 4
  assert config_lib.from_config_dict(c).rl.rae_groups == 4


@pytest.mark.parametrize("name", ["sft_baseline_kuhn_tiny", "sft_baseline_multigame_qwen3_4b"])
def test_sft_configs_chain_into_self_play_with_its_evaluation_cadence(name):
  """The README continues an SFT run by self-play with the same config file: a first stage's
  settings must not leak into the second (an evaluation every step made the tiny one 4x slower),
  and evaluation goes in bounded batches, never all games at once."""
  cfg = config_lib.from_config_dict(importlib.import_module(f"experiments.{name}").get_config())
  assert cfg.num_steps == 0 and cfg.warm_start.steps > 0
  assert cfg.eval.every == 0 or cfg.eval.every >= 16, cfg.eval.every
  assert cfg.eval.games_per_batch > 0
