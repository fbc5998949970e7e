"""Supervised trajectories from scripted players: the tokenizer corpus, the format warm-start, and
the paper's "SFT on expert trajectories" baseline.

A scripted player (uniformly random, or a game's expert) plays both seats; every move becomes a
(prompt, response) pair in the real prompt format, the response being a short explanation of what
the seat knows (``explanation``: the game's ``summary``, plus for TicTacToe the free cells and
whether the move wins or blocks, for SimpleNegotiation the values and what a trade is worth) and the
boxed move. Training on random-move games teaches a tiny model only the *format* (a valid
``\\boxed{}`` move), which a pretrained LLM already knows; the policy it starts self-play from is
close to uniform. The same pairs from expert players are the SFT baseline:

  state, metrics = train_sft(cfg, workdir)   # python -m spiral_jax.sft --config=... --workdir=...

which saves its policy as the run's step-0 checkpoint (the trainer's layout), so
``python -m spiral_jax.evaluate --workdir=...`` evaluates it and ``python -m spiral_jax.train``
with the same workdir continues from it by self-play.
"""
from __future__ import annotations

import functools
import json
import os
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from spiral_jax.games import core, experts, simple_negotiation, tic_tac_toe
from spiral_jax.rl import batching, losses, rollout
from spiral_jax.rl.logprobs import make_logprob_fn
from spiral_jax.rl import train_step as ts
from spiral_jax.text import templates

SFT_LOG = "sft.jsonl"  # the SFT run's loss curve, one JSON object per logged step


# ---- scripted responses ----
def _tic_tac_toe_explanation(state, seat: int, action: int) -> str:
  board = np.asarray(state.board)
  free = [str(c) for c in np.nonzero(board == tic_tac_toe.EMPTY)[0]]
  line = f"I am {tic_tac_toe.SYMBOLS[seat]}; the free cells are {', '.join(free)}."
  lines = [cells for cells in tic_tac_toe.LINES if action in cells]
  others = [board[[c for c in cells if c != action]] for cells in lines]
  if any((o == seat).all() for o in others):
    return f"{line} Cell {action} completes my line."
  if any((o == 1 - seat).all() for o in others):
    return f"{line} Cell {action} blocks {tic_tac_toe.SYMBOLS[1 - seat]}'s line."
  return line


def _negotiation_explanation(state, seat: int, action: int) -> str:
  values = simple_negotiation.VALUES[seat]
  wood, gold = (int(q) for q in np.asarray(state.inventory)[seat])
  line = (f"I value Wood {values[0]} and Gold {values[1]} and hold {wood} Wood and {gold} Gold.")
  if action >= simple_negotiation.FIRST_OFFER:
    terms = np.asarray(simple_negotiation.offer_terms(np.int64(action)))
    change = int(((terms[2:] - terms[:2]) * values).sum())
    return f"{line} If accepted, this offer changes my value by {change:+d}."
  if int(state.offer_from) == 1 - seat:
    offer = np.asarray(state.offer)  # (give wood, give gold, get wood, get gold) of its maker
    change = int(((offer[:2] - offer[2:]) * values).sum())
    return f"{line} Accepting the pending offer changes my value by {change:+d}."
  return line


def explanation(game: core.Game, state: core.State, seat: int, action: int) -> str:
  """What the seat knows and what the move does, in one or two short sentences (host)."""
  state = jax.tree.map(np.asarray, state)
  if isinstance(game, tic_tac_toe.TicTacToe):
    return _tic_tac_toe_explanation(state, seat, int(action))
  if isinstance(game, simple_negotiation.SimpleNegotiation):
    return _negotiation_explanation(state, seat, int(action))
  return game.summary(state, seat)


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
                      max_prompt_tokens: int, response_len: int, seed: int, max_games: int = 8,
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
  return batching.floor_for(moves, response_len, max_games)


def make_sft_step(logprob_fn, learning_rate: float, num_micro_batches: int = 1, jit: bool = True):
  """Cross-entropy on response tokens through the learner: REINFORCE with advantage 1 and the
  token-mean aggregation is exactly the mean negative log-likelihood. Returns ``(tx, step)``;
  ``jit=False`` leaves the step for ``train_step.jit_train_step`` (shardings, donation)."""
  tx = optax.adam(learning_rate)
  step = ts.make_train_step(logprob_fn, tx, losses.LossConfig(name="reinforce",
                                                              aggregation="token_mean"),
                            epochs=1, num_micro_batches=num_micro_batches, rae_enabled=False,
                            filter_zero_advantage=False)
  return tx, (jax.jit(step) if jit else step)


def sft_batch(moves: list[rollout.Move], response_len: int, pad_id: int,
              floor: batching.ShapeFloor | None = None):
  """A TrainBatch whose every sample has advantage 1: all point at one 'game' with returns (1, 1)
  (``pairs_to_moves(..., game_index=0)``); ``floor`` keeps shapes (compilations) few."""
  games = [rollout.FinishedGame(0, np.ones(2, np.float32), core.NO_SEAT, 0, (0, 1))]
  return batching.train_batch(moves, games, response_len, pad_id, floor)


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


def move_pools(trainer, player: str, pool_games: int, key: jax.Array) -> list[list[rollout.Move]]:
  """Each game kind's scripted moves, rendered and tokenized once."""
  cfg = trainer.cfg
  pools = []
  for k, game in enumerate(trainer.games):
    pairs = scripted_pairs(game, experts.make_player(player, game), pool_games,
                           jax.random.fold_in(key, k), cfg.template)
    pools.append(pairs_to_moves(pairs, trainer.tokenizer, k, 0))
  return pools


def warm_start(trainer, params, player: str = "random", pool_games: int = 2048,
               log_every: int = 0, log_fn: Callable[[int, dict], None] | None = None):
  """``trainer.cfg.warm_start_steps`` supervised steps (Adam, ``warm_start_learning_rate``) on
  scripted games; returns (params, metrics).

  The moves of ``pool_games`` games per kind are played, rendered and tokenized once; each step
  draws its batch from that pool (each kind's share of ``batch_size``) without replacement. The
  step is the learner's (micro-batches, mesh shardings); ``params`` are copied, not donated.
  ``log_fn(step, {"sft/nll": ...})`` is called every ``log_every`` steps.
  """
  from spiral_jax.parallel import mesh as mesh_lib  # lazy: only training needs the rules
  cfg = trainer.cfg
  micro = cfg.micro_batch_size or cfg.batch_size
  tx, step = make_sft_step(make_logprob_fn(trainer.graphdef, 1.0), cfg.warm_start_learning_rate,
                           cfg.batch_size // micro, jit=False)
  state = ts.init_state(jax.tree.map(jnp.copy, params), tx, 1, cfg.seed)
  step, state = ts.jit_train_step(step, state, trainer.mesh, mesh_lib.TRAIN_RULES)
  pools = move_pools(trainer, player, pool_games, jax.random.key(cfg.seed + 7))
  rng = np.random.default_rng(cfg.seed)
  floor = batching.ShapeFloor()  # pads each batch to the largest so far: few compilations
  loss = float("nan")
  bar = tqdm.tqdm(total=cfg.warm_start_steps, desc=f"SFT ({player})", dynamic_ncols=True,
                  disable=not getattr(trainer, "progress", False))
  for i in range(cfg.warm_start_steps):
    moves = []
    for pool, quota in zip(pools, cfg.game_quotas):
      moves += [pool[j] for j in rng.choice(len(pool), min(quota, len(pool)), replace=False)]
    state, m = step(state, sft_batch(moves, cfg.sampling.max_new_tokens,
                                     trainer.tokenizer.pad_id, floor))
    loss = float(m["loss"])  # the batch's NLL before this update
    bar.update(1)
    bar.set_postfix(nll=f"{loss:.3f}")
    if log_fn is not None and log_every and (i + 1) % log_every == 0:
      log_fn(i + 1, {"sft/nll": loss})
  bar.close()
  return state.params, {"warm_start/nll": loss, "warm_start/steps": cfg.warm_start_steps,
                        "warm_start/pool_moves": sum(len(p) for p in pools)}


# ---- the SFT baseline run ----
def train_sft(cfg, workdir: str, *, player: str = "expert", progress: bool = True,
              pool_games: int = 2048, held_out_games: int = 64, log_every: int = 10):
  """The "SFT on expert trajectories" baseline: ``cfg.warm_start_steps`` supervised steps at
  ``cfg.warm_start_learning_rate`` on ``player``'s games of every configured kind (the moves of
  ``pool_games`` games per kind, see ``warm_start``).

  Writes, in the trainer's layout: ``tokenizer/``, ``config.json``, the policy as the step-0
  checkpoint (with a fresh optimizer state for self-play), ``metrics.jsonl`` (one step-0 row:
  the NLL on ``held_out_games`` unseen games per kind before and after, and the evaluation suites
  when ``eval_every`` > 0), ``sft.jsonl`` (the loss every ``log_every`` steps) and ``eval/0.json``.
  Returns (the saved ``TrainState``, that row's metrics).
  """
  from spiral_jax import metrics as metrics_lib  # lazy: the trainer imports this module
  from spiral_jax.rl.trainer import Trainer
  if cfg.warm_start_steps < 1:
    raise ValueError(f"warm_start_steps={cfg.warm_start_steps}: the SFT baseline trains for "
                     "warm_start_steps steps; set it >= 1")
  saved = os.path.join(workdir, "checkpoints")
  if os.path.isdir(saved) and any(p.isdigit() for p in os.listdir(saved)):
    raise ValueError(f"--workdir={workdir!r} already holds checkpoints; SFT writes a fresh run's "
                     "step 0, so choose an empty workdir")
  trainer = Trainer(cfg, workdir, progress=progress)
  state = trainer.initial_state()
  logprob_fn = make_logprob_fn(trainer.graphdef, 1.0)
  held_out = [m for pool in move_pools(trainer, player, held_out_games,
                                       jax.random.key(cfg.seed + 1009)) for m in pool]
  nll = functools.partial(mean_nll, logprob_fn, moves=held_out,
                          response_len=cfg.sampling.max_new_tokens, pad_id=trainer.tokenizer.pad_id,
                          rows=max(64, cfg.micro_batch_size or cfg.batch_size))  # few shapes
  before = nll(state.params)
  log_path = os.path.join(workdir, SFT_LOG)
  with open(log_path, "w") as log:
    def write(step: int, row: dict) -> None:
      log.write(json.dumps({"step": step, **row}) + "\n")
      log.flush()
    write(0, {"sft/heldout_nll": before})
    params, metrics = warm_start(trainer, state.params, player=player, pool_games=pool_games,
                                 log_every=log_every, log_fn=write)
    after = nll(params)
    write(cfg.warm_start_steps, {"sft/heldout_nll": after})
  metrics = {f"sft/{k.split('/', 1)[1]}": v for k, v in metrics.items()}
  metrics.update({"sft/heldout_nll_before": before, "sft/heldout_nll_after": after,
                  "sft/player": player})
  state = state.replace(params=params, opt_state=trainer.tx.init(params))
  if cfg.eval_every:
    metrics.update(trainer.evaluate(state))
  writer = metrics_lib.MetricsWriter(workdir)
  writer.write(0, metrics)
  writer.close()
  trainer.checkpointer.save(0, state, force=True)
  trainer.checkpointer.close()
  return state, metrics
