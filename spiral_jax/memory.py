"""A per-device memory plan from shapes alone: parameters, optimizer state, gradients, the
sampler's KV cache and the learner's peak activations of a training workload on a topology.

Nothing here allocates device memory or reads weights: parameter shapes come from
``transformer.abstract`` (``nnx.eval_shape``), shardings from the trainer's logical rules
(``parallel.mesh``). Activations count what this code base's decoder keeps for its backward pass
(``layer_saved_bytes``); ``tests/parallel/test_memory_plan.py`` checks the totals against XLA's
``compiled.memory_analysis()`` on CPU. ``spiral_jax.plan`` is the command line over this module.

Two phases share a device and never overlap: *sampling* (the train state stays resident while
``sampling.generate`` holds the weights, the KV cache and prefill temporaries) and *learning* (the
jitted ``train_step``: state, gradients and one micro-batch's activations).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import nnx

from spiral_jax.errors import InputError
from spiral_jax.model import transformer
from spiral_jax.model.config import ModelConfig
from spiral_jax.parallel import mesh as mesh_lib
from spiral_jax.sampling.prefixes import bucket
from spiral_jax.sampling.sampler import decode_windows

GiB = 1 << 30
F32 = 4
Rows = list[tuple[str, int]]  # (what, bytes per device)


@dataclasses.dataclass(frozen=True)
class Topology:
  """One slice or host: ``devices`` JAX devices with ``hbm_bytes`` each."""
  name: str
  devices: int
  hbm_bytes: int
  platform: str  # "tpu", "gpu" or "cpu": resolves dtype "auto" and the KV-cache dtype


# Cloud TPU names count TensorCores for v4 and v5p ("v5p-16" = 16 cores = 8 chips, 2 cores per
# chip) but chips for v5e ("v5litepod-8", also written "v5e-8") and v6e ("v6e-8" = 8 chips, one
# core each). JAX shows one device per chip on all four (v4/v5p pair their cores as one megacore).
# HBM per chip: v4 32 GiB, v5e 16 GiB, v5p 95 GiB, v6e 32 GiB. GPUs: "h100x8" = 8 GPUs.
_TPUS = {"v4": (32 * GiB, 2), "v5p": (95 * GiB, 2), "v5e": (16 * GiB, 1),
         "v5litepod": (16 * GiB, 1), "v6e": (32 * GiB, 1)}  # (HBM per chip, cores per chip)
_GPUS = {"h100": 80 * GiB, "h200": 141 * GiB}  # the "80 GB" / "141 GB" parts
CPU_BYTES = 16 * GiB  # an arbitrary budget for fake CPU devices


def topology(name: str) -> Topology:
  """Parses ``v5e-8``, ``v5p-16``, ``v4-8``, ``v6e-8``, ``h100x8``, ``h200`` or ``cpu[-N]``."""
  key = name.strip().lower()
  if m := re.fullmatch(r"(v4|v5p|v5e|v5litepod|v6e)-(\d+)", key):
    hbm, cores = _TPUS[m[1]]
    if int(m[2]) % cores or int(m[2]) < cores:
      raise InputError(f"--topology={name}: {m[1]} names count TensorCores ({cores} per chip); "
                       f"use a multiple of {cores}, e.g. {m[1]}-{4 * cores}")
    return Topology(key, int(m[2]) // cores, hbm, "tpu")
  if m := re.fullmatch(r"(h100|h200)(?:x(\d+))?", key):
    return Topology(key, int(m[2] or 1), _GPUS[m[1]], "gpu")
  if m := re.fullmatch(r"cpu(?:-(\d+))?", key):
    return Topology(key, int(m[1] or 8), CPU_BYTES, "cpu")
  raise InputError(f"--topology={name!r} is unknown; use v4-8, v5e-8, v5p-16, v6e-8, h100x8, "
                   "h200x8 or cpu (other sizes too: v5p-32, h100x4, cpu-4, ...)")


def dtypes(model: ModelConfig, platform: str) -> tuple[np.dtype, np.dtype, np.dtype]:
  """(parameter, compute, KV-cache) dtypes on ``platform``, resolved as the model code does."""
  compute = (np.dtype(np.float32 if platform == "cpu" else jax.numpy.bfloat16)
             if model.dtype == "auto" else np.dtype(jax.numpy.dtype(model.dtype)))
  cache = np.dtype(np.float32) if platform == "cpu" else compute  # transformer.cache_dtype
  return np.dtype(model.param_dtype), compute, cache


def _per_device(n: int, ways: int) -> int:
  return -(-n // ways)


def _split(names: tuple[str | None, ...], shape: tuple[int, ...], mesh: Mapping[str, int],
           rules: mesh_lib.Rules) -> int:
  """Into how many shards ``rules`` cut an array with logical ``names`` on ``mesh``."""
  spec = mesh_lib.logical_to_spec(names, rules, types.SimpleNamespace(shape=mesh), shape)
  axes = [a for entry in spec if entry for a in ((entry,) if isinstance(entry, str) else entry)]
  return math.prod(mesh[a] for a in axes)


@functools.lru_cache(maxsize=32)
def _param_leaves(model: ModelConfig) -> tuple[tuple[tuple[int, ...], tuple], ...]:
  """(shape, logical axis names) of every parameter, from ``nnx.eval_shape``."""
  _, abstract = transformer.abstract(model)
  leaves = jax.tree.leaves(abstract, is_leaf=lambda x: isinstance(x, nnx.Variable))
  return tuple((tuple(v.get_value().shape),
                tuple(v.get_metadata().get("out_sharding") or (None,) * v.get_value().ndim))
               for v in leaves)


def param_bytes(model: ModelConfig, mesh: Mapping[str, int], rules: mesh_lib.Rules) -> int:
  """One device's parameter shards, in the model's parameter dtype."""
  itemsize = np.dtype(model.param_dtype).itemsize
  shapes_only = model.replace(dtype="float32", param_dtype="float32")  # one cache entry per shape
  return sum(_per_device(math.prod(shape), _split(names, shape, mesh, rules)) * itemsize
             for shape, names in _param_leaves(shapes_only))


def _heads(model: ModelConfig, mesh: Mapping[str, int]) -> tuple[int, int]:
  """(query heads, KV heads) per device: split over ``tensor`` when it divides them."""
  t = mesh["tensor"]
  return tuple(h // t if h % t == 0 else h for h in (model.num_heads, model.num_kv_heads))


def _vocab(model: ModelConfig, mesh: Mapping[str, int]) -> int:
  t = mesh["tensor"]
  return model.vocab_size // t if model.vocab_size % t == 0 else model.vocab_size


def _rows(rows: int, mesh: Mapping[str, int]) -> int:
  """Rows on one device: the batch splits over ``data`` x ``fsdp`` (both rule sets)."""
  return _per_device(rows, mesh["data"] * mesh["fsdp"])


def kv_cache_bytes(model: ModelConfig, rows: int, slots: int, mesh: Mapping[str, int],
                   dtype: Any) -> int:
  """layers x 2 (k, v) x rows x slots x KV heads x head_dim x bytes, on one device."""
  kv_heads = _heads(model, mesh)[1]
  return (model.num_layers * 2 * _rows(rows, mesh) * slots * kv_heads * model.head_dim
          * np.dtype(dtype).itemsize)


def layer_saved_bytes(model: ModelConfig, tokens: int, mesh: Mapping[str, int],
                      compute: Any) -> int:
  """What one ``transformer.Block`` keeps per row of ``tokens`` for its backward pass.

  Per token, the residuals JAX saves for this code: each RMSNorm's float32 input and normalised
  value and its output in the compute dtype, and the residual stream; q and k in float32 (and
  normalised, with qk_norm), q/k/v/attention output again in ``attend``'s transposed layouts; the
  float32 gate, up, sigmoid and SiLU of the MLP and the product fed to ``down_proj``; and the
  softmax over every key of every head (materialised attention, no fused kernel). XLA on TPU/GPU
  recomputes some elementwise values inside fusions instead, so this errs high there.
  """
  c = np.dtype(compute).itemsize
  heads, kv_heads = _heads(model, mesh)
  q, kv, d = heads * model.head_dim, kv_heads * model.head_dim, model.d_model
  mlp = _per_device(model.mlp_dim, mesh["tensor"])
  per_token = (2 * (2 * F32 * d + c * d) + c * d                      # norms, residual stream
               + F32 * (q + kv) * (2 if model.qk_norm else 1) + c * (2 * q + 4 * kv)
               + 2 * c * q                                            # attention output, 2 layouts
               + 4 * F32 * mlp + c * mlp
               + (F32 + (0 if c == F32 else c)) * heads * tokens)     # softmax f32 (+ its cast)
  return tokens * per_token


def learner_activation_bytes(model: ModelConfig, rows: int, tokens: int,
                             mesh: Mapping[str, int], compute: Any, remat: bool = False) -> int:
  """One device's peak activations for a learner micro-batch of ``rows`` x ``tokens``.

  When the backward pass starts every layer's saved tensors are live (with per-layer remat: each
  layer's input and one layer's tensors), plus the vocabulary head's two float32 [T, V] arrays
  (logits and their gradient: ``rl/logprobs.py`` does not chunk the vocabulary, and its entropy
  carries no gradient) and one layer's attention-probability gradient (one float32 [heads, T, T]:
  the softmax backward reuses its buffer). Calibrated against XLA's ``memory_analysis`` on CPU
  after the learner's dots became 2-D (``tests/parallel/test_memory_plan.py``): the head's arrays
  stay live through the layers' backward (the tied embedding's gradient is summed at the end),
  so they add to the attention gradient instead of alternating with it.
  """
  c = np.dtype(compute).itemsize
  layer = layer_saved_bytes(model, tokens, mesh, compute)
  inputs = c * model.d_model * tokens
  stored = layer + (model.num_layers - 1) * (inputs if remat else layer)
  head = 2 * F32 * tokens * _vocab(model, mesh)
  attention_grad = F32 * _heads(model, mesh)[0] * tokens * tokens
  return _rows(rows, mesh) * (stored + head + attention_grad + 2 * inputs)


def prefill_bytes(model: ModelConfig, rows: int, prompt: int, slots: int,
                  mesh: Mapping[str, int], cache_dtype: Any) -> int:
  """The prefill's temporaries, one layer at a time: float32 scores and the softmax (in the cache
  dtype) of [heads, prompt, slots] (the mask fuses into them), a float32 [prompt, mlp + d] of MLP
  work."""
  heads = _heads(model, mesh)[0]
  mlp = _per_device(model.mlp_dim, mesh["tensor"])
  scores = (F32 + np.dtype(cache_dtype).itemsize) * heads * prompt * slots
  return _rows(rows, mesh) * (scores + F32 * prompt * (mlp + model.d_model))


def decode_bytes(model: ModelConfig, rows: int, slots: int, mesh: Mapping[str, int],
                 cache_dtype: Any) -> int:
  """A decode step's temporaries: a copy of one layer's K or V buffer (in-place updates are not
  guaranteed) and the float32 [rows, V] sampling work (logits, weights, block sums)."""
  per_row = (slots * _heads(model, mesh)[1] * model.head_dim * np.dtype(cache_dtype).itemsize
             + 3 * F32 * model.vocab_size)
  return _rows(rows, mesh) * per_row


@dataclasses.dataclass(frozen=True)
class Workload:
  """The sizes a training config implies (``spiral_jax.plan.workload`` reads a ``TrainConfig``).

  micro_batch: learner rows per accumulation step; learner_tokens: padded tokens per learner row;
  sampler_rows: prompts one turn sends to the sampler (padded by ``padded_rows``); prompt_slots,
  new_slots: the sampler's padded prompt and response lengths; extra_params: more resident weight
  copies (a KL reference, a frozen opponent); epochs: optimizer steps per policy step.
  """
  batch_size: int
  micro_batch: int
  learner_tokens: int
  sampler_rows: int
  prompt_slots: int
  new_slots: int
  extra_params: int = 0
  epochs: int = 1


def learner_step_bytes(model: ModelConfig, work: Workload, mesh: Mapping[str, int],
                       platform: str) -> Rows:
  """One device's share of the jitted ``train_step``: state, gradients, batch, activations."""
  param_dt, compute, _ = dtypes(model, platform)
  train = param_bytes(model, mesh, mesh_lib.TRAIN_RULES)
  rows = [("parameters", train), ("optimizer state (Adam mu + nu)", 2 * train),
          ("gradients (accumulator + micro-batch)", 2 * train), ("optimizer update", train)]
  if work.epochs > 1:  # the donated buffers are free only once the last epoch has written
    rows.append(("an epoch's updated parameters and moments", 2 * train))
  if work.extra_params:
    rows.append(("other weight copies (reference, opponent)", work.extra_params * train))
  if mesh["fsdp"] > 1:  # the forward all-gathers every weight; the backward needs them again
    gathered = param_bytes(model, {**mesh, "fsdp": 1}, mesh_lib.TRAIN_RULES)
    rows.append((f"fsdp-gathered weights ({compute.name})",
                 gathered * compute.itemsize // param_dt.itemsize))
  # tokens i32, input mask, loss mask f32, the epochs' f32 log-probs (old, new)
  rows.append(("batch arrays", _rows(work.batch_size, mesh) * work.learner_tokens * 17))
  rows.append((f"activations ({work.micro_batch} rows x {work.learner_tokens} tokens)",
               learner_activation_bytes(model, work.micro_batch, work.learner_tokens, mesh,
                                        compute)))
  return rows


def sampler_call_bytes(model: ModelConfig, rows: int, prompt_slots: int, new_slots: int,
                       mesh: Mapping[str, int], platform: str) -> Rows:
  """One device's share of a ``sampling.generate`` call over ``rows`` (padded) prompts."""
  param_dt, compute, cache = dtypes(model, platform)
  slots = prompt_slots + new_slots
  weights = param_bytes(model, mesh, mesh_lib.SAMPLE_RULES)
  out = [("weights (sampling shards)", weights)]
  if compute != param_dt:
    out.append((f"weights cast to {compute.name}", weights * compute.itemsize // param_dt.itemsize))
  if platform == "cpu":  # XLA:CPU gets the output projection [d, V] materialised (sampler.py)
    out.append(("output projection copy (CPU)",
                model.d_model * _vocab(model, mesh) * compute.itemsize))
  out.append((f"KV cache ({rows} rows x {slots} slots, {cache.name})",
              kv_cache_bytes(model, rows, slots, mesh, cache)))
  # tokens and log-probs [rows, new_slots], the slot mask
  out.append(("sampler state", _rows(rows, mesh) * (2 * F32 * new_slots + slots)))
  first = prompt_slots + decode_windows(new_slots)[0]  # the cache the prefill fills
  out.append(("prefill / decode / cache growth temporaries",
              max(prefill_bytes(model, rows, prompt_slots, first, mesh, cache),
                  decode_bytes(model, rows, slots, mesh, cache),
                  cache_growth_bytes(model, rows, prompt_slots, new_slots, mesh, cache))))
  return out


def cache_growth_bytes(model: ModelConfig, rows: int, prompt_slots: int, new_slots: int,
                       mesh: Mapping[str, int], cache_dtype: Any) -> int:
  """The cache grows window by window (``sampler.decode_windows``); its last growth holds the
  previous window's cache beside the full one. 0 when one window holds the budget."""
  windows = decode_windows(new_slots)
  if len(windows) == 1:
    return 0
  return kv_cache_bytes(model, rows, prompt_slots + windows[-2], mesh, cache_dtype)


@dataclasses.dataclass(frozen=True)
class Plan:
  """Bytes per device of each phase, as (what, bytes) rows, against ``budget``."""
  topology: Topology
  mesh: dict[str, int]
  model: ModelConfig
  work: Workload
  budget: int
  learner: tuple[tuple[str, int], ...]
  sampler: tuple[tuple[str, int], ...]
  remat_activations: int  # the learner's activations with per-layer remat (not in the model yet)
  rows_per_call: int      # sampler rows per call, padded

  @property
  def learner_total(self) -> int:
    return sum(b for _, b in self.learner)

  @property
  def learner_total_remat(self) -> int:
    return self.learner_total - self.learner[-1][1] + self.remat_activations

  @property
  def sampler_total(self) -> int:
    return sum(b for _, b in self.sampler)

  @property
  def learner_fits(self) -> bool:
    return self.learner_total <= self.budget

  @property
  def sampler_fits(self) -> bool:
    return self.sampler_total <= self.budget


def estimate(model: ModelConfig, work: Workload, mesh: Mapping[str, int], topo: Topology,
             headroom: float = 0.9, rows_per_call: int | None = None) -> Plan:
  """The plan of ``work`` on ``mesh``; ``rows_per_call`` (default ``work.sampler_rows``) prompts
  per sampler call. While sampling the train state stays resident; ``generate`` reuses its
  parameter buffers when both rule sets shard them alike, else holds a second copy."""
  mesh = dict(mesh)
  train = param_bytes(model, mesh, mesh_lib.TRAIN_RULES)
  shared = param_bytes(model, mesh, mesh_lib.SAMPLE_RULES) == train
  resident = ("train state (optimizer" + ("" if shared else " + parameters") + ")",
              (2 + work.extra_params + (0 if shared else 1)) * train)
  rows = bucket(rows_per_call or work.sampler_rows, multiple_of=mesh["data"] * mesh["fsdp"])
  sampler = [resident] + sampler_call_bytes(model, rows, work.prompt_slots, work.new_slots, mesh,
                                            topo.platform)
  remat = learner_activation_bytes(model, work.micro_batch, work.learner_tokens, mesh,
                                   dtypes(model, topo.platform)[1], remat=True)
  return Plan(topology=topo, mesh=mesh, model=model, work=work,
              budget=int(topo.hbm_bytes * headroom),
              learner=tuple(learner_step_bytes(model, work, mesh, topo.platform)),
              sampler=tuple(sampler), remat_activations=remat, rows_per_call=rows)


def sampler_chunk(model: ModelConfig, work: Workload, mesh: Mapping[str, int], topo: Topology,
                  headroom: float = 0.9) -> int:
  """The most rows one sampler call can take and fit (only padded sizes: ``generate`` pads any
  other count up); 0 when not even one row per device fits."""
  divisor, best = mesh["data"] * mesh["fsdp"], 0
  size = divisor
  while size <= bucket(work.sampler_rows, multiple_of=divisor):
    if estimate(model, work, mesh, topo, headroom, rows_per_call=size).sampler_fits:
      best = size
    size = bucket(size + 1, multiple_of=divisor)
  return best


def largest_micro_batch(model: ModelConfig, work: Workload, mesh: Mapping[str, int],
                        topo: Topology, headroom: float = 0.9, remat: bool = False) -> int:
  """The largest micro-batch (dividing the batch, split evenly over data x fsdp) whose learner step
  fits, with per-layer remat if ``remat``; 0 if none does."""
  split = mesh["data"] * mesh["fsdp"]
  for size in range(work.batch_size, 0, -1):
    if work.batch_size % size == 0 and size % split == 0:
      plan = estimate(model, dataclasses.replace(work, micro_batch=size), mesh, topo, headroom)
      if (plan.learner_total_remat if remat else plan.learner_total) <= plan.budget:
        return size
  return 0


def meshes(devices: int, max_tensor: int = 8) -> list[dict[str, int]]:
  """Every data x fsdp x tensor split of ``devices`` (tensor up to ``max_tensor``), least
  communication first: smaller tensor axes, then wider data axes."""
  out = [{"data": devices // tensor // fsdp, "fsdp": fsdp, "tensor": tensor}
         for tensor in range(1, min(devices, max_tensor) + 1) if devices % tensor == 0
         for fsdp in range(1, devices // tensor + 1) if (devices // tensor) % fsdp == 0]
  return sorted(out, key=lambda m: (m["tensor"], -m["data"]))


# ---- the row counts a run can afford on the devices it has ----
HOST_SAMPLER_BYTES = 4 * GiB  # CPU: one process's share of host memory for sampling, fixed so
# that row counts (hence evaluation draws) do not follow how much memory a machine happens to have


def local_topology() -> Topology:
  """This process's devices as a ``Topology``: accelerators report their memory (``bytes_limit``
  of ``memory_stats``); CPU devices split ``HOST_SAMPLER_BYTES`` of the host's memory."""
  devices = jax.local_devices()
  stats = devices[0].memory_stats() or {}
  platform = {"cpu": "cpu", "tpu": "tpu"}.get(devices[0].platform, "gpu")
  if platform != "cpu" and stats.get("bytes_limit"):
    return Topology(devices[0].device_kind, len(devices), int(stats["bytes_limit"]), platform)
  return Topology("cpu", len(devices), HOST_SAMPLER_BYTES // len(devices), "cpu")


def rows_that_fit(model: ModelConfig, mesh: Mapping[str, int] | None, prompt_tokens: int,
                  new_tokens: int, most: int, topo: Topology | None = None,
                  extra_params: int = 0, headroom: float = 0.9) -> int:
  """How many prompts one ``sampling.generate`` call of ``prompt_tokens`` + ``new_tokens`` may
  take on ``topo`` (default: the local devices) beside a resident train state: the largest padded
  count up to ``most`` whose plan fits, and never fewer than one row per batch shard."""
  mesh = {**{a: 1 for a in mesh_lib.MESH_AXES}, **dict(mesh or {})}
  work = Workload(batch_size=1, micro_batch=1, learner_tokens=16, sampler_rows=most,
                  prompt_slots=bucket(prompt_tokens, minimum=16),
                  new_slots=bucket(new_tokens, minimum=16), extra_params=extra_params)
  fitting = sampler_chunk(model, work, mesh, topo or local_topology(), headroom)
  return min(most, max(fitting, mesh["data"] * mesh["fsdp"]))
