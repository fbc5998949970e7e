"""The policy of a text model at the 12 information sets of single-round Kuhn Poker, and its exact
exploitability (``eval/kuhn_exact``): read from the log-probs of scripted answers (scored), or
estimated from sampled responses parsed by the game (sampled).
"""
from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import numpy as np

from spiral_jax.eval import kuhn_exact
from spiral_jax.games import core, kuhn_poker
from spiral_jax.model.policy import left_pad
from spiral_jax.play import agents
from spiral_jax.rl import sft
from spiral_jax.text import templates

_KUHN_MOVES = {"[check]": "pass", "[fold]": "pass", "[bet]": "bet", "[call]": "bet"}


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
  answer up to the move word (``The opponent bet; I have J \\boxed{[call``, see
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


def sampled_kuhn_exploitability(game: kuhn_poker.KuhnPoker, agent: agents.TextAgent, k: int,
                                key: jax.Array, template: str = "qwen",
                                rows_per_call: int = 0) -> dict:
  """The exploitability of the policy estimated from ``k`` sampled responses per information set.

  Each response is parsed by the game (``Game.parse``): check/fold count as pass, bet/call as bet,
  anything else is invalid mass, which the exploitability counts as a forfeit (-1 chip).
  ``rows_per_call`` bounds the sampler batch (0: all 12 k responses in one call).
  """
  infosets = kuhn_infosets(game, agent.template or template)
  tokenizer = agent.tokenizer

  def sample(prompts: list[str], n: int) -> list[list[str]]:
    rows = [ids for ids in tokenizer.encode_batch(prompts) for _ in range(n)]
    step = rows_per_call or len(rows)
    texts: list[str] = []
    for i, start in enumerate(range(0, len(rows), step)):
      seed = int(jax.random.randint(jax.random.fold_in(key, i), (), 0, 2**31 - 1))
      texts += list(agent.sample_fn(rows[start:start + step], seed)[0])
    return [texts[p * n:(p + 1) * n] for p in range(len(prompts))]

  def parse(info_state: str, text: str) -> str | None:
    action = game.parse(text, infosets[info_state].state)
    return None if action == core.INVALID else _KUHN_MOVES[game.action_text(action)]

  estimate = kuhn_exact.distributions_from_samples(
      sample, {s: info.prompt for s, info in infosets.items()}, parse, k)
  result = kuhn_exact.report(estimate.policy)
  result["samples_per_info_state"] = int(k)
  return result


def is_single_round_kuhn(game: core.Game) -> bool:
  return isinstance(game, kuhn_poker.KuhnPoker) and game.rounds == 1
