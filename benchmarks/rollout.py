"""One policy step of the CPU default (``experiments/tiny_cpu.py``) split into sampler, learner and
host time; the host share; XLA compilations after the first step.

Runs ``Trainer.run()`` in-process (evaluation off, no checkpoints but the step-0 one and the
last, whose save is left out of the step) for ``1 + --steps`` policy steps. The policy is either
barely warm-started (``--warm_start_steps``, default 10, from a pool of ``--warm_start_pool``
scripted games: fast, but most of its answers are invalid, so games end after one move) or, with
``--from_run DIR``, the trained policy of a finished CPU-default run (its tokenizer and latest
checkpoint are copied and resumed), which plays full games. Nothing in ``spiral_jax`` changes: the
script wraps existing functions from outside, and the wrappers that end on the device call
``jax.block_until_ready`` so device time is charged where it is spent:

* sampler: ``sampling.sampler._prefill`` and ``_decode`` (jitted prefill, ``while_loop`` decode);
* learner: the jitted ``train_step`` that ``train_step.jit_train_step`` returns;
* host: ``game.render`` (render), ``templates.spiral_prompt`` (template), the tokenizer's
  ``encode_batch``/``decode`` (tokenize), ``game.parse`` (parse), the runners' jitted
  ``init``/``step`` (game_step), ``batching.train_batch`` (batching), the rest of
  ``sampler.generate`` (sampler_host: padding, transfers, stop handling) and everything else the
  step does (python: the turn loop, key folding, metrics, the progress bar).

The sampler's padded shapes (its ``device_detail``) come from ``prefixes.prompt_layout`` run again
on each call's prompts, with the call's own settings (a shared-prefix call: its group count,
prefix and tail lengths; that bookkeeping, well under a millisecond, is charged to sampler_host).

Each wrapper charges only its own time (nested wrapped calls are subtracted). A step runs from
one ``collect`` to the next. Compilations are counted with a ``jax.monitoring`` listener (as
``soak.py`` does) and attributed to the step that caused them. Prints one JSON object: per-step
seconds of every part (mean over the steps after the first), the host share, the first step's
time, and the compilations after it.

  python benchmarks/rollout.py [--device cpu|gpu|tpu] [--steps 2] [--warm_start_steps 10]
                               [--from_run runs/tiny_cpu] [--config.batch_size=N ...]
"""
from __future__ import annotations

import argparse
import ast
import collections
import contextlib
import functools
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402

import _hardware  # noqa: E402
import _models  # noqa: E402

HOST_PARTS = ("render", "template", "tokenize", "parse", "game_step", "batching", "sampler_host",
              "python")
DEVICE_PARTS = ("sampler", "learner")
TIMED = HOST_PARTS + ("sampler_prefill", "sampler_decode", "learner")
GOAL = 0.10  # the target: host share of a default policy step <= 10%


class Profiler:
  """Exclusive wall time per part: a wrapped call's own time, minus wrapped calls inside it."""

  def __init__(self):
    self.totals: collections.Counter = collections.Counter()
    self.active = False
    self.step = 0  # the policy step in progress
    self._children: list[float] = []  # per open call: time spent in wrapped calls inside it

  def wrap(self, part: str, fn, block: bool = False):
    @functools.wraps(fn)
    def timed(*args, **kwargs):
      if not self.active:
        return fn(*args, **kwargs)
      self._children.append(0.0)
      start = time.perf_counter()
      try:
        out = fn(*args, **kwargs)
        if block:
          jax.block_until_ready(out)
      finally:
        elapsed = time.perf_counter() - start
        self.totals[part] += elapsed - self._children.pop()
        if self._children:
          self._children[-1] += elapsed
      return out

    return timed


def instrument(trainer, profiler: Profiler, calls: list[dict], batches: list[dict]) -> None:
  """Wraps the functions a policy step calls (see the module docstring); nothing else changes.
  Appends each sampler call's shapes to ``calls`` and each learner batch's to ``batches``."""
  from spiral_jax.rl import batching
  from spiral_jax.rl import train_step as ts
  from spiral_jax.sampling import prefixes, sampler
  from spiral_jax.text import templates
  # module attributes, looked up at call time by their callers
  sampler._prefill = profiler.wrap("sampler_prefill", sampler._prefill, block=True)
  sampler._decode = profiler.wrap("sampler_decode", sampler._decode, block=True)
  generate, train_batch = sampler.generate, batching.train_batch

  def generate_and_record(policy, prompts, max_new_tokens, **kwargs):
    out = generate(policy, prompts, max_new_tokens, **kwargs)
    if profiler.active:  # the padded shapes generate compiles for (its own bucketing rules)
      rows = sampler.bucket(len(prompts), kwargs.get("batch_buckets"))
      layout = prefixes.prompt_layout(prompts, rows, 0, kwargs.get("prompt_buckets"),
                                     kwargs.get("share_prefix", True), kwargs.get("prefix_table"))
      shared = layout.prefix is not None
      calls.append(dict(
          step=profiler.step, rows=len(prompts), padded_rows=rows,
          prompt_tokens=sum(map(len, prompts)), padded_prompt=layout.tokens.shape[1],
          groups=layout.prefix.shape[0] if shared else 0,
          prefix=layout.prefix.shape[1] if shared else 0, slots=layout.slots,
          out_len=sampler.bucket(max_new_tokens, minimum=16),
          new_tokens=int(out.lengths.sum()), decode_steps=int(out.lengths.max())))
    return out

  def train_batch_and_record(*args, **kwargs):
    batch = train_batch(*args, **kwargs)
    if profiler.active:
      batches.append(dict(step=profiler.step, groups=batch.prefix.shape[0],
                          prefix=batch.prefix.shape[1], rows=batch.tokens.shape[0],
                          length=batch.tokens.shape[1],
                          real_tokens=int(batch.input_mask.sum())))
    return batch

  sampler.generate = profiler.wrap("sampler_host", generate_and_record)
  batching.train_batch = profiler.wrap("batching", train_batch_and_record)
  templates.spiral_prompt = profiler.wrap("template", templates.spiral_prompt)
  jit_train_step = ts.jit_train_step

  def jit_and_time(*args, **kwargs):
    fn, state = jit_train_step(*args, **kwargs)
    return profiler.wrap("learner", fn, block=True), state

  ts.jit_train_step = jit_and_time
  tok = trainer.tokenizer  # the policy's tokenizer is the same object
  tok.encode_batch = profiler.wrap("tokenize", tok.encode_batch)
  tok.decode = profiler.wrap("tokenize", tok.decode)
  for game in trainer.games:  # the runners hold these same objects
    game.render = profiler.wrap("render", game.render)
    game.parse = profiler.wrap("parse", game.parse)
  for runner in trainer.runners:
    runner.init = profiler.wrap("game_step", runner.init, block=True)
    runner.step = profiler.wrap("game_step", runner.step, block=True)


def device_detail(model_cfg, calls: list[dict], batches: list[dict], parts: dict, steps: int,
                  epochs: int, peaks: _hardware.Peaks) -> dict:
  """Where the device time goes: the sampler's calls and padding, the learner's batch shape, and
  each one's analytic FLOPs (and the sampler's weight + KV bytes) against the peaks."""
  from spiral_jax.model import transformer
  mean = lambda key: sum(c[key] for c in calls) / len(calls)
  flops = sum(_models.sampler_flops(model_cfg, c["padded_rows"], c["padded_prompt"],
                                    c["decode_steps"], c["slots"], c["out_len"], c["groups"],
                                    c["prefix"])
              for c in calls) / steps
  bytes_moved = sum(_models.sampler_bytes(
      model_cfg, c["padded_rows"], c["decode_steps"], c["slots"], c["out_len"],
      model_cfg.jnp_dtype.name, transformer.cache_dtype(model_cfg).name) for c in calls) / steps
  sampler = dict(
      calls_per_step=round(len(calls) / steps, 2), rows_mean=round(mean("rows"), 2),
      padded_rows=round(mean("padded_rows"), 2),
      prompt_tokens_mean=round(sum(c["prompt_tokens"] for c in calls)
                               / sum(c["rows"] for c in calls), 1),
      padded_prompt_mean=round(mean("padded_prompt"), 1),
      prefix_groups_mean=round(mean("groups"), 2), padded_prefix_mean=round(mean("prefix"), 1),
      decode_steps_mean=round(mean("decode_steps"), 2), out_len=calls[0]["out_len"],
      new_tokens_per_step=round(sum(c["new_tokens"] for c in calls) / steps, 1),
      prefill_s=parts["sampler_prefill"], decode_s=parts["sampler_decode"],
      flops_analytic=flops, **peaks.utilisation(parts["sampler"], flops, bytes_moved))
  b = {k: v for k, v in batches[-1].items() if k != "step"}
  flops = sum(_models.train_step_flops(model_cfg, x["rows"], x["length"], x["groups"],
                                       x["prefix"], epochs) for x in batches) / len(batches)
  learner = dict(batch_shape=b, epochs=epochs, flops_analytic=flops,
                 **peaks.utilisation(parts["learner"], flops))
  return dict(sampler=sampler, learner=learner, peak=peaks.describe())


def copy_run(run_dir: str, workdir: str) -> int:
  """Copies a finished CPU-default run's tokenizer and checkpoints into ``workdir``, so the
  trainer resumes its trained policy; returns the step it resumes from."""
  import shutil
  saved = os.path.join(run_dir, "checkpoints")
  steps = [int(p) for p in os.listdir(saved) if p.isdigit()] if os.path.isdir(saved) else []
  if not steps or not os.path.isdir(os.path.join(run_dir, "tokenizer")):
    raise SystemExit(f"--from_run={run_dir!r} holds no checkpoints/<step> and tokenizer/; pass the "
                     "workdir of a run of experiments/tiny_cpu.py (e.g. after `make train`)")
  for part in ("tokenizer", "checkpoints"):
    shutil.copytree(os.path.join(run_dir, part), os.path.join(workdir, part))
  return max(steps)


def run(args, overrides: list[str]) -> dict:
  from experiments import tiny_cpu
  from spiral_jax import config as config_lib
  from spiral_jax.rl import sft
  from spiral_jax.run import trainer as trainer_lib

  c = tiny_cpu.get_config()
  workdir = tempfile.mkdtemp(prefix="bench_rollout_")
  resume = copy_run(args.from_run, workdir) if args.from_run else 0
  c.num_steps = resume + 1 + args.steps
  c.eval.every = 0
  c.checkpoint.every = 10 ** 6  # only step 0 (before the first step) and the last are saved
  c.warm_start.steps = args.warm_start_steps
  for item in overrides:  # --config.batch_size=16 style, as the training command line takes them
    key, _, value = item.removeprefix("--config.").partition("=")
    target = c
    *path, leaf = key.split(".")
    for name in path:
      target = target[name]
    try:
      target[leaf] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      target[leaf] = value  # a plain string
  cfg = config_lib.from_config_dict(c)

  step_now = [0]
  compiles = _hardware.CompileLog(label=0)  # labelled with the policy step in progress

  # a smaller pool of scripted games to warm-start from (the trainer calls sft.warm_start)
  sft.warm_start = functools.partial(sft.warm_start, pool_games=args.warm_start_pool)
  trainer = trainer_lib.Trainer(cfg, workdir, progress=False)
  profiler = Profiler()
  calls: list[dict] = []
  batches: list[dict] = []
  instrument(trainer, profiler, calls, batches)
  marks: dict[int, tuple[float, collections.Counter]] = {}  # step -> (start, totals at start)
  steps: dict[int, dict[str, float]] = {}

  def close_step() -> None:
    step = step_now[0]
    if step in marks and step not in steps:
      start, before = marks[step]
      parts = profiler.totals - before
      wall = time.perf_counter() - start
      parts["python"] = wall - sum(parts.values())
      steps[step] = dict(wall=wall, **{p: parts.get(p, 0.0) for p in TIMED})
      steps[step]["sampler"] = steps[step]["sampler_prefill"] + steps[step]["sampler_decode"]

  collect = trainer.collect

  def collect_and_mark(state, *rest):
    close_step()
    step_now[0] = profiler.step = compiles.label = int(state.step) + 1
    profiler.active = True
    marks[step_now[0]] = (time.perf_counter(), collections.Counter(profiler.totals))
    return collect(state, *rest)

  save = trainer.checkpointer.save

  def save_and_close(step, *rest, **kwargs):  # the last step's checkpoint is not part of a step
    close_step()
    profiler.active = False
    return save(step, *rest, **kwargs)

  trainer.collect = collect_and_mark
  trainer.checkpointer.save = save_and_close
  start = time.perf_counter()
  with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON
    trainer.run()
  total = time.perf_counter() - start
  compiles.label = None  # what compiles from here on (the peak measurement) is not training's

  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    logged = {row["step"]: row for row in map(json.loads, f) if row.get("step", 0) > 0}
  first = min(steps)
  measured = [s for s in sorted(steps) if s > first]
  mean = lambda key: sum(steps[s][key] for s in measured) / len(measured)
  parts = {p: round(mean(p), 4) for p in DEVICE_PARTS + HOST_PARTS}
  split = {p: round(mean(p), 4) for p in ("sampler", "sampler_prefill", "sampler_decode",
                                          "learner")}
  first_calls = sum(1 for c in calls if c["step"] == first)
  peaks = _hardware.Peaks(trainer.policy.config.jnp_dtype.name, repeats=3)
  detail = device_detail(trainer.policy.config, [c for c in calls if c["step"] > first],
                         [b for b in batches if b["step"] > first], split, len(measured),
                         cfg.rl.epochs, peaks)
  wall = mean("wall")
  host = sum(parts[p] for p in HOST_PARTS)
  late = [{"step": s, "function": name} for s, name in compiles.events if s > first]
  game = cfg.games[0].id
  stat = lambda name: round(sum(logged[s].get(f"train/{game}/{name}", 0.0) for s in measured)
                            / len(measured), 3)
  return dict(
      benchmark="rollout: one policy step of experiments/tiny_cpu.py", **_hardware.device_info(),
      cpu_count=os.cpu_count(), steps_measured=measured,
      policy=f"trained: {args.from_run}" if args.from_run else
      f"{cfg.warm_start.steps} warm-start steps",
      batch_size=cfg.batch_size, games_per_round=cfg.games_per_round,
      max_new_tokens=cfg.sampling.max_new_tokens, epochs=cfg.rl.epochs,
      step_s=round(wall, 4), first_step_s=round(steps[first]["wall"], 3),
      parts_s=parts, device_s=round(sum(parts[p] for p in DEVICE_PARTS), 4),
      host_s=round(host, 4), host_share=round(host / wall, 4), goal=GOAL,
      meets_goal=host / wall <= GOAL,
      shares={p: round(v / wall, 4) for p, v in parts.items()},
      compilations_first_step=sum(1 for s, _ in compiles.events if s == first),
      compilations_after_first_step=len(late), late_compilations=late,
      games_per_step=round(sum(logged[s]["train/games"] for s in measured) / len(measured), 1),
      moves_per_game=stat("moves_per_game"), invalid_rate=stat("invalid_rate"),
      response_tokens=stat("response_tokens"), device_detail=detail,
      sampler_calls_first_step=first_calls,
      setup_s=round(marks[first][0] - start, 1), total_s=round(total, 1), workdir=workdir)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  _hardware.add_device_flag(parser)
  parser.add_argument("--steps", type=int, default=2, help="measured steps after the first")
  parser.add_argument("--warm_start_steps", type=int, default=10)
  parser.add_argument("--warm_start_pool", type=int, default=256,
                      help="scripted games per kind the warm-start draws from (training: 2048)")
  parser.add_argument("--from_run", default="",
                      help="a finished tiny_cpu run's workdir: resume its trained policy instead "
                           "of warm-starting (e.g. runs/tiny_cpu after `make train`)")
  parser.add_argument("--keep_workdir", action="store_true")
  args, overrides = parser.parse_known_args(argv)
  bad = [o for o in overrides if not (o.startswith("--config.") and "=" in o)]
  if bad:
    parser.error(f"unknown arguments {bad}; config fields go as --config.name=value")
  if args.steps < 1:
    parser.error("--steps must be >= 1 (the first step compiles and is reported apart)")
  _hardware.select_device(args.device)
  result = run(args, overrides)
  if not args.keep_workdir:
    import shutil
    shutil.rmtree(result.pop("workdir"), ignore_errors=True)
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  main()
