"""Who the learner plays: itself, a scripted player, a frozen checkpoint, or a league of its past.

``config.opponent`` picks one (``config.OPPONENTS``):

* ``self`` (SPIRAL's default): one set of weights plays both seats and every move trains;
* ``random`` / ``expert``: the scripted players of ``games.experts``;
* ``checkpoint``: a frozen text policy read from ``opponent_path``, either another run's workdir
  (its latest checkpoint and its tokenizer; the model config must be this run's) or a Hugging Face
  folder (any supported model family, with its own tokenizer);
* ``league`` (which the reference lacks): each policy step draws one of the newest ``league_size``
  snapshots of the learner's own parameters, saved every ``league_every`` steps under
  ``workdir/league``, the step-0 policy first.

With any opponent but ``self`` the learner's seat is drawn per game and only its moves train
(``rl/rollout.py``). Every draw is a function of ``(seed, step)`` and of the snapshots on disk, so a
resumed run meets the same opponents.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp

from spiral_jax.games import core, experts
from spiral_jax.model.policy import Policy
from spiral_jax.rl import rollout
from spiral_jax.text import tokenizer as tokenizer_lib

CHECKPOINTS = "checkpoints"  # a run's checkpoint folder inside its workdir
TOKENIZER = "tokenizer"      # a run's tokenizer folder inside its workdir


def scripted(name: str, games: Sequence[core.Game]) -> list[experts.Player]:
  """The ``random`` or ``expert`` player of each game."""
  return [experts.make_player(name, g) for g in games]


def restore_params(directory: str, like: Any, step: int | None = None) -> tuple[Any, int]:
  """The ``params`` of a saved ``TrainState`` (the latest, or ``step``), on ``like``'s shardings.

  Only that subtree is read, so a league or a frozen opponent costs one copy of the weights.
  """
  manager = ocp.CheckpointManager(os.path.abspath(directory),
                                  options=ocp.CheckpointManagerOptions(read_only=True))
  try:
    step = manager.latest_step() if step is None else step
    if step is None:
      raise ValueError(f"no checkpoint under {directory!r}: pass a run's workdir that holds "
                       f"{CHECKPOINTS}/<step>, or a Hugging Face folder")
    target = {"params": _abstract(like)}
    restored = manager.restore(step, args=ocp.args.PyTreeRestore(
        item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
        partial_restore=True))
  finally:
    manager.close()
  return restored["params"], int(step)


def _abstract(like: Any) -> Any:
  """Shapes, dtypes and shardings to restore onto (Orbax reads the shardings from here)."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), like)


def frozen(path: str, policy: Policy, sample_kwargs: dict) -> rollout.TextAgent:
  """A text opponent from another run's workdir or a Hugging Face folder (see module docstring).

  ``policy`` is the learner's (its model config and shardings serve a workdir's weights);
  ``sample_kwargs`` go to ``rollout.policy_sample_fn``.
  """
  if not os.path.isdir(path):
    raise ValueError(f"opponent_path={path!r} is not a folder; pass a run's workdir or a Hugging "
                     "Face folder")
  if os.path.isdir(os.path.join(path, CHECKPOINTS)):
    params, step = restore_params(os.path.join(path, CHECKPOINTS), policy.params)
    tokenizer_dir = os.path.join(path, TOKENIZER)
    tokenizer = (tokenizer_lib.load_tokenizer(tokenizer_dir) if os.path.isdir(tokenizer_dir)
                 else policy.tokenizer)
    opponent = dataclasses.replace(policy, params=params, tokenizer=tokenizer)
    name = f"{os.path.basename(os.path.normpath(path))}@{step}"
  else:
    opponent = Policy.from_hf(path, mesh=policy.mesh)
    name = os.path.basename(os.path.normpath(path))
  return rollout.TextAgent(rollout.policy_sample_fn(opponent, **sample_kwargs),
                           tokenizer=opponent.tokenizer, name=name)


class League:
  """Snapshots of the learner's parameters, and the per-step draw of one of them.

  ``save(step, params)`` writes ``directory/<step>`` (params only) when ``step`` is a multiple of
  ``every``; ``pick(step, seed)`` draws uniformly among the newest ``size`` snapshots taken
  before ``step``. Orbax keeps ``size + 1`` so a resumed step still finds its pool.
  """

  def __init__(self, directory: str, size: int, every: int):
    self.size, self.every = size, every
    self.manager = ocp.CheckpointManager(
        os.path.abspath(directory), options=ocp.CheckpointManagerOptions(
            max_to_keep=size + 1, create=True, enable_async_checkpointing=False))
    self._cached: tuple[int, Any] | None = None

  def save(self, step: int, params: Any) -> bool:
    if step % self.every or step in self.manager.all_steps():
      return False
    return self.manager.save(step, args=ocp.args.PyTreeSave({"params": params}))

  def pool(self, step: int) -> list[int]:
    """The snapshot steps a policy step ``step`` (the update from ``step`` to ``step + 1``)
    draws from."""
    return sorted(s for s in self.manager.all_steps() if s <= step)[-self.size:]

  def pick(self, step: int, seed: int) -> int:
    pool = self.pool(step)
    if not pool:
      raise RuntimeError(f"the league has no snapshot at or before step {step}; the trainer saves "
                         "step 0 before self-play starts")
    rng = np.random.default_rng([seed, step, 0x1EA6])
    return pool[int(rng.integers(len(pool)))]

  def params(self, snapshot: int, like: Any) -> Any:
    """The parameters of ``snapshot`` on ``like``'s shardings (the last one read is kept)."""
    if self._cached is None or self._cached[0] != snapshot:
      target = {"params": _abstract(like)}
      restored = self.manager.restore(snapshot, args=ocp.args.PyTreeRestore(
          item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target)))
      self._cached = (snapshot, restored["params"])
    return self._cached[1]

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
