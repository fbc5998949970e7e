"""Config sweeps: named lists of points, each point a dict of dotted config overrides.

  grid(**{"rl.rae": [True, False]})                        2 points: rl.rae=True, rl.rae=False
  zip_(**{"sampling.max_new_tokens": [16, 32],
          "rl.loss.drgrpo_constant": [16.0, 32.0]})        2 points, the axes move together
  product(grid(seed=[0, 1]), grid(opponent=["self"]))      2 points
  grid(seed=[0, 1]) + grid(opponent=["random"])            3 points (a sweep is a plain list)

Keys name fields of an ``experiments/*.py`` config, with or without the ``config.`` prefix; a
point is stored with it: ``{"config.rl.rae": False}``, which ``to_cli_args`` turns into the flag
``--config.rl.rae=False`` that ``python -m spiral_jax.train`` applies on top of its ``--config`` file.
``check`` parses each point's flags against a config file (ml_collections), so a misspelt field or a
value of the wrong type fails before any machine is rented.

Launchers: ``launch/xm_launch.py --sweep=NAME`` (one xmanager job per point) and
``launch/tpu_vm.sh --sweep=NAME`` (the points one after another on one slice), which reads
``python3 experiments/sweeps.py NAME``: one line per point, ``<run name> <shell-quoted flags>``.
This module imports only the standard library at the top, so any ``python3`` can run it.
"""
from __future__ import annotations

import itertools
import re
import shlex
import sys
from typing import Any, Sequence

Point = dict[str, Any]    # {"config.optim.learning_rate": 1e-6, ...}
Sweep = list[Point]

_KEY = re.compile(r"config(\.[A-Za-z_][A-Za-z0-9_]*)+")


def _key(name: str) -> str:
  """``rl.rae`` or ``config.rl.rae`` -> ``config.rl.rae`` (checked to be a dotted field path)."""
  key = name if name.startswith("config.") else f"config.{name}"
  if not _KEY.fullmatch(key):
    raise ValueError(f"sweep axis {name!r} is not a dotted config field such as 'rae' or "
                     "'optim.learning_rate'")
  return key


def _axes(axes: dict[str, Sequence[Any]]) -> dict[str, list[Any]]:
  out = {}
  for name, values in axes.items():
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
      raise ValueError(f"sweep axis {name!r} needs a non-empty list of values, got {values!r}")
    out[_key(name)] = list(values)
  return out


def grid(**axes: Sequence[Any]) -> Sweep:
  """Every combination of the axes' values (the last axis varies fastest)."""
  axes = _axes(axes)
  return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


def zip_(**axes: Sequence[Any]) -> Sweep:
  """The axes' i-th values together: point i sets every axis to its i-th value."""
  axes = _axes(axes)
  lengths = {key: len(values) for key, values in axes.items()}
  if len(set(lengths.values())) > 1:
    raise ValueError(f"zip_ needs axes of equal length, got {lengths}; use grid() for every "
                     "combination")
  return [dict(zip(axes, values)) for values in zip(*axes.values())]


def product(*sweeps: Sweep) -> Sweep:
  """Every combination of one point from each sweep, merged (the sweeps must set distinct keys)."""
  out = []
  for parts in itertools.product(*sweeps):
    point: Point = {}
    for part in parts:
      shared = sorted(set(point) & set(part))
      if shared:
        raise ValueError(f"product: {shared} set by more than one sweep; each key may come from "
                         "one sweep only")
      point.update(part)
    out.append(point)
  return out


SWEEPS: dict[str, Sweep] = {
    # The paper's ablation, the 2-point example: RAE baselines on and off.
    "rae_ablation": grid(**{"rl.rae": [True, False]}),
    "seeds": grid(seed=[0, 1, 2]),
    "rae_ablation_seeds": product(grid(**{"rl.rae": [True, False]}), grid(seed=[0, 1, 2])),
    # Around the paper's constant 1e-6 (SPIRAL.md): the paper configs' learning rate.
    "lr": grid(**{"optim.learning_rate": [3e-7, 1e-6, 3e-6]}),
    "opponents": grid(opponent=["self", "random", "expert"]),
    # The Dr.GRPO constant is the response budget, so the two move together.
    "response_budget": zip_(**{"sampling.max_new_tokens": [16, 24, 32],
                               "rl.loss.drgrpo_constant": [16.0, 24.0, 32.0]}),
}


def get(name: str) -> Sweep:
  """The sweep registered as ``name`` in ``SWEEPS``."""
  if name not in SWEEPS:
    raise ValueError(f"--sweep={name!r} is not defined in experiments/sweeps.py; known sweeps: "
                     f"{sorted(SWEEPS)}")
  return SWEEPS[name]


def format_value(value: Any) -> str:
  """How ml_collections' ``--config.x=`` flag reads a value back: ``False``, ``1e-06``, ``('a',)``."""
  if isinstance(value, (bool, int, float, type(None))):
    return repr(value)
  if isinstance(value, str):
    return value
  if isinstance(value, (tuple, list)):
    return repr(tuple(value))
  raise TypeError(f"cannot pass {value!r} ({type(value).__name__}) on the command line; use a "
                  "bool, number, string, None or tuple")


def to_cli_args(point: Point) -> list[str]:
  """``{"config.rl.rae": False}`` -> ``["--config.rl.rae=False"]`` (in the point's key order)."""
  return [f"--{key}={format_value(value)}" for key, value in point.items()]


def run_name(index: int, point: Point) -> str:
  """A short, path-safe name for a point: ``1_rae-False``, ``0_learning_rate-3e-07``."""
  parts = []
  for key, value in point.items():
    text = re.sub(r"[^A-Za-z0-9.+-]+", "-", format_value(value)).strip("-.") or "x"
    parts.append(f"{key.rsplit('.', 1)[-1]}-{text}")
  return "_".join([str(index), *parts])


def check(config_path: str, sweep: Sweep, extra_args: Sequence[str] = ()) -> list[Any]:
  """Parses every point's flags on top of ``config_path`` exactly as the trainer's config flag does.

  ``extra_args`` (flags common to every point, such as ``--config.num_steps=200``) come first.
  Returns the resulting ``ml_collections.ConfigDict`` per point; a field that does not exist or a
  value of the wrong type raises ValueError naming the point.
  """
  from absl import flags  # lazy: the command line below needs only the standard library
  from ml_collections import config_flags
  configs = []
  for i, point in enumerate(sweep):
    argv = ["sweep", f"--config={config_path}", *extra_args, *to_cli_args(point)]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", config_path, flag_values=values, sys_argv=argv)
    try:
      values(argv)
    except (AttributeError, KeyError, flags.Error) as e:
      raise ValueError(f"sweep point {i} ({' '.join(argv[2:])}) does not apply to "
                       f"--config={config_path}: {type(e).__name__}: {e}") from e
    configs.append(values.config)
  return configs


def main(argv: list[str]) -> int:
  if len(argv) != 2:
    print(f"usage: python3 experiments/sweeps.py NAME   (NAME in {sorted(SWEEPS)})",
          file=sys.stderr)
    return 2
  try:
    sweep = get(argv[1])
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  for i, point in enumerate(sweep):
    print(run_name(i, point), shlex.join(to_cli_args(point)))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
