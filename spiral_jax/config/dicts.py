"""The ConfigDict side of the configuration: experiment files, ``--config.x=y`` and ``config.json``.

  c = defaults()                 # a ConfigDict with every field at its default (experiment files
                                 # start from it, so --config.x=y works for every field)
  cfg = from_config_dict(c)      # -> a validated TrainConfig; unknown fields name the closest
  save(cfg, path); load_run(workdir)   # config.json round-trips through the same dict

Games are written as three parallel fields: ``games`` (ids), ``game_weights`` and
``game_kwargs`` (``{id: {kwarg: value}}``).
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
from typing import Any, Mapping

from spiral_jax import files
from spiral_jax.config.schema import GameSpec, TrainConfig
from spiral_jax.errors import InputError
from spiral_jax.workdir import Workdir

_SPECIAL = ("games", "game_weights", "game_kwargs", "model_overrides")

# Flat names of configs written before the fields were grouped: an error names the new field, and
# a run's old config.json still loads.
RENAMED = {
    "rae": "rl.rae", "rae_alpha": "rl.rae_alpha", "filter_zero_advantage":
    "rl.filter_zero_advantage", "epochs": "rl.epochs", "micro_batch_size": "rl.micro_batch_size",
    "loss": "rl.loss", "max_nonfinite_steps": "rl.max_nonfinite_steps",
    "warm_start_steps": "warm_start.steps", "warm_start_learning_rate": "warm_start.learning_rate",
    "checkpoint_every": "checkpoint.every", "keep_checkpoints": "checkpoint.keep",
    "mesh_data": "mesh.data", "mesh_fsdp": "mesh.fsdp", "mesh_tensor": "mesh.tensor",
    "eval_temperature": "eval.sampling.temperature", "eval_top_p": "eval.sampling.top_p",
    **{f"eval_{name}": f"eval.{name}" for name in (
        "every", "games", "opponents", "extra_games", "games_per_batch", "kuhn_samples",
        "reasoning", "data_dir", "source_dir", "reasoning_limit", "reasoning_samples",
        "reasoning_max_new_tokens")},
}


def _as_dict(obj: Any) -> Any:
  if dataclasses.is_dataclass(obj):
    return {f.name: _as_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
  return obj


def _paths(d: Mapping[str, Any], prefix: str = "") -> list[str]:
  out = []
  for k, v in d.items():
    out.append(prefix + k)
    if isinstance(v, Mapping) and k not in _SPECIAL:
      out += _paths(v, f"{prefix}{k}.")
  return out


def _field_defaults() -> dict[str, Any]:
  """Every TrainConfig field (``games`` aside) at its default, groups as nested dicts."""
  return {f.name: _as_dict(f.default) for f in dataclasses.fields(TrainConfig)
          if f.name not in _SPECIAL}


def defaults():
  """An ``ml_collections.ConfigDict`` of every field at its default; set ``games`` before use."""
  import ml_collections  # lazy: only config files and command lines need it
  return ml_collections.ConfigDict({"games": (), "game_weights": (), "game_kwargs": {},
                                    "model_overrides": {}, **_field_defaults()})


def _unknown(names, known: list[str], where: str) -> InputError:
  name = sorted(names)[0]
  full = where + name
  if full in RENAMED:
    hint = f"it is now {RENAMED[full]!r} (set --config.{RENAMED[full]}=...)"
  else:
    close = difflib.get_close_matches(full, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else "see experiments/tiny_cpu.py for the fields"
  more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
  return InputError(f"unknown config field {full!r}{more}: {hint}")


def _value(current: Any, value: Any, where: str, known: list[str]) -> Any:
  """``value`` for a field whose default is ``current``: a group merges recursively."""
  if dataclasses.is_dataclass(current):
    if not isinstance(value, Mapping):
      raise InputError(f"config field {where[:-1]} is a group; set its fields, e.g. "
                       f"--config.{where}{dataclasses.fields(current)[0].name}=...")
    return _merge(current, value, where, known)
  return tuple(value) if isinstance(value, list) else value


def _merge(default: Any, d: Mapping[str, Any], where: str, known: list[str]) -> Any:
  """``default`` (a config dataclass) with ``d``'s fields replaced, groups recursively."""
  unknown = set(d) - {f.name for f in dataclasses.fields(default)}
  if unknown:
    raise _unknown(unknown, known, where)
  return dataclasses.replace(default, **{
      name: _value(getattr(default, name), value, f"{where}{name}.", known)
      for name, value in d.items()})


def from_config_dict(cd) -> TrainConfig:
  """Converts an ``ml_collections.ConfigDict`` (see experiments/) to a validated TrainConfig;
  fields it leaves out take their defaults."""
  d = dict(cd.to_dict() if hasattr(cd, "to_dict") else cd)
  if "games" not in d:
    raise InputError("games is missing: name at least one game, e.g. games=('KuhnPoker-v1',)")
  game_ids = tuple(d.pop("games"))
  weights = tuple(d.pop("game_weights", ()) or (1.0,) * len(game_ids))
  if len(weights) != len(game_ids):
    raise InputError(f"game_weights has {len(weights)} entries for {len(game_ids)} games")
  game_kwargs = dict(d.pop("game_kwargs", {}) or {})
  specs = tuple(GameSpec(gid, float(w), tuple(sorted(dict(game_kwargs.get(gid, {})).items())))
                for gid, w in zip(game_ids, weights))
  model_overrides = tuple(sorted(dict(d.pop("model_overrides", {}) or {}).items()))
  known = _paths({**dict.fromkeys(_SPECIAL), **_field_defaults()})
  fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
  unknown = set(d) - set(fields)
  if unknown:
    raise _unknown(unknown, known, "")
  values = {name: _value(fields[name].default, value, f"{name}.", known)
            for name, value in d.items()}
  cfg = TrainConfig(games=specs, model_overrides=model_overrides, **values)
  for gid in game_kwargs:  # after TrainConfig, which names unknown game ids first
    if gid not in game_ids:
      raise InputError(f"game_kwargs names {gid!r}, which is not in games={game_ids}")
  return cfg


def to_config_dict(cfg: TrainConfig) -> dict[str, Any]:
  """The plain-dict form of ``cfg`` that ``from_config_dict`` reads back to an equal config."""
  d = {f.name: _as_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)
       if f.name not in _SPECIAL}
  return {"games": [s.id for s in cfg.games], "game_weights": [s.weight for s in cfg.games],
          "game_kwargs": {s.id: dict(s.kwargs) for s in cfg.games if s.kwargs},
          "model_overrides": dict(cfg.model_overrides), **d}


def save(cfg: TrainConfig, path: str) -> None:
  files.write_json(path, to_config_dict(cfg))


def _from_legacy(d: dict[str, Any]) -> dict[str, Any]:
  """A config.json written before the fields were grouped (``dataclasses.asdict`` of the flat
  TrainConfig) in today's form; evaluation then sampled with training's top_k and budget."""
  out = {"games": [g["id"] for g in d["games"]], "game_weights": [g["weight"] for g in d["games"]],
         "game_kwargs": {g["id"]: dict(g["kwargs"]) for g in d["games"] if g["kwargs"]},
         "model_overrides": dict(d.get("model_overrides", ()))}
  sampling = d.get("sampling", {})
  out["eval"] = {"sampling": {"top_k": sampling.get("top_k", 0),
                              "share_prefix": sampling.get("share_prefix", True)}}
  for name, value in d.items():
    if name in ("games", "model_overrides"):
      continue
    target = RENAMED.get(name, name).split(".")
    node = out
    for part in target[:-1]:
      node = node.setdefault(part, {})
    node[target[-1]] = value
  return out


def load_run(workdir: str) -> TrainConfig:
  """The ``TrainConfig`` a run saved in ``<workdir>/config.json``."""
  path = Workdir(workdir).config
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist: pass --config=<the run's config file>, or a "
                            "--workdir that a training run wrote")
  with open(path) as f:
    d = json.load(f)
  if d.get("games") and isinstance(d["games"][0], dict):
    d = _from_legacy(d)
  return from_config_dict(d)
