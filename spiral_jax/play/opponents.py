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
(``play/rollout.py``). Every draw is a function of ``(seed, step)`` and of the snapshots on disk, so a
resumed run meets the same opponents.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import numpy as np

from spiral_jax import checkpoint as checkpoint_lib
from spiral_jax.errors import InputError
from spiral_jax.games import core, experts
from spiral_jax.model.policy import Policy
from spiral_jax.play import agents
from spiral_jax.text import tokenizer as tokenizer_lib
from spiral_jax.workdir import Workdir


def scripted(name: str, games: Sequence[core.Game]) -> list[experts.Player]:
  """The ``random`` or ``expert`` player of each game."""
  return [experts.make_player(name, g) for g in games]


def restore_params(directory: str, like: Any, step: int | None = None) -> tuple[Any, int]:
  """The ``params`` of a saved ``TrainState`` (``step``, or the newest intact one), on ``like``'s
  shardings, verified as training verifies a resume (``Checkpointer.restore_params``: layout and
  fingerprints). Only that subtree is read, so a league or a frozen opponent costs one copy of the
  weights."""
  reader = checkpoint_lib.Checkpointer(directory, read_only=True)
  try:
    return reader.restore_params(step, like)
  finally:
    reader.close()


def frozen(path: str, policy: Policy, sample_kwargs: dict) -> agents.TextAgent:
  """A text opponent from another run's workdir or a Hugging Face folder (see module docstring).

  ``policy`` is the learner's (its model config and shardings serve a workdir's weights);
  ``sample_kwargs`` go to ``agents.policy_sample_fn``.
  """
  if not os.path.isdir(path):
    raise InputError(f"opponent_path={path!r} is not a folder; pass a run's workdir or a Hugging "
                     "Face folder")
  run = Workdir(path)
  if run.is_run():
    params, step = restore_params(run.checkpoints, policy.params)
    tokenizer = (tokenizer_lib.load_tokenizer(run.tokenizer) if os.path.isdir(run.tokenizer)
                 else policy.tokenizer)
    opponent = dataclasses.replace(policy, params=params, tokenizer=tokenizer)
    name = f"{os.path.basename(os.path.normpath(path))}@{step}"
  else:
    opponent = Policy.from_hf(path, mesh=policy.mesh)
    name = os.path.basename(os.path.normpath(path))
  return agents.TextAgent(agents.policy_sample_fn(opponent, **sample_kwargs),
                          tokenizer=opponent.tokenizer, name=name)


class League:
  """Snapshots of the learner's parameters, and the per-step draw of one of them.

  ``save(step, params)`` writes ``directory/<step>`` (params only, with the checkpoints'
  fingerprints) when ``step`` is a multiple of ``every``; ``pick(step, seed)`` draws uniformly
  among the newest ``size`` snapshots taken before ``step``. ``size + 1`` are kept so a resumed
  step still finds its pool; a snapshot is read back through the same checks as a
  resume (``Checkpointer.restore_params``).
  """

  def __init__(self, directory: str, size: int, every: int):
    self.size, self.every = size, every
    self.checkpointer = checkpoint_lib.Checkpointer(directory, keep=size + 1, async_save=False,
                                                    keep_first=False)
    self._cached: tuple[int, Any] | None = None

  def save(self, step: int, params: Any) -> bool:
    if step % self.every or step in self.checkpointer.steps():
      return False
    return self.checkpointer.save(step, {"params": params})

  def pool(self, step: int) -> list[int]:
    """The snapshot steps a policy step ``step`` (the update from ``step`` to ``step + 1``)
    draws from."""
    return [s for s in self.checkpointer.steps() if s <= step][-self.size:]

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
      self._cached = (snapshot, self.checkpointer.restore_params(snapshot, like)[0])
    return self._cached[1]

  def close(self) -> None:
    self.checkpointer.close()
