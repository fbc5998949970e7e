"""Evaluating a saved run (``python -m spiral_jax.evaluate``): its checkpoint's policy, or a Hugging
Face model, through the configured suites (``eval/suites.py``), with training's key for the same
step, so the numbers equal the ones training logged."""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import jax

from spiral_jax import config as config_lib
from spiral_jax.errors import InputError
from spiral_jax.eval import report as report_lib
from spiral_jax.eval import suites
from spiral_jax.model.policy import Policy
from spiral_jax.parallel import mesh as mesh_lib
from spiral_jax.play import opponents
from spiral_jax.run import setup
from spiral_jax.text import tokenizer as tokenizer_lib
from spiral_jax.workdir import Workdir


def load_checkpoint_policy(cfg: config_lib.TrainConfig, workdir: str, step: int | None = None,
                           mesh=None) -> tuple[Policy, int]:
  """(the run's policy with the parameters of checkpoint ``step``, step). ``step`` None: the
  newest checkpoint that restores intact. The parameters are verified as a resume verifies them
  (layout, fingerprints). The tokenizer is the run's own (``<workdir>/tokenizer``) for
  ``games_sentencepiece`` runs."""
  paths = Workdir(workdir)
  if not paths.is_run():
    raise FileNotFoundError(f"{paths.checkpoints} does not exist: --workdir must be a training "
                            "run's folder (or pass --hf=<a Hugging Face folder>)")
  steps = paths.checkpoint_steps()
  if not steps or (step is not None and step not in steps):
    raise InputError(f"--step={step}: {paths.checkpoints} holds steps {steps}; pick one of them")
  if cfg.tokenizer == "games_sentencepiece":
    if not os.path.isdir(paths.tokenizer):
      raise FileNotFoundError(f"{paths.tokenizer} does not exist: the run's tokenizer is saved "
                              "there by training; is --workdir a training run's folder?")
    tok = tokenizer_lib.load_tokenizer(paths.tokenizer)
  else:
    tok = tokenizer_lib.load_tokenizer(cfg.tokenizer)
  mesh = mesh if mesh is not None else mesh_lib.make_mesh(cfg.mesh_shape)
  policy = setup.build_policy(cfg, tok, mesh)
  params, step = opponents.restore_params(paths.checkpoints, policy.params, step)
  return policy.replace(params=params, tokenizer=tok), step


def load_hf_policy(folder: str, mesh=None) -> Policy:
  """A Hugging Face model and its tokenizer (``Policy.from_hf``)."""
  policy = Policy.from_hf(folder, mesh=mesh)
  if policy.tokenizer is None:
    raise InputError(f"--hf={folder!r} has no tokenizer.json or tokenizer.model; add the model's "
                     "tokenizer files to the folder")
  return policy


def evaluate_run(cfg: config_lib.TrainConfig, workdir: str, *, step: int | None = None,
                 hf: str | None = None,
                 problems: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
                 echo: bool = True):
  """Evaluates checkpoint ``step`` of the run in ``workdir`` (or the HF folder ``hf``) with
  ``cfg``'s suites; returns ``(EvalReport, json path, markdown path)``: ``eval/<step>.evaluate``
  (an HF folder: ``eval/hf-<folder>``), with ``-2``, ``-3``, ... when that report exists, so
  training's ``eval/<step>.json`` and earlier evaluations are never overwritten. ``problems`` replaces the
  configured benchmarks (``{name: [problem, ...]}``)."""
  paths = Workdir(workdir)
  paths.check_writable()
  config_lib.check_files(cfg)
  mesh = mesh_lib.make_mesh(cfg.mesh_shape)
  if hf:
    if step is not None:
      raise InputError("--step names a checkpoint of --workdir; leave it out with --hf")
    policy = load_hf_policy(hf, mesh)
    name = "hf-" + os.path.basename(os.path.normpath(hf))
    key, header = jax.random.key(cfg.seed + 1), {"source": {"hf": os.path.abspath(hf)}}
    title = f"Evaluation of {os.path.basename(os.path.normpath(hf))}"
  else:
    policy, step = load_checkpoint_policy(cfg, workdir, step, mesh)
    name = f"{step}.evaluate"  # beside training's own eval/<step>.json, never over it
    key = setup.eval_key(cfg, step)  # as the trainer's at this step
    header = {"step": step, "source": {"workdir": os.path.abspath(workdir), "checkpoint": step}}
    title = f"Evaluation of {os.path.basename(os.path.abspath(workdir))} at step {step}"
  report = suites.Evaluator(cfg, problems).run(policy, key)
  json_path, md_path = report.write(paths.eval, report_lib.unused_name(paths.eval, name), title,
                                    **header)
  if echo:
    print(report.to_markdown(title))
    print(f"wrote {json_path} and {md_path}")
  return report, json_path, md_path
