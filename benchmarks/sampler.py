"""New tokens per second of ``sampling.generate`` beside ``transformers.generate`` (torch).

Both sides load the same tiny random Qwen3 checkpoint (vocab 8192, hidden 256, 4 layers, 4 query /
2 KV heads, head dim 64, MLP 1024, tied embeddings, rope theta 1e6), written with transformers to a
temporary folder, and decode the same random prompts with no stop token (every row makes exactly
``new`` tokens), greedy and sampled (temperature 1, top-p 1, ``top_k=0`` on the HF side), in
float32 (both sides) and bfloat16 (weights and compute, both sides: ``model.to(torch.bfloat16)``
against ``param_dtype=dtype="bfloat16"``; CPUs with AMX/avx512-bf16 run it several times faster).
Everything is measured in one run, the two sides interleaved (best of ``--repeats`` each), so the
ratio holds even on a shared CPU. Our compile time is reported apart: ``compile_s`` is the first
call minus a warm call. Each row also gives our achieved FLOP/s and its fractions of this run's
matmul and memory-bandwidth peaks (``_hardware.Peaks``, measured per dtype), from analytic counts
of the padded shapes ``generate`` runs (``_models.sampler_flops``); ``ours_prefill_s`` (a
one-token call), ``ours_decode_step_ms``, ``matmul_floor_step_ms`` (a decode step's weight
products alone at that batch: ``decode_matmul_floor``) and ``floor_vs_transformers``, the ratio a
decoder would reach whose steps cost only those products. Prints one JSON object.

With ``--tunix_python PATH`` (or ``SPIRAL_TUNIX_PYTHON``), the Python of a virtual environment with
``google-tunix``, Tunix's JAX sampler is a third side: ``tunix_sampler.py`` runs in that Python
right after our measurements of each dtype (a separate process, so not interleaved), on Tunix's
own Qwen3 of the same shape with the same prompts, and each row gains ``tunix_*`` keys and
``ours_vs_tunix`` (Tunix's seconds over ours).

``--device gpu`` (or ``tpu``) runs ours on that backend; rows then also give ``ours_mfu`` and
``ours_hbm_utilisation``, our FLOP/s and decode bytes/s as fractions of the card's spec-sheet peaks
(``_hardware.SPECS``). transformers runs on the GPU when torch has CUDA; otherwise (the project's
pinned torch is CPU-only, and on a TPU) its columns are null and ``transformers_skipped`` says why,
rather than comparing a GPU with a CPU. Tunix gets the same ``--device``.

  python benchmarks/sampler.py [--device cpu|gpu|tpu] [--repeats 3]
                               [--shapes 32x64x128,8x256x64] [--dtypes float32,bfloat16]
                               [--tunix_python PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from flax import nnx  # noqa: E402

import _hardware  # noqa: E402
import _models  # noqa: E402
from _models import TINY_QWEN3  # noqa: E402  (the benchmarks' one tiny Qwen3)
from spiral_jax.model import Policy, transformer  # noqa: E402
from spiral_jax.sampling import generate, sampler  # noqa: E402


def build_checkpoint(folder: str) -> transformers.PreTrainedModel:
  torch.manual_seed(0)
  model = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(**TINY_QWEN3)).eval()
  model.save_pretrained(folder)
  return model


def _best(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)


def our_work(policy: Policy, batch: int, prompt_len: int, new: int) -> tuple[float, float]:
  """Analytic FLOPs and decode bytes (weights + KV cache) of one ``generate`` call on the padded
  shapes it runs (random prompts share no prefix, so whole prompts)."""
  c = policy.config
  return _models.sampler_work(c, batch, prompt_len, new, c.jnp_dtype.name,
                              transformer.cache_dtype(c).name)


def decode_matmul_floor(policy: Policy, rows: int, repeats: int, steps: int = 64) -> float:
  """Seconds per decode step of its weight products alone: ``rows`` activations through every
  layer's q/k/v/o and MLP kernels and the output projection (compute dtype, float32 accumulation),
  ``steps`` steps in one ``lax.fori_loop``, without attention, norms, RoPE, cache writes or
  sampling. What any decoder built on these XLA matmuls needs per step at this batch."""
  model = nnx.merge(policy.graphdef, policy.params)
  c = model.config
  dtype = c.jnp_dtype
  layers = [[k.kernel.get_value().astype(dtype) for k in (
      layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj,
      layer.self_attn.o_proj, layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj)]
            for layer in model.layers]
  unembedding = model.unembedding().astype(dtype)
  groups = c.num_heads // c.num_kv_heads

  def dot(x, w):
    return jnp.dot(x.astype(dtype), w, preferred_element_type=jnp.float32)

  def step(_, carry):
    x, total = carry
    for q, k, v, o, gate, up, down in layers:  # each product feeds the next, as in the model
      mixed = dot(x, q) + 0.0 * jnp.tile(dot(x, k) + dot(x, v), groups)
      x = x + dot(mixed, o)
      x = x + dot(dot(x, gate) * dot(x, up), down)
    return x * 1e-3, total + jnp.max(dot(x, unembedding), axis=-1)  # every logit is needed

  run = jax.jit(lambda x: jax.lax.fori_loop(0, steps, step, (x, jnp.zeros(rows))))
  x = jnp.ones((rows, c.d_model), jnp.float32)
  jax.block_until_ready(run(x))
  return _best(lambda: jax.block_until_ready(run(x)), repeats) / steps


def torch_device(backend: str, cuda: bool) -> tuple[str | None, str | None]:
  """Where transformers runs beside our ``backend`` (``cuda``: torch has a GPU): ``(device,
  None)``, or ``(None, why)`` when it cannot run on comparable hardware."""
  if backend == "cpu":
    return "cpu", None
  if backend in ("gpu", "cuda") and cuda:
    return "cuda", None
  if backend in ("gpu", "cuda"):
    return None, ("torch has no CUDA here (the project pins the CPU wheel, torch==2.13.0); "
                  "install a CUDA torch to compare on the GPU")
  return None, f"transformers does not run on {backend}"


def measure(policy: Policy, model, batch: int, prompt_len: int, new: int, sampled: bool,
            repeats: int, dtype: str, peaks: _hardware.Peaks,
            floors: dict | None = None, hf_device: str | None = "cpu") -> dict:
  """One setting's row. ``model``: the transformers model on ``hf_device`` (None: not timed, and
  its columns are null)."""
  prompts = np.random.RandomState(batch + prompt_len).randint(0, 8192, (batch, prompt_len))
  kwargs = dict(temperature=1.0, seed=0) if sampled else dict(greedy=True)

  def ours():
    out = generate(policy, prompts.tolist(), max_new_tokens=new, stop_ids=(), **kwargs)
    assert out.lengths.min() == new, "a row stopped early: the comparison would be unfair"

  hf_kwargs = (dict(do_sample=True, temperature=1.0, top_p=1.0, top_k=0) if sampled
               else dict(do_sample=False))
  input_ids = torch.tensor(prompts, device=hf_device or "cpu")

  def theirs():
    with torch.no_grad():
      out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                           max_new_tokens=new, min_new_tokens=new, eos_token_id=None,
                           pad_token_id=0, **hf_kwargs)
    if hf_device == "cuda":
      torch.cuda.synchronize()
    assert out.shape[1] == prompt_len + new

  timed = model is not None
  start = time.perf_counter()
  ours()
  first = time.perf_counter() - start
  if timed:
    theirs()  # warm-up
  # interleaved, best of each: the CPU is shared, so both sides see the same slow moments.
  # torch's thread pool stalls badly when other processes hold the cores, so transformers gets
  # its better time of the default thread count and one thread (favouring it).
  # The first round tries both; later rounds only the faster one (a stalled run can take 30 s).
  ours_s = theirs_s = float("inf")
  default_threads = torch.get_num_threads()
  thread_counts = sorted({default_threads, 1}) if hf_device == "cpu" else [default_threads]
  best_threads = default_threads
  for _ in range(repeats):
    ours_s = min(ours_s, _best(ours, 1))
    for threads in thread_counts if timed else ():
      torch.set_num_threads(threads)
      elapsed = _best(theirs, 1)
      if elapsed < theirs_s:
        theirs_s, best_threads = elapsed, threads
    thread_counts = [best_threads]
  torch.set_num_threads(default_threads)
  floors = {} if floors is None else floors
  # our prefill alone (one new token), so the decode steps' share is known
  prefill_s = _best(lambda: generate(policy, prompts.tolist(), max_new_tokens=1, stop_ids=(),
                                     **kwargs), repeats)
  floor_s = floors.setdefault((dtype, sampler.bucket(batch)), decode_matmul_floor(
      policy, sampler.bucket(batch), repeats))
  tokens = batch * new
  flops, bytes_moved = our_work(policy, batch, prompt_len, new)
  used = peaks.utilisation(ours_s, flops, bytes_moved)
  ratio = lambda seconds: round(theirs_s / seconds, 2) if timed else None
  row = dict(dtype=dtype, batch=batch, prompt_len=prompt_len, new_tokens=new,
             mode="sampled" if sampled else "greedy",
             ours_tokens_per_s=round(tokens / ours_s, 1),
             transformers_tokens_per_s=round(tokens / theirs_s, 1) if timed else None,
             speedup=ratio(ours_s), ours_vs_transformers=ratio(ours_s), ours_s=round(ours_s, 4),
             transformers_s=round(theirs_s, 4) if timed else None,
             transformers_device=hf_device if timed else None,
             transformers_threads=best_threads if hf_device == "cpu" and timed else None,
             compile_s=round(max(first - ours_s, 0.0), 2), ours_flops_per_s=used["flops_per_s"],
             ours_fraction_of_matmul_peak=used["fraction_of_matmul_peak"],
             ours_fraction_of_bandwidth_peak=used["fraction_of_bandwidth_peak"],
             ours_prefill_s=round(prefill_s, 4),
             ours_decode_step_ms=round((ours_s - prefill_s) / max(new - 1, 1) * 1e3, 3),
             matmul_floor_step_ms=round(floor_s * 1e3, 3),
             # our prefill + decode steps costing only their weight products: the most any
             # decoder on these matmuls (with our prefill) could reach, against transformers
             floor_vs_transformers=ratio(prefill_s + (new - 1) * floor_s))
  if "mfu" in used:  # an accelerator with a known spec sheet
    row.update(ours_mfu=used["mfu"], ours_hbm_utilisation=used["hbm_utilisation"])
  return row


SETTING = ("dtype", "batch", "prompt_len", "new_tokens", "mode")


def run_tunix(python: str, shapes: str, dtype: str, repeats: int,
              device: str | None = None) -> dict:
  """Runs ``tunix_sampler.py`` with the Tunix environment's ``python`` (on ``device``, as
  ``--device``); returns its JSON."""
  script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tunix_sampler.py")
  command = [python, script, "--shapes", shapes, "--dtypes", dtype, "--repeats", str(repeats),
             "--config", json.dumps(TINY_QWEN3)] + (["--device", device] if device else [])
  try:
    proc = subprocess.run(command, capture_output=True, text=True)
  except OSError as e:
    raise SystemExit(f"--tunix_python {python!r} cannot run ({e}); create the environment with "
                     f"`python3 -m venv DIR && DIR/bin/pip install google-tunix`") from e
  if proc.returncode != 0:
    raise SystemExit(f"tunix_sampler.py failed under {python} (exit {proc.returncode}):\n"
                     f"{proc.stderr[-3000:]}")
  return json.loads(proc.stdout)


def merge_tunix(results: list[dict], tunix_results: list[dict]) -> list[dict]:
  """Our rows with Tunix's numbers for the same setting beside them, and ``ours_vs_tunix``
  (Tunix's best seconds over ours: > 1 means ours is faster)."""
  by_setting = {tuple(r[k] for k in SETTING): r for r in tunix_results}
  merged = []
  for row in results:
    tunix = by_setting.get(tuple(row[k] for k in SETTING))
    if tunix is None:
      raise ValueError(f"Tunix has no result for {dict((k, row[k]) for k in SETTING)}")
    merged.append(dict(row, tunix_tokens_per_s=tunix["tokens_per_s"], tunix_s=tunix["seconds"],
                       tunix_compile_s=tunix["compile_s"],
                       ours_vs_tunix=round(tunix["seconds"] / row["ours_s"], 2)))
  return merged


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  _hardware.add_decode_flags(parser, shapes="32x64x128,8x256x64")
  parser.add_argument("--tunix_python", default=os.environ.get("SPIRAL_TUNIX_PYTHON", ""),
                      help="Python of a virtual environment with google-tunix: adds Tunix's "
                           "sampler (default: $SPIRAL_TUNIX_PYTHON; empty skips Tunix)")
  args = parser.parse_args()
  _hardware.select_device(args.device)
  shapes = _hardware.parse_shapes(args.shapes)
  hf_device, skipped = torch_device(jax.default_backend(), torch.cuda.is_available())
  results, tunix_runs, peaks, floors = [], [], {}, {}
  with tempfile.TemporaryDirectory() as folder:
    model = build_checkpoint(folder)
    for dtype in args.dtypes.split(","):
      policy = Policy.from_hf(folder, dtype=dtype, param_dtype=dtype)
      theirs = model.to(hf_device, getattr(torch, dtype)) if hf_device else None
      peaks[dtype] = _hardware.Peaks(dtype)  # this run's matmul and bandwidth peaks
      results += [measure(policy, theirs, b, p, n, sampled, args.repeats, dtype, peaks[dtype],
                          floors, hf_device) for b, p, n in shapes for sampled in (False, True)]
      if args.tunix_python:  # right after ours, so both see the machine in a similar state
        tunix_runs.append(run_tunix(args.tunix_python, args.shapes, dtype, args.repeats,
                                    args.device))
  tunix = None
  if tunix_runs:
    results = merge_tunix(results, [r for run in tunix_runs for r in run["results"]])
    tunix = dict(version=tunix_runs[0]["tunix"], jax=tunix_runs[0]["jax"],
                 flax=tunix_runs[0]["flax"], python=args.tunix_python)
  print(json.dumps(dict(
      benchmark="sampler",
      model="tiny Qwen3 (vocab 8192, d 256, 4 layers, 4/2 heads, head dim 64, MLP 1024, tied)",
      transformers=transformers.__version__, torch=torch.__version__,
      **_hardware.device_info(), cpu_count=os.cpu_count(),
      torch_threads=torch.get_num_threads(), transformers_device=hf_device,
      transformers_skipped=skipped, machine=platform.machine(), tunix=tunix,
      peaks={dtype: p.describe() for dtype, p in peaks.items()},
      min_ours_vs_transformers=min(r["ours_vs_transformers"] for r in results)
      if hf_device else None,
      min_ours_vs_tunix=min(r["ours_vs_tunix"] for r in results) if tunix else None,
      results=results), indent=2))


if __name__ == "__main__":
  main()
