"""Supervised trajectories from scripted players: the tokenizer corpus and the format warm-start.

A scripted player (uniformly random, or a game's expert) plays both seats; every move becomes a
(prompt, response) pair in the real prompt format, the response being the game's one-line summary
of what the seat knows (``Game.summary``) and the boxed move. Training on
random-move games teaches a tiny model only the *format* (a valid ``\\boxed{}`` move), which a
pretrained LLM already knows; the policy it starts self-play from is close to uniform. The same
pairs from expert players are the paper's "SFT on expert trajectories" baseline.
"""
from __future__ import annotations

from typing import Sequence

import jax
import numpy as np
import optax

from spiral_jax.games import core, experts
from spiral_jax.rl import batching, losses, rollout
from spiral_jax.rl.logprobs import make_logprob_fn
from spiral_jax.rl import train_step as ts
from spiral_jax.text import templates


def response_text(game: core.Game, action: int, state: core.State | None = None,
                  seat: int | None = None) -> str:
  """A scripted response: the game's ``summary`` of what the seat knows (when a state is given
  and the game has one), then the move's text in a box, e.g. ``I have K. \\boxed{[bet]}``.

  Restating the private card right before the move puts it next to the decision, where a tiny
  model can learn to use it; an LLM does the same in its reasoning.
  """
  boxed = f"\\boxed{{{game.action_text(int(action))}}}"
  summary = game.summary(state, seat) if state is not None else ""
  return f"{summary} {boxed}" if summary else boxed


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


def pairs_to_moves(pairs, tokenizer, kind: int, game_index: int) -> list[rollout.Move]:
  prompts = tokenizer.encode_batch([p for p, _, _ in pairs])
  responses = tokenizer.encode_batch([r for _, r, _ in pairs])
  return [rollout.Move(p, r + [tokenizer.eos_id], kind, seat, game_index, False, False)
          for p, r, (_, _, seat) in zip(prompts, responses, pairs)]


def make_sft_step(logprob_fn, learning_rate: float, num_micro_batches: int = 1):
  """Cross-entropy on response tokens through the learner: REINFORCE with advantage 1 and the
  token-mean aggregation is exactly the mean negative log-likelihood."""
  tx = optax.adam(learning_rate)
  step = ts.make_train_step(logprob_fn, tx, losses.LossConfig(name="reinforce",
                                                              aggregation="token_mean"),
                            epochs=1, num_micro_batches=num_micro_batches, rae_enabled=False,
                            filter_zero_advantage=False)
  return tx, jax.jit(step)


def sft_batch(moves: list[rollout.Move], response_len: int, pad_id: int):
  """A TrainBatch whose every sample has advantage 1: all point at one 'game' with returns (1, 1)
  (``pairs_to_moves(..., game_index=0)``)."""
  games = [rollout.FinishedGame(0, np.ones(2, np.float32), core.NO_SEAT, 0, (0, 1))]
  return batching.train_batch(moves, games, response_len, pad_id)


def warm_start(trainer, params, player: str = "random", pool_games: int = 2048):
  """``trainer.cfg.warm_start_steps`` supervised steps on scripted games; returns (params, metrics).

  The moves of ``pool_games`` games per kind are played, rendered and tokenized once; each step
  draws its batch from that pool (each kind's share of ``batch_size``) without replacement.
  """
  cfg = trainer.cfg
  tx, step = make_sft_step(make_logprob_fn(trainer.graphdef, 1.0), cfg.warm_start_learning_rate)
  state = ts.init_state(params, tx, 1, cfg.seed)
  key = jax.random.key(cfg.seed + 7)
  pools = []
  for k, game in enumerate(trainer.games):
    pairs = scripted_pairs(game, experts.make_player(player, game), pool_games,
                           jax.random.fold_in(key, k), cfg.template)
    pools.append(pairs_to_moves(pairs, trainer.tokenizer, k, 0))
  rng = np.random.default_rng(cfg.seed)
  loss = float("nan")
  for _ in range(cfg.warm_start_steps):
    moves = []
    for pool, quota in zip(pools, cfg.game_quotas):
      moves += [pool[j] for j in rng.choice(len(pool), min(quota, len(pool)), replace=False)]
    state, m = step(state, sft_batch(moves, cfg.sampling.max_new_tokens,
                                     trainer.tokenizer.pad_id))
    loss = float(m["loss"])
  return state.params, {"warm_start/nll": loss, "warm_start/steps": cfg.warm_start_steps}
