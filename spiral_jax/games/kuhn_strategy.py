"""Single-round Kuhn Poker strategies as tables keyed by OpenSpiel's 12 information-state strings
(the card digit, then the round's history in ``p``/``b``), with ``(pass, bet)`` probabilities: the
Nash family, and the ``[card, history]`` bet probabilities a tabular player samples from.
Plain numbers, no game state: ``kuhn_poker`` plays them, ``eval/kuhn_exact`` scores them.
"""
from __future__ import annotations

import numbers
from fractions import Fraction
from typing import Mapping

import numpy as np

NUM_CARDS = 3  # J, Q, K
ROUND_HISTORIES = ("", "p", "b", "pb")  # a round's histories before a move, OpenSpiel's letters


def equilibrium_table(alpha: float = 1 / 6) -> dict[str, tuple]:
  """The one-parameter Nash family of single-round Kuhn Poker, per information set.

  Keys are OpenSpiel's 12 information-state strings (card digit + history); values are the
  probabilities ``(pass, bet)`` in OpenSpiel's action order (pass = check/fold, bet = bet/call).
  The first mover bets J with ``alpha``, checks Q then calls a bet with ``alpha + 1/3``, bets K
  with ``3 * alpha`` (and calls with it); the second mover bets K and calls with K, calls Q with
  1/3 and checks it, bets J with 1/3 after a check and folds it. The numbers have ``alpha``'s
  type, so a ``Fraction`` gives exact arithmetic. ``alpha`` must be in [0, 1/3].
  """
  _check_alpha(alpha)
  third = alpha * 0 + Fraction(1, 3)  # a float for float alpha, a Fraction for a Fraction
  bet = {
      "0": alpha, "0p": third, "0b": 0, "0pb": 0,
      "1": 0, "1p": 0, "1b": third, "1pb": alpha + third,
      "2": 3 * alpha, "2p": 1, "2b": 1, "2pb": 1,
  }
  return {info_state: (1 - p, p) for info_state, p in bet.items()}


def _check_alpha(alpha) -> None:
  if (isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or
      not 0 <= alpha <= Fraction(1, 3)):
    raise ValueError(f"alpha={alpha!r} must be a number in [0, 1/3] (the first mover's J-bet "
                     "probability of the Nash family; 1/6 is the default)")


def bet_probabilities(table: Mapping[str, tuple]) -> np.ndarray:
  """f32[3, 4]: ``[card, h]`` = P(bet or call) at card and ``ROUND_HISTORIES[h]``, from a table
  keyed by OpenSpiel's information-state strings with ``(pass, bet)`` probabilities."""
  probs = np.zeros((NUM_CARDS, len(ROUND_HISTORIES)), np.float64)
  for card in range(NUM_CARDS):
    for h, history in enumerate(ROUND_HISTORIES):
      key = f"{card}{history}"
      if key not in table:
        raise ValueError(f"the policy table has no entry for information state {key!r}; it "
                         "needs all 12 of OpenSpiel's kuhn_poker information states")
      p_pass, p_bet = (float(p) for p in table[key])
      if min(p_pass, p_bet) < 0 or abs(p_pass + p_bet - 1) > 1e-6:
        raise ValueError(f"table[{key!r}]={table[key]!r} must be (pass, bet) probabilities "
                         "that sum to 1")
      probs[card, h] = p_bet
  return probs.astype(np.float32)
