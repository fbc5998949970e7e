"""The memory plan (``parallel/memory.py``, ``python -m spiral_jax.plan``) against XLA's own buffer
assignment on the 8 fake CPU devices, and the command line on the paper config.

What is compared: ``compiled.memory_analysis()`` of one jitted program gives per-device bytes of
its arguments, its outputs, the outputs written into donated arguments (alias) and its
temporaries. Everything live at the program's peak is ``arguments + outputs - alias + temps``;
the plan's rows for that program (``learner_step_bytes``: the train step with its state, batch,
gradients and activations; ``sampler_call_bytes``: one ``generate`` call, whose peak is the larger
of its prefill and decode programs) must sum to within 15% of it.
"""
import dataclasses
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding

from spiral_jax.plan import planner as plan
from spiral_jax.model import config as model_config
from spiral_jax.model import transformer
from spiral_jax import memory
from spiral_jax.sampling.prefixes import bucket
from spiral_jax.parallel import mesh as mesh_lib
from spiral_jax.rl import train_step as ts
from spiral_jax.rl.logprobs import make_logprob_fn
from spiral_jax.sampling import sampler
from tests import tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[2]
# LLVM settings only: buffer assignment (what memory_analysis reports) is decided before them, and
# they halve the compile time.
FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _tiny(**changes):
  """tests/tiny_config.py with ``changes`` (``__`` for a group's dot), through the plan's own
  config reader."""
  cd = tiny_config.get_config()
  cd.update_from_flattened_dict({k.replace("__", "."): v for k, v in changes.items()})
  cfg, model, _ = plan.resolve(cd)
  return cfg, model, plan.workload(cfg)


def _placed(model, mesh, rules):
  """(graphdef, zero parameters placed by ``rules``): the shapes and shardings a real policy has,
  without compiling its initialiser."""
  graphdef, abstract = transformer.abstract(model)
  zeros = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), abstract)
  return graphdef, mesh_lib.shard_params(zeros, mesh, rules)


def _peak(compiled) -> int:
  m = compiled.memory_analysis()
  return (m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
          + m.temp_size_in_bytes)


def _close(estimate: int, xla: int) -> None:
  assert abs(estimate / xla - 1) < 0.15, f"estimate {estimate} vs XLA {xla} ({estimate / xla:.3f})"


def test_topologies_follow_the_slice_naming():
  assert memory.topology("v5p-16") == memory.Topology("v5p-16", 8, 95 * memory.GiB, "tpu")
  assert memory.topology("v4-8").devices == 4  # v4 and v5p names count TensorCores
  assert memory.topology("v5e-8").devices == memory.topology("v5litepod-8").devices == 8
  assert memory.topology("v6e-8").hbm_bytes == 32 * memory.GiB
  assert memory.topology("h100x8").devices == 8 and memory.topology("h200").devices == 1
  with pytest.raises(ValueError, match="multiple of 2"):
    memory.topology("v5p-9")
  with pytest.raises(ValueError, match="--topology"):
    memory.topology("tpu-8")
  assert mesh_lib.resolve_shape({"data": 1, "fsdp": -1}, 8) == {"data": 1, "fsdp": 8, "tensor": 1}
  with pytest.raises(ValueError, match="mesh.data x mesh.fsdp x mesh.tensor"):
    mesh_lib.resolve_shape({"data": 3}, 8)


def test_parameter_bytes_equal_the_real_shards():
  _, model, _ = _tiny()
  shape = {"data": 1, "fsdp": 4, "tensor": 2}
  for rules in (mesh_lib.TRAIN_RULES, mesh_lib.SAMPLE_RULES):
    _, params = _placed(model, mesh_lib.make_mesh(shape), rules)  # as Policy.init places them
    on_device0 = sum(x.addressable_shards[0].data.nbytes for x in jax.tree.leaves(params))
    assert memory.param_bytes(model, shape, rules) == on_device0


@pytest.mark.parametrize("batch_size, epochs", [(16, 1), (32, 2)])
def test_train_step_within_15_percent_of_xla(batch_size, epochs):
  cfg, model, work = _tiny(batch_size=batch_size, rl__epochs=epochs)
  mesh = mesh_lib.make_mesh(cfg.mesh_shape)
  graphdef, params = _placed(model, mesh, mesh_lib.TRAIN_RULES)
  tx = ts.make_optimizer(cfg.optim, cfg.num_steps * cfg.rl.epochs)  # as rl/trainer.py builds it
  step = ts.make_train_step(make_logprob_fn(graphdef, cfg.sampling.temperature), tx, cfg.rl.loss,
                            epochs=cfg.rl.epochs, num_micro_batches=cfg.batch_size // work.micro_batch)
  fn, state = ts.jit_train_step(step, ts.init_state(params, tx, 1, 0), mesh, mesh_lib.TRAIN_RULES)
  rows, length, s = batch_size, work.learner_tokens, jax.ShapeDtypeStruct
  batch = ts.TrainBatch(  # the plan's worst case: no shared prompt prefix
      prefix=s((1, 0), jnp.int32), prefix_mask=s((1, 0), bool), row_prefix=s((rows,), jnp.int32),
      tokens=s((rows, length), jnp.int32), input_mask=s((rows, length), bool),
      loss_mask=s((rows, length), jnp.float32), advantage=s((rows,), jnp.float32),
      sample_valid=s((rows,), bool), baselines=s((1, 1, 2), jnp.float32))
  xla = _peak(fn.lower(state, batch).compile(FAST))
  planned = dict(memory.learner_step_bytes(model, work, cfg.mesh_shape, "cpu"))
  _close(sum(planned.values()), xla)
  assert planned[f"activations ({rows} rows x {length} tokens)"] > xla / 2  # what is tested


def test_sampler_call_within_15_percent_of_xla():
  # fsdp 4 x tensor 2: sampling replicates over fsdp; one KV head cannot split over tensor
  cfg, model, work = _tiny(games_per_round=16, mesh__data=1, mesh__fsdp=4, mesh__tensor=2)
  mesh_shape = cfg.mesh_shape
  mesh = mesh_lib.make_mesh(mesh_shape)
  rules = mesh_lib.SAMPLE_RULES
  graphdef, params = _placed(model, mesh, rules)
  rows = bucket(work.sampler_rows, multiple_of=mesh_lib.batch_divisor(mesh, rules))
  assert sampler.decode_windows(work.new_slots) == [work.new_slots]  # one decode window
  static = sampler._Static(greedy=False, top_k=0, use_top_p=False, out_len=work.new_slots,
                           cache_len=work.prompt_slots + work.new_slots, mesh=mesh, rules=rules)
  split = lambda shape, dtype: jax.ShapeDtypeStruct(
      shape, dtype, sharding=NamedSharding(mesh, mesh_lib.batch_spec(rules, len(shape))))
  scalars = {"stop_ids": jnp.zeros(4, jnp.int32), "pad_id": jnp.int32(0),
             "temperature": jnp.float32(1.0), "top_p": jnp.float32(1.0)}
  prefill = sampler._prefill.lower(
      graphdef, params, split((rows, work.prompt_slots), jnp.int32),
      split((rows, work.prompt_slots), bool), split((rows,), bool), key=jax.random.key(0),
      static=static, **scalars).compile(FAST)
  decode = sampler._decode.lower(graphdef, params, prefill.out_info,
                                 max_new_tokens=jnp.int32(work.new_slots), static=static,
                                 **scalars).compile(FAST)
  estimate = memory.sampler_call_bytes(model, rows, work.prompt_slots, work.new_slots,
                                       mesh_shape, "cpu")
  _close(sum(b for _, b in estimate), max(_peak(prefill), _peak(decode)))


def test_cache_growth_within_15_percent_of_xla():
  """A 1024-token budget decodes in 5 windows; the last growth (``sampler._extend``, 528 -> 1040
  slots) holds both caches. Its program leaves the resident weights out, so they are added."""
  cfg, model, work = _tiny(games_per_round=16, mesh__data=8, mesh__fsdp=1, mesh__tensor=1)
  mesh = mesh_lib.make_mesh(cfg.mesh_shape)
  rules = mesh_lib.SAMPLE_RULES
  rows = bucket(work.sampler_rows, multiple_of=mesh_lib.batch_divisor(mesh, rules))
  prompt, new = 16, 1024
  assert sampler.decode_windows(new)[-2:] == [512, 1024]
  static = sampler._Static(greedy=False, top_k=0, use_top_p=False, out_len=new,
                           cache_len=prompt + new, mesh=mesh, rules=rules)
  state = jax.eval_shape(lambda: sampler.SamplerState(
      tokens=jnp.zeros((rows, new), jnp.int32), logprobs=jnp.zeros((rows, new)),
      last=jnp.zeros(rows, jnp.int32), positions=jnp.zeros(rows, jnp.int32),
      cache=transformer.init_cache(model, rows, prompt + 512, jnp.float32),
      stopped=jnp.zeros(rows, bool), lengths=jnp.zeros(rows, jnp.int32),
      step=jnp.zeros((), jnp.int32), key=jax.random.key(0)))
  split = lambda x: NamedSharding(mesh, mesh_lib.batch_spec(rules, x.ndim)) if x.ndim else None
  state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=split(x)), state)
  extend = sampler._extend.lower(state, static=static).compile(FAST)
  weights = memory.param_bytes(model, cfg.mesh_shape, rules)
  rows_out = dict(memory.sampler_call_bytes(model, rows, prompt, new, cfg.mesh_shape, "cpu"))
  growth = memory.cache_growth_bytes(model, rows, prompt, new, cfg.mesh_shape, np.float32)
  assert growth == memory.kv_cache_bytes(model, rows, prompt + 512, cfg.mesh_shape, np.float32)
  at_growth = (weights + rows_out[f"KV cache ({rows} rows x {prompt + new} slots, float32)"]
               + rows_out["sampler state"] + growth)
  _close(at_growth, _peak(extend) + weights)


def test_refuses_what_cannot_fit_and_names_a_fix_that_fits():
  _, model, work = _tiny(batch_size=64)
  topo, mesh = memory.topology("cpu"), {"data": 8, "fsdp": 1, "tensor": 1}
  whole = memory.estimate(model, work, mesh, topo, headroom=1.0).learner_total
  small = memory.estimate(model, dataclasses.replace(work, micro_batch=16), mesh, topo,
                          headroom=1.0).learner_total
  hbm_gib = (whole + small) / 2 / memory.GiB  # in between: only micro-batches fit
  cd = tiny_config.get_config()
  cd.batch_size = 64
  table, refusal = plan.run(cd, "cpu", headroom=1.0, hbm_gib=hbm_gib)  # what main() prints
  assert "DOES NOT FIT" in table and refusal.startswith("verdict: REFUSED")
  fix = [line for line in refusal.splitlines() if "--config.rl.micro_batch_size=" in line]
  assert fix and "remat" in refusal, refusal
  cd.rl.micro_batch_size = int(fix[0].split("--config.rl.micro_batch_size=")[1].split()[0])
  table, refusal = plan.run(cd, "cpu", headroom=1.0, hbm_gib=hbm_gib)
  assert cd.rl.micro_batch_size >= 16 and refusal is None and "verdict: fits" in table
  with pytest.raises(ValueError, match="--topology"):
    plan.run(cd, "tpu-v9")
  table, _ = plan.run(tiny_config.get_config(), "cpu", mesh="auto")
  assert "mesh: data=8 fsdp=1 tensor=1 (chosen automatically" in table


def test_cli_prints_the_paper_plan_without_weights():
  run = subprocess.run(
      [sys.executable, "-m", "spiral_jax.plan", "--config=experiments/paper_kuhn_qwen3_4b.py",
       "--topology=v5p-16"], cwd=ROOT, capture_output=True, text=True,
      env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=120, check=False)
  out = run.stdout
  assert "8 devices x 95.0 GiB" in out and "mesh: data=1 fsdp=8 tensor=1" in out, out + run.stderr
  for row in ("parameters", "optimizer state", "gradients", "KV cache (16 rows x 8192 slots",
              "activations (16 rows x 8192 tokens)", "sampler plan"):
    assert row in out, row
  assert run.returncode == (0 if "verdict: fits" in out else 1)
  if run.returncode:  # refused: the message names the changes
    assert "micro_batch_size" in run.stderr and "remat" in run.stderr, run.stderr
  # fsdp over 8 devices: an eighth of Qwen3-4B's float32 weights (ModelConfig.num_params)
  model = model_config.PRESETS["qwen3_4b_base"]
  gib = float(next(line for line in out.splitlines() if line.strip().startswith("parameters"))
              .split()[-1])
  # printed to 0.01 GiB (<= 0.005 off), and the replicated norms add 0.0006 GiB to the eighth
  assert gib == pytest.approx(model.num_params * 4 / 8 / memory.GiB, abs=0.006)
