"""Command line: evaluate a run's checkpoint, or a Hugging Face model, with the configured suites.

  python -m spiral_jax.evaluate --config=experiments/tiny_cpu.py --workdir=runs/tiny_cpu
      [--step=N]                                   # default: the latest checkpoint
      [--config.eval_games=512] [--config.eval_opponents=random,expert,self]
      [--config.eval_kuhn_samples=200]             # also the sampled Kuhn estimate
      [--config.eval_reasoning=math500,gpqa_diamond --config.eval_data_dir=~/tfds
       --config.eval_source_dir=~/benchmarks]      # build the TFDS datasets from local files
  python -m spiral_jax.evaluate --config=experiments/paper_kuhn_qwen3_4b.py
      --hf=/models/Qwen3-4B-Base --workdir=runs/qwen3_4b_base

Runs the suites of ``rl/evaluation.py`` (the trainer's periodic evaluation is the same code, with
the same key for the same step), writes ``<workdir>/eval/<step>.json`` (every section: arena per
game and opponent with Wilson intervals, the Kuhn exploitability reports with the 12 distributions
keyed by OpenSpiel's information-state strings, reasoning) and ``<workdir>/eval/<step>.md``, and
prints the markdown. An HF model's files are ``eval/hf-<folder name>.{json,md}``. Without
``--config`` the run's own ``config.json`` is used. ``--config.x=y`` sets any field, including
``eval_*`` fields the config file does not list.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any, Mapping, Sequence

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from spiral_jax import config as config_lib
from spiral_jax.rl import losses


def define_flags(fv: flags.FlagValues) -> None:
  """This command's flags, on a fresh ``FlagValues`` per parse (``--config.x`` overrides define
  flags as they are parsed, so one set of flags parses one command line)."""
  config_flags.DEFINE_config_file(
      "config", None, "an ml_collections config file (default: <workdir>/config.json)",
      flag_values=fv, lock_config=False, accept_new_attributes=True)
  flags.DEFINE_string("workdir", None, "the run folder; reports go to <workdir>/eval",
                      flag_values=fv)
  flags.DEFINE_integer("step", None, "the checkpoint step (default: the latest)", flag_values=fv)
  flags.DEFINE_alias("checkpoint", "step", flag_values=fv)
  flags.DEFINE_string("hf", None, "evaluate this Hugging Face folder instead of a checkpoint",
                      flag_values=fv)


FLAGS = flags.FlagValues()  # the parsed flags; private, so this CLI and train's share a process


def parse_with(define, argv: Sequence[str], doc: str) -> flags.FlagValues:
  """Parses ``argv`` (``argv[0]`` is the program) into a new ``FlagValues`` that ``define`` fills;
  ``--help`` prints ``doc`` and the flags."""
  fv = flags.FlagValues()
  old, sys.argv = sys.argv, list(argv)  # config_flags reads --config and overrides from sys.argv
  try:
    define(fv)
    if any(a in ("--help", "-h", "--helpfull") for a in argv[1:]):
      print(doc + "\n" + fv.get_help())
      sys.exit(0)
    rest = fv(list(argv), known_only=True)
  finally:
    sys.argv = old
  if len(rest) > 1:
    raise app.UsageError(f"unknown arguments {rest[1:]}; see --help")
  return fv


# ---- loading what to evaluate ----
def _known(cls, d: Mapping[str, Any]) -> dict[str, Any]:
  """``d``'s entries that are fields of ``cls``, lists as tuples (JSON has no tuples)."""
  names = {f.name for f in dataclasses.fields(cls)}
  return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names}


def load_run_config(workdir: str) -> config_lib.TrainConfig:
  """The ``TrainConfig`` a run saved in ``<workdir>/config.json`` (missing fields: defaults)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist: pass --config=<the run's config file>, or a "
                            "--workdir that a training run wrote")
  with open(path) as f:
    d = json.load(f)
  games = tuple(config_lib.GameSpec(g["id"], float(g["weight"]),
                                    tuple((k, v) for k, v in g["kwargs"])) for g in d["games"])
  return config_lib.TrainConfig(
      games=games, model_overrides=tuple((k, v) for k, v in d.get("model_overrides", ())),
      sampling=config_lib.SamplingConfig(**_known(config_lib.SamplingConfig, d["sampling"])),
      loss=losses.LossConfig(**_known(losses.LossConfig, d["loss"])),
      optim=config_lib.OptimConfig(**_known(config_lib.OptimConfig, d["optim"])),
      **{k: v for k, v in _known(config_lib.TrainConfig, d).items()
         if k not in ("games", "model_overrides", "sampling", "loss", "optim")})


def checkpoint_steps(workdir: str) -> list[int]:
  """The steps saved under ``<workdir>/checkpoints``, ascending."""
  folder = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"{folder} does not exist: --workdir must be a training run's folder "
                            "(or pass --hf=<a Hugging Face folder>)")
  return sorted(int(p) for p in os.listdir(folder) if p.isdigit())


def load_checkpoint_policy(cfg: config_lib.TrainConfig, workdir: str, step: int | None = None,
                           mesh=None):
  """(the run's policy with the parameters of checkpoint ``step`` (default: the latest), step).

  The tokenizer is the run's own (``<workdir>/tokenizer``) for ``games_sentencepiece`` runs."""
  from spiral_jax.parallel import mesh as mesh_lib
  from spiral_jax.rl import opponents, trainer
  from spiral_jax.text import tokenizer as tokenizer_lib
  steps = checkpoint_steps(workdir)
  if not steps or (step is not None and step not in steps):
    raise ValueError(f"--step={step}: {workdir}/checkpoints holds steps {steps}; pick one of them")
  step = steps[-1] if step is None else step
  if cfg.tokenizer == "games_sentencepiece":
    folder = os.path.join(workdir, "tokenizer")
    if not os.path.isdir(folder):
      raise FileNotFoundError(f"{folder} does not exist: the run's tokenizer is saved there by "
                              "training; is --workdir a training run's folder?")
    tok = tokenizer_lib.load_tokenizer(folder)
  else:
    tok = tokenizer_lib.load_tokenizer(cfg.tokenizer)
  mesh = mesh if mesh is not None else mesh_lib.make_mesh(cfg.mesh_shape)
  policy = trainer.build_policy(cfg, tok, mesh)
  params, step = opponents.restore_params(os.path.join(workdir, "checkpoints"), policy.params, step)
  return policy.replace(params=params, tokenizer=tok), step


def load_hf_policy(folder: str, mesh=None):
  """A Hugging Face model and its tokenizer (``Policy.from_hf``)."""
  from spiral_jax.model.policy import Policy
  policy = Policy.from_hf(folder, mesh=mesh)
  if policy.tokenizer is None:
    raise ValueError(f"--hf={folder!r} has no tokenizer.json or tokenizer.model; add the model's "
                     "tokenizer files to the folder")
  return policy


# ---- the command ----
def run(cfg: config_lib.TrainConfig, workdir: str, *, step: int | None = None,
        hf: str | None = None, problems: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
        echo: bool = True):
  """Evaluates checkpoint ``step`` of the run in ``workdir`` (or the HF folder ``hf``) with
  ``cfg``'s suites; returns ``(EvalReport, json path, markdown path)``. ``problems`` replaces the
  configured benchmarks (``{name: [problem, ...]}``)."""
  from spiral_jax.parallel import mesh as mesh_lib
  from spiral_jax.rl import evaluation
  config_lib.check_workdir(workdir)
  mesh = mesh_lib.make_mesh(cfg.mesh_shape)
  if hf:
    if step is not None:
      raise ValueError("--step names a checkpoint of --workdir; leave it out with --hf")
    policy = load_hf_policy(hf, mesh)
    name = "hf-" + os.path.basename(os.path.normpath(hf))
    key, header = jax.random.key(cfg.seed + 1), {"source": {"hf": os.path.abspath(hf)}}
    title = f"Evaluation of {os.path.basename(os.path.normpath(hf))}"
  else:
    policy, step = load_checkpoint_policy(cfg, workdir, step, mesh)
    name = str(step)
    key = jax.random.fold_in(jax.random.key(cfg.seed + 1), step)  # as the trainer's at this step
    header = {"step": step, "source": {"workdir": os.path.abspath(workdir), "checkpoint": step}}
    title = f"Evaluation of {os.path.basename(os.path.abspath(workdir))} at step {step}"
  evaluator = evaluation.Evaluator(cfg, problems)
  report = evaluator.run(policy, key)
  json_path, md_path = report.write(os.path.join(workdir, "eval"), name, title, **header)
  if echo:
    print(report.to_markdown(title))
    print(f"wrote {json_path} and {md_path}")
  return report, json_path, md_path


def config_from_flags() -> config_lib.TrainConfig:
  """The config of the parsed flags: ``--config`` (+ overrides) or the run's config.json, with
  ``--hf`` as the model and tokenizer."""
  if FLAGS.config is None:
    cfg = load_run_config(FLAGS.workdir)
    return dataclasses.replace(cfg, model=FLAGS.hf, tokenizer=FLAGS.hf) if FLAGS.hf else cfg
  cd = FLAGS.config
  if FLAGS.hf:
    cd.model, cd.tokenizer = FLAGS.hf, FLAGS.hf
  return config_lib.from_config_dict(cd)


def parse_flags(argv: Sequence[str]) -> list[str]:
  """Parses this command's flags (``argv[0]`` is the program) into ``FLAGS``."""
  global FLAGS
  FLAGS = parse_with(define_flags, argv, __doc__)
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required (the run folder; reports go to <workdir>/eval)")
  return list(argv[:1])


def main(argv: Sequence[str]) -> None:
  """Runs the command on already parsed flags (``parse_flags``)."""
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every restore at INFO
  run(config_from_flags(), FLAGS.workdir, step=FLAGS.step, hf=FLAGS.hf)


if __name__ == "__main__":
  app.run(main, flags_parser=lambda argv: (parse_flags(argv), flags.FLAGS(argv[:1]))[0])
