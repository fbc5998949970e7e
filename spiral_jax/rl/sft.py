"""Supervised trajectories from scripted players: the tokenizer corpus, the format warm-start, and
the paper's "SFT on expert trajectories" baseline.

A scripted player (uniformly random, or a game's expert) plays both seats; every move becomes a
(prompt, response) pair in the real prompt format, the response being a short explanation of what
the seat knows (``explanation``: each game's ``Game.explain``, e.g. for TicTacToe the free cells
and whether the move wins or blocks, for SimpleNegotiation the values and what a trade is worth)
and the boxed move. Training on random-move games teaches a tiny model only the *format* (a valid
``\\boxed{}`` move), which a pretrained LLM already knows; the policy it starts self-play from is
close to uniform. The same pairs from expert players are the SFT baseline:

  state, metrics = run.sft.train_sft(cfg, workdir)   # python -m spiral_jax.sft --config=...

which saves its policy as the run's step-0 checkpoint (the trainer's layout), so
``python -m spiral_jax.evaluate --workdir=...`` evaluates it and ``python -m spiral_jax.train``
with the same workdir continues from it by self-play.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import shutil
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from spiral_jax import checkpoint as checkpoint_lib
from spiral_jax.games import core, experts
from spiral_jax.parallel import multihost
from spiral_jax.play import rollout
from spiral_jax.rl import batching, floors, losses
from spiral_jax.rl.logprobs import make_logprob_fn
from spiral_jax.rl import train_step as ts
from spiral_jax.text import templates

FLOORS = "shape_floors.json"  # beside a stopped warm-start's checkpoint: its padded shapes


# ---- scripted responses ----
def explanation(game: core.Game, state: core.State, seat: int, action: int) -> str:
  """What the seat knows and what the move does, in one or two short sentences (host): the
  game's own ``Game.explain``."""
  return game.explain(jax.tree.map(np.asarray, state), seat, int(action))


def response_text(game: core.Game, action: int, state: core.State | None = None,
                  seat: int | None = None) -> str:
  """A scripted response: the ``explanation`` (when a state is given), then the move's text in a
  box, e.g. ``The opponent bet; I have K \\boxed{[call]}``.

  Restating the private card (the free cells, the values) right before the move puts it next to
  the decision, where a tiny model can learn to use it; an LLM does the same in its reasoning.
  """
  boxed = f"\\boxed{{{game.action_text(int(action))}}}"
  said = explanation(game, state, seat, action) if state is not None else ""
  return f"{said} {boxed}" if said else boxed


def scripted_pairs(game: core.Game, player: experts.Player, num_games: int, key: jax.Array,
                   template: str = "qwen") -> list[tuple[str, str, int]]:
  """(prompt text, response text, seat) for every move of ``num_games`` games of ``player``."""
  init = jax.jit(jax.vmap(game.init))
  step = jax.jit(jax.vmap(game.step))
  act = jax.jit(jax.vmap(player))
  state = init(jax.random.split(key, num_games))
  pairs = []
  for t in range(game.max_moves):
    actions = act(state, jax.random.split(jax.random.fold_in(key, t), num_games))
    host, acts = jax.device_get(state), np.asarray(actions)
    for row in np.nonzero(~host.terminated)[0]:
      one = jax.tree.map(lambda x: x[row], host)
      seat = int(one.current_seat)
      pairs.append((templates.spiral_prompt(game.render(one, seat), template),
                    response_text(game, acts[row], one, seat), seat))
    state = step(state, actions)
  return pairs


def game_corpus(games: Sequence[core.Game], template: str = "qwen", seed: int = 0,
                games_per_kind: int = 64) -> list[str]:
  """Texts to train the tiny SentencePiece model on: prompts and responses of random games."""
  texts = []
  for k, game in enumerate(games):
    for prompt, response, _ in scripted_pairs(game, experts.random_player(game), games_per_kind,
                                              jax.random.key(seed * 1000 + k), template):
      texts.append(prompt)
      texts.append(response + "<|im_end|>")
  return texts


# ---- supervised steps on the learner's machinery ----
def pairs_to_moves(pairs, tokenizer, kind: int, game_index: int) -> list[rollout.Move]:
  prompts = tokenizer.encode_batch([p for p, _, _ in pairs])
  responses = tokenizer.encode_batch([r for _, r, _ in pairs])
  return [rollout.Move(p, r + [tokenizer.eos_id], kind, seat, game_index, False, False)
          for p, r, (_, _, seat) in zip(prompts, responses, pairs)]


def random_game_floor(games: Sequence[core.Game], tokenizer, template: str,
                      max_prompt_tokens: int, response_len: int, seed: int,
                      games_per_kind: int = 64) -> batching.ShapeFloor:
  """The padded shapes and shared prefixes of ``games``' prompts, decided up front from every move
  of ``games_per_kind`` random games of each kind (rendered and cut to ``max_prompt_tokens`` as in
  play; random games reach the long histories): the learner's floor, and through
  ``batching.prefix_table`` the sampler's."""
  moves = []
  for k, game in enumerate(games):
    pairs = scripted_pairs(game, experts.random_player(game), games_per_kind,
                           jax.random.key(seed + k), template)
    ids = tokenizer.encode_batch([prompt for prompt, _, _ in pairs])
    moves += [rollout.Move(p[-max_prompt_tokens:], [], k, seat, 0, False, False)
              for p, (_, _, seat) in zip(ids, pairs)]
  return batching.floor_for(moves, response_len)


def make_sft_step(logprob_fn, learning_rate: float, num_micro_batches: int = 1, jit: bool = True):
  """Cross-entropy on response tokens through the learner: REINFORCE with advantage 1 and the
  token-mean aggregation is exactly the mean negative log-likelihood. Returns ``(tx, step)``;
  ``jit=False`` leaves the step for ``train_step.jit_train_step`` (shardings, donation)."""
  tx = optax.adam(learning_rate)
  step = ts.make_train_step(logprob_fn, tx, losses.LossConfig(name="reinforce",
                                                              aggregation="token_mean"),
                            epochs=1, num_micro_batches=num_micro_batches)
  return tx, (jax.jit(step) if jit else step)


def sft_batch(moves: list[rollout.Move], response_len: int, pad_id: int,
              floor: batching.ShapeFloor | None = None):
  """A TrainBatch whose every sample has advantage 1 (the SFT state's one zero baseline is kept);
  ``floor`` keeps shapes (compilations) few."""
  moves = [dataclasses.replace(m, advantage=1.0) for m in moves]
  return batching.train_batch(moves, response_len, pad_id, floor)


@functools.partial(jax.jit, static_argnums=0)
def _nll_sums(logprob_fn, params, batch) -> tuple[jax.Array, jax.Array]:
  logp, _ = logprob_fn(params, batch.prefix, batch.prefix_mask, batch.row_prefix, batch.tokens,
                       batch.input_mask)
  mask = batch.loss_mask * batch.input_mask * batch.sample_valid[:, None]
  return -(logp * mask).sum(), mask.sum()


def mean_nll(logprob_fn, params, moves: Sequence[rollout.Move], response_len: int, pad_id: int,
             rows: int = 64) -> float:
  """The mean negative log-likelihood per response token of ``moves`` (evaluated ``rows`` at a
  time); ``logprob_fn`` as ``make_logprob_fn`` returns it (build it once: it keys the jit cache)."""
  total, count, floor = 0.0, 0.0, batching.ShapeFloor()
  for start in range(0, len(moves), rows):
    nll, n = _nll_sums(logprob_fn, params, sft_batch(list(moves[start:start + rows]),
                                                     response_len, pad_id, floor))
    total, count = total + float(nll), count + float(n)
  return total / max(count, 1.0)


def move_pools(setup, player: str, pool_games: int, key: jax.Array) -> list[list[rollout.Move]]:
  """Each game kind's scripted moves, rendered and tokenized once (``setup``: a
  ``run.setup.RunSetup``, or anything with its ``cfg``, ``games`` and ``tokenizer``)."""
  pools = []
  for k, game in enumerate(setup.games):
    pairs = scripted_pairs(game, experts.make_player(player, game), pool_games,
                           jax.random.fold_in(key, k), setup.cfg.template)
    pools.append(pairs_to_moves(pairs, setup.tokenizer, k, 0))
  return pools


def warm_start(setup, params, player: str = "random", pool_games: int = 2048,
               log_every: int = 0, log_fn: Callable[[int, dict], None] | None = None, *,
               directory: str | None = None, should_stop: Callable[[], bool] | None = None):
  """``setup.cfg.warm_start.steps`` supervised steps (Adam, ``warm_start.learning_rate``) on
  scripted games; returns (params, metrics), ``metrics["warm_start/steps"]`` the steps done.

  The moves of ``pool_games`` games per kind are played, rendered and tokenized once; each step
  draws its batch from that pool (each kind's share of ``batch_size``) without replacement. The
  step is the learner's (micro-batches, mesh shardings); ``params`` are copied, not donated.
  ``log_fn(step, {"sft/nll": ...})`` is called every ``log_every`` steps.

  Stopping and resuming (``directory``, e.g. ``workdir/warm_start``): when ``should_stop()`` turns
  true the step under way finishes and its whole state (parameters, Adam's moments, step, padded
  shapes) is saved there; the params returned are then those of a partial warm-start (fewer
  ``warm_start/steps``). A later call with the same ``directory`` starts from that step (the pools
  and the batch draws are functions of the seed, replayed) and ends exactly as an unbroken one.
  """
  from spiral_jax.parallel import mesh as mesh_lib  # lazy: only training needs the rules
  cfg = setup.cfg
  total = cfg.warm_start.steps
  tx, step = make_sft_step(make_logprob_fn(setup.graphdef, 1.0), cfg.warm_start.learning_rate,
                           cfg.num_micro_batches, jit=False)
  state = ts.init_state(jax.tree.map(jnp.copy, params), tx, 1, cfg.seed)
  step, state = ts.jit_train_step(step, state, setup.mesh, mesh_lib.TRAIN_RULES)
  pools = move_pools(setup, player, pool_games, jax.random.key(cfg.seed + 7))
  rng = np.random.default_rng(cfg.seed)
  floor = batching.ShapeFloor()  # pads each batch to the largest so far: few compilations
  def checkpointer() -> checkpoint_lib.Checkpointer:
    return checkpoint_lib.Checkpointer(directory, keep=1, async_save=False, keep_first=False)

  saver = checkpointer() if directory and os.path.isdir(directory) else None  # none: no folder
  done = 0
  if saver is not None and saver.latest_step() is not None:
    done = saver.latest_step()
    state = saver.restore(done, state)
    floor = floors.load(os.path.join(directory, FLOORS), done) or floor
    print(f"warm-start resumed from step {done} of {total} in {directory}", flush=True)

  def draw() -> list[rollout.Move]:
    moves = []
    for pool, quota in zip(pools, cfg.game_quotas):
      moves += [pool[j] for j in rng.choice(len(pool), min(quota, len(pool)), replace=False)]
    return moves

  for _ in range(done):  # the draws of the steps already done
    draw()
  loss = float("nan")
  bar = tqdm.tqdm(total=total, initial=done, desc=f"SFT ({player})", dynamic_ncols=True,
                  disable=not getattr(setup, "progress", False))
  while done < total:
    state, m = step(state, sft_batch(draw(), cfg.sampling.max_new_tokens,
                                     setup.tokenizer.pad_id, floor))
    loss = float(m["loss"])  # the batch's NLL before this update
    done += 1
    bar.update(1)
    bar.set_postfix(nll=f"{loss:.3f}")
    if log_fn is not None and log_every and done % log_every == 0:
      log_fn(done, {"sft/nll": loss})
    if should_stop is not None and should_stop() and done < total and directory:
      saver = saver or checkpointer()
      saver.save(done, state, force=True)
      if multihost.is_chief():
        floors.save(os.path.join(directory, FLOORS), done, floor, [done])
      break
  bar.close()
  if saver is not None:
    saver.close()
  return state.params, {"warm_start/nll": loss, "warm_start/steps": done,
                        "warm_start/pool_moves": sum(len(p) for p in pools)}


def clear_warm_start(directory: str) -> None:
  """Removes a finished warm-start's saved state (its result is the run's step-0 checkpoint);
  every process calls it."""
  multihost.barrier("spiral_jax:clear_warm_start")
  if multihost.is_chief() and os.path.isdir(directory):
    shutil.rmtree(directory)
  multihost.barrier("spiral_jax:cleared_warm_start")
