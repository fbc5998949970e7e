"""The SPIRAL training loop: collect self-play moves, update with RAE + PPO, evaluate, checkpoint.

``Trainer(config, workdir).run()`` is what ``python -m spiral_jax.train`` calls. The loop is a
Python loop over jitted pieces: the sampler and the learner run on the mesh; the host renders,
tokenizes and parses. Everything that changes lives in one ``TrainState`` that Orbax saves whole,
and each step's randomness is ``fold_in(seed, step)``, so a resumed run repeats an unbroken one.
"""
from __future__ import annotations

import dataclasses
import os
import time

import jax
import numpy as np
import tqdm
from absl import logging

from spiral_jax import config as config_lib
from spiral_jax import metrics as metrics_lib
from spiral_jax import plots
from spiral_jax.games import core
from spiral_jax.parallel import mesh as mesh_lib
from spiral_jax.parallel import multihost
from spiral_jax.play import agents, opponents, rollout
from spiral_jax.rl import batching, floors, rae, sft
from spiral_jax.rl import train_step as ts
from spiral_jax.rl.logprobs import make_logprob_fn
from spiral_jax.run import setup, transcripts
from spiral_jax.run.signals import StopSignals
from spiral_jax.sampling import prefixes


class Trainer(setup.RunSetup):
  """The training run: a ``RunSetup`` plus the opponents, the learner step and the loop."""

  def __init__(self, cfg: config_lib.TrainConfig, workdir: str, *, progress: bool = True):
    super().__init__(cfg, workdir, progress=progress)
    self.league = None
    self.floor: batching.ShapeFloor | None = None  # the learner's shapes, set by ``run``
    if cfg.opponent == "league":
      self.league = opponents.League(self.paths.league, cfg.league_size, cfg.league_every)
    self.runners = [rollout.GameRunner(g, opp) for g, opp in zip(self.games, self._opponents())]
    self.train_step = ts.make_train_step(
        make_logprob_fn(self.graphdef, cfg.sampling.temperature), self.tx, cfg.rl.loss,
        epochs=cfg.rl.epochs, num_micro_batches=cfg.num_micro_batches)

  def _opponents(self) -> list:
    """Each game's fixed opponent: None for self-play (and a league, drawn per step)."""
    c = self.cfg
    if c.opponent in ("random", "expert"):
      return opponents.scripted(c.opponent, self.games)
    if c.opponent == "checkpoint":
      # whole prompts: built before the learner floor that the prefix table comes from
      agent = opponents.frozen(c.opponent_path, self.policy, dict(self._sample_kwargs(
          c.sampling.temperature, c.sampling.top_p), share_prefix=False))
      return [agent] * len(self.games)
    return [None] * len(self.games)

  def _sample_kwargs(self, temperature: float, top_p: float) -> dict:
    s = self.cfg.sampling
    # A turn's rows are the running games of every kind: at most a round of each (per shard).
    rows = self.cfg.games_per_round // self.num_shards * len(self.games)
    return dict(max_new_tokens=s.max_new_tokens, temperature=temperature, top_p=top_p,
                top_k=s.top_k, batch_rows=rows, share_prefix=s.share_prefix,
                prefix_table=self.prefix_table() if s.share_prefix else None)

  def prefix_table(self) -> prefixes.PrefixTable | None:
    """The sampler's fixed prefixes and sizes, from the learner's floor (decided before the first
    step, saved with each checkpoint), so self-play's sampler calls share one program."""
    if self.floor is None:
      return None
    return batching.prefix_table(self.floor, self.cfg.sampling.max_new_tokens)

  # ---- pieces ----
  def sample_fn(self, params, temperature: float, top_p: float) -> agents.SampleFn:
    return agents.policy_sample_fn(dataclasses.replace(self.policy, params=params),
                                    **self._sample_kwargs(temperature, top_p))

  def league_runners(self, state: ts.TrainState) -> tuple[list[rollout.GameRunner], int]:
    """This step's runners against one drawn league snapshot, and that snapshot's step."""
    snapshot = self.league.pick(int(state.step), self.cfg.seed)
    s = self.cfg.sampling
    agent = agents.TextAgent(self.sample_fn(self.league.params(snapshot, state.params),
                                             s.temperature, s.top_p), name=f"league@{snapshot}")
    return [rollout.GameRunner(g, agent) for g in self.games], snapshot

  def collect(self, state: ts.TrainState, runners: list[rollout.GameRunner] | None = None
              ) -> tuple[rollout.Rollout, np.ndarray]:
    """This step's rollout, its moves scored by the RAE fold as games finish (zero advantages
    dropped before the draw), and the baselines f32[groups, kinds, 2] after the fold. With
    several rollout shards, shard ``i`` plays ``1/S`` of the games, folds its own ``1/S`` of the
    baseline groups and draws ``1/S`` of each kind's samples with key ``fold_in(key, i)`` on its
    own devices; every process runs its own shards, and all of them gather the whole rollout."""
    c, s = self.cfg, self.cfg.sampling
    key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), int(state.step))
    kwargs = dict(template=c.template, max_prompt_tokens=c.max_prompt_tokens,
                  filter_zero=c.rl.filter_zero_advantage, transcript_games=c.transcript_games)
    n = self.num_shards
    baselines, per_shard = np.asarray(jax.device_get(state.rae)), c.rl.rae_groups // n
    folds = {shard: rae.Baselines.start(baselines[shard * per_shard:(shard + 1) * per_shard],
                                        alpha=c.rl.rae_alpha, enabled=c.rl.rae)
             for shard in (self.shard_meshes if n > 1 else [0])}
    if n == 1:
      r = rollout.collect(runners or self.runners, c.game_quotas, c.games_per_round,
                          self.sample_fn(state.params, s.temperature, s.top_p),
                          self.tokenizer, key, advantage_fn=folds[0], **kwargs)
      return r, folds[0].state()
    parts = []
    for shard in sorted(self.shard_meshes):
      quotas = [q // n + (shard < q % n) for q in c.game_quotas]
      sample_fn = agents.policy_sample_fn(self.shard_policy(state.params, shard),
                                           **self._sample_kwargs(s.temperature, s.top_p))
      parts.append((rollout.collect(runners or self.runners, quotas, c.games_per_round // n,
                                    sample_fn, self.tokenizer, jax.random.fold_in(key, shard),
                                    advantage_fn=folds[shard], **kwargs),
                    folds[shard].state()))
    parts = multihost.concat_shards(multihost.gather_json(  # in shard order
        [(rollout.to_json(r), b) for r, b in parts]))
    return (rollout.merge([rollout.from_json(r) for r, _ in parts]),
            np.concatenate([np.asarray(b, np.float32) for _, b in parts]))

  def rollout_metrics(self, r: rollout.Rollout) -> dict[str, float]:
    m: dict[str, float] = {"train/games": len(r.games), "train/response_chars": r.response_chars,
                           "train/played_moves": r.num_played_moves,
                           "train/kept_moves": r.num_kept_moves}
    for k, game in enumerate(self.games):
      finished = [g for g in r.games if g.kind == k]
      moves = [mv for mv in r.moves if mv.kind == k]
      if not finished:
        continue
      rewards = np.stack([g.returns for g in finished])
      m[f"train/{game.id}/seat0_win_rate"] = float((rewards[:, 0] > rewards[:, 1]).mean())
      m[f"train/{game.id}/seat1_win_rate"] = float((rewards[:, 1] > rewards[:, 0]).mean())
      m[f"train/{game.id}/draw_rate"] = float((rewards[:, 0] == rewards[:, 1]).mean())
      m[f"train/{game.id}/forfeit_rate"] = float(np.mean(
          [g.forfeited_by != core.NO_SEAT for g in finished]))
      m[f"train/{game.id}/invalid_rate"] = float(np.mean([mv.invalid for mv in moves]))
      m[f"train/{game.id}/response_tokens"] = float(np.mean([len(mv.response_ids) for mv in moves]))
      m[f"train/{game.id}/truncated_rate"] = float(np.mean([mv.truncated for mv in moves]))
      m[f"train/{game.id}/moves_per_game"] = float(np.mean([g.num_moves for g in finished]))
    return m

  def _reference_params(self, state: ts.TrainState):
    """The step-0 parameters: from the first checkpoint, which ``run`` writes before self-play."""
    self.checkpointer.manager.wait_until_finished()  # a fresh run's step 0 may still be writing
    return self.checkpointer.restore(0, state).params

  def initial_floor(self, games_per_kind: int = 64) -> batching.ShapeFloor:
    """The learner's shapes, decided before the first step from the prompts of every move of
    ``games_per_kind`` random games of each kind (rendered and cut as in self-play), so the
    batches of training fit them and the learner compiles once."""
    c = self.cfg
    return sft.random_game_floor(self.games, self.tokenizer, c.template, c.max_prompt_tokens,
                                 c.sampling.max_new_tokens, c.seed, games_per_kind)

  # ---- the loop ----
  def run(self) -> ts.TrainState:
    """Trains to ``num_steps``, resuming from the workdir's newest intact checkpoint.

    SIGTERM or SIGINT (a preemption notice, Ctrl-C) stops it after the current step, with that
    step's checkpoint written and committed; it then returns a state with ``step < num_steps``,
    and rerunning resumes exactly. A second signal aborts at once. ``learning_curves.png`` is
    redrawn after every evaluation and on every way out: the end, a stop signal, an error.
    """
    with StopSignals() as stop:
      try:
        return self._run(stop)
      finally:
        self.refresh_curves()

  def refresh_curves(self) -> str | None:
    """Redraws ``workdir/learning_curves.png`` from ``metrics.jsonl`` (process 0; None when there
    is nothing to draw). Never raises: a plot must not hide the error a run is stopping on."""
    if not multihost.is_chief() or not os.path.exists(self.paths.metrics):
      return None
    try:
      return plots.learning_curves({"run": metrics_lib.read(self.workdir)},
                                   self.paths.learning_curves)
    except Exception as e:  # noqa: BLE001  (matplotlib, a full disk: report, never mask)
      logging.warning("learning curves not drawn: %s", e)
      return None

  def _run(self, stop: StopSignals) -> ts.TrainState:
    c = self.cfg
    state = self.initial_state()
    restored = self.checkpointer.restore_latest(state, setup.shape_fields(self.policy.config))
    resume_step = int(restored.step) if restored is not None else 0
    writer = (metrics_lib.MetricsWriter(self.workdir, resume_step=resume_step)
              if multihost.is_chief() else _Silent())
    if restored is not None:
      state = restored
      print(f"resumed from step {int(state.step)} in {self.workdir}")
    else:
      if c.warm_start.steps:
        params, sft_metrics = sft.warm_start(self, state.params, directory=self.paths.warm_start,
                                             should_stop=stop.agreed)
        if sft_metrics["warm_start/steps"] < c.warm_start.steps:  # stopped, its state saved
          self.checkpointer.close()
          writer.close()
          print(f"stopped by {stop.name} after warm-start step {sft_metrics['warm_start/steps']} "
                f"of {c.warm_start.steps}; its state is saved: rerun the same command to resume "
                f"from {self.workdir}", flush=True)
          return state
        state = self.placed(state.replace(params=params, opt_state=self.tx.init(params)))
        writer.write(0, sft_metrics)
      if c.eval.every:
        writer.write(0, self.evaluate(state))
        self.refresh_curves()
      self.checkpointer.save(0, state, force=True)
      if c.warm_start.steps:
        self.checkpointer.wait()  # step 0 committed: the warm-start's own state has served
        sft.clear_warm_start(self.paths.warm_start)
    if self.league is not None:
      self.league.save(0, state.params)  # the first opponent; a no-op once saved
    with_reference = c.rl.needs_reference
    train_step, state = ts.jit_train_step(self.train_step, state, self.mesh, mesh_lib.TRAIN_RULES,
                                          with_reference)
    # The KL reference is the policy self-play starts from (after any warm-start): the step-0
    # checkpoint, so a resumed run uses the same one.
    extra = (self._reference_params(state),) if with_reference else ()
    bar = tqdm.tqdm(total=c.num_steps, initial=int(state.step), disable=not self.progress,
                    desc="self-play", dynamic_ncols=True)
    bad_steps = 0  # policy steps in a row whose updates were skipped as non-finite
    # learner shapes, fixed before the first step; the sampler's prefix table follows them
    floor = floors.load(self.paths.shape_floors, int(state.step)) or self.initial_floor()
    self.floor = floor
    stopping = stop.agreed()  # the state here is already on disk
    while int(state.step) < c.num_steps and not stopping:
      t0 = time.perf_counter()
      runners, snapshot = self.league_runners(state) if self.league else (None, None)
      r, folded = self.collect(state, runners)
      t1 = time.perf_counter()
      batch = batching.train_batch(r.moves, c.sampling.max_new_tokens, self.tokenizer.pad_id,
                                   floor, folded)
      state, learner = train_step(state, batch, *extra)
      learner = jax.device_get(learner)
      t2 = time.perf_counter()
      step = int(state.step)
      m = self.rollout_metrics(r)
      m.update({f"train/{k}": float(v) for k, v in learner.items()})
      bad_steps = bad_steps + 1 if learner.get("nonfinite", 0) > 0 else 0
      baselines = np.asarray(state.rae).mean(0)  # replicated: every process holds it
      m.update({f"train/rae_baseline/{g.id}/seat{p}": float(baselines[k, p])
                for k, g in enumerate(self.games) for p in range(2)})
      m.update({"time/rollout_s": t1 - t0, "time/learner_s": t2 - t1})
      if snapshot is not None:
        m["train/league_opponent_step"] = snapshot
      evaluated = c.eval.every and (step % c.eval.every == 0 or step == c.num_steps)
      if evaluated:
        m.update(self.evaluate(state))
      writer.write(step, m)
      if evaluated:
        self.refresh_curves()
      if multihost.is_chief():
        transcripts.write(self.paths.transcripts, step,
                          transcripts.records(r, [g.id for g in self.games]))
      stopping = stop.agreed()  # read once: a later signal stops after the next step
      if step % c.checkpoint.every == 0 or step == c.num_steps or stopping:
        self.checkpointer.save(step, state)
        if multihost.is_chief():
          floors.save(self.paths.shape_floors, step, floor, self.checkpointer.steps())
      if self.league is not None and step % c.league_every == 0:
        # After the step's checkpoint is on disk: a snapshot never outlives its resume point.
        self.checkpointer.manager.wait_until_finished()
        self.league.save(step, state.params)
      bar.update(1)
      bar.set_postfix(_postfix(m, self.games))
      if bad_steps >= c.rl.max_nonfinite_steps:
        self.checkpointer.close()
        raise FloatingPointError(
            f"{bad_steps} policy steps in a row had a non-finite loss or gradient (their updates "
            f"were skipped; see train/nonfinite in {writer.path}). Lower optim.learning_rate, "
            "check the rewards, or raise max_nonfinite_steps.")
    bar.close()
    self.checkpointer.close()  # waits for the last async save: on return it is committed
    if self.league is not None:
      self.league.close()
    writer.close()
    if stopping and int(state.step) < c.num_steps:
      print(f"stopped by {stop.name} after step {int(state.step)} of {c.num_steps}; the checkpoint "
            f"is saved: rerun the same command to resume from {self.workdir}", flush=True)
    return state


class _Silent:
  """The metrics writer of processes other than the chief: they log nothing."""
  path = "(process 0 writes the metrics)"

  def write(self, step: int, metrics: dict) -> None:
    del step, metrics

  def close(self) -> None:
    pass


def _postfix(m: dict[str, float], games) -> dict[str, str]:
  out = {}
  for g in games:
    short = g.id.split("-")[0][:6]
    if f"train/{g.id}/seat0_win_rate" in m:
      out[f"{short}:w0/w1"] = (f"{m[f'train/{g.id}/seat0_win_rate']:.2f}/"
                               f"{m[f'train/{g.id}/seat1_win_rate']:.2f}")
      out[f"{short}:inv"] = f"{m[f'train/{g.id}/invalid_rate']:.2f}"
  out["len"] = f"{m.get('train/response_chars', 0):.0f}"
  # The sampled estimate is the policy as it plays; the scored one assumes the scripted answer.
  expl = sorted((not k.endswith("_sampled"), v) for k, v in m.items() if "exploitability" in k)
  if expl:
    out["expl"] = f"{expl[0][1]:.3f}"
  return out
