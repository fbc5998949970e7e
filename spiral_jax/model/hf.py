"""Hugging Face checkpoints: (sharded) safetensors in, safetensors + config.json out. No torch.

Import builds the model abstractly (shapes only), then creates every parameter with
``jax.make_array_from_callback`` on its target sharding: each device's callback reads just its own
slice of the tensor from disk (memory-mapped), so no device ever holds the whole model and the host
holds at most one tensor's slice at a time.

Our parameter names mirror Hugging Face's: ``layers.0.self_attn.q_proj.kernel`` is
``model.layers.0.self_attn.q_proj.weight`` transposed (we store kernels ``[in, out]``).
"""
from __future__ import annotations

import json
import math
import os
import struct as pystruct
from typing import Any, Callable

import jax
import ml_dtypes
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from safetensors import safe_open
from safetensors.numpy import save_file

from spiral_jax import files as files_lib
from spiral_jax.errors import InputError
from spiral_jax.model import transformer
from spiral_jax.model.config import ModelConfig
from spiral_jax.parallel import mesh as mesh_lib

_INDEX = "model.safetensors.index.json"
_SINGLE = "model.safetensors"
# numpy has no bfloat16: tensors of these dtypes are memory-mapped and viewed with ml_dtypes
_RAW_DTYPES = {"BF16": ml_dtypes.bfloat16, "F8_E4M3": ml_dtypes.float8_e4m3fn,
               "F8_E5M2": ml_dtypes.float8_e5m2}


def hf_name(path: tuple[Any, ...]) -> tuple[str, bool]:
  """Our parameter path -> (Hugging Face tensor name, whether the tensor is transposed)."""
  *modules, leaf = (str(p) for p in path)
  if path == ("embed_tokens",):
    return "model.embed_tokens.weight", False
  if modules == ["lm_head"]:
    return "lm_head.weight", True
  prefix = "model." + ".".join(modules)
  if leaf == "kernel":
    return prefix + ".weight", True
  return f"{prefix}.{leaf}", False


def read_config(folder: str) -> dict[str, Any]:
  path = os.path.join(folder, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{folder!r} has no config.json; point from_hf at a Hugging Face model "
                            "folder (config.json + *.safetensors + tokenizer files)")
  with open(path) as f:
    return json.load(f)


class SafetensorsFolder:
  """Random access to the tensors of a folder of (sharded) safetensors files."""

  def __init__(self, folder: str):
    index_path = os.path.join(folder, _INDEX)
    if os.path.exists(index_path):
      with open(index_path) as f:
        weight_map = json.load(f)["weight_map"]
      files = sorted(set(weight_map.values()))
      for file in files:  # every shard, before any tensor is read: fail with its name
        files_lib.check_readable(os.path.join(folder, file), "a safetensors file")
    else:
      files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
      weight_map = {}
      for file in files:
        path = os.path.join(folder, file)
        files_lib.check_readable(path, "a safetensors file")
        try:
          with safe_open(path, framework="np") as handle:
            weight_map.update({name: file for name in handle.keys()})
        except Exception as e:  # noqa: BLE001  (safetensors' own errors name no file)
          raise InputError(f"{path} could not be read as safetensors ({e}): it is cut short or "
                           "not a safetensors file; copy it again") from e
    if not files:
      raise FileNotFoundError(f"{folder!r} has no *.safetensors files")
    self.folder = folder
    self.weight_map: dict[str, str] = weight_map
    self._headers: dict[str, tuple[int, dict[str, Any]]] = {}

  def __contains__(self, name: str) -> bool:
    return name in self.weight_map

  def _header(self, file: str) -> tuple[int, dict[str, Any]]:
    if file not in self._headers:
      path = os.path.join(self.folder, file)
      with open(path, "rb") as f:
        size = pystruct.unpack("<Q", f.read(8).ljust(8, b"\0"))[0]
        if 8 + size > os.path.getsize(path):
          raise InputError(f"{path}: its header claims {size} bytes, more than the file holds: "
                           "it is cut short or not a safetensors file; copy it again")
        self._headers[file] = (8 + size, json.loads(f.read(size)))
    return self._headers[file]

  def info(self, name: str) -> tuple[tuple[int, ...], str]:
    """(shape, safetensors dtype string) of a tensor."""
    _, header = self._header(self.weight_map[name])
    return tuple(header[name]["shape"]), header[name]["dtype"]

  def read(self, name: str, index: tuple[slice, ...]) -> np.ndarray:
    """The ``index`` slice of tensor ``name`` (only that slice is read from disk)."""
    file = self.weight_map[name]
    shape, dtype = self.info(name)
    if dtype in _RAW_DTYPES:
      start, header = self._header(file)
      begin, end = header[name]["data_offsets"]
      data = np.memmap(os.path.join(self.folder, file), dtype=_RAW_DTYPES[dtype], mode="r",
                       offset=start + begin, shape=shape)
      return np.array(data[index])
    with safe_open(os.path.join(self.folder, file), framework="np") as handle:
      return handle.get_slice(name)[index]


def _slice_key(index: tuple[slice, ...]) -> tuple:
  return tuple((s.start, s.stop, s.step) for s in index)


def _loader(reader: SafetensorsFolder, name: str, transpose: bool,
            dtype: np.dtype) -> Callable[[tuple[slice, ...]], np.ndarray]:
  """The per-device callback; replicated shards ask for the same slice, so it reads once."""
  last: dict[tuple, np.ndarray] = {}

  def load(index: tuple[slice, ...]) -> np.ndarray:
    key = _slice_key(index)
    if key not in last:
      source_index = tuple(reversed(index)) if transpose else index
      block = reader.read(name, source_index)
      last.clear()
      last[key] = np.ascontiguousarray((block.T if transpose else block).astype(dtype))
    return last[key]
  return load


def load_params(folder: str, config: ModelConfig, mesh: Mesh | None = None,
                rules: mesh_lib.Rules = mesh_lib.TRAIN_RULES) -> tuple[nnx.GraphDef, nnx.State]:
  """``(graphdef, params)`` from the safetensors in ``folder``, each on its target sharding.

  Without a mesh every parameter goes to the first device.
  """
  reader = SafetensorsFolder(folder)
  graphdef, abstract_params = transformer.abstract(config)
  mesh = mesh or mesh_lib.single_device_mesh()
  shardings = mesh_lib.param_shardings(abstract_params, mesh, rules)
  flat_shardings = dict(nnx.to_flat_state(shardings))
  loaded = []
  for path, variable in nnx.to_flat_state(abstract_params):
    name, transpose = hf_name(path)
    shape = tuple(variable.get_value().shape)
    if name not in reader:
      hint = (" (an untied model needs lm_head.weight; set tie_word_embeddings=true if it is "
              "tied)" if name == "lm_head.weight" else "")
      raise KeyError(f"tensor {name!r} is missing from the checkpoint in {folder!r}{hint}")
    stored, _ = reader.info(name)
    expected = tuple(reversed(shape)) if transpose else shape
    if stored != expected:
      raise InputError(f"tensor {name!r} has shape {stored}, but config.json implies {expected}; "
                       "the config and the weights disagree")
    array = jax.make_array_from_callback(
        shape, flat_shardings[path],
        _loader(reader, name, transpose, np.dtype(config.jnp_param_dtype)))
    loaded.append((path, variable.replace(value=array)))
  return graphdef, nnx.from_flat_state(loaded)


def _host_array(value: jax.Array, dtype: np.dtype) -> np.ndarray:
  """Gathers a (possibly sharded) array to the host in ``dtype``."""
  if not value.is_fully_addressable:
    value = jax.jit(lambda x: x, out_shardings=NamedSharding(value.sharding.mesh, P()))(value)
  return np.asarray(jax.device_get(value)).astype(dtype)


def save_params(params: nnx.State, config: ModelConfig, folder: str, dtype: str | None = None,
                max_shard_bytes: int = 4 * 1024 ** 3) -> None:
  """Writes ``model*.safetensors`` (+ index when sharded) with Hugging Face names and layouts."""
  np_dtype = np.dtype(jax.numpy.dtype(dtype or config.param_dtype))
  tensors: dict[str, np.ndarray] = {}
  for path, variable in nnx.to_flat_state(params):
    name, transpose = hf_name(path)
    value = _host_array(variable.get_value(), np_dtype)
    tensors[name] = np.ascontiguousarray(value.T if transpose else value)
  shards: list[dict[str, np.ndarray]] = [{}]
  size = 0
  for name in sorted(tensors):
    if shards[-1] and size + tensors[name].nbytes > max_shard_bytes:
      shards.append({})
      size = 0
    shards[-1][name] = tensors[name]
    size += tensors[name].nbytes
  metadata = {"format": "pt"}  # transformers refuses safetensors files without it
  if len(shards) == 1:
    save_file(shards[0], os.path.join(folder, _SINGLE), metadata=metadata)
    return
  weight_map = {}
  for i, shard in enumerate(shards):
    file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
    save_file(shard, os.path.join(folder, file), metadata=metadata)
    weight_map.update({name: file for name in shard})
  total = sum(t.nbytes for t in tensors.values())
  with open(os.path.join(folder, _INDEX), "w") as f:
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def write_config(config: ModelConfig, folder: str, tokenizer: Any = None,
                 dtype: str | None = None) -> None:
  """config.json (+ generation_config.json with the stop tokens when a tokenizer is given)."""
  hf = config.to_hf_config()
  hf["torch_dtype"] = dtype or config.param_dtype
  if tokenizer is not None:
    hf["eos_token_id"] = tokenizer.eos_id
    hf["pad_token_id"] = tokenizer.pad_id
    stops = sorted(set(tokenizer.stop_ids) | {tokenizer.eos_id})
    with open(os.path.join(folder, "generation_config.json"), "w") as f:
      json.dump({"eos_token_id": stops if len(stops) > 1 else stops[0],
                 "pad_token_id": tokenizer.pad_id}, f, indent=2)
  with open(os.path.join(folder, "config.json"), "w") as f:
    json.dump(hf, f, indent=2)


def num_bytes(params: nnx.State) -> int:
  return sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(params))
