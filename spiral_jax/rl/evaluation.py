"""Periodic evaluation during training: games against the random player, and for single-round
Kuhn Poker the policy's exact exploitability (scored bare-move responses, ``eval/kuhn_exact``)."""
from __future__ import annotations

import itertools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from spiral_jax.eval import kuhn_exact
from spiral_jax.games import core, experts, kuhn_poker
from spiral_jax.model import transformer
from spiral_jax.rl import rollout, sft
from spiral_jax.text import templates


def kuhn_prompts(game: kuhn_poker.KuhnPoker, template: str = "qwen") -> dict[str, str]:
  """The prompt of each of the 12 OpenSpiel information sets of single-round Kuhn Poker."""
  prompts: dict[str, str] = {}
  for cards in itertools.permutations(range(3), 2):
    for history in ((), (0,), (1,), (0, 1)):
      state = game.init_with_cards(np.array([cards], np.int32))
      for a in history:
        state = game.step(state, a)
      seat = int(state.current_seat)
      key = game.info_state(state, seat)
      text = templates.spiral_prompt(game.render(state, seat), template)
      if prompts.setdefault(key, text) != text:
        raise AssertionError(f"two prompts for information set {key!r}: the render leaks state")
  return prompts


def make_score_fn(policy, tokenizer):
  """``score_fn(prompts, responses) -> f[n]`` total log-prob of response + end-of-turn token."""

  @jax.jit
  def logprobs(params, tokens, mask):
    return transformer.token_logprobs(policy.graphdef, params, tokens, mask)

  def score(prompts: list[str], responses: list[str]) -> np.ndarray:
    rows, starts = [], []
    for p, r in zip(prompts, responses):
      pi, ri = tokenizer.encode(p), tokenizer.encode(r) + [tokenizer.eos_id]
      rows.append(pi + ri)
      starts.append(len(pi))
    width = max(len(r) for r in rows)
    tokens = np.full((len(rows), width), tokenizer.pad_id, np.int32)
    mask = np.zeros((len(rows), width), bool)
    for i, r in enumerate(rows):  # right padding: positions stay 0.. for every row
      tokens[i, :len(r)], mask[i, :len(r)] = r, True
    lp = np.asarray(logprobs(policy.params, jnp.asarray(tokens), jnp.asarray(mask)))
    return np.array([lp[i, starts[i]:len(rows[i])].sum() for i in range(len(rows))])

  return score


def kuhn_exploitability(game, policy, tokenizer, template: str = "qwen") -> dict:
  estimate = kuhn_exact.distributions_from_scores(
      make_score_fn(policy, tokenizer), kuhn_prompts(game, template),
      {s: tuple(sft.response_text(game, game.action_from_text(m)) for m in moves)
       for s, moves in kuhn_exact.MOVE_NAMES.items()})
  return kuhn_exact.report(estimate.policy, estimate.invalid_mass)


def evaluate(games: Sequence[core.Game], sample_fn, tokenizer, policy, key, *, num_games: int,
             template: str = "qwen", max_prompt_tokens: int = 1 << 20) -> dict[str, float]:
  """``eval/...`` metrics: learner vs random per game (evaluation forfeits), and exploitability."""
  metrics: dict[str, float] = {}
  for k, game in enumerate(games):
    eval_game = type(game)(forfeit=core.EVAL_FORFEIT, **_game_kwargs(game))
    runner = rollout.GameRunner(eval_game, experts.random_player(eval_game))
    rng = np.random.default_rng(np.asarray(jax.random.key_data(jax.random.fold_in(key, k))).ravel())
    moves, finished = rollout.play_round([runner], [num_games], sample_fn, tokenizer,
                                         jax.random.fold_in(key, k), template=template, rng=rng,
                                         max_prompt_tokens=max_prompt_tokens)
    mine = np.array([g.returns[g.learner_seats[0]] for g in finished])
    theirs = np.array([g.returns[1 - g.learner_seats[0]] for g in finished])
    prefix = f"eval/{game.id}/vs_random"
    metrics[f"{prefix}/win_rate"] = float((mine > theirs).mean())
    metrics[f"{prefix}/draw_rate"] = float((mine == theirs).mean())
    metrics[f"{prefix}/mean_reward"] = float(mine.mean())
    metrics[f"{prefix}/reward_ci95"] = float(1.96 * mine.std(ddof=1) / np.sqrt(len(mine)))
    metrics[f"{prefix}/invalid_rate"] = float(np.mean([m.invalid for m in moves]))
    if isinstance(game, kuhn_poker.KuhnPoker) and game.rounds == 1:
      rep = kuhn_exploitability(game, policy, tokenizer, template)
      metrics[f"eval/{game.id}/exploitability"] = rep["exploitability"]
      metrics[f"eval/{game.id}/leftover_mass"] = rep["invalid_mass_mean"]
  return metrics


def _game_kwargs(game: core.Game) -> dict:
  return {"rounds": game.rounds} if isinstance(game, kuhn_poker.KuhnPoker) else {}
