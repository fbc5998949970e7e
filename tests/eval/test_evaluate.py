"""``python -m spiral_jax.evaluate`` end to end on a tiny run's checkpoint: every section (arena per
opponent, Kuhn exploitability scored and sampled, reasoning on the sample benchmark files built into
TFDS), the markdown summary, and numbers that OpenSpiel-style recomputation confirms."""
import dataclasses
import importlib.util
import json
import os
import pathlib

import jax
import numpy as np
import pytest

from spiral_jax import config as config_lib
from spiral_jax import evaluate
from spiral_jax.eval import kuhn_exact
from spiral_jax.eval import report as report_lib
from spiral_jax.eval import suites
from spiral_jax.run import evaluation as run_evaluation
from spiral_jax.run.trainer import Trainer
from spiral_jax.sampling import prefixes

DATA = pathlib.Path(__file__).parent / "data"
# The shared tiny run (tests/tiny_config.py) as a config file of its own (the CLI reads files).
CONFIG_FILE = '''
from tests import tiny_config


def get_config():
  c = tiny_config.get_config()
  c.warm_start.steps = 0  # tests/rl/test_sft.py covers the supervised steps
  c.eval.games = 8
  c.checkpoint.keep = 3
  c.num_steps = 1
  return c
'''


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """(config file, workdir) of a tiny run trained for one self-play step."""
  root = tmp_path_factory.mktemp("evaluate")
  path = root / "tiny_eval.py"
  path.write_text(CONFIG_FILE)
  spec = importlib.util.spec_from_file_location("tiny_eval", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  workdir = root / "run"
  Trainer(config_lib.from_config_dict(module.get_config()), str(workdir), progress=False).run()
  return path, workdir


def test_evaluate_writes_every_section_and_the_summary(run, tmp_path, capsys):
  config_file, workdir = run
  (workdir / "eval").mkdir(exist_ok=True)  # training's own report of step 1, as its eval writes
  for ext in (".json", ".md"):
    (workdir / "eval" / f"1{ext}").write_text(f"training's report{ext}")
  before = {p.name: p.read_bytes() for p in (workdir / "eval").iterdir()}
  evaluate.main(evaluate.parse_flags([
      "evaluate", f"--config={config_file}", f"--workdir={workdir}",
      "--config.eval.opponents=random,self", "--config.eval.kuhn_samples=4",
      "--config.eval.reasoning=math500,gpqa_diamond", f"--config.eval.data_dir={tmp_path}",
      f"--config.eval.source_dir={DATA}", "--config.eval.reasoning_limit=2",
      "--config.eval.reasoning_samples=2", "--config.eval.reasoning_max_new_tokens=8"]))
  printed = capsys.readouterr().out
  assert {p.name: p.read_bytes() for p in (workdir / "eval").iterdir()
          if p.name in before} == before and "1.json" in before  # beside, never over
  with open(workdir / "eval" / "1.evaluate.json") as f:
    report = json.load(f)
  assert report["step"] == 1 and report["source"]["checkpoint"] == 1

  # Arena: each opponent, 8 games split over the seats, Wilson intervals around the rates.
  arena = report["arena"]["KuhnPoker-v1"]
  assert sorted(arena) == ["random", "self"]
  for result in arena.values():
    overall = result["overall"]
    assert overall["games"] == 8 == sum(s["games"] for s in result["seats"])
    for name in ("win", "draw", "loss", "agent_forfeit"):
      rate = overall[name]
      assert rate["low"] <= rate["rate"] <= rate["high"] and rate["n"] == 8
    assert result["agent_text"]["moves"] > 0

  # Kuhn: the 12 distributions keyed by OpenSpiel's strings reproduce the reported numbers.
  kuhn = report["kuhn_exploitability"]["KuhnPoker-v1"]
  scored, sampled = kuhn["scored"], kuhn["sampled"]
  for r in (scored, sampled):
    assert sorted(r["distributions"]) == sorted(kuhn_exact.INFO_STATES)
  scored_policy = {s: np.array(p) for s, p in scored["distributions"].items()}
  assert all(abs(p.sum() - 1) < 1e-9 for p in scored_policy.values())
  assert kuhn_exact.exploitability(scored_policy) == pytest.approx(scored["exploitability"])
  sampled_policy = {s: np.array(p) for s, p in sampled["distributions"].items()}
  for s, p in sampled_policy.items():  # counts over 4 samples; the rest is invalid mass
    assert np.allclose(p * 4, np.round(p * 4)) and p.sum() + sampled["invalid_mass"][s] == 1
  assert kuhn_exact.exploitability(sampled_policy) == pytest.approx(sampled["exploitability"])
  assert sampled["samples_per_info_state"] == 4

  # Reasoning on the sample files, built into TFDS under tmp_path.
  reasoning = report["reasoning"]
  assert sorted(reasoning["benchmarks"]) == ["gpqa_diamond", "math500"]
  for b in reasoning["benchmarks"].values():
    assert (b["num_problems"], b["num_samples"]) == (2, 2) and 0 <= b["pass@1"] <= 1
  assert reasoning["settings"]["max_new_tokens"] == 8
  assert (tmp_path / "reasoning_benchmarks" / "math500").is_dir()

  # Flat metrics under the names the trainer writes (train.py's summary and plots read them).
  metrics = report["metrics"]
  for name in ("eval/KuhnPoker-v1/vs_random/win_rate", "eval/KuhnPoker-v1/vs_random/mean_reward",
               "eval/KuhnPoker-v1/vs_random/reward_ci95", "eval/KuhnPoker-v1/vs_self/invalid_rate",
               "eval/KuhnPoker-v1/exploitability", "eval/KuhnPoker-v1/off_format_mass",
               "eval/KuhnPoker-v1/exploitability_sampled", "eval/reasoning/average_pass@1",
               "eval/reasoning/math500/pass@1"):
    assert name in metrics, name
  assert metrics["eval/KuhnPoker-v1/exploitability"] == scored["exploitability"]

  summary = (workdir / "eval" / "1.evaluate.md").read_text()
  for needle in ("## Arena", "**policy** vs **self**", "## Kuhn Poker exploitability",
                 "| scored |", "sampled (4 per set)", "`0pb`", "## Reasoning", "| math500 |",
                 "| gpqa_diamond |", "**average**"):
    assert needle in summary, needle
  assert "## Reasoning" in printed and str(workdir / "eval" / "1.evaluate.md") in printed


def test_a_report_name_that_is_taken_gets_the_next_number(tmp_path):
  assert report_lib.unused_name(str(tmp_path), "3.evaluate") == "3.evaluate"
  (tmp_path / "3.evaluate.md").write_text("an earlier evaluation")
  assert report_lib.unused_name(str(tmp_path), "3.evaluate") == "3.evaluate-2"
  (tmp_path / "3.evaluate-2.json").write_text("{}")
  assert report_lib.unused_name(str(tmp_path), "3.evaluate") == "3.evaluate-3"


def test_evaluate_reads_the_run_config_and_names_missing_checkpoints(run, tmp_path):
  config_file, workdir = run
  evaluate.parse_flags(["evaluate", f"--workdir={workdir}"])  # no --config: the run's config.json
  cfg = evaluate.config_from_flags()
  assert cfg.eval.games == 8 and cfg.checkpoint.every == 1
  with pytest.raises(ValueError, match=r"--step=7: .* holds steps \[0, 1\]"):
    run_evaluation.evaluate_run(cfg, str(workdir), step=7, echo=False)
  with pytest.raises(FileNotFoundError, match="training run's folder"):
    run_evaluation.evaluate_run(cfg, str(tmp_path), echo=False)
  evaluate.parse_flags(["evaluate", f"--config={config_file}", f"--workdir={workdir}",
                        "--config.eval.reasoning=nope"])
  with pytest.raises(ValueError, match="eval.reasoning: unknown benchmarks"):
    evaluate.config_from_flags()


@pytest.mark.parametrize("overrides, message", [
    (dict(eval__opponents=("random", "minimax")), "eval.opponents: 'minimax'"),
    (dict(eval__opponents=()), "eval.opponents is empty"),
    (dict(eval__extra_games=("KuhnPoker-v1",)), "eval.extra_games: 'KuhnPoker-v1'"),
    (dict(eval__kuhn_samples=-1), "eval.kuhn_samples=-1"),
    (dict(eval__reasoning_samples=0), "eval.reasoning_samples=0"),
    (dict(eval__reasoning=("math500",)), "eval.reasoning needs eval.data_dir"),
])
def test_bad_eval_fields_are_refused_by_name(overrides, message):
  from tests.run.test_trainer import tiny_config
  with pytest.raises(ValueError, match=message):
    config_lib.check_files(tiny_config(**overrides))  # a folder opponent is a filesystem check


def test_eval_lists_accept_commas_and_lists():
  from tests.run.test_trainer import tiny_config
  cfg = tiny_config(eval__opponents=("random, expert",), eval__extra_games=["TicTacToe-v0"])
  assert cfg.eval.opponents == ("random", "expert") and cfg.eval.extra_games == ("TicTacToe-v0",)
  assert hash(cfg) is not None
  assert config_lib.EvalConfig(opponents="random,self").opponents == ("random", "self")
  assert os.path.basename(evaluate.__file__) == "evaluate.py"


@pytest.mark.slow
def test_evaluate_a_hugging_face_folder(run, tmp_path):
  from spiral_jax.model.policy import export_hf
  config_file, workdir = run
  evaluate.parse_flags(["evaluate", f"--config={config_file}", f"--workdir={workdir}"])
  cfg = evaluate.config_from_flags()
  policy, _ = run_evaluation.load_checkpoint_policy(cfg, str(workdir))
  export_hf(policy, str(tmp_path / "tiny_hf"))  # safetensors + the SentencePiece tokenizer
  evaluate.main(evaluate.parse_flags(["evaluate", f"--config={config_file}",
                                      f"--hf={tmp_path / 'tiny_hf'}", f"--workdir={tmp_path}"]))
  with open(tmp_path / "eval" / "hf-tiny_hf.json") as f:
    report = json.load(f)
  assert report["source"]["hf"] == str(tmp_path / "tiny_hf")
  assert report["arena"]["KuhnPoker-v1"]["random"]["overall"]["games"] == 8
  assert 0 <= report["kuhn_exploitability"]["KuhnPoker-v1"]["scored"]["exploitability"] <= 2
  assert (tmp_path / "eval" / "hf-tiny_hf.md").exists()


def test_shared_prefix_evaluation_equals_whole_prompts(run, tmp_path):
  """Evaluation samples with the prompts' shared prefixes run once (the default) and gets the same
  games and Kuhn samples as with whole prompts."""
  config_file, _ = run
  spec = importlib.util.spec_from_file_location("tiny_eval_shared", config_file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  c.eval.opponents, c.eval.kuhn_samples = ("random",), 6
  cfg = config_lib.from_config_dict(c)
  assert cfg.eval.sampling.share_prefix
  trainer = Trainer(cfg, str(tmp_path / "run"), progress=False)
  policy, key = trainer.policy, jax.random.key(3)
  shared_eval = suites.Evaluator(cfg)
  table = shared_eval.prefix_table(trainer.tokenizer)
  assert table is not None and table.prefix_len > 0
  assert shared_eval.prefix_table(trainer.tokenizer) is table  # built once per tokenizer
  whole_sampling = dataclasses.replace(cfg.eval.sampling, share_prefix=False)
  whole_cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, sampling=whole_sampling))
  assert suites.Evaluator(whole_cfg).prefix_table(trainer.tokenizer) is None
  layouts = []
  prompt_layout = prefixes.prompt_layout

  def layout_and_record(rows, batch, pad_id, prompt_buckets=None, share_prefix=True,
                        table=None):
    layouts.append(prompt_layout(rows, batch, pad_id, prompt_buckets, share_prefix, table))
    return layouts[-1]

  prefixes.prompt_layout = layout_and_record
  try:
    shared = shared_eval.run(policy, key).metrics()
    assert layouts and all(x.prefix is not None and x.prefix.shape == (table.groups,
                                                                       table.prefix_len)
                           for x in layouts)
    whole = suites.Evaluator(whole_cfg).run(policy, key).metrics()
  finally:
    prefixes.prompt_layout = prompt_layout
  assert shared.keys() == whole.keys()
  for name, value in whole.items():
    assert shared[name] == pytest.approx(value, abs=1e-9), name
