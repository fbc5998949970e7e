"""The training configuration: frozen, validated dataclasses grouped by concern, built from an
``ml_collections.ConfigDict`` (``config/dicts.py``) so jitted code can take them as
static arguments.

  TrainConfig            games, model, tokenizer, seed, steps, batch, prompt budget, opponent
    .rl   RLConfig       RAE, the zero-advantage filter, PPO epochs, micro-batches, the loss
    .sampling            training's sampling (SamplingConfig)
    .optim OptimConfig   Adam(W), clipping, schedule
    .warm_start          supervised format warm-start before self-play
    .eval EvalConfig     the evaluation suites, with their own sampling
    .checkpoint          how often and how many
    .mesh MeshConfig     the device mesh

Every error names the config field and how to fix it, and is raised before anything compiles.
Checks that read the filesystem (model and tokenizer folders, opponent folders) are the explicit
step ``check_files``, which the runs call before building anything.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax

from spiral_jax import games as games_lib
from spiral_jax.errors import InputError
from spiral_jax.parallel import mesh as mesh_lib
from spiral_jax.rl.losses import LossConfig

OPPONENTS = ("self", "random", "expert", "checkpoint", "league")


def check_rae_groups(groups: int, shards: int) -> None:
  """Each rollout shard folds its own baseline groups, so the shards must divide them."""
  if groups % shards:
    raise InputError(f"rl.rae_groups={groups} must be a multiple of the {shards} rollout shards "
                     f"(each shard folds its own baselines): set rl.rae_groups={shards} or a "
                     "multiple of it")
SCRIPTED_EVAL_OPPONENTS = ("random", "expert", "self")


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
      raise InputError(f"optim.learning_rate={self.learning_rate} must be positive, e.g. 1e-6")
    if not (0 <= self.b1 < 1 and 0 <= self.b2 < 1):
      raise InputError(f"optim.b1/b2=({self.b1}, {self.b2}) must lie in [0, 1), e.g. 0.9, 0.95")
    if self.schedule not in ("constant", "cosine"):
      raise InputError(f"optim.schedule={self.schedule!r}: use 'constant' or 'cosine'")
    if self.clip_norm <= 0 or self.warmup_steps < 0 or self.weight_decay < 0:
      raise InputError("optim.clip_norm must be > 0, optim.warmup_steps and optim.weight_decay >= 0")


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  """How moves are sampled: ``sampling`` in training (SPIRAL: T 1.0, top-p 1.0, 4096 new tokens),
  ``eval.sampling`` in evaluation (SPIRAL: T 0.6, top-p 0.95; ``max_new_tokens=0`` there takes
  training's budget)."""
  max_new_tokens: int = 4096
  temperature: float = 1.0
  top_p: float = 1.0
  top_k: int = 0
  # run the prompts' shared prefixes (template, rules) once per sampler call, with the learner
  # floor's prefixes and sizes (``Trainer.prefix_table``): same samples up to float rounding, a
  # fraction of the prefill; off: whole prompts, padded to a power of two
  share_prefix: bool = True

  def check(self, group: str) -> None:
    if self.max_new_tokens < 1:
      raise InputError(f"{group}.max_new_tokens={self.max_new_tokens} must be >= 1")
    if not self.temperature > 0:
      raise InputError(f"{group}.temperature={self.temperature} must be > 0 (the learner divides "
                       "logits by it)")
    if not 0 < self.top_p <= 1:
      raise InputError(f"{group}.top_p={self.top_p} must lie in (0, 1]")
    if self.top_k < 0:
      raise InputError(f"{group}.top_k={self.top_k} must be >= 0 (0: no top-k cut)")


@dataclasses.dataclass(frozen=True)
class RLConfig:
  """How a batch of moves becomes updates (SPIRAL: RAE with alpha 0.95, zero advantages dropped,
  2 PPO epochs, Dr.GRPO aggregation, no KL)."""
  rae: bool = True                    # False: plain REINFORCE returns (the no-RAE ablation)
  rae_alpha: float = 0.95
  # Independent baseline groups, as the reference's actors (8 in its run) each keep their own:
  # a round's games of each kind split into this many contiguous blocks (rl/rae.py). With
  # several rollout shards each shard folds its own share, so shards must divide it.
  rae_groups: int = 1
  filter_zero_advantage: bool = True            # dropped before the exact draw, as the reference
  epochs: int = 2                     # optimizer steps per policy step
  micro_batch_size: int = 0           # 0: the whole batch at once
  loss: LossConfig = LossConfig()
  max_nonfinite_steps: int = 3        # stop after this many steps in a row with skipped updates

  @property
  def needs_reference(self) -> bool:
    """Whether the loss needs the frozen reference policy (a KL penalty)."""
    return self.loss.needs_reference

  def __post_init__(self):
    if not 0 <= self.rae_alpha < 1:
      raise InputError(f"rl.rae_alpha={self.rae_alpha} must lie in [0, 1), e.g. 0.95")
    if self.epochs < 1:
      raise InputError(f"rl.epochs={self.epochs} must be >= 1")
    if self.rae_groups < 1:
      raise InputError(f"rl.rae_groups={self.rae_groups} must be >= 1 (1: one baseline per "
                       "game and seat; the reference run's 8 actors: 8)")
    if self.micro_batch_size < 0:
      raise InputError(f"rl.micro_batch_size={self.micro_batch_size} must be >= 0 (0: no "
                       "gradient accumulation)")
    if self.max_nonfinite_steps < 1:
      raise InputError(f"rl.max_nonfinite_steps={self.max_nonfinite_steps} must be >= 1")


@dataclasses.dataclass(frozen=True)
class WarmStartConfig:
  """Supervised steps on scripted games before self-play (the format a pretrained LLM knows)."""
  steps: int = 0
  learning_rate: float = 1e-3

  def __post_init__(self):
    if self.steps < 0 or not self.learning_rate > 0:
      raise InputError(f"warm_start.steps={self.steps} must be >= 0 and warm_start.learning_rate="
                       f"{self.learning_rate} positive")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """The evaluation suites (``eval/suites.py``), run by the trainer every ``every`` steps and by
  ``python -m spiral_jax.evaluate``: an arena per game and opponent, exact Kuhn exploitability
  (single-round Kuhn Poker), and reasoning benchmarks."""
  every: int = 16                     # 0: no evaluation during training
  games: int = 16                     # games per game and opponent
  sampling: SamplingConfig = SamplingConfig(max_new_tokens=0, temperature=0.6, top_p=0.95)
  opponents: tuple[str, ...] = ("random",)  # 'random', 'expert', 'self', or a run/HF folder
  extra_games: tuple[str, ...] = ()   # game ids played only in evaluation (unseen games)
  games_per_batch: int = 0            # rows per sampler call; 0: what the memory plan fits
  kuhn_samples: int = 0               # > 0: also estimate the Kuhn policy from K samples per set
  reasoning: tuple[str, ...] = ()     # benchmark names (eval/datasets.NAMES); () for none
  data_dir: str = ""                  # TFDS data_dir where the benchmarks are (or get) built
  source_dir: str = ""                # if set, benchmarks are built from <dir>/<name>/ files first
  reasoning_limit: int = 0            # the first N problems of each benchmark; 0: all
  reasoning_samples: int = 4          # samples per problem, pass@1 averaged (SPIRAL: 4)
  reasoning_max_new_tokens: int = 8192  # SPIRAL's budget; clipped to the model's max_seq_len

  def __post_init__(self):
    # lists, "a,b" strings and ("a,b",) (what --config.eval.opponents=a,b parses to) -> tuples
    for name in ("opponents", "extra_games", "reasoning"):
      value = getattr(self, name)
      items = [value] if isinstance(value, str) else list(value)
      value = tuple(part.strip() for v in items
                    for part in (v.split(",") if isinstance(v, str) else [v])
                    if not isinstance(part, str) or part.strip())
      if not all(isinstance(v, str) and v for v in value):
        raise InputError(f"eval.{name}={value!r} must be a tuple of non-empty strings")
      object.__setattr__(self, name, value)  # frozen: tuples keep the config hashable
    if not self.opponents:
      raise InputError("eval.opponents is empty: name at least one, e.g. ('random',)")
    if self.every < 0 or self.games < 1:
      raise InputError(f"eval.every={self.every} must be >= 0 and eval.games={self.games} >= 1")
    for name in ("games_per_batch", "kuhn_samples", "reasoning_limit"):
      if getattr(self, name) < 0:
        raise InputError(f"eval.{name}={getattr(self, name)} must be >= 0 (0: "
                         f"{'the memory plan' if name == 'games_per_batch' else 'off/all'})")
    for name in ("reasoning_samples", "reasoning_max_new_tokens"):
      if getattr(self, name) < 1:
        raise InputError(f"eval.{name}={getattr(self, name)} must be >= 1")
    if self.reasoning:
      from spiral_jax.eval.datasets import NAMES  # lazy: TFDS is slow to import
      unknown = [b for b in self.reasoning if b not in NAMES]
      if unknown:
        raise InputError(f"eval.reasoning: unknown benchmarks {unknown}; choose from {list(NAMES)}")
      if not self.data_dir:
        raise InputError("eval.reasoning needs eval.data_dir=<a TFDS data_dir> (with "
                         "eval.source_dir=<folder of benchmark files> to build it there)")


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
  every: int = 16                     # policy steps between checkpoints
  keep: int = 3                       # the newest kept (step 0 is always kept too)

  def __post_init__(self):
    if self.every < 1 or self.keep < 1:
      raise InputError(f"checkpoint.every={self.every} and checkpoint.keep={self.keep} must be >= 1")


@dataclasses.dataclass(frozen=True)
class MeshConfig:
  """Mesh axis sizes; one may be -1 (the devices left). Default: all devices on ``data``."""
  data: int = -1
  fsdp: int = 1
  tensor: int = 1

  def as_dict(self) -> dict[str, int]:
    return {"data": self.data, "fsdp": self.fsdp, "tensor": self.tensor}


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
  opponent: str = "self"
  opponent_path: str = ""             # opponent='checkpoint': a run's workdir or an HF folder
  league_size: int = 4                # opponent='league': the newest past snapshots to draw from
  league_every: int = 10              # opponent='league': steps between snapshots
  # Independent rollout shards per step, each on its own group of devices (0: one per process);
  # a multiple of the process count. Multi-host runs give the numbers of one host with as many.
  rollout_shards: int = 0
  transcript_games: int = 2           # whole games per kind a step to workdir/transcripts (0: none)
  param_dtype: str = "float32"
  compute_dtype: str = "float32"
  rl: RLConfig = RLConfig()
  sampling: SamplingConfig = SamplingConfig()
  optim: OptimConfig = OptimConfig()
  warm_start: WarmStartConfig = WarmStartConfig()
  eval: EvalConfig = EvalConfig()
  checkpoint: CheckpointConfig = CheckpointConfig()
  mesh: MeshConfig = MeshConfig()

  def __post_init__(self):
    self.sampling.check("sampling")
    if self.eval.sampling.max_new_tokens == 0:  # evaluation answers within training's budget
      object.__setattr__(self, "eval", dataclasses.replace(self.eval, sampling=dataclasses.replace(
          self.eval.sampling, max_new_tokens=self.sampling.max_new_tokens)))
    self.eval.sampling.check("eval.sampling")
    self._check_games()
    if self.transcript_games < 0:
      raise InputError(f"transcript_games={self.transcript_games} must be >= 0 (0: none)")
    for name in ("num_steps", "batch_size", "games_per_round", "max_prompt_tokens"):
      if getattr(self, name) < (0 if name == "num_steps" else 1):
        raise InputError(f"{name}={getattr(self, name)} must be positive")
    if self.rl.micro_batch_size and self.batch_size % self.rl.micro_batch_size:
      raise InputError(f"rl.micro_batch_size={self.rl.micro_batch_size} must divide batch_size="
                       f"{self.batch_size} (or be 0 for no gradient accumulation)")
    if self.opponent not in OPPONENTS:
      raise InputError(f"opponent={self.opponent!r}: choose one of {OPPONENTS}")
    if self.opponent == "checkpoint" and not self.opponent_path:
      raise InputError("opponent='checkpoint' needs opponent_path=<a checkpoint or HF folder>")
    if self.opponent == "league" and (self.league_size < 1 or self.league_every < 1):
      raise InputError(f"league_size={self.league_size} and league_every={self.league_every} "
                       "must be >= 1 for opponent='league'")
    self._check_shards()
    from spiral_jax.model import config as model_config  # not needed to build a game
    names = {f.name for f in dataclasses.fields(model_config.ModelConfig)}
    unknown = sorted(set(dict(self.model_overrides)) - names)
    if unknown:
      raise InputError(f"model_overrides: unknown ModelConfig fields {unknown}; known: "
                       f"{sorted(names)}")
    if self.model in model_config.PRESETS:  # a folder's context is read by check_files
      self._check_context(int(dict(self.model_overrides).get(
          "max_seq_len", model_config.PRESETS[self.model].max_seq_len)))

  def _check_games(self) -> None:
    if not self.games:
      raise InputError("games is empty: name at least one game, e.g. games=('KuhnPoker-v1',)")
    known = set(games_lib.list_games())
    for spec in self.games:
      if spec.id not in known:
        raise InputError(f"games: unknown game id {spec.id!r}; known ids: {sorted(known)}")
      if not spec.weight >= 0:
        raise InputError(f"game_weights: weight of {spec.id} is {spec.weight}; use >= 0")
    if not sum(s.weight for s in self.games) > 0:
      raise InputError("game_weights must sum to a positive number")
    if len({s.id for s in self.games}) != len(self.games):
      raise InputError("games: each game id may appear once")
    trained = {s.id for s in self.games}
    for gid in self.eval.extra_games:
      if gid not in known or gid in trained:
        raise InputError(f"eval.extra_games: {gid!r} must be a known game id ({sorted(known)}) "
                         "that is not already in games")

  def _check_shards(self) -> None:
    if self.rollout_shards < 0:
      raise InputError(f"rollout_shards={self.rollout_shards} must be >= 0 (0: one per process)")
    if self.rollout_shards > 1:
      if self.opponent in ("checkpoint", "league"):
        raise InputError(f"opponent={self.opponent!r} runs its sampler on the whole mesh, so it "
                         "needs one rollout shard: use rollout_shards=0 on a single process, or "
                         "opponent='self', 'random' or 'expert'")
      if self.games_per_round % self.rollout_shards or self.batch_size % self.rollout_shards:
        raise InputError(f"rollout_shards={self.rollout_shards} must divide games_per_round="
                         f"{self.games_per_round} and batch_size={self.batch_size}: each shard "
                         "plays and draws an equal share")
    check_rae_groups(self.rl.rae_groups, max(self.rollout_shards, 1))

  def _check_context(self, context: int) -> None:
    """The prompt plus response budget must fit the model's context (``max_seq_len``)."""
    for group in ("sampling", "eval.sampling"):
      budget = (self.sampling if group == "sampling" else self.eval.sampling).max_new_tokens
      need = self.max_prompt_tokens + budget
      if need > context:
        raise InputError(f"max_prompt_tokens + {group}.max_new_tokens = {self.max_prompt_tokens} "
                         f"+ {budget} = {need} exceeds the model's context of {context} tokens; "
                         "lower one of them (or raise model_overrides.max_seq_len for a model "
                         "trained from scratch)")

  @property
  def micro_batch(self) -> int:
    """Rows per learner micro-step: ``rl.micro_batch_size``, or the whole batch."""
    return self.rl.micro_batch_size or self.batch_size

  @property
  def num_micro_batches(self) -> int:
    return self.batch_size // self.micro_batch

  @property
  def mesh_shape(self) -> dict[str, int]:
    """The mesh over this job's devices; the micro-batch must split over its batch axes."""
    sizes = mesh_lib.resolve_shape(self.mesh.as_dict(), jax.device_count())
    split = sizes["data"] * sizes["fsdp"]
    if self.micro_batch % split:
      raise InputError(f"the batch per optimizer micro-step ({self.micro_batch}) must be divisible "
                       f"by mesh.data x mesh.fsdp = {split}")
    return sizes

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


def check_files(cfg: TrainConfig) -> None:
  """The checks that read the filesystem: the model and tokenizer folders, a folder model's
  context, and evaluation opponents given as folders. Runs call it before building anything."""
  from spiral_jax.model.config import PRESETS
  if cfg.model not in PRESETS:
    path = os.path.join(cfg.model, "config.json")
    if not os.path.isdir(cfg.model):
      raise InputError(f"model={cfg.model!r} is neither a preset ({sorted(PRESETS)}) nor a local "
                       "Hugging Face folder; pass one of those")
    if not os.path.exists(path):
      raise InputError(f"model={cfg.model!r} has no config.json; pass a Hugging Face folder")
    with open(path) as f:
      context = json.load(f).get("max_position_embeddings", 4096)
    cfg._check_context(int(dict(cfg.model_overrides).get("max_seq_len", context)))
  if cfg.tokenizer != "games_sentencepiece" and not os.path.isdir(cfg.tokenizer):
    raise InputError(f"tokenizer={cfg.tokenizer!r} is not a folder with tokenizer.json or "
                     "tokenizer.model; pass one, or 'games_sentencepiece'")
  for opponent in cfg.eval.opponents:
    if opponent not in SCRIPTED_EVAL_OPPONENTS and not os.path.isdir(opponent):
      raise InputError(f"eval.opponents: {opponent!r} is neither 'random', 'expert', 'self' nor "
                       "a folder (a run's workdir or a Hugging Face model)")
