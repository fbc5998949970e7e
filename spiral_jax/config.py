"""The training configuration: an ``ml_collections.ConfigDict`` from the command line, converted at
once into frozen, validated dataclasses (so jitted code can take them as static arguments).

Every error names the config field and how to fix it, and is raised before anything compiles.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

import jax

from spiral_jax import games as games_lib
from spiral_jax.rl.losses import LossConfig

OPPONENTS = ("self", "random", "expert", "checkpoint", "league")


@dataclasses.dataclass(frozen=True)
class GameSpec:
  """One game kind of the training mix; ``kwargs`` go to ``games.make`` (e.g. rounds=1)."""
  id: str
  weight: float = 1.0
  kwargs: tuple[tuple[str, Any], ...] = ()

  def make(self, forfeit=games_lib.TRAIN_FORFEIT) -> games_lib.Game:
    return games_lib.make(self.id, forfeit=forfeit, **dict(self.kwargs))


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  """Adam(W) after global-norm clipping (SPIRAL: lr 1e-6 constant, betas 0.9/0.95, clip 1.0)."""
  learning_rate: float = 1e-6
  b1: float = 0.9
  b2: float = 0.95
  weight_decay: float = 0.0
  clip_norm: float = 1.0
  warmup_steps: int = 0
  schedule: str = "constant"  # or "cosine"

  def __post_init__(self):
    if not self.learning_rate > 0:
      raise ValueError(f"optim.learning_rate={self.learning_rate} must be positive, e.g. 1e-6")
    if not (0 <= self.b1 < 1 and 0 <= self.b2 < 1):
      raise ValueError(f"optim.b1/b2=({self.b1}, {self.b2}) must lie in [0, 1), e.g. 0.9, 0.95")
    if self.schedule not in ("constant", "cosine"):
      raise ValueError(f"optim.schedule={self.schedule!r}: use 'constant' or 'cosine'")
    if self.clip_norm <= 0 or self.warmup_steps < 0 or self.weight_decay < 0:
      raise ValueError("optim.clip_norm must be > 0, optim.warmup_steps and optim.weight_decay >= 0")


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  """How moves are sampled during training (SPIRAL: T 1.0, top-p 1.0, 4096 new tokens)."""
  max_new_tokens: int = 4096
  temperature: float = 1.0
  top_p: float = 1.0
  top_k: int = 0
  # run the prompts' shared prefixes (template, rules) once per sampler call, with the learner
  # floor's prefixes and sizes (``Trainer.prefix_table``): same samples up to float rounding, a
  # fraction of the prefill; off: whole prompts, padded to a power of two
  share_prefix: bool = True

  def __post_init__(self):
    if self.max_new_tokens < 1:
      raise ValueError(f"sampling.max_new_tokens={self.max_new_tokens} must be >= 1")
    if not self.temperature > 0:
      raise ValueError(f"sampling.temperature={self.temperature} must be > 0 for training "
                       "(the learner divides logits by it)")
    if not 0 < self.top_p <= 1:
      raise ValueError(f"sampling.top_p={self.top_p} must lie in (0, 1]")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything a training run needs; see experiments/*.py for the values."""
  games: tuple[GameSpec, ...]
  model: str = "tiny"                 # a ModelConfig preset name, or a Hugging Face folder
  model_overrides: tuple[tuple[str, Any], ...] = ()  # preset fields to replace (num_layers=2, ...)
  tokenizer: str = "games_sentencepiece"  # or a folder with tokenizer.json / tokenizer.model
  vocab_size: int = 1024              # for the in-process SentencePiece tokenizer
  template: str = "qwen"
  seed: int = 0
  num_steps: int = 400
  batch_size: int = 128               # move-samples per policy step
  games_per_round: int = 32           # games of each kind played at once while collecting
  max_prompt_tokens: int = 1024
  epochs: int = 2
  micro_batch_size: int = 0           # 0: the whole batch at once
  opponent: str = "self"
  opponent_path: str = ""             # opponent='checkpoint': a run's workdir or an HF folder
  league_size: int = 4                # opponent='league': the newest past snapshots to draw from
  league_every: int = 10              # opponent='league': steps between snapshots
  # Independent rollout shards per step, each on its own group of devices (0: one per process);
  # a multiple of the process count. Multi-host runs give the numbers of one host with as many.
  rollout_shards: int = 0
  rae: bool = True
  rae_alpha: float = 0.95
  filter_zero_advantage: bool = True
  max_nonfinite_steps: int = 3        # stop after this many steps in a row with skipped updates
  sampling: SamplingConfig = SamplingConfig()
  loss: LossConfig = LossConfig()
  optim: OptimConfig = OptimConfig()
  warm_start_steps: int = 0           # supervised format warm-start before self-play
  warm_start_learning_rate: float = 1e-3
  eval_every: int = 16
  eval_games: int = 16
  eval_temperature: float = 0.6
  eval_top_p: float = 0.95
  # Evaluation suites (rl/evaluation.py), run by the trainer every eval_every steps and by
  # `python -m spiral_jax.evaluate`: an arena per game and opponent, exact Kuhn exploitability
  # (single-round Kuhn Poker), and reasoning benchmarks.
  eval_opponents: tuple[str, ...] = ("random",)  # 'random', 'expert', 'self', or a run/HF folder
  eval_extra_games: tuple[str, ...] = ()  # game ids played only in evaluation (unseen games)
  eval_games_per_batch: int = 0       # arena games sampled at once; 0: all eval_games together
  eval_kuhn_samples: int = 0          # > 0: also estimate the Kuhn policy from K samples per set
  eval_reasoning: tuple[str, ...] = ()  # benchmark names (eval/datasets.NAMES); () for none
  eval_data_dir: str = ""             # TFDS data_dir where the benchmarks are (or get) built
  eval_source_dir: str = ""           # if set, benchmarks are built from <dir>/<name>/ files first
  eval_reasoning_limit: int = 0       # the first N problems of each benchmark; 0: all
  eval_reasoning_samples: int = 4     # samples per problem, pass@1 averaged (SPIRAL: 4)
  eval_reasoning_max_new_tokens: int = 8192  # SPIRAL's budget; clipped to the model's max_seq_len
  checkpoint_every: int = 16
  keep_checkpoints: int = 3
  mesh_data: int = -1                 # -1: all devices on the data axis
  mesh_fsdp: int = 1
  mesh_tensor: int = 1
  param_dtype: str = "float32"
  compute_dtype: str = "float32"

  def __post_init__(self):
    from spiral_jax.model.config import PRESETS  # the model package is not needed to build a game
    if self.model not in PRESETS and not os.path.isdir(self.model):
      raise ValueError(f"model={self.model!r} is neither a preset ({sorted(PRESETS)}) nor a local "
                       "Hugging Face folder; pass one of those")
    if (self.tokenizer != "games_sentencepiece" and not os.path.isdir(self.tokenizer)):
      raise ValueError(f"tokenizer={self.tokenizer!r} is not a folder with tokenizer.json or "
                       "tokenizer.model; pass one, or 'games_sentencepiece'")
    self._check_context()
    if not self.games:
      raise ValueError("games is empty: name at least one game, e.g. games=('KuhnPoker-v1',)")
    known = set(games_lib.list_games())
    for spec in self.games:
      if spec.id not in known:
        raise ValueError(f"games: unknown game id {spec.id!r}; known ids: {sorted(known)}")
      if not spec.weight >= 0:
        raise ValueError(f"game_weights: weight of {spec.id} is {spec.weight}; use >= 0")
    if not sum(s.weight for s in self.games) > 0:
      raise ValueError("game_weights must sum to a positive number")
    if len({s.id for s in self.games}) != len(self.games):
      raise ValueError("games: each game id may appear once")
    for name in ("num_steps", "batch_size", "games_per_round", "epochs", "max_prompt_tokens",
                 "eval_games"):
      if getattr(self, name) < (0 if name == "num_steps" else 1):
        raise ValueError(f"{name}={getattr(self, name)} must be positive")
    if self.micro_batch_size and self.batch_size % self.micro_batch_size:
      raise ValueError(f"micro_batch_size={self.micro_batch_size} must divide batch_size="
                       f"{self.batch_size} (or be 0 for no gradient accumulation)")
    if self.opponent not in OPPONENTS:
      raise ValueError(f"opponent={self.opponent!r}: choose one of {OPPONENTS}")
    if self.opponent == "checkpoint" and not self.opponent_path:
      raise ValueError("opponent='checkpoint' needs opponent_path=<a checkpoint or HF folder>")
    if self.opponent == "league" and (self.league_size < 1 or self.league_every < 1):
      raise ValueError(f"league_size={self.league_size} and league_every={self.league_every} "
                       "must be >= 1 for opponent='league'")
    if self.rollout_shards < 0:
      raise ValueError(f"rollout_shards={self.rollout_shards} must be >= 0 (0: one per process)")
    if self.rollout_shards > 1:
      if self.opponent in ("checkpoint", "league"):
        raise ValueError(f"opponent={self.opponent!r} runs its sampler on the whole mesh, so it "
                         "needs one rollout shard: use rollout_shards=0 on a single process, or "
                         "opponent='self', 'random' or 'expert'")
      if self.games_per_round % self.rollout_shards or self.batch_size % self.rollout_shards:
        raise ValueError(f"rollout_shards={self.rollout_shards} must divide games_per_round="
                         f"{self.games_per_round} and batch_size={self.batch_size}: each shard "
                         "plays and draws an equal share")
    if self.max_nonfinite_steps < 1:
      raise ValueError(f"max_nonfinite_steps={self.max_nonfinite_steps} must be >= 1")
    if not 0 <= self.rae_alpha < 1:
      raise ValueError(f"rae_alpha={self.rae_alpha} must lie in [0, 1), e.g. 0.95")
    if self.eval_every < 0 or self.checkpoint_every < 1 or self.keep_checkpoints < 1:
      raise ValueError("eval_every >= 0, checkpoint_every >= 1 and keep_checkpoints >= 1")
    self._check_eval_fields()

  def _check_context(self) -> None:
    """The prompt plus response budget must fit the model's context (``max_seq_len``)."""
    from spiral_jax.model import config as model_config  # lazy, as above
    overrides = dict(self.model_overrides)
    if os.path.isdir(self.model):
      path = os.path.join(self.model, "config.json")
      if not os.path.exists(path):
        raise ValueError(f"model={self.model!r} has no config.json; pass a Hugging Face folder")
      with open(path) as f:
        context = int(overrides.get("max_seq_len", json.load(f).get("max_position_embeddings",
                                                                      4096)))
    else:
      fields = {f.name for f in dataclasses.fields(model_config.ModelConfig)}
      unknown = sorted(set(overrides) - fields)
      if unknown:
        raise ValueError(f"model_overrides: unknown ModelConfig fields {unknown}; known: "
                         f"{sorted(fields)}")
      context = int(overrides.get("max_seq_len", model_config.PRESETS[self.model].max_seq_len))
    need = self.max_prompt_tokens + self.sampling.max_new_tokens
    if need > context:
      raise ValueError(f"max_prompt_tokens + sampling.max_new_tokens = {self.max_prompt_tokens} + "
                       f"{self.sampling.max_new_tokens} = {need} exceeds the model's context of "
                       f"{context} tokens; lower one of them (or raise model_overrides.max_seq_len "
                       "for a model trained from scratch)")

  def _check_eval_fields(self) -> None:
    """Validates the eval_* suite fields; lists and comma-separated strings become tuples."""
    for name in ("eval_opponents", "eval_extra_games", "eval_reasoning"):
      value = getattr(self, name)
      value = (tuple(v.strip() for v in value.split(",") if v.strip()) if isinstance(value, str)
               else tuple(value))
      if not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{name}={value!r} must be a tuple of non-empty strings")
      object.__setattr__(self, name, value)  # frozen: tuples keep the config hashable
    if not self.eval_opponents:
      raise ValueError("eval_opponents is empty: name at least one, e.g. ('random',)")
    for opponent in self.eval_opponents:
      if opponent not in ("random", "expert", "self") and not os.path.isdir(opponent):
        raise ValueError(f"eval_opponents: {opponent!r} is neither 'random', 'expert', 'self' nor "
                         "a folder (a run's workdir or a Hugging Face model)")
    known, trained = set(games_lib.list_games()), {s.id for s in self.games}
    for gid in self.eval_extra_games:
      if gid not in known or gid in trained:
        raise ValueError(f"eval_extra_games: {gid!r} must be a known game id ({sorted(known)}) "
                         "that is not already in games")
    for name in ("eval_games_per_batch", "eval_kuhn_samples", "eval_reasoning_limit"):
      if getattr(self, name) < 0:
        raise ValueError(f"{name}={getattr(self, name)} must be >= 0 (0: "
                         f"{'all at once' if name == 'eval_games_per_batch' else 'off/all'})")
    for name in ("eval_reasoning_samples", "eval_reasoning_max_new_tokens"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
    if self.eval_reasoning:
      from spiral_jax.eval.datasets import NAMES  # lazy: TFDS is slow to import
      unknown = [b for b in self.eval_reasoning if b not in NAMES]
      if unknown:
        raise ValueError(f"eval_reasoning: unknown benchmarks {unknown}; choose from {list(NAMES)}")
      if not self.eval_data_dir:
        raise ValueError("eval_reasoning needs eval_data_dir=<a TFDS data_dir> (with "
                         "eval_source_dir=<folder of benchmark files> to build it there)")

  @property
  def mesh_shape(self) -> dict[str, int]:
    n = jax.device_count()
    sizes = {"data": self.mesh_data, "fsdp": self.mesh_fsdp, "tensor": self.mesh_tensor}
    fill = [axis for axis, size in sizes.items() if size <= 0]
    if len(fill) > 1:
      raise ValueError(f"mesh_data, mesh_fsdp, mesh_tensor = {tuple(sizes.values())}: at most one "
                       "may be -1 (fill the devices left); give the others sizes")
    if fill:  # the one -1 axis takes the devices the others leave
      sizes[fill[0]] = n // max(1, math.prod(s for s in sizes.values() if s > 0))
    data, fsdp, tensor = sizes["data"], sizes["fsdp"], sizes["tensor"]
    if data * fsdp * tensor != n:
      raise ValueError(f"mesh_data x mesh_fsdp x mesh_tensor = {data}x{fsdp}x{tensor} must equal "
                       f"the {n} devices; set one of them to -1 to fill the devices left")
    per_step = self.micro_batch_size or self.batch_size
    if per_step % (data * fsdp):
      raise ValueError(f"the batch per optimizer micro-step ({per_step}) must be divisible by "
                       f"mesh_data x mesh_fsdp = {data * fsdp}")
    return {"data": data, "fsdp": fsdp, "tensor": tensor}

  @property
  def game_quotas(self) -> tuple[int, ...]:
    """Samples per game kind in each batch: ``batch_size`` split by weight (largest remainder)."""
    total = sum(s.weight for s in self.games)
    exact = [self.batch_size * s.weight / total for s in self.games]
    quotas = [int(e) for e in exact]
    order = sorted(range(len(exact)), key=lambda i: quotas[i] - exact[i])
    for i in order[:self.batch_size - sum(quotas)]:
      quotas[i] += 1
    return tuple(quotas)


def _sub(cls, cd) -> Any:
  if cd is None:
    return cls()
  d = dict(cd)
  fields = {f.name for f in dataclasses.fields(cls)}
  unknown = set(d) - fields
  if unknown:
    raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}; known: {sorted(fields)}")
  return cls(**d)


def from_config_dict(cd) -> TrainConfig:
  """Converts an ``ml_collections.ConfigDict`` (see experiments/) to a validated TrainConfig."""
  d = dict(cd.to_dict() if hasattr(cd, "to_dict") else cd)
  game_ids = tuple(d.pop("games"))
  weights = tuple(d.pop("game_weights", (1.0,) * len(game_ids)))
  if len(weights) != len(game_ids):
    raise ValueError(f"game_weights has {len(weights)} entries for {len(game_ids)} games")
  game_kwargs = dict(d.pop("game_kwargs", {}) or {})
  specs = tuple(GameSpec(gid, float(w), tuple(sorted(dict(game_kwargs.get(gid, {})).items())))
                for gid, w in zip(game_ids, weights))
  model_overrides = tuple(sorted(dict(d.pop("model_overrides", {}) or {}).items()))
  sampling = _sub(SamplingConfig, d.pop("sampling", None))
  loss = _sub(LossConfig, d.pop("loss", None))
  optim = _sub(OptimConfig, d.pop("optim", None))
  fields = {f.name for f in dataclasses.fields(TrainConfig)}
  unknown = set(d) - fields
  if unknown:
    raise ValueError(f"unknown config fields {sorted(unknown)}; known: {sorted(fields)}")
  cfg = TrainConfig(games=specs, model_overrides=model_overrides, sampling=sampling, loss=loss,
                    optim=optim, **d)
  for gid in game_kwargs:  # after TrainConfig, which names unknown game ids first
    if gid not in game_ids:
      raise ValueError(f"game_kwargs names {gid!r}, which is not in games={game_ids}")
  return cfg


def check_workdir(workdir: str) -> None:
  """Fails early when the work directory cannot be written."""
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_probe.{os.getpid()}")  # one per process of a job
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise ValueError(f"--workdir={workdir!r} is not writable ({e}); choose another folder") from e
