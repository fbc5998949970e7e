"""What every run of a config in a workdir shares: the mesh, the games, the tokenizer, the policy,
the optimizer, the checkpoints and the evaluation suites.

``RunSetup(cfg, workdir)`` builds them once; the training loop (``run/trainer.py``), the warm-start
and the SFT baseline run (``run/sft.py``) take it. Rollout shards: a job plays ``num_shards``
independent shards per step, each on its own group of devices (``parallel/multihost.py``).
"""
from __future__ import annotations

import dataclasses
import os

import jax

from spiral_jax import checkpoint as checkpoint_lib
from spiral_jax import config as config_lib
from spiral_jax.errors import InputError
from spiral_jax.eval import suites
from spiral_jax.model import config as model_config_lib
from spiral_jax.model.policy import Policy
from spiral_jax.parallel import mesh as mesh_lib
from spiral_jax.parallel import multihost
from spiral_jax.rl import sft
from spiral_jax.rl import train_step as ts
from spiral_jax.text import tokenizer as tokenizer_lib
from spiral_jax.workdir import Workdir


def build_tokenizer(cfg: config_lib.TrainConfig, workdir: str) -> tokenizer_lib.Tokenizer:
  """The configured tokenizer; the games' own SentencePiece model is trained once and saved."""
  if cfg.tokenizer != "games_sentencepiece":
    return tokenizer_lib.load_tokenizer(cfg.tokenizer)
  folder = Workdir(workdir).tokenizer
  tok = None
  if multihost.is_chief() and not os.path.isdir(folder):  # the chief trains it, all load it
    texts = sft.game_corpus([spec.make() for spec in cfg.games], cfg.template, seed=cfg.seed)
    pieces = [p for spec in cfg.games for p in spec.make().tokenizer_pieces]
    tok = tokenizer_lib.train_sentencepiece(
        texts, cfg.vocab_size, seed=cfg.seed,
        user_defined_symbols=(tokenizer_lib.CHAT_SPECIAL_TOKENS + (tokenizer_lib.ANSWER_BOX_TOKEN,)
                              + tuple(dict.fromkeys(pieces))))
    tok.save(folder)
  multihost.barrier("spiral_jax:tokenizer")
  return tok if tok is not None else tokenizer_lib.load_tokenizer(folder)


def build_policy(cfg: config_lib.TrainConfig, tok, mesh) -> Policy:
  """The configured model: a Hugging Face folder's weights, or a preset initialised from the seed."""
  if os.path.isdir(cfg.model):
    return Policy.from_hf(cfg.model, mesh=mesh, dtype=cfg.compute_dtype,
                          param_dtype=cfg.param_dtype)
  model_cfg = model_config_lib.preset(cfg.model, vocab_size=tok.vocab_size,
                                     param_dtype=cfg.param_dtype, dtype=cfg.compute_dtype,
                                     **dict(cfg.model_overrides))
  return Policy.init(model_cfg, tok, jax.random.key(cfg.seed), mesh=mesh)


def shape_fields(model_cfg: model_config_lib.ModelConfig) -> dict[str, object]:
  """The config fields that set parameter shapes and dtypes, named as a user sets them (for the
  error when a checkpoint does not fit the model)."""
  fields = {f"model_overrides.{f.name}": getattr(model_cfg, f.name)
            for f in dataclasses.fields(model_cfg)}
  for name in ("vocab_size", "param_dtype"):  # top-level config fields
    fields[name] = fields.pop(f"model_overrides.{name}")
  return fields


class RunSetup:
  """A config in a workdir, built once: mesh, rollout shards, games, tokenizer, policy, optimizer,
  checkpointer and evaluator. ``progress``: show progress bars (process 0 only)."""

  def __init__(self, cfg: config_lib.TrainConfig, workdir: str, *, progress: bool = True):
    self.paths = Workdir(workdir)
    self.paths.check_writable()
    config_lib.check_files(cfg)
    self.cfg, self.workdir = cfg, workdir
    self.progress = progress and multihost.is_chief()
    self.mesh = mesh_lib.make_mesh(cfg.mesh_shape)
    self.num_shards = multihost.resolve_shards(cfg.rollout_shards)
    if self.num_shards > 1 and cfg.opponent in ("checkpoint", "league"):
      raise InputError(f"opponent={cfg.opponent!r} samples on the whole mesh and needs one rollout "
                       f"shard, but this job has {self.num_shards} (rollout_shards="
                       f"{cfg.rollout_shards}, {jax.process_count()} processes)")
    config_lib.check_rae_groups(cfg.rl.rae_groups, self.num_shards)
    # Each shard samples on its own devices: data-parallel, with the run's tensor split.
    self.shard_meshes = {s: mesh_lib.make_mesh({"data": -1, "tensor": cfg.mesh.tensor}, group)
                         for s, group in enumerate(multihost.shard_devices(self.num_shards))
                         if s in multihost.local_shards(self.num_shards)}
    self.games = [spec.make() for spec in cfg.games]
    self.tokenizer = build_tokenizer(cfg, workdir)
    self.policy = build_policy(cfg, self.tokenizer, self.mesh)
    self.graphdef = self.policy.graphdef
    self.tx = ts.make_optimizer(cfg.optim, cfg.num_steps * cfg.rl.epochs)
    self.checkpointer = checkpoint_lib.Checkpointer(self.paths.checkpoints,
                                                    keep=cfg.checkpoint.keep)
    self.evaluator = suites.Evaluator(cfg)  # games, opponents, benchmark problems: once
    if multihost.is_chief():
      config_lib.save(cfg, self.paths.config)

  def initial_state(self) -> ts.TrainState:
    return self.placed(ts.init_state(self.policy.params, self.tx, len(self.games), self.cfg.seed,
                                     self.cfg.rl.rae_groups))

  def placed(self, state: ts.TrainState) -> ts.TrainState:
    """The state on the mesh (parameters by the rules, the rest replicated): what Orbax saves and
    restores, across processes too."""
    return multihost.place(state, ts.state_shardings(state, self.mesh))

  def shard_policy(self, params, shard: int) -> Policy:
    """The policy with ``params`` copied onto rollout shard ``shard``'s devices."""
    mesh = self.shard_meshes[shard]
    shardings = mesh_lib.param_shardings(params, mesh, mesh_lib.SAMPLE_RULES)
    return dataclasses.replace(self.policy, mesh=mesh, params=multihost.to_devices(
        multihost.gathered(params), shardings))

  def evaluate(self, state: ts.TrainState) -> dict[str, float]:
    """The configured suites (``eval/suites.py``, as ``python -m spiral_jax.evaluate`` runs
    them); writes the full report to ``eval/<step>.json`` and ``.md``, returns flat metrics."""
    step = int(state.step)
    if self.num_shards == 1:
      policy = dataclasses.replace(self.policy, params=state.params)
    else:  # on rollout shard 0's devices, the chief's own, so no other process takes part
      params = multihost.gathered(state.params)  # (a collective: every process gathers)
      policy = self.shard_policy(params, 0) if 0 in self.shard_meshes else None
    if not multihost.is_chief():
      return {}
    report = self.evaluator.run(policy, eval_key(self.cfg, step))
    report.write(self.paths.eval, str(step), f"Evaluation at step {step}", step=step,
                 source={"workdir": os.path.abspath(self.workdir)})
    return report.metrics()


def eval_key(cfg: config_lib.TrainConfig, step: int) -> jax.Array:
  """The evaluation key of checkpoint ``step``: training's periodic evaluation and the evaluate
  command draw the same games at the same step."""
  return jax.random.fold_in(jax.random.key(cfg.seed + 1), step)
