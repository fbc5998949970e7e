"""Command line: evaluate a run's checkpoint, or a Hugging Face model, with the configured suites.

  python -m spiral_jax.evaluate --config=experiments/tiny_cpu.py --workdir=runs/tiny_cpu
      [--step=N]                                   # default: the latest checkpoint
      [--config.eval.games=512] [--config.eval.opponents=random,expert,self]
      [--config.eval.kuhn_samples=200]             # also the sampled Kuhn estimate
      [--config.eval.reasoning=math500,gpqa_diamond --config.eval.data_dir=~/tfds
       --config.eval.source_dir=~/benchmarks]      # build the TFDS datasets from local files
  python -m spiral_jax.evaluate --config=experiments/paper_kuhn_qwen3_4b.py
      --hf=/models/Qwen3-4B-Base --workdir=runs/qwen3_4b_base

Runs the suites of ``eval/suites.py`` through ``run/evaluation.py`` (the trainer's periodic
evaluation is the same code, with the same key for the same step), writes
``<workdir>/eval/<step>.evaluate.json`` (every section: arena per game and opponent with Wilson
intervals, the Kuhn exploitability reports with the 12 distributions keyed by OpenSpiel's
information-state strings, reasoning) and ``<workdir>/eval/<step>.evaluate.md``, beside training's
own ``eval/<step>.json`` (a name taken gets ``-2``, ``-3``, ...: nothing is overwritten), and
prints the markdown. An HF model's files are ``eval/hf-<folder name>.{json,md}``. Without
``--config`` the run's own ``config.json`` is used. ``--config.x=y`` sets any field, including
``eval.*`` fields the config file does not list.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

from absl import flags
from ml_collections import config_flags

from spiral_jax import cli
from spiral_jax import config as config_lib
from spiral_jax.errors import InputError


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


def config_from_flags() -> config_lib.TrainConfig:
  """The config of the parsed flags: ``--config`` (+ overrides) or the run's config.json, with
  ``--hf`` as the model and tokenizer."""
  if FLAGS.config is None:
    cfg = config_lib.load_run(FLAGS.workdir)
    return dataclasses.replace(cfg, model=FLAGS.hf, tokenizer=FLAGS.hf) if FLAGS.hf else cfg
  cd = FLAGS.config
  if FLAGS.hf:
    cd.model, cd.tokenizer = FLAGS.hf, FLAGS.hf
  return config_lib.from_config_dict(cd)


def parse_flags(argv: Sequence[str]) -> list[str]:
  """Parses this command's flags (``argv[0]`` is the program) into ``FLAGS``."""
  global FLAGS
  FLAGS = cli.parse_with(define_flags, argv, __doc__)
  if not FLAGS.workdir:
    raise InputError("--workdir is required (the run folder; reports go to <workdir>/eval)")
  return list(argv[:1])


def main(argv: Sequence[str]) -> None:
  """Runs the command on already parsed flags (``parse_flags``)."""
  del argv
  cli.quiet_libraries()
  from spiral_jax.run import evaluation  # after validation: imports pull in the model stack
  evaluation.evaluate_run(config_from_flags(), FLAGS.workdir, step=FLAGS.step, hf=FLAGS.hf)


if __name__ == "__main__":
  cli.run(parse_flags, main)
