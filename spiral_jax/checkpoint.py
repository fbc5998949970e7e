"""Orbax checkpoints of the whole ``TrainState``: asynchronous saves, keep the last N, resume.

A run resumes only from a checkpoint that reads back exactly as it was written:

* Orbax writes a step under ``<step>.orbax-checkpoint-tmp-*`` and renames it to ``<step>`` once
  every file is on disk, so a crash mid-save leaves a tmp folder that is never listed as a step
  (and that the next ``Checkpointer`` on the folder removes).
* Old steps are deleted (by the preservation policy) in the save's finalize, after the new step is
  committed; a failed commit deletes nothing. So the newest complete checkpoint exists at every
  moment (``tests/test_robustness.py`` kills a process mid-save to check it).
* Each save records a fingerprint of every array (a position-weighted sum of its bits, on device)
  in the step's metadata, and a restore compares it: a flipped byte is caught even where the
  storage keeps no checksum (Orbax's zstd chunks keep none; only truncated files fail to read).
* ``restore_latest`` walks from the newest step down and resumes from the first one that restores
  and matches; the newer broken steps are moved to ``corrupt/`` with a warning.
* Saved shapes and dtypes are compared with the requested ones before any array is read, so a run
  whose model config changed stops with the array, both shapes and the config field that fits.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from spiral_jax.errors import InputError

FINGERPRINTS = "spiral_jax_fingerprints"  # key in each step's custom metadata
CORRUPT_DIR = "corrupt"  # broken steps are moved here, never deleted


class CorruptCheckpointError(InputError, RuntimeError):
  """A checkpoint that cannot be read back as it was written (missing, truncated, altered)."""


class CheckpointMismatchError(InputError):
  """A checkpoint whose arrays do not fit the requested ones: the run's config changed."""


class CheckpointWriteError(InputError, RuntimeError):
  """A checkpoint that could not be written (a full disk, no permission); the steps committed
  before it are left intact, so a rerun resumes from the newest of them."""


def leaf_name(path: tuple) -> str:
  """``params/layers/0/mlp/up_proj/kernel`` for a pytree key path (NNX's ``/value`` dropped)."""
  parts = []
  for key in path:
    for attr in ("key", "name", "idx"):  # DictKey / FlattenedIndexKey, GetAttrKey, SequenceKey
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
    else:
      parts.append(str(key))
  return "/".join(parts).removesuffix("/value")


def _as_uint32(x: jax.Array) -> jax.Array:
  """The bits of ``x`` as uint32 (narrower types widened; 64-bit types get a trailing axis of 2)."""
  if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype == jnp.bool_:
    return x.astype(jnp.uint32)
  if x.dtype.itemsize >= 4:
    return jax.lax.bitcast_convert_type(x, jnp.uint32)
  unsigned = {1: jnp.uint8, 2: jnp.uint16}[x.dtype.itemsize]
  return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)


def _fingerprint(x: jax.Array) -> jax.Array:
  """u32[]: sum_i bits[i] * (2 i + 1) mod 2^32, with i the row-major position.

  The weights are odd, so any single flipped bit changes the sum; it is an integer sum (exact and
  order-free), so every sharding of the same array gives the same value. Positions come from
  broadcast iotas rather than a reshape, which would move a sharded array's data.
  """
  bits = _as_uint32(jnp.asarray(x))
  position = jnp.zeros(bits.shape, jnp.uint32)
  stride = 1
  for axis in reversed(range(bits.ndim)):
    position += jax.lax.broadcasted_iota(jnp.uint32, bits.shape, axis) * np.uint32(stride % 2**32)
    stride *= bits.shape[axis]
  return jnp.sum(bits * (2 * position + 1), dtype=jnp.uint32)


# One jit per leaf, not per tree: a restored tree mixes device sets (scalars on one device,
# parameters on the mesh), which one jitted call refuses.
_fingerprint_jit = jax.jit(_fingerprint)


def fingerprints(tree: Any) -> dict[str, int]:
  """``{leaf_name: u32 fingerprint}`` of every array in ``tree`` (computed where it lives)."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  values = jax.device_get([_fingerprint_jit(x) for _, x in leaves])  # dispatched, then read once
  return {leaf_name(path): int(v) for (path, _), v in zip(leaves, values)}


def _first_line(error: BaseException) -> str:
  """The root cause's first line (TensorStore wraps its precise message in a long generic one)."""
  while error.__cause__ is not None or error.__context__ is not None:
    error = error.__cause__ or error.__context__
  text = str(error).strip().splitlines()
  return f"{type(error).__name__}: {text[0][:300] if text else ''}"


class Checkpointer:
  """A ``CheckpointManager`` wrapper: ``save(step, state)``, ``restore_latest(like)``.

  Keeps the newest ``keep`` checkpoints and always step 0, the policy self-play started from (the
  frozen reference of a KL penalty, and the baseline of every comparison).
  """

  def __init__(self, directory: str, keep: int = 3, async_save: bool = True,
               read_only: bool = False, keep_first: bool = True):
    """``read_only``: for reading another run's checkpoints (opponents, evaluation): nothing is
    created, cleaned or moved there. ``keep_first``: keep step 0 beside the newest ``keep``."""
    self.directory = os.path.abspath(directory)
    self.read_only = read_only
    if read_only:
      if not os.path.isdir(self.directory):
        raise FileNotFoundError(f"{self.directory} does not exist: pass a training run's workdir "
                                "(it holds checkpoints/<step>)")
      options = ocp.CheckpointManagerOptions(read_only=True)
    else:
      policies = ocp.checkpoint_managers
      keep_policy = policies.AnyPreservationPolicy(
          [policies.LatestN(keep)] + ([policies.CustomSteps([0])] if keep_first else []))
      options = ocp.CheckpointManagerOptions(preservation_policy=keep_policy, create=True,
                                             enable_async_checkpointing=async_save,
                                             cleanup_tmp_directories=True)
    self.manager = ocp.CheckpointManager(self.directory,
                                         item_handlers=ocp.StandardCheckpointHandler(),
                                         options=options)
    self._writing: int | None = None  # the step of a save not yet known to be committed

  def save(self, step: int, state: Any, force: bool = False) -> bool:
    """Starts writing ``state`` as ``step`` (in the background when async); the fingerprints are
    computed now, before the caller can donate the arrays. A write that fails (here, or in the
    background: then at the next ``save``, ``wait`` or ``close``) raises
    ``CheckpointWriteError``."""
    if self._writing is None:
      self._writing = step
    with self._write_errors():  # a failure here may be the previous save's, in the background
      saved = self.manager.save(step, args=ocp.args.StandardSave(state), force=force,
                                custom_metadata={FINGERPRINTS: fingerprints(state)})
    self._writing = step
    return saved

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def wait(self) -> None:
    """Blocks until the last save is committed (and the steps it retires are deleted)."""
    with self._write_errors():
      self.manager.wait_until_finished()
    self._writing = None

  @contextlib.contextmanager
  def _write_errors(self):
    """Any failure of a save as one ``CheckpointWriteError`` naming the step and what is left."""
    try:
      yield
    except Exception as e:
      step, self._writing = self._writing, None
      committed = sorted(int(p) for p in os.listdir(self.directory) if p.isdigit())
      left = (f"the newest complete checkpoint, step {committed[-1]}, is intact: rerun to resume "
              "from it" if committed else "no step is complete yet: a rerun starts over")
      raise CheckpointWriteError(
          f"checkpoint {step} under {self.directory} could not be written ({_first_line(e)}); "
          f"{left} once the cause is fixed (free disk space, permissions)") from e

  def restore(self, step: int, like: Any, fields: Mapping[str, Any] | None = None) -> Any:
    """Restores ``step`` onto the shapes, dtypes and shardings of ``like``.

    ``fields``: the config fields that set array shapes or dtypes, ``{name: value}``; a mismatch
    names the ones whose value fits. Raises ``CheckpointMismatchError`` when the saved arrays do
    not fit ``like``, ``CorruptCheckpointError`` when the step cannot be read back exactly.
    """
    where = f"checkpoint {step} under {self.directory}"
    expected = self._recorded_fingerprints(step, where)
    self._check_fits(step, like, fields or {}, where)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    try:
      restored = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # any read failure of arrays whose layout was just checked
      raise CorruptCheckpointError(f"{where} could not be read: {_first_line(e)}") from e
    self._check_fingerprints(restored, expected, where)
    return restored

  def restore_latest(self, like: Any, fields: Mapping[str, Any] | None = None) -> Any | None:
    """The newest checkpoint that restores intact (None if there are none).

    Broken newer steps are moved to ``corrupt/`` with a warning, once an older one restored (so a
    bug that fails every restore moves nothing); if none restores, raises the newest's error.
    A ``CheckpointMismatchError`` is raised at once: older steps have the same layout.
    """
    failures: list[tuple[int, CorruptCheckpointError]] = []
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        restored = self.restore(step, like, fields)
      except CorruptCheckpointError as e:
        failures.append((step, e))
        continue
      for bad_step, error in failures:
        moved = self._quarantine(bad_step)
        logging.warning("%s\nResuming from step %d instead; the broken step %d was moved to %s.",
                        error, step, bad_step, moved)
      if failures:
        ocp.multihost.sync_global_processes("spiral_jax:quarantine")  # every host sees the move
        self.manager.reload()
      return restored
    if failures:
      step, error = failures[0]
      raise CorruptCheckpointError(
          f"no checkpoint under {self.directory} restores intact ({len(failures)} tried); the "
          f"newest: {error}. Move the folder aside to start over.") from error
    return None

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def restore_params(self, step: int | None, like: Any,
                     fields: Mapping[str, Any] | None = None) -> tuple[Any, int]:
    """Only the ``params`` of a saved ``TrainState`` (one copy of the weights, for an opponent or
    an evaluation), onto ``like``'s shapes, dtypes and shardings, with the same checks as
    ``restore``: the layout first, then each array's recorded fingerprint. Returns
    ``(params, step)``. ``step`` None: the newest step that restores intact, with a warning for
    each newer broken one (nothing is moved: the folder may be another run's)."""
    if step is not None:
      return self._restore_params(step, like, fields), step
    failures = []
    for candidate in sorted(self.manager.all_steps(), reverse=True):
      try:
        params = self._restore_params(candidate, like, fields)
      except CorruptCheckpointError as e:
        failures.append(e)
        continue
      for error in failures:
        logging.warning("%s\nUsing step %d instead.", error, candidate)
      return params, candidate
    if failures:
      raise CorruptCheckpointError(f"no checkpoint under {self.directory} restores intact "
                                   f"({len(failures)} tried); the newest: {failures[0]}")
    raise FileNotFoundError(f"no checkpoint under {self.directory}: pass a run's workdir that "
                            "holds checkpoints/<step>, or a Hugging Face folder")

  def _restore_params(self, step: int, like: Any, fields: Mapping[str, Any] | None) -> Any:
    where = f"checkpoint {step} under {self.directory}"
    if step not in self.manager.all_steps():
      raise CheckpointMismatchError(f"{where} does not exist; the saved steps are {self.steps()}")
    expected = self._recorded_fingerprints(step, where)
    target = {"params": jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), like)}
    self._check_fits(step, target, fields or {}, where, partial=True)
    reader = ocp.CheckpointManager(self.directory, options=ocp.CheckpointManagerOptions(
        read_only=True))  # a PyTree reader: the standard handler cannot read a subtree
    try:
      restored = reader.restore(step, args=ocp.args.PyTreeRestore(
          item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
          partial_restore=True))
    except Exception as e:  # any read failure of arrays whose layout was just checked
      raise CorruptCheckpointError(f"{where} could not be read: {_first_line(e)}") from e
    finally:
      reader.close()
    self._check_fingerprints(restored, expected, where)
    return restored["params"]

  def close(self) -> None:
    self.wait()
    self.manager.close()

  # ---- checks ----
  def _recorded_fingerprints(self, step: int, where: str) -> dict[str, int] | None:
    try:
      custom = self.manager.metadata(step).custom_metadata or {}
    except Exception as e:  # unreadable step metadata: the step is damaged
      raise CorruptCheckpointError(f"{where}: its metadata cannot be read: {_first_line(e)}") from e
    if FINGERPRINTS not in custom:
      logging.warning("%s records no array fingerprints (written by an older version, or its "
                      "metadata file is gone); restoring it unverified.", where)
      return None
    return {str(k): int(v) for k, v in custom[FINGERPRINTS].items()}

  @staticmethod
  def _check_fingerprints(restored: Any, expected: dict[str, int] | None, where: str) -> None:
    """Every restored array against the fingerprint recorded at its save (a subtree: its own)."""
    if expected is None:
      return
    actual = fingerprints(restored)
    altered = [name for name, value in actual.items() if expected.get(name) != value]
    if altered:
      more = f" (and {len(altered) - 1} more arrays)" if len(altered) > 1 else ""
      raise CorruptCheckpointError(
          f"{where}: {altered[0]}{more} does not match the fingerprint recorded when it was "
          "saved; its files changed after the save")

  def _check_fits(self, step: int, like: Any, fields: Mapping[str, Any], where: str,
                  partial: bool = False) -> None:
    """``partial``: ``like`` is a subtree (the params): saved arrays outside it are fine."""
    try:
      saved_tree = self.manager.item_metadata(step)
      saved_tree = getattr(saved_tree, "tree", saved_tree)
      saved = {leaf_name(p): (tuple(m.shape), np.dtype(m.dtype)) for p, m in
               jax.tree_util.tree_flatten_with_path(
                   saved_tree, is_leaf=lambda x: hasattr(x, "shape"))[0] if hasattr(m, "shape")}
    except Exception as e:  # unreadable array metadata: the step is damaged
      raise CorruptCheckpointError(f"{where}: its array metadata cannot be read: "
                                   f"{_first_line(e)}") from e
    if not saved:
      raise CorruptCheckpointError(f"{where} lists no arrays; it is damaged")
    wanted = {leaf_name(p): (tuple(x.shape), np.dtype(x.dtype))
              for p, x in jax.tree_util.tree_flatten_with_path(like)[0]}
    problems = []
    for name, (shape, dtype) in wanted.items():  # tree order: params come before optimizer state
      if name not in saved:
        problems.append(f"the config gives {name} {shape}, which the checkpoint lacks")
        continue
      saved_shape, saved_dtype = saved[name]
      if saved_shape != shape:
        axes = [a for a in range(len(shape)) if a < len(saved_shape) and saved_shape[a] != shape[a]]
        suspects = [k for k, v in fields.items() if isinstance(v, int) and not isinstance(v, bool)
                    and any(v == shape[a] for a in axes)]
        problems.append(f"checkpoint {name} has shape {saved_shape} but the config gives {shape}"
                        + (f" ({' or '.join(suspects)}?)" if suspects else ""))
      elif saved_dtype != dtype:
        suspects = [k for k, v in fields.items() if isinstance(v, str) and v == dtype.name]
        problems.append(f"checkpoint {name} has dtype {saved_dtype.name} but the config gives "
                        f"{dtype.name}" + (f" ({' or '.join(suspects)}?)" if suspects else ""))
    if not partial:
      problems += [f"checkpoint has {name} {saved[name][0]}, which the config lacks"
                   for name in saved if name not in wanted]
    if problems:
      more = f"; and {len(problems) - 1} more arrays differ" if len(problems) > 1 else ""
      raise CheckpointMismatchError(
          f"{where} does not fit this run: {problems[0]}{more}. The run's model config changed "
          "since the checkpoint was written (model, model_overrides, vocab_size, param_dtype): "
          "rerun with the config it was written with, or start a new --workdir.")

  def _quarantine(self, step: int) -> str:
    """Moves a broken step out of Orbax's sight (so it is neither restored nor overwritten);
    on the primary host only, the one that writes."""
    target_dir = os.path.join(self.directory, CORRUPT_DIR)
    target, n = os.path.join(target_dir, str(step)), 1
    while os.path.exists(target):
      n += 1
      target = os.path.join(target_dir, f"{step}.{n}")
    if jax.process_index() == 0:
      os.makedirs(target_dir, exist_ok=True)
      os.replace(os.path.join(self.directory, str(step)), target)
    return target
