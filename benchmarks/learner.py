"""Learner throughput: train-step and forward tokens/s, and achieved FLOP/s against this machine's
peak measured in the same run.

Runs the project's learner (``rl/train_step.make_train_step`` over ``rl/logprobs.make_logprob_fn``,
jitted with shardings and the state donated by ``train_step.jit_train_step``, PPO-clip loss with
RAE, one optimizer update per epoch) on the sampler benchmark's tiny Qwen3 at ``--batch`` rows of
``--length`` tokens (default 8 x 512, all real, the last ``--response_len`` trained on), and the
same log-prob forward alone. ``--prefix_groups G --prefix_len P`` adds G shared prompt prefixes of
P tokens (the layout training batches use, ``rl/batching.py``). Parameters are float32 (master
weights); ``--dtype`` is the compute dtype (default float32 on CPU, bfloat16 elsewhere), and the
peak is a large ``jnp.dot`` in that dtype with float32 accumulation, measured before and after
(the better kept), with memory bandwidth from a large elementwise pass.

FLOPs are counted analytically (``_models.py``: 2 per multiply-add of every matmul as executed,
attention over every slot, backward = 2x forward) and by XLA (``compiled.cost_analysis()``); both
are reported, with the fractions of the peak each gives. On a GPU/TPU ``mfu`` and
``hbm_utilisation`` compare with the card's spec sheet (XLA's bytes accessed per step).

  python benchmarks/learner.py [--device cpu|gpu|tpu] [--dtype float32] [--batch 8] [--length 512]
                               [--epochs 1] [--repeats 5] [--prefix_groups 0 --prefix_len 0]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import _hardware  # noqa: E402
import _models  # noqa: E402

GOAL = 0.40  # the target: learner >= 40% of the measured matmul peak


def make_batch(vocab: int, batch: int, length: int, response_len: int, groups: int,
               prefix_len: int, seed: int = 0):
  """A ``TrainBatch`` of random tokens: every token real, the last ``response_len`` of each row
  trained on, advantages alternating +-1 (so every row counts)."""
  from spiral_jax.rl.train_step import TrainBatch
  rng = np.random.default_rng(seed)
  g = max(groups, 1)
  prefix = rng.integers(1, vocab, (g, prefix_len)).astype(np.int32)
  loss_mask = np.zeros((batch, length), np.float32)
  loss_mask[:, length - response_len:] = 1.0
  return TrainBatch(
      prefix=prefix, prefix_mask=np.ones((g, prefix_len), bool),
      row_prefix=(np.arange(batch) % g).astype(np.int32),
      tokens=rng.integers(1, vocab, (batch, length)).astype(np.int32),
      input_mask=np.ones((batch, length), bool), loss_mask=loss_mask,
      advantage=np.where(np.arange(batch) % 2, -1.0, 1.0).astype(np.float32),
      sample_valid=np.ones(batch, bool), baselines=np.zeros((1, 1, 2), np.float32))


def _report(seconds: float, compile_s: float, tokens: int, analytic: float, xla: dict,
            peaks: _hardware.Peaks) -> dict:
  out = dict(seconds=round(seconds, 5), tokens_per_s=round(tokens / seconds, 1),
             compile_s=round(compile_s, 2), flops_analytic=analytic,
             flops_xla=xla.get("flops"),
             xla_over_analytic=round(xla["flops"] / analytic, 3) if xla.get("flops") else None,
             bytes_accessed_xla=xla.get("bytes accessed"))
  out["utilisation"] = peaks.utilisation(seconds, analytic, xla.get("bytes accessed"))
  if xla.get("flops"):
    out["utilisation_xla_flops"] = peaks.utilisation(seconds, xla["flops"])
  return out


def make_learner(model_cfg, epochs: int = 1, response_len: int = 128):
  """The project's jitted learner on one device: ``(train_step, state, logprob_fn, place)``, where
  ``train_step(state, batch) -> (state, metrics)`` donates the state and ``place(batch)`` puts a
  host ``TrainBatch`` on the step's shardings."""
  from spiral_jax import config as config_lib
  from spiral_jax.model.policy import Policy
  from spiral_jax.parallel import mesh as mesh_lib
  from spiral_jax.rl import losses
  from spiral_jax.rl import train_step as ts
  from spiral_jax.rl.logprobs import make_logprob_fn
  mesh = mesh_lib.single_device_mesh()
  policy = Policy.init(model_cfg, None, jax.random.key(0), mesh=mesh)
  logprob_fn = make_logprob_fn(policy.graphdef)
  tx = ts.make_optimizer(config_lib.OptimConfig(learning_rate=1e-6), 1000)
  loss_cfg = losses.LossConfig(drgrpo_constant=float(response_len))
  step = ts.make_train_step(logprob_fn, tx, loss_cfg, epochs=epochs)
  jitted, state = ts.jit_train_step(step, ts.init_state(policy.params, tx, 1, 0), mesh,
                                    mesh_lib.TRAIN_RULES)
  shardings = ts.batch_shardings(mesh, mesh_lib.TRAIN_RULES)
  return jitted, state, logprob_fn, lambda batch: jax.device_put(batch, shardings)


def run(args) -> dict:
  dtype = args.dtype or ("float32" if jax.default_backend() == "cpu" else "bfloat16")
  model_cfg = _models.tiny_qwen3(dtype, "float32", args.model_overrides)
  peaks = _hardware.Peaks(dtype, args.repeats, args.matmul_n)
  jitted, state, logprob_fn, place = make_learner(model_cfg, args.epochs, args.response_len)
  batch = place(make_batch(model_cfg.vocab_size, args.batch, args.length, args.response_len,
                           args.prefix_groups, args.prefix_len))
  groups = args.prefix_groups if args.prefix_len else 0
  tokens = args.batch * (args.length + (args.prefix_len if groups else 0))

  start = time.perf_counter()
  compiled = jitted.lower(state, batch).compile()
  train_compile = time.perf_counter() - start
  holder = [state]

  def train_once():
    holder[0], metrics = compiled(holder[0], batch)
    _hardware.block(metrics)

  train_once()
  train_s = _hardware.best_time(train_once, args.repeats)
  train_flops = _models.train_step_flops(model_cfg, args.batch, args.length, groups,
                                         args.prefix_len, args.epochs)

  forward = jax.jit(logprob_fn)
  fwd_args = (holder[0].params, batch.prefix, batch.prefix_mask, batch.row_prefix, batch.tokens,
              batch.input_mask)
  start = time.perf_counter()
  fwd_compiled = forward.lower(*fwd_args).compile()
  fwd_compile = time.perf_counter() - start
  run_forward = lambda: _hardware.block(fwd_compiled(*fwd_args))
  run_forward()
  fwd_s = _hardware.best_time(run_forward, args.repeats)
  fwd_flops = _models.learner_forward_flops(model_cfg, args.batch, args.length, groups,
                                            args.prefix_len)
  peaks.remeasure()  # after: the better of two readings of a shared machine

  train = _report(train_s, train_compile, tokens, train_flops,
                  _hardware.cost_analysis(compiled), peaks)
  fwd = _report(fwd_s, fwd_compile, tokens, fwd_flops, _hardware.cost_analysis(fwd_compiled),
                peaks)
  return dict(
      benchmark="learner", model=_models.MODEL_NAME if not args.model_overrides else
      f"tiny Qwen3 with {args.model_overrides}", num_params=_num_params(holder[0].params),
      **_hardware.device_info(), cpu_count=os.cpu_count(), compute_dtype=dtype,
      param_dtype="float32", batch=args.batch, length=args.length,
      response_len=args.response_len, prefix_groups=groups,
      prefix_len=args.prefix_len if groups else 0, epochs=args.epochs, tokens=tokens,
      peak=peaks.describe(), train_step=train, forward=fwd,
      train_fraction_of_peak=train["utilisation"]["fraction_of_matmul_peak"],
      meets_goal=train["utilisation"]["fraction_of_matmul_peak"] >= GOAL, goal=GOAL)


def _num_params(params) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  _hardware.add_device_flag(parser)
  parser.add_argument("--dtype", default=None, help="compute dtype (float32 or bfloat16)")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--length", type=int, default=512)
  parser.add_argument("--response_len", type=int, default=128)
  parser.add_argument("--prefix_groups", type=int, default=0)
  parser.add_argument("--prefix_len", type=int, default=0)
  parser.add_argument("--epochs", type=int, default=1)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--matmul_n", type=int, default=None,
                      help="side of the peak-measuring matmul (default 2048 on CPU, 8192 else)")
  parser.add_argument("--model_overrides", default="",
                      help='JSON ModelConfig fields replacing the tiny Qwen3\'s, e.g. '
                           '\'{"num_layers": 1}\' (smoke tests)')
  args = parser.parse_args(argv)
  if not 0 < args.response_len < args.length:
    parser.error(f"--response_len={args.response_len} must lie in (0, --length={args.length})")
  if args.prefix_len and args.prefix_groups < 1:
    parser.error("--prefix_len needs --prefix_groups >= 1 (the number of shared prefixes)")
  _hardware.select_device(args.device)
  print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
  main()
