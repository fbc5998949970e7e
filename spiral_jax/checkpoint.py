"""Orbax checkpoints of the whole ``TrainState``: asynchronous saves, keep the last N, resume."""
from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """A thin ``CheckpointManager`` wrapper: ``save(step, state)``, ``restore_latest(like)``.

  Keeps the newest ``keep`` checkpoints and always step 0, the policy self-play started from (the
  frozen reference of a KL penalty, and the baseline of every comparison).
  """

  def __init__(self, directory: str, keep: int = 3, async_save: bool = True):
    self.directory = os.path.abspath(directory)
    policies = ocp.checkpoint_managers
    keep_policy = policies.AnyPreservationPolicy([policies.LatestN(keep),
                                                  policies.CustomSteps([0])])
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(preservation_policy=keep_policy, create=True,
                                             enable_async_checkpointing=async_save))

  def save(self, step: int, state: Any, force: bool = False) -> bool:
    return self.manager.save(step, args=ocp.args.StandardSave(state), force=force)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def restore(self, step: int, like: Any) -> Any:
    """Restores ``step`` onto the shapes, dtypes and shardings of ``like``."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))

  def restore_latest(self, like: Any) -> Any | None:
    step = self.latest_step()
    return None if step is None else self.restore(step, like)

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
