"""The SPIRAL training loop: collect self-play moves, update with RAE + PPO, evaluate, checkpoint.

``Trainer(config, workdir).run()`` is what ``python -m spiral_jax.train`` calls. The loop is a
Python loop over jitted pieces: the sampler and the learner run on the mesh; the host renders,
tokenizes and parses. Everything that changes lives in one ``TrainState`` that Orbax saves whole,
and each step's randomness is ``fold_in(seed, step)``, so a resumed run repeats an unbroken one.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import numpy as np
import tqdm

from spiral_jax import checkpoint as checkpoint_lib
from spiral_jax import config as config_lib
from spiral_jax import metrics as metrics_lib
from spiral_jax.games import core, experts
from spiral_jax.model import config as model_config_lib
from spiral_jax.model.policy import Policy
from spiral_jax.parallel import mesh as mesh_lib
from spiral_jax.rl import batching, rollout, sft
from spiral_jax.rl.logprobs import make_logprob_fn
from spiral_jax.rl import train_step as ts
from spiral_jax.rl import evaluation
from spiral_jax.sampling import sampler
from spiral_jax.text import tokenizer as tokenizer_lib


def build_tokenizer(cfg: config_lib.TrainConfig, workdir: str) -> tokenizer_lib.Tokenizer:
  """The configured tokenizer; the games' own SentencePiece model is trained once and saved."""
  if cfg.tokenizer != "games_sentencepiece":
    return tokenizer_lib.load_tokenizer(cfg.tokenizer)
  folder = os.path.join(workdir, "tokenizer")
  if os.path.isdir(folder):
    return tokenizer_lib.load_tokenizer(folder)
  texts = sft.game_corpus([spec.make() for spec in cfg.games], cfg.template, seed=cfg.seed)
  tok = tokenizer_lib.train_sentencepiece(texts, cfg.vocab_size, seed=cfg.seed)
  tok.save(folder)
  return tok


def build_policy(cfg: config_lib.TrainConfig, tok, mesh) -> Policy:
  if os.path.isdir(cfg.model):
    return Policy.from_hf(cfg.model, mesh=mesh)
  model_cfg = model_config_lib.preset(cfg.model, vocab_size=tok.vocab_size,
                                     param_dtype=cfg.param_dtype, dtype=cfg.compute_dtype,
                                     **dict(cfg.model_overrides))
  return Policy.init(model_cfg, tok, jax.random.key(cfg.seed), mesh=mesh)


class Trainer:
  """Owns the run: config, workdir, policy, jitted steps, checkpoints and metrics."""

  def __init__(self, cfg: config_lib.TrainConfig, workdir: str, *, progress: bool = True):
    config_lib.check_workdir(workdir)
    self.cfg, self.workdir, self.progress = cfg, workdir, progress
    self.mesh = mesh_lib.make_mesh(cfg.mesh_shape)
    self.games = [spec.make() for spec in cfg.games]
    self.tokenizer = build_tokenizer(cfg, workdir)
    self.policy = build_policy(cfg, self.tokenizer, self.mesh)
    self.graphdef = self.policy.graphdef
    opponent = self._opponent_players()
    self.runners = [rollout.GameRunner(g, opp) for g, opp in zip(self.games, opponent)]
    self.eval_runners = evaluation.random_opponent_runners(
        [spec.make(core.EVAL_FORFEIT) for spec in cfg.games])
    updates = cfg.num_steps * cfg.epochs
    self.tx = ts.make_optimizer(cfg.optim, updates)
    batch = cfg.micro_batch_size or cfg.batch_size
    self.train_step = ts.make_train_step(
        make_logprob_fn(self.graphdef, cfg.sampling.temperature), self.tx, cfg.loss,
        epochs=cfg.epochs, num_micro_batches=cfg.batch_size // batch, rae_enabled=cfg.rae,
        rae_alpha=cfg.rae_alpha, filter_zero_advantage=cfg.filter_zero_advantage)
    self.checkpointer = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"),
                                                    keep=cfg.keep_checkpoints)
    with open(os.path.join(workdir, "config.json"), "w") as f:
      json.dump(dataclasses.asdict(cfg), f, indent=1, default=str)

  def _opponent_players(self):
    if self.cfg.opponent == "self":
      return [None] * len(self.games)
    if self.cfg.opponent in ("random", "expert"):
      return [experts.make_player(self.cfg.opponent, g) for g in self.games]
    raise NotImplementedError(f"opponent={self.cfg.opponent!r} is not available yet")

  # ---- pieces ----
  def sample_fn(self, params, temperature: float, top_p: float):
    policy = dataclasses.replace(self.policy, params=params)
    s = self.cfg.sampling

    def sample(prompts, seed):
      out = sampler.generate(policy, prompts, max_new_tokens=s.max_new_tokens,
                             temperature=temperature, top_p=top_p, top_k=s.top_k, seed=seed)
      return (out.texts, [t[:n].tolist() for t, n in zip(out.tokens, out.lengths)],
              out.truncated.tolist())

    return sample

  def initial_state(self) -> ts.TrainState:
    return ts.init_state(self.policy.params, self.tx, len(self.games), self.cfg.seed)

  def collect(self, state: ts.TrainState) -> rollout.Rollout:
    key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), int(state.step))
    s = self.cfg.sampling
    return rollout.collect(self.runners, self.cfg.game_quotas, self.cfg.games_per_round,
                           self.sample_fn(state.params, s.temperature, s.top_p), self.tokenizer,
                           key, template=self.cfg.template,
                           max_prompt_tokens=self.cfg.max_prompt_tokens)

  def rollout_metrics(self, r: rollout.Rollout) -> dict[str, float]:
    m: dict[str, float] = {"train/games": len(r.games), "train/response_chars": r.response_chars,
                           "train/played_moves": r.num_played_moves}
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

  def evaluate(self, state: ts.TrainState) -> dict[str, float]:
    c = self.cfg
    sample = self.sample_fn(state.params, c.eval_temperature, c.eval_top_p)
    policy = dataclasses.replace(self.policy, params=state.params)
    return evaluation.evaluate(self.eval_runners, sample, self.tokenizer, policy,
                               jax.random.fold_in(jax.random.key(c.seed + 1), int(state.step)),
                               num_games=c.eval_games, template=c.template,
                               max_prompt_tokens=c.max_prompt_tokens)

  def _reference_params(self, state: ts.TrainState):
    """The step-0 parameters: from the first checkpoint, which ``run`` writes before self-play."""
    return self.checkpointer.restore(0, state).params

  # ---- the loop ----
  def run(self) -> ts.TrainState:
    c = self.cfg
    state = self.initial_state()
    restored = self.checkpointer.restore_latest(state)
    writer = metrics_lib.MetricsWriter(self.workdir, resume_step=int(restored.step) if restored
                                       is not None else 0)
    if restored is not None:
      state = restored
      print(f"resumed from step {int(state.step)} in {self.workdir}")
    else:
      if c.warm_start_steps:
        params, sft_metrics = sft.warm_start(self, state.params)
        state = state.replace(params=params, opt_state=self.tx.init(params))
        writer.write(0, sft_metrics)
      if c.eval_every:
        writer.write(0, self.evaluate(state))
      self.checkpointer.save(0, state, force=True)
    with_reference = c.loss.kl_beta > 0
    train_step, state = ts.jit_train_step(self.train_step, state, self.mesh, mesh_lib.TRAIN_RULES,
                                          with_reference)
    # The KL reference is the policy self-play starts from (after any warm-start): the step-0
    # checkpoint, so a resumed run uses the same one.
    extra = (self._reference_params(state),) if with_reference else ()
    bar = tqdm.tqdm(total=c.num_steps, initial=int(state.step), disable=not self.progress,
                    desc="self-play", dynamic_ncols=True)
    while int(state.step) < c.num_steps:
      t0 = time.perf_counter()
      r = self.collect(state)
      t1 = time.perf_counter()
      batch = batching.train_batch(r.moves, r.games, c.sampling.max_new_tokens,
                                   self.tokenizer.pad_id)
      state, learner = train_step(state, batch, *extra)
      learner = jax.device_get(learner)
      t2 = time.perf_counter()
      step = int(state.step)
      m = self.rollout_metrics(r)
      m.update({f"train/{k}": float(v) for k, v in learner.items()})
      m.update({f"train/rae_baseline/{g.id}/seat{p}": float(state.rae[k, p])
                for k, g in enumerate(self.games) for p in range(2)})
      m.update({"time/rollout_s": t1 - t0, "time/learner_s": t2 - t1})
      if c.eval_every and (step % c.eval_every == 0 or step == c.num_steps):
        m.update(self.evaluate(state))
      writer.write(step, m)
      if step % c.checkpoint_every == 0 or step == c.num_steps:
        self.checkpointer.save(step, state)
      bar.update(1)
      bar.set_postfix(_postfix(m, self.games))
    bar.close()
    self.checkpointer.close()
    writer.close()
    return state


def _postfix(m: dict[str, float], games) -> dict[str, str]:
  out = {}
  for g in games:
    short = g.id.split("-")[0][:6]
    if f"train/{g.id}/seat0_win_rate" in m:
      out[f"{short}:w0/w1"] = (f"{m[f'train/{g.id}/seat0_win_rate']:.2f}/"
                               f"{m[f'train/{g.id}/seat1_win_rate']:.2f}")
      out[f"{short}:inv"] = f"{m[f'train/{g.id}/invalid_rate']:.2f}"
  out["len"] = f"{m.get('train/response_chars', 0):.0f}"
  expl = [v for k, v in m.items() if "exploitability" in k]
  if expl:
    out["expl"] = f"{expl[0]:.3f}"
  return out
