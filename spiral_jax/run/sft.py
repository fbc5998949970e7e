"""The "SFT on expert trajectories" baseline run (``python -m spiral_jax.sft``): supervised steps
on scripted players' games (``rl/sft.py``), saved as a fresh run's step-0 checkpoint, so
``python -m spiral_jax.evaluate --workdir=...`` evaluates it and ``python -m spiral_jax.train``
with the same workdir continues from it by self-play.
"""
from __future__ import annotations

import functools
import json
import os

import jax

from spiral_jax import metrics as metrics_lib
from spiral_jax.errors import InputError
from spiral_jax.rl import sft
from spiral_jax.rl.logprobs import make_logprob_fn
from spiral_jax.run import setup
from spiral_jax.run.signals import StopSignals
from spiral_jax.workdir import Workdir


def train_sft(cfg, workdir: str, *, player: str = "expert", progress: bool = True,
              pool_games: int = 2048, held_out_games: int = 64, log_every: int = 10):
  """The "SFT on expert trajectories" baseline: ``cfg.warm_start.steps`` supervised steps at
  ``cfg.warm_start.learning_rate`` on ``player``'s games of every configured kind (the moves of
  ``pool_games`` games per kind, see ``warm_start``).

  Writes, in the trainer's layout: ``tokenizer/``, ``config.json``, the policy as the step-0
  checkpoint (with a fresh optimizer state for self-play), ``metrics.jsonl`` (one step-0 row:
  the NLL on ``held_out_games`` unseen games per kind before and after, and the evaluation suites
  when ``eval.every`` > 0), ``sft.jsonl`` (the loss every ``log_every`` steps) and ``eval/0.json``.
  Returns (the saved ``TrainState``, that row's metrics). SIGTERM or SIGINT stops it after the
  step under way with its state saved (``warm_start``); it then returns ``(None, metrics)``, and the
  same call again resumes it and ends exactly as an unbroken run.
  """
  if cfg.warm_start.steps < 1:
    raise InputError(f"warm_start.steps={cfg.warm_start.steps}: the SFT baseline trains for "
                     "warm_start.steps steps; set it >= 1")
  if Workdir(workdir).checkpoint_steps():
    raise InputError(f"--workdir={workdir!r} already holds checkpoints; SFT writes a fresh run's "
                     "step 0, so choose an empty workdir")
  run = setup.RunSetup(cfg, workdir, progress=progress)
  state = run.initial_state()
  logprob_fn = make_logprob_fn(run.graphdef, 1.0)
  held_out = [m for pool in sft.move_pools(run, player, held_out_games,
                                       jax.random.key(cfg.seed + 1009)) for m in pool]
  nll = functools.partial(sft.mean_nll, logprob_fn, moves=held_out,
                          response_len=cfg.sampling.max_new_tokens, pad_id=run.tokenizer.pad_id,
                          rows=max(64, cfg.micro_batch))  # few shapes
  before = nll(state.params)
  resuming = os.path.isdir(run.paths.warm_start)  # a stopped SFT's state: continue it
  with StopSignals() as stop, open(run.paths.sft_log, "a" if resuming else "w") as log:
    def write(step: int, row: dict) -> None:
      log.write(json.dumps({"step": step, **row}) + "\n")
      log.flush()
    if not resuming:
      write(0, {"sft/heldout_nll": before})
    params, metrics = sft.warm_start(run, state.params, player=player, pool_games=pool_games,
                                     log_every=log_every, log_fn=write,
                                     directory=run.paths.warm_start,
                                     should_stop=stop.agreed)
    if metrics["warm_start/steps"] < cfg.warm_start.steps:
      run.checkpointer.close()
      print(f"stopped by {stop.name} after SFT step {metrics['warm_start/steps']} of "
            f"{cfg.warm_start.steps}; its state is saved: rerun the same command to resume from "
            f"{workdir}", flush=True)
      return None, metrics
    after = nll(params)
    write(cfg.warm_start.steps, {"sft/heldout_nll": after})
  metrics = {f"sft/{k.split('/', 1)[1]}": v for k, v in metrics.items()}
  metrics.update({"sft/heldout_nll_before": before, "sft/heldout_nll_after": after,
                  "sft/player": player})
  state = state.replace(params=params, opt_state=run.tx.init(params))
  if cfg.eval.every:
    metrics.update(run.evaluate(state))
  writer = metrics_lib.MetricsWriter(workdir)
  writer.write(0, metrics)
  writer.close()
  run.checkpointer.save(0, state, force=True)
  run.checkpointer.close()  # committed: the stopped state, if any, has served
  sft.clear_warm_start(run.paths.warm_start)
  return state, metrics
