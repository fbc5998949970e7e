"""Periodic evaluation during training: games against the random player, and for single-round
Kuhn Poker the policy's exact exploitability (scored bare-move responses, ``eval/kuhn_exact``)."""
from __future__ import annotations

import itertools
from typing import NamedTuple, Sequence

import jax
import numpy as np

from spiral_jax.eval import kuhn_exact
from spiral_jax.games import core, experts, kuhn_poker
from spiral_jax.model.policy import left_pad
from spiral_jax.rl import rollout, sft
from spiral_jax.text import templates


class Infoset(NamedTuple):
  state: kuhn_poker.KuhnState  # one state of the set, with the seat to move
  seat: int
  prompt: str


def kuhn_infosets(game: kuhn_poker.KuhnPoker, template: str = "qwen") -> dict[str, Infoset]:
  """The 12 OpenSpiel information sets of single-round Kuhn Poker, keyed by their strings."""
  found: dict[str, Infoset] = {}
  for cards in itertools.permutations(range(3), 2):
    for history in ((), (0,), (1,), (0, 1)):
      state = game.init_with_cards(np.array([cards], np.int32))
      for a in history:
        state = game.step(state, a)
      seat = int(state.current_seat)
      text = templates.spiral_prompt(game.render(state, seat), template)
      info = found.setdefault(game.info_state(state, seat), Infoset(state, seat, text))
      if info.prompt != text:
        raise AssertionError(f"two prompts for information set {game.info_state(state, seat)!r}: "
                             "the render leaks state")
  return found


def kuhn_prompts(game: kuhn_poker.KuhnPoker, template: str = "qwen") -> dict[str, str]:
  """The prompt of each of the 12 OpenSpiel information sets of single-round Kuhn Poker."""
  return {key: info.prompt for key, info in kuhn_infosets(game, template).items()}


def make_score_fn(policy, tokenizer, end_of_turn: bool = True):
  """``score_fn(prompts, responses) -> f[n]``: the total log-prob of each response given its
  prompt (with the end-of-turn token after it when ``end_of_turn``)."""

  def score(prompts: list[str], responses: list[str]) -> np.ndarray:
    lengths, rows = [], []
    for p, r in zip(prompts, responses):
      response = tokenizer.encode(r) + ([tokenizer.eos_id] if end_of_turn else [])
      rows.append(tokenizer.encode(p) + response)
      lengths.append(len(response))
    tokens, mask = left_pad(rows, tokenizer.pad_id)  # responses end every row
    lp = np.asarray(policy.token_logprobs(tokens, mask))
    return np.array([lp[i, lp.shape[1] - n:].sum() for i, n in enumerate(lengths)])

  return score


def kuhn_exploitability(game, policy, tokenizer, template: str = "qwen",
                        whole_response: bool = False) -> dict:
  """The exact exploitability of the policy in single-round Kuhn Poker (``eval/kuhn_exact``).

  The policy's move at each of the 12 information sets is read from the log-probs of the scripted
  answer up to the move word (``I have J; the opponent bet. \boxed{[call``, see
  ``sft.response_text``) for each legal move, normalised: the decision itself, given the format
  the warm-start taught, whatever the model writes after the move word (a response that goes on to
  close the box parses to that move). ``invalid_mass_mean`` reports the mass outside those
  answers. ``whole_response=True`` scores the complete responses + end of turn instead.
  """
  responses = {}
  infosets = kuhn_infosets(game, template)
  for s, info in infosets.items():
    texts = [sft.response_text(game, game.action_from_text(m), info.state, info.seat)
             for m in kuhn_exact.MOVE_NAMES[s]]
    responses[s] = tuple(t if whole_response else t[:-len("]}")] for t in texts)
  estimate = kuhn_exact.distributions_from_scores(
      make_score_fn(policy, tokenizer, end_of_turn=whole_response),
      {s: info.prompt for s, info in infosets.items()}, responses)
  return kuhn_exact.report(estimate.policy, estimate.invalid_mass)


def random_opponent_runners(games: Sequence[core.Game]) -> list[rollout.GameRunner]:
  """Each game against the random player; build once, reuse (jitted). Make the games with
  ``core.EVAL_FORFEIT`` (``GameSpec.make(EVAL_FORFEIT)``) to score forfeits as losses."""
  return [rollout.GameRunner(game, experts.random_player(game)) for game in games]


def evaluate(runners: Sequence[rollout.GameRunner], sample_fn, tokenizer, policy, key, *,
             num_games: int, template: str = "qwen",
             max_prompt_tokens: int = 1 << 20) -> dict[str, float]:
  """``eval/...`` metrics: learner vs random per game (``random_opponent_runners``), and the exact
  exploitability for single-round Kuhn Poker."""
  metrics: dict[str, float] = {}
  for k, runner in enumerate(runners):
    game = runner.game
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
      metrics[f"eval/{game.id}/off_format_mass"] = rep["invalid_mass_mean"]
  return metrics

