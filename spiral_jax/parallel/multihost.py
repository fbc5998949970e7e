"""Multi-host runs on JAX's own runtime: joining the job, rollout shards, and cross-process data.

A run of P processes is one SPMD program for the learner (every process calls the same jitted step
on the global mesh) and S independent rollout shards for sampling (S = ``rollout_shards``, a
multiple of P). Shard s plays its own games with its own key on the s-th of S equal, contiguous
groups of devices, so it computes the same numbers whether one process runs every shard or each
process runs its own. After a rollout every process gathers all shards' moves (host data: token
ids and rewards, small next to the model), so each holds the identical global batch; ``put``
places each process's rows on its own devices with ``jax.make_array_from_process_local_data``.

  multihost.initialize(coordinator_address="10.0.0.1:1234", num_processes=2, process_id=0)
  for shard in multihost.local_shards(num_shards): ...
  everything = multihost.gather_json(my_shard_results)   # [shard results of each process]
"""
from __future__ import annotations

import json
import os
from typing import Any, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding

from spiral_jax.errors import InputError


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, auto: bool = False,
               cpu_collectives: str = "gloo") -> bool:
  """Joins a multi-process job; call before any other JAX call. Returns whether it joined one.

  With an explicit ``coordinator_address`` (GPU clusters, localhost tests) ``num_processes`` and
  ``process_id`` are required. Without one it joins when ``auto`` is set (``--multihost``: TPU VM
  slices, SLURM, where ``jax.distributed.initialize()`` detects the job itself) or the environment
  names a coordinator (``JAX_COORDINATOR_ADDRESS``, several ``TPU_WORKER_HOSTNAMES``); otherwise
  single-host runs and tests never touch it.
  ``cpu_collectives``: the CPU backend's cross-process collectives (tests on localhost).
  """
  if coordinator_address:
    if num_processes is None or process_id is None:
      raise InputError("initialize: with coordinator_address, also pass num_processes and "
                       "process_id (--num_processes, --process_id)")
    if not 0 <= process_id < num_processes:
      raise InputError(f"initialize: process_id={process_id} must be in [0, num_processes="
                       f"{num_processes})")
  elif not (auto or os.environ.get("JAX_COORDINATOR_ADDRESS")
            or "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")):
    return False
  if (os.environ.get("JAX_PLATFORMS") or "").startswith("cpu"):
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)
  return True


def is_chief() -> bool:
  """Process 0: the one that writes logs, metrics, plots and reports."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every process reaches the barrier of this name (no-op in one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def any_process(flag: bool) -> bool:
  """Whether ``flag`` is set on any process; every process must call it at the same point, and
  all get the same answer (one process: ``flag``)."""
  if jax.process_count() == 1:
    return bool(flag)
  return bool(multihost_utils.process_allgather(np.array([int(bool(flag))], np.int32)).any())


def resolve_shards(num_shards: int) -> int:
  """``num_shards`` rollout shards, 0 meaning one per process; checked against the devices."""
  shards = num_shards or jax.process_count()
  if shards % jax.process_count():
    raise InputError(f"rollout_shards={num_shards} must be a multiple of the process count "
                     f"({jax.process_count()}); set it to 0 (one shard per process)")
  if jax.device_count() % shards:
    raise InputError(f"rollout_shards={shards} must divide the device count "
                     f"({jax.device_count()}); each shard samples on its own group of devices")
  return shards


def shard_devices(num_shards: int) -> list[list[jax.Device]]:
  """The devices of each rollout shard: S equal groups of ``jax.devices()`` in order (a process's
  devices are contiguous there, so a process's shards use only its own devices)."""
  devices = jax.devices()
  size = len(devices) // num_shards
  return [devices[s * size:(s + 1) * size] for s in range(num_shards)]


def local_shards(num_shards: int) -> list[int]:
  """The shards this process runs: those whose devices all belong to it."""
  mine = {d.id for d in jax.local_devices()}
  groups = shard_devices(num_shards)
  local = [s for s, group in enumerate(groups) if all(d.id in mine for d in group)]
  if len(local) * jax.process_count() != num_shards:
    raise InputError(f"{num_shards} rollout shards do not split evenly over this process's "
                     f"{len(mine)} devices; use a multiple of the process count that divides "
                     "the local device count")
  return local


def _plain(x: Any) -> Any:
  """JSON for NumPy values: scalars as numbers, arrays as nested lists (exact: a float32 is
  exactly a float64, and ``repr`` round-trips a float64)."""
  if isinstance(x, (np.generic, np.ndarray)):
    return x.tolist()
  raise TypeError(f"gather_json: {type(x).__name__} is not JSON data; convert it first")


def gather_json(value: Any) -> list[Any]:
  """Every process's ``value`` (JSON data: dicts, lists, strings, numbers, NumPy values), in
  process order, on every process, as JSON decodes it (one process: ``[value]`` untouched).
  JSON rather than pickle: a peer's bytes are decoded as data, never as code."""
  if jax.process_count() == 1:
    return [value]
  data = to_bytes(value)
  sizes = multihost_utils.process_allgather(np.array([data.size], np.int64)).reshape(-1)
  padded = np.zeros(int(sizes.max()), np.uint8)
  padded[:data.size] = data
  everything = multihost_utils.process_allgather(padded).reshape(len(sizes), -1)
  return [from_bytes(row[:n]) for row, n in zip(everything, sizes)]


def to_bytes(value: Any) -> np.ndarray:
  """``value`` as u8[n] of UTF-8 JSON (what ``gather_json`` sends); NaN and infinities included."""
  return np.frombuffer(json.dumps(value, default=_plain).encode(), np.uint8)


def from_bytes(data: np.ndarray) -> Any:
  """The JSON data of ``to_bytes``."""
  return json.loads(np.asarray(data, np.uint8).tobytes())


def put(host: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """A global array from a host array every process holds whole: each process contributes the
  rows of its own devices (``make_array_from_process_local_data``). One process: a device_put."""
  host = np.asarray(host)
  if jax.process_count() == 1:
    return jax.device_put(host, sharding)
  index = sharding.addressable_devices_indices_map(host.shape)
  rows = {(i[0].start or 0, host.shape[0] if i[0].stop is None else i[0].stop)
          for i in index.values()} if host.ndim else {(0, 0)}
  if host.ndim == 0 or rows == {(0, host.shape[0])}:  # replicated over this process's devices
    return jax.make_array_from_process_local_data(sharding, host, host.shape)
  lo, hi = min(r[0] for r in rows), max(r[1] for r in rows)
  if sum(b - a for a, b in rows) != hi - lo:  # a mesh whose process devices interleave rows
    raise ValueError(f"put: this process's devices hold rows {sorted(rows)} of {host.shape}, "
                     "not one contiguous block; build the mesh with each process's devices "
                     "together (parallel.mesh.make_mesh does)")
  return jax.make_array_from_process_local_data(sharding, host[lo:hi], host.shape)


def put_tree(tree: Any, shardings: Any) -> Any:
  """``put`` over matching pytrees of host arrays and shardings."""
  return jax.tree.map(put, tree, shardings)


def place(tree: Any, shardings: Any) -> Any:
  """Puts a pytree of host values and global arrays on ``shardings`` (every process calls it with
  the same values): host values through ``put``, global arrays resharded by JAX."""
  def one(x, sharding):
    if isinstance(x, jax.Array):
      if x.sharding == sharding:
        return x
      if jax.process_count() == 1 or not x.is_fully_addressable:  # device to device
        return jax.device_put(x, sharding)
    return put(np.asarray(x), sharding)  # a process-local value: each process puts its part

  return jax.tree.map(one, tree, shardings)


def gathered(tree: Any) -> Any:
  """``tree`` with every leaf whole on this process: global arrays split across processes are
  gathered (a collective: every process calls it, in the same order); others pass through."""
  def one(x):
    if not isinstance(x, jax.Array) or x.is_fully_addressable or x.is_fully_replicated:
      return x
    return multihost_utils.process_allgather(x, tiled=True)

  return jax.tree.map(one, tree)


def to_devices(tree: Any, shardings: Any) -> Any:
  """Copies a tree whose leaves are whole on this process (host values, local or replicated
  arrays; see ``gathered``) onto a mesh of this process's devices, e.g. a rollout shard's.
  ``shardings`` may be a prefix of ``tree`` (as for ``jax.device_put``)."""
  def local(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      if not x.is_fully_replicated:
        raise ValueError("to_devices: an array is split across processes; pass "
                         "multihost.gathered(tree) (every process calls it)")
      return x.addressable_data(0)  # this process's full copy
    return x

  return jax.device_put(jax.tree.map(local, tree), shardings)


def concat_shards(parts: Sequence[Any]) -> list[Any]:
  """Flattens per-process lists of per-shard results into shard order."""
  return [item for part in parts for item in part]
