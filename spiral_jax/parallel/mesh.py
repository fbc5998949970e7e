"""The device mesh ``('data', 'fsdp', 'tensor')`` and the logical-axis rules that map onto it.

Parameters and activations name their axes logically (``('embed', 'mlp')``); a rules table maps each
logical name to mesh axes. Training shards weights over ``fsdp`` and ``tensor``; sampling keeps the
``tensor`` split but replicates what training shards over ``fsdp`` (decode reads every weight each
step, so gathering them once beats gathering them per token). Names missing from a table replicate.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from spiral_jax.errors import InputError

MESH_AXES = ("data", "fsdp", "tensor")

Rules = tuple[tuple[str, str | tuple[str, ...] | None], ...]

TRAIN_RULES: Rules = (
    ("batch", ("data", "fsdp")),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("q_heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
)

SAMPLE_RULES: Rules = (
    ("batch", ("data", "fsdp")),
    ("vocab", "tensor"),
    ("embed", None),
    ("q_heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
)


def resolve_shape(shape: Mapping[str, int] | None, devices: int) -> dict[str, int]:
  """Axis sizes over ``devices``: missing axes are 1, one axis may be -1 (or 0: the devices the
  others leave). The one resolver behind ``make_mesh``, the config's ``mesh`` and the planner."""
  shape = dict({"data": -1} if shape is None else shape)
  unknown = set(shape) - set(MESH_AXES)
  if unknown:
    raise InputError(f"mesh shape has unknown axes {sorted(unknown)}; use {MESH_AXES}")
  sizes = {axis: shape.get(axis, 1) for axis in MESH_AXES}
  fill = [axis for axis, size in sizes.items() if size <= 0]
  if len(fill) > 1:
    raise InputError(f"mesh.data, mesh.fsdp, mesh.tensor = {tuple(sizes.values())}: at most one "
                     "may be -1 (fill the devices left); give the others sizes")
  if fill:
    known = math.prod(s for s in sizes.values() if s > 0)
    if devices % known:
      raise InputError(f"mesh {sizes}: {devices} devices do not divide by {known}")
    sizes[fill[0]] = devices // known
  if math.prod(sizes.values()) != devices:
    raise InputError(f"mesh.data x mesh.fsdp x mesh.tensor = {sizes['data']}x{sizes['fsdp']}x"
                     f"{sizes['tensor']} must equal the {devices} devices; set one of them to -1 "
                     "to fill the devices left")
  return sizes


def make_mesh(shape: Mapping[str, int] | None = None,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A mesh over ``devices`` (default: all) with axes ``('data', 'fsdp', 'tensor')``, all ``Auto``.

  ``shape`` maps axis names to sizes; missing axes are 1 and one axis may be -1 (fill the rest).
  Default: every device on ``data``.
  """
  devices = list(jax.devices() if devices is None else devices)
  sizes = resolve_shape(shape, len(devices))
  # jax.make_mesh defaults to Explicit axes, which reject jit-with-shardings code (PITFALLS.md)
  return jax.make_mesh(tuple(sizes[a] for a in MESH_AXES), MESH_AXES,
                       axis_types=(AxisType.Auto,) * len(MESH_AXES), devices=devices)


def single_device_mesh() -> Mesh:
  """A 1 x 1 x 1 mesh on the first device: lets unsharded code share the sharded code path."""
  return make_mesh({"data": 1}, devices=jax.devices()[:1])


def _mesh_axes_for(name: str | None, rules: Rules) -> tuple[str, ...]:
  for logical, mesh_axes in rules:
    if logical == name:
      if mesh_axes is None:
        return ()
      return (mesh_axes,) if isinstance(mesh_axes, str) else tuple(mesh_axes)
  return ()


def logical_to_spec(names: Sequence[str | None], rules: Rules, mesh: Mesh | None = None,
                    shape: Sequence[int] | None = None) -> P:
  """The ``PartitionSpec`` for one array whose dims have logical ``names``.

  A mesh axis is used at most once per array; with ``mesh`` and ``shape`` given, a dim whose size
  the mesh axes do not divide stays replicated (e.g. 2 KV heads on a 4-way tensor axis).
  """
  used: set[str] = set()
  spec = []
  for dim, name in enumerate(names):
    axes = tuple(a for a in _mesh_axes_for(name, rules) if a not in used)
    if mesh is not None:
      axes = tuple(a for a in axes if mesh.shape[a] > 1)
      if shape is not None and axes and shape[dim] % math.prod(mesh.shape[a] for a in axes):
        axes = ()
    used.update(axes)
    spec.append(None if not axes else axes[0] if len(axes) == 1 else axes)
  return P(*spec)


def _is_names(x: Any) -> bool:
  return isinstance(x, P) or (isinstance(x, tuple)
                              and all(n is None or isinstance(n, str) for n in x))


def logical_to_sharding(logical_axes: Any, mesh: Mesh, rules: Rules, shapes: Any = None) -> Any:
  """Maps a tree of logical names (``P('embed', 'mlp')`` or tuples) to ``NamedSharding``s.

  ``shapes``, a matching tree of shapes (or arrays), enables the divisibility fallback.
  """
  if shapes is None:
    return jax.tree.map(lambda n: NamedSharding(mesh, logical_to_spec(tuple(n), rules, mesh)),
                        logical_axes, is_leaf=_is_names)
  shape_leaves = jax.tree.leaves(jax.tree.map(np.shape, shapes, is_leaf=_is_shape),
                                 is_leaf=_is_shape)
  names, treedef = jax.tree.flatten(logical_axes, is_leaf=_is_names)
  if len(names) != len(shape_leaves):
    raise ValueError(f"logical_to_sharding: {len(names)} logical-axis leaves but "
                     f"{len(shape_leaves)} shapes; pass trees of the same structure")
  return treedef.unflatten([NamedSharding(mesh, logical_to_spec(tuple(n), rules, mesh, s))
                            for n, s in zip(names, shape_leaves)])


def _is_shape(x: Any) -> bool:
  return isinstance(x, tuple) and all(isinstance(d, int) for d in x)


def _variable_names(variable: nnx.Variable) -> tuple[str | None, ...]:
  names = variable.get_metadata().get("out_sharding") or (None,) * np.ndim(variable.get_value())
  return tuple(names)


def logical_axes(params: Any) -> Any:
  """The tree of ``P(logical names)`` of an ``nnx.State`` whose Variables carry ``out_sharding``."""
  return jax.tree.map(lambda v: P(*_variable_names(v)), params,
                      is_leaf=lambda x: isinstance(x, nnx.Variable))


def param_shardings(params: Any, mesh: Mesh, rules: Rules) -> Any:
  """``NamedSharding`` per parameter (a prefix tree of ``params``); works on abstract params too."""
  def one(variable):
    if not isinstance(variable, nnx.Variable):
      return NamedSharding(mesh, P())
    shape = np.shape(variable.get_value())
    return NamedSharding(mesh, logical_to_spec(_variable_names(variable), rules, mesh, shape))
  return jax.tree.map(one, params, is_leaf=lambda x: isinstance(x, nnx.Variable))


def shard_params(params: Any, mesh: Mesh, rules: Rules) -> Any:
  """Puts (or reshards) every parameter onto its sharding under ``rules``."""
  return jax.device_put(params, param_shardings(params, mesh, rules))


def batch_spec(rules: Rules, ndim: int) -> P:
  """The spec of an activation whose leading dim is the batch (the rest replicated)."""
  return logical_to_spec(("batch",) + (None,) * (ndim - 1), rules)


def batch_divisor(mesh: Mesh, rules: Rules) -> int:
  """How many ways the batch dim is split: batch sizes must be multiples of this."""
  return math.prod(mesh.shape[a] for a in _mesh_axes_for("batch", rules))
