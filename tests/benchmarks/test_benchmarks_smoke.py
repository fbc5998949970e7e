"""The benchmark scripts run end-to-end at tiny sizes and print JSON with their documented keys;
their helpers (analytic FLOPs, GPU spec table, slope fit, exclusive timing, Tunix merge) are
right."""
import ast
import importlib.util
import json
import math
import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "benchmarks")
sys.path.insert(0, BENCH)

import _hardware  # noqa: E402
import _models  # noqa: E402

# a very small Qwen3 so each script compiles and runs in seconds
SMALL = json.dumps(dict(num_layers=1, vocab_size=256, d_model=64, mlp_dim=128, num_heads=2,
                        num_kv_heads=1, head_dim=32))


def run_script(name: str, *args: str, timeout: int = 120) -> tuple[dict, float]:
  """Runs benchmarks/<name> on one CPU device (not the tests' 8 fake ones); returns its JSON."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1")
  env["XLA_FLAGS"] = env.get("XLA_FLAGS", "").replace(
      "--xla_force_host_platform_device_count=8", "").strip()
  start = time.perf_counter()
  proc = subprocess.run([sys.executable, os.path.join(BENCH, name), *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)
  seconds = time.perf_counter() - start
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout), seconds


def _finite_positive(*xs):
  return all(isinstance(x, (int, float)) and math.isfinite(x) and x > 0 for x in xs)


def test_learner_smoke():
  """With shared prefixes, the layout training batches use: the prefix's last layer only needs
  keys and values, XLA drops the rest, and the analytic count must know it."""
  out, _ = run_script("learner.py", "--device", "cpu", "--batch", "4", "--length", "16",
                      "--response_len", "8", "--prefix_groups", "2", "--prefix_len", "32",
                      "--repeats", "1", "--matmul_n", "256", "--model_overrides", SMALL)
  assert out["benchmark"] == "learner" and out["backend"] == "cpu"
  assert out["prefix_groups"] == 2 and out["tokens"] == 4 * (16 + 32)
  assert out["peak"]["matmul_flops_per_s"] > 0
  for part in ("train_step", "forward"):
    r = out[part]
    assert _finite_positive(r["seconds"], r["tokens_per_s"], r["flops_analytic"])
    assert 0 < r["utilisation"]["fraction_of_matmul_peak"] < 5
    # our analytic count is what XLA counts, to within the elementwise work it leaves out
    assert 0.9 < r["xla_over_analytic"] < 1.3, r
  # a train step is one forward and a backward of twice its cost
  assert out["train_step"]["flops_analytic"] == pytest.approx(3 * out["forward"]["flops_analytic"])
  train = out["train_step"]["utilisation"]
  assert out["train_fraction_of_peak"] == train["fraction_of_matmul_peak"]
  assert out["meets_goal"] == (out["train_fraction_of_peak"] >= 0.4)


@pytest.mark.parametrize("part", ["sampler", "learner"])
def test_scaling_smoke(part):
  out, _ = run_script("scaling.py", "--device", "cpu", "--parts", part, "--base", "2x16x16",
                      "--batch_values", "1,2", "--prompt_values", "16,32",
                      "--response_values", "16,32", "--repeats", "1", "--matmul_n", "256",
                      "--model_overrides", SMALL)
  assert out["benchmark"] == "scaling" and set(out["slopes"]) == {part}
  for axis in ("batch", "prompt", "response"):
    r = out[part][axis]
    assert len(r["values"]) == len(r["seconds"]) == len(r["points"]) == 2
    assert math.isfinite(r["loglog_slope"]) and math.isfinite(r["seconds_per_unit"])
    assert out["slopes"][part][axis] == r["loglog_slope"]
    assert all(p["fraction_of_matmul_peak"] > 0 for p in r["points"])
    assert r["points"][1][axis] == r["values"][1]  # the point varies its own axis only
  rate = "new_tokens_per_s" if part == "sampler" else "tokens_per_s"
  assert out[part]["batch"]["points"][0][rate] > 0


def test_decode_windows_smoke():
  """130 new tokens: windows of 64, 128 and 256 slots against one; the byte counts agree with
  the windows (steps 1-63 see 64 new slots, 64-127 see 128, 128-129 see 256)."""
  out, _ = run_script("decode_windows.py", "--device", "cpu", "--shapes", "2x16x130",
                      "--dtypes", "float32", "--repeats", "1", "--model_overrides", SMALL)
  assert out["benchmark"] == "decode windows against one window" and len(out["results"]) == 2
  for row in out["results"]:
    assert row["windows"] == [64, 128, 256] and row["new_tokens"] == 130
    assert row["windowed_tokens_per_s"] > 0 and row["one_window_tokens_per_s"] > 0
    assert row["speedup"] > 0
    kv = 2 * 1 * 2 * 1 * 32 * 4  # (k, v) x layers x rows x KV heads x head dim x float32
    saved = kv * (63 * (256 - 64) + 64 * (256 - 128))  # slots the windows do not read
    assert row["one_window_decode_bytes"] - row["windowed_decode_bytes"] == saved
    assert row["bytes_ratio"] > 1


def test_rollout_smoke():
  out, seconds = run_script(
      "rollout.py", "--device", "cpu", "--steps", "1", "--warm_start_steps", "0",
      "--config.batch_size=8", "--config.games_per_round=4", "--config.sampling.max_new_tokens=8",
      "--config.model_overrides.num_layers=1")
  assert out["batch_size"] == 8 and out["steps_measured"] == [2]
  parts = out["parts_s"]
  assert set(parts) == {"sampler", "learner", "render", "template", "tokenize", "parse",
                        "game_step", "batching", "sampler_host", "python"}
  assert parts["sampler"] > 0 and parts["learner"] > 0 and parts["render"] > 0
  # the parts add up to the step (python is the rest, so it is never negative)
  assert sum(parts.values()) == pytest.approx(out["step_s"], abs=2e-3)
  assert parts["python"] >= 0
  assert out["host_share"] == pytest.approx(out["host_s"] / out["step_s"], abs=1e-3)
  assert out["compilations_first_step"] > 0  # the listener sees compilations
  assert out["compilations_after_first_step"] == len(out["late_compilations"])
  detail = out["device_detail"]
  assert detail["sampler"]["padded_rows"] == 4 and detail["sampler"]["calls_per_step"] >= 1
  assert detail["learner"]["batch_shape"]["rows"] == 8
  assert seconds < 120


def test_tiny_qwen3_matches_the_sampler_benchmark():
  """benchmarks/sampler.py uses this TINY_QWEN3 and defines no copy of its own."""
  tree = ast.parse(open(os.path.join(BENCH, "sampler.py")).read())
  assert not [node for node in tree.body if isinstance(node, ast.Assign)
              and getattr(node.targets[0], "id", "") == "TINY_QWEN3"]
  assert any(isinstance(node, ast.ImportFrom) and node.module == "_models"
             and [a.name for a in node.names] == ["TINY_QWEN3"] for node in tree.body)
  c = _models.tiny_qwen3()
  assert (c.vocab_size, c.d_model, c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim,
          c.mlp_dim, c.tie_embeddings, c.qk_norm) == (8192, 256, 4, 4, 2, 64, 1024, True, True)


def test_analytic_flops_match_a_hand_count():
  c = _models.tiny_qwen3()
  per_token = 4 * (256 * 64 * (8 + 4) + 3 * 256 * 1024)  # 4 layers of projections and MLP
  assert _models.layer_matmul_params(c) == per_token
  # 8 x 512 forward: layers on every token, attention 512 x 512, logits on 511 positions
  expected = (2 * per_token * 4096 + 4 * 4 * 4 * 64 * 4096 * 512 + 2 * 256 * 8192 * 8 * 511)
  assert _models.learner_forward_flops(c, 8, 512) == expected
  assert _models.train_step_flops(c, 8, 512, epochs=2) == 6 * expected


def test_decode_steps_are_counted_over_their_windows_cache():
  """A 128-token budget decodes in windows of 64 and 128 new-token slots: steps 1-63 attend over
  prompt + 64 slots, steps 64-127 over prompt + 128 (``sampler.decode_windows``)."""
  assert _models.decode_caches(slots=32, new=128, out_len=128) == [96] * 63 + [160] * 64
  assert _models.decode_caches(slots=32, new=40, out_len=128) == [96] * 39  # stopped early
  assert _models.decode_caches(slots=32, new=5, out_len=16) == [48] * 4
  c = _models.tiny_qwen3()
  whole = _models.forward_flops(c, 8, 160, 8)
  windowed = _models.sampler_flops(c, 8, 32, 128, 32, 128) - _models.forward_flops(c, 8 * 32, 96, 8)
  assert windowed == 63 * _models.forward_flops(c, 8, 96, 8) + 64 * whole
  kv_slot = 2 * 4 * 8 * 2 * 64 * 4  # (k, v) x layers x rows x KV heads x head dim x float32
  weights = (_models.layer_matmul_params(c) + 256 * 8192) * 4
  assert _models.sampler_bytes(c, 8, 128, 32, 128, "float32", "float32") == (
      127 * weights + kv_slot * (63 * 96 + 64 * 160))


@pytest.mark.parametrize("kind,bf16,hbm", [
    ("NVIDIA H100 80GB HBM3", 989e12, 3.35e12), ("NVIDIA H100 PCIe", 756e12, 2.0e12),
    ("NVIDIA H200", 989e12, 4.8e12), ("NVIDIA A100-SXM4-80GB", 312e12, 2.039e12),
    ("NVIDIA A100-SXM4-40GB", 312e12, 1.555e12), ("NVIDIA L4", 121e12, 0.3e12),
    ("TPU v5 lite", 197e12, 0.819e12)])
def test_spec_table(kind, bf16, hbm):
  spec = _hardware.spec_for(kind)
  assert spec.bf16 == bf16 and spec.hbm == hbm


def test_spec_table_unknown_device():
  assert _hardware.spec_for("cpu") is None and _hardware.spec_for("Tesla T4") is None


def test_slope_fit():
  import scaling
  linear = scaling.fit([1, 2, 4, 8], [0.5 + 0.25 * x for x in (1, 2, 4, 8)])
  assert linear["seconds_per_unit"] == pytest.approx(0.25)
  assert linear["intercept_s"] == pytest.approx(0.5)
  assert scaling.fit([2, 4, 8], [3 * x ** 2 for x in (2, 4, 8)])["loglog_slope"] == pytest.approx(2)


def test_compile_log_labels_each_compilation():
  import jax
  import jax.numpy as jnp
  x = jnp.ones(7)  # made before the log: its own compilation is not counted
  log = _hardware.CompileLog(label=3)
  jax.jit(lambda x: x * 3 + 1)(x).block_until_ready()  # a new function: compiles
  log.label = None
  jax.jit(lambda x: x * 5 - 2)(x).block_until_ready()  # not kept
  log.label = 4
  jax.jit(lambda x: x * 3 + 1)  # compiled lazily: nothing without a call
  assert log.events == [(3, "jit(<lambda>)")]


def test_profiler_charges_exclusive_time():
  import rollout
  profiler = rollout.Profiler()
  inner = profiler.wrap("inner", lambda: time.sleep(0.05))

  def outer_fn():
    inner()
    time.sleep(0.02)

  outer = profiler.wrap("outer", outer_fn)
  outer()
  assert not profiler.totals  # inactive: nothing charged
  profiler.active = True
  outer()
  assert profiler.totals["inner"] == pytest.approx(0.05, abs=0.03)
  assert profiler.totals["outer"] == pytest.approx(0.02, abs=0.03)
  assert profiler.totals["outer"] < profiler.totals["inner"]


@pytest.mark.skipif(any(importlib.util.find_spec(m) for m in ("jax_cuda12_plugin",
                                                               "jax_cuda13_plugin")),
                    reason="a CUDA plugin is installed: --device gpu may work here")
def test_missing_gpu_backend_is_a_clear_error():
  env = dict(os.environ)
  env.pop("JAX_PLATFORMS", None)
  proc = subprocess.run([sys.executable, os.path.join(BENCH, "learner.py"), "--device", "gpu"],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
  assert proc.returncode != 0
  assert "--device gpu: JAX has no cuda backend" in proc.stderr


def test_sampler_help_offers_tunix_and_devices():
  proc = subprocess.run([sys.executable, os.path.join(BENCH, "sampler.py"), "--help"], cwd=ROOT,
                        capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "--tunix_python" in proc.stdout and "SPIRAL_TUNIX_PYTHON" in proc.stdout
  assert "--device {cpu,gpu,tpu}" in proc.stdout


def test_transformers_runs_beside_ours_only_on_comparable_hardware():
  import sampler
  assert sampler.torch_device("cpu", cuda=False) == ("cpu", None)
  assert sampler.torch_device("gpu", cuda=True) == ("cuda", None)
  device, why = sampler.torch_device("gpu", cuda=False)
  assert device is None and "torch has no CUDA" in why
  device, why = sampler.torch_device("tpu", cuda=True)
  assert device is None and "tpu" in why


def test_sampler_row_without_transformers_reports_the_card():
  """On a GPU without a CUDA torch, a row times ours alone (transformers' columns null) and, with
  a spec sheet, gives our MFU and HBM utilisation. The spec is set by hand on this CPU: a made-up
  card slow enough that the fractions are well above the rounding."""
  import jax
  import sampler
  from spiral_jax.model import Policy, transformer
  config = _models.tiny_qwen3(overrides={"num_layers": 1})  # measure draws ids below 8192
  graphdef, params = transformer.create(config, jax.random.key(0))
  policy = Policy(config=config, graphdef=graphdef, params=params)
  peaks = _hardware.Peaks("float32", repeats=1, matmul_n=256)
  peaks.spec = _hardware.Spec(bf16=4e9, fp32=1e9, tf32=1e9, hbm=1e8)
  row = sampler.measure(policy, None, 2, 8, 4, True, 1, "float32", peaks, hf_device=None)
  # (not the decode step's time: at 4 tokens it is within the noise of the prefill's)
  assert row["ours_tokens_per_s"] > 0 and row["ours_prefill_s"] > 0
  for key in ("transformers_tokens_per_s", "transformers_s", "ours_vs_transformers",
              "floor_vs_transformers", "transformers_device", "transformers_threads"):
    assert row[key] is None, key
  flops, bytes_moved = sampler.our_work(policy, 2, 8, 4)
  # against the row's FLOP/s (4 significant digits; its seconds are rounded to 0.1 ms)
  assert row["ours_mfu"] == pytest.approx(row["ours_flops_per_s"] / peaks.spec_flops, rel=2e-3)
  assert row["ours_hbm_utilisation"] / row["ours_mfu"] == pytest.approx(
      bytes_moved / peaks.spec.hbm / (flops / peaks.spec_flops), rel=2e-3)


def test_tunix_script_reads_the_same_model_and_stops_nowhere():
  """tunix_sampler.py (run in Tunix's environment, where spiral_jax is absent) reads TINY_QWEN3
  from _models.py's source; its tokenizer's EOS and pad ids are ids no model can emit."""
  import tunix_sampler
  assert tunix_sampler.tiny_qwen3_from_source() == _models.TINY_QWEN3
  tokenizer = tunix_sampler.IdTokenizer()
  assert tokenizer.encode(tokenizer.decode([5, 0, 8191])) == [5, 0, 8191]
  assert tokenizer.eos_id() < 0 and tokenizer.pad_id() < 0 and tokenizer.bos_id() is None
  tree = ast.parse(open(os.path.join(BENCH, "tunix_sampler.py")).read())
  imported = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
              for a in node.names}
  imported |= {node.module.split(".")[0] for node in ast.walk(tree)
               if isinstance(node, ast.ImportFrom) and node.module}
  assert not imported & {"spiral_jax", "torch", "transformers", "_models"}


def test_merge_tunix_sets_ratios_beside_ours():
  import sampler
  ours = [dict(dtype="float32", batch=2, prompt_len=8, new_tokens=4, mode=mode, ours_s=0.5,
               ours_vs_transformers=3.0) for mode in ("greedy", "sampled")]
  tunix = [dict(dtype="float32", batch=2, prompt_len=8, new_tokens=4, mode="sampled",
                tokens_per_s=8.0, seconds=1.0, compile_s=2.0),
           dict(dtype="float32", batch=2, prompt_len=8, new_tokens=4, mode="greedy",
                tokens_per_s=32.0, seconds=0.25, compile_s=1.0)]
  merged = sampler.merge_tunix(ours, tunix)
  assert [r["ours_vs_tunix"] for r in merged] == [0.5, 2.0]  # matched by setting, not order
  assert merged[1]["tunix_tokens_per_s"] == 8.0 and merged[1]["tunix_compile_s"] == 2.0
  assert all(r["ours_vs_transformers"] == 3.0 for r in merged)  # the old keys stay
  with pytest.raises(ValueError, match="Tunix has no result"):
    sampler.merge_tunix(ours, tunix[:1])
  with pytest.raises(SystemExit, match="google-tunix"):
    sampler.run_tunix(os.path.join(ROOT, "no", "such", "python"), "2x8x4", "float32", 1)


def test_sampler_counts_our_work_and_times_the_matmul_floor():
  import jax
  import sampler
  from spiral_jax.model import Policy, transformer
  config = _models.tiny_qwen3(overrides={"num_layers": 1, "vocab_size": 512})
  graphdef, params = transformer.create(config, jax.random.key(0))
  policy = Policy(config=config, graphdef=graphdef, params=params)
  flops, bytes_moved = sampler.our_work(policy, batch=3, prompt_len=20, new=5)
  # generate pads 3 rows to 4, a 20-token prompt to 32, 5 new tokens to a 16-slot tail
  assert flops == _models.sampler_flops(config, 4, 32, 5, 32, 16)
  assert bytes_moved == _models.sampler_bytes(config, 4, 5, 32, 16, "float32", "float32")
  floor = sampler.decode_matmul_floor(policy, rows=4, repeats=1, steps=4)
  assert 0 < floor < 1  # seconds per step of a 1-layer d256 model's products


TUNIX_PYTHON = os.environ.get("SPIRAL_TUNIX_PYTHON", "")


@pytest.mark.skipif(not os.access(TUNIX_PYTHON, os.X_OK),
                    reason="no Tunix environment (set SPIRAL_TUNIX_PYTHON to its python)")
def test_tunix_sampler_smoke():
  """Tunix's sampler decodes exactly the asked number of tokens on a one-layer Qwen3."""
  config = dict(_models.TINY_QWEN3, vocab_size=256, hidden_size=64, num_hidden_layers=1,
                num_attention_heads=2, num_key_value_heads=1, head_dim=32, intermediate_size=128)
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = env.get("XLA_FLAGS", "").replace(
      "--xla_force_host_platform_device_count=8", "").strip()
  proc = subprocess.run([TUNIX_PYTHON, os.path.join(BENCH, "tunix_sampler.py"), "--shapes",
                         "2x8x4", "--dtypes", "float32", "--repeats", "1", "--config",
                         json.dumps(config)], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout)
  assert out["benchmark"] == "tunix_sampler" and out["config"] == config
  assert [r["mode"] for r in out["results"]] == ["greedy", "sampled"]
  for r in out["results"]:
    assert (r["batch"], r["prompt_len"], r["new_tokens"]) == (2, 8, 4)
    assert _finite_positive(r["tokens_per_s"], r["seconds"])
