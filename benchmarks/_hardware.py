"""The benchmarks' view of the machine: which JAX backend, its peak rates, and how to time code.

``--device cpu|gpu|tpu`` (default: whatever ``jax.devices()`` gives) picks the backend before JAX
starts one. Every script measures the machine's peaks in the same run (a large ``jnp.dot`` in the
benchmark's dtype, a large elementwise pass for memory bandwidth), so fractions hold on a shared
machine; on a GPU or TPU it also reports fractions of the card's spec-sheet dense peak and memory
bandwidth (``SPECS``, matched on ``device_kind``).
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

# our --device names -> JAX platform names
PLATFORMS = {"cpu": "cpu", "gpu": "cuda", "tpu": "tpu"}


@dataclasses.dataclass(frozen=True)
class Spec:
  """Spec-sheet dense peaks (no sparsity) of one accelerator: FLOP/s and memory bytes/s.
  ``tf32`` is what an fp32 matmul gets under XLA's default precision on NVIDIA cards."""
  bf16: float
  fp32: float
  tf32: float
  hbm: float


# (lower-case substring of jax's device_kind, spec); the first match wins, so longer names first.
SPECS: tuple[tuple[str, Spec], ...] = (
    ("h100 pcie", Spec(bf16=756e12, fp32=51e12, tf32=378e12, hbm=2.0e12)),
    ("h100 nvl", Spec(bf16=835e12, fp32=60e12, tf32=418e12, hbm=3.9e12)),
    ("h100", Spec(bf16=989e12, fp32=67e12, tf32=495e12, hbm=3.35e12)),   # SXM5, HBM3
    ("h200 nvl", Spec(bf16=835e12, fp32=60e12, tf32=418e12, hbm=4.8e12)),
    ("h200", Spec(bf16=989e12, fp32=67e12, tf32=495e12, hbm=4.8e12)),    # SXM, HBM3e
    ("a100-pcie-40gb", Spec(bf16=312e12, fp32=19.5e12, tf32=156e12, hbm=1.555e12)),
    ("a100-sxm4-40gb", Spec(bf16=312e12, fp32=19.5e12, tf32=156e12, hbm=1.555e12)),
    ("a100-pcie", Spec(bf16=312e12, fp32=19.5e12, tf32=156e12, hbm=1.935e12)),  # 80GB
    ("a100", Spec(bf16=312e12, fp32=19.5e12, tf32=156e12, hbm=2.039e12)),  # SXM4 80GB
    ("l4", Spec(bf16=121e12, fp32=30.3e12, tf32=60e12, hbm=0.3e12)),
    ("tpu v6 lite", Spec(bf16=918e12, fp32=918e12 / 4, tf32=918e12 / 4, hbm=1.64e12)),  # v6e
    ("tpu v5 lite", Spec(bf16=197e12, fp32=197e12 / 4, tf32=197e12 / 4, hbm=0.819e12)),  # v5e
    ("tpu v5", Spec(bf16=459e12, fp32=459e12 / 4, tf32=459e12 / 4, hbm=2.765e12)),  # v5p
    ("tpu v4", Spec(bf16=275e12, fp32=275e12 / 4, tf32=275e12 / 4, hbm=1.2e12)),
)


def add_device_flag(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--device", choices=sorted(PLATFORMS), default=None,
                      help="JAX backend to run on (default: whatever jax.devices() gives)")


def add_decode_flags(parser: argparse.ArgumentParser, shapes: str) -> None:
  """The sampler benchmarks' flags: ``--device``, ``--repeats``, ``--shapes`` (default ``shapes``,
  read with ``parse_shapes``) and ``--dtypes``."""
  add_device_flag(parser)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--shapes", default=shapes,
                      help="comma-separated batch x prompt length x new tokens")
  parser.add_argument("--dtypes", default="float32,bfloat16")


def parse_shapes(text: str) -> list[tuple[int, ...]]:
  """``"32x64x128,8x256x64"`` -> [(32, 64, 128), (8, 256, 64)]."""
  return [tuple(int(x) for x in s.split("x")) for s in text.split(",")]


def select_device(name: str | None) -> None:
  """Makes ``name`` JAX's only platform; call before anything touches a device."""
  if name is None:
    return
  jax.config.update("jax_platforms", PLATFORMS[name])
  try:
    jax.devices()
  except (RuntimeError, AssertionError) as e:  # jax asserts when no plugin registered the name
    raise SystemExit(f"--device {name}: JAX has no {PLATFORMS[name]} backend here ({e!r}); "
                     "install the matching jax plugin (e.g. jax[cuda12]) or leave --device out"
                     ) from e


def spec_for(device_kind: str) -> Spec | None:
  kind = device_kind.lower()
  return next((spec for key, spec in SPECS if key in kind), None)


def device_info() -> dict[str, Any]:
  device = jax.devices()[0]
  return dict(backend=jax.default_backend(), device_kind=device.device_kind,
              device_count=jax.device_count(), jax=jax.__version__)


class CompileLog:
  """Every XLA compilation from now on, as ``(label, function name)`` in ``events``; ``label`` is
  what the caller last set (e.g. the policy step in progress). While it is None nothing is kept."""

  def __init__(self, label: Any = 0):
    self.label = label
    self.events: list[tuple[Any, str]] = []
    jax.monitoring.register_event_duration_secs_listener(self._record)

  def _record(self, event: str, _seconds: float, fun_name: str = "?", **_) -> None:
    if event == "/jax/core/compile/backend_compile_duration" and self.label is not None:
      self.events.append((self.label, fun_name))


def block(tree: Any) -> Any:
  return jax.block_until_ready(tree)


def best_time(fn: Callable[[], Any], repeats: int, min_seconds: float = 0.0) -> float:
  """Best seconds per call of ``fn`` (which must block) over ``repeats`` timed batches; a batch
  repeats the call until it lasts ``min_seconds`` (short calls on a GPU), then divides."""
  best = float("inf")
  for _ in range(repeats):
    calls, start = 0, time.perf_counter()
    while True:
      fn()
      calls += 1
      elapsed = time.perf_counter() - start
      if elapsed >= min_seconds:
        break
    best = min(best, elapsed / calls)
  return best


def matmul_peak(dtype: str, n: int | None = None, repeats: int = 5) -> dict[str, float]:
  """FLOP/s of a jitted ``n x n @ n x n`` in ``dtype`` with float32 accumulation (as the model's
  layers multiply); n defaults to 2048 on CPU, 8192 elsewhere."""
  n = n or (2048 if jax.default_backend() == "cpu" else 8192)
  keys = jax.random.split(jax.random.key(0))
  a, b = (jax.random.normal(k, (n, n), jnp.float32).astype(dtype) for k in keys)
  dot = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
  block(dot(a, b))
  seconds = best_time(lambda: block(dot(a, b)), repeats, min_seconds=0.05)
  return dict(flops_per_s=2.0 * n ** 3 / seconds, n=n)


def bandwidth_peak(mib: int | None = None, repeats: int = 5) -> dict[str, float]:
  """Bytes/s of a jitted elementwise ``x * 2 + 1`` over ``mib`` MiB of float32 (read + write);
  default 64 MiB on CPU, 1 GiB elsewhere."""
  mib = mib or (64 if jax.default_backend() == "cpu" else 1024)
  x = jnp.ones((mib * 2 ** 20 // 4,), jnp.float32)
  f = jax.jit(lambda x: x * 2.0 + 1.0)
  block(f(x))
  seconds = best_time(lambda: block(f(x)), repeats, min_seconds=0.05)
  return dict(bytes_per_s=2.0 * x.nbytes / seconds, mib=mib)


class Peaks:
  """This run's measured peaks (and the card's spec, if known) for one compute dtype."""

  def __init__(self, dtype: str, repeats: int = 5, matmul_n: int | None = None):
    self.dtype = dtype
    self.repeats, self.matmul_n = repeats, matmul_n
    self.matmul = matmul_peak(dtype, matmul_n, repeats)
    self.bandwidth = bandwidth_peak(repeats=repeats)
    self.spec = spec_for(jax.devices()[0].device_kind) if jax.default_backend() != "cpu" else None

  def remeasure(self) -> None:
    """Measures again and keeps the better: a shared machine's peak is its least-loaded moment."""
    again = matmul_peak(self.dtype, self.matmul_n, self.repeats)
    if again["flops_per_s"] > self.matmul["flops_per_s"]:
      self.matmul = again

  @property
  def spec_flops(self) -> float | None:
    if self.spec is None:
      return None
    if self.dtype in ("bfloat16", "float16"):
      return self.spec.bf16
    # fp32 dots run as TF32 under XLA's default precision on NVIDIA tensor cores
    return self.spec.tf32 if jax.default_backend() == "gpu" else self.spec.fp32

  def describe(self) -> dict[str, Any]:
    out = dict(dtype=self.dtype, matmul_n=self.matmul["n"],
               matmul_flops_per_s=_sig(self.matmul["flops_per_s"]),
               bandwidth_bytes_per_s=_sig(self.bandwidth["bytes_per_s"]))
    if self.spec is not None:
      out.update(spec_flops_per_s=self.spec_flops, spec_bandwidth_bytes_per_s=self.spec.hbm)
    return out

  def utilisation(self, seconds: float, flops: float, bytes_moved: float | None = None
                  ) -> dict[str, float]:
    """Achieved rates for work done in ``seconds``, as fractions of the measured peaks (and of the
    spec on accelerators: MFU and HBM bandwidth utilisation)."""
    out = dict(flops_per_s=_sig(flops / seconds),
               fraction_of_matmul_peak=round(flops / seconds / self.matmul["flops_per_s"], 4))
    if self.spec is not None:
      out["mfu"] = round(flops / seconds / self.spec_flops, 4)
    if bytes_moved is not None:
      out["bytes_per_s"] = _sig(bytes_moved / seconds)
      out["fraction_of_bandwidth_peak"] = round(
          bytes_moved / seconds / self.bandwidth["bytes_per_s"], 4)
      if self.spec is not None:
        out["hbm_utilisation"] = round(bytes_moved / seconds / self.spec.hbm, 4)
    return out


def cost_analysis(compiled) -> dict[str, float]:
  """XLA's own count of a compiled function's FLOPs and bytes accessed ({} where unavailable).
  XLA counts a loop body once whatever its trip count."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # some backends do not implement it
    return {}
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  if not cost:
    return {}
  return {k: float(cost[k]) for k in ("flops", "bytes accessed", "transcendentals") if k in cost}


def _sig(x: float, digits: int = 4) -> float:
  """``x`` rounded to ``digits`` significant digits (rates span 1e6..1e15)."""
  return float(np.format_float_positional(x, precision=digits, unique=False, fractional=False,
                                          trim="-")) if x else 0.0
