"""Exact exploitability of a policy in single-round Kuhn Poker, in OpenSpiel's terms.

The game is OpenSpiel's ``kuhn_poker``: cards J, Q, K = 0, 1, 2, ante 1 each, one bet of 1. Seat 0
moves first. A policy is read at the 12 information sets, keyed by OpenSpiel's information-state
strings (card digit, then the history in ``p`` = pass/check/fold and ``b`` = bet/call):

  first mover:  "0" "1" "2"      (opening)     "0pb" "1pb" "2pb"  (checked, then facing a bet)
  second mover: "0p" "1p" "2p"   (after check) "0b" "1b" "2b"     (facing a bet)

``TabularPolicy`` maps each string to ``f[2]``, the probabilities of OpenSpiel's actions
[pass, bet] (ids 0, 1); facing a bet these are [fold, call]. Our move strings are ``[check]``/
``[bet]`` and ``[fold]``/``[call]`` (``MOVE_NAMES``).

Invalid moves: a language policy can put mass on responses that are no legal move. Here that mass is
``1 - pass - bet`` at each information state (``invalid_mass``). An invalid move forfeits the round:
the offender loses the ante-only pot, -1 chip, and the other seat wins +1 (the same as
``games.core.EVAL_FORFEIT``), even if the offender had more chips in the pot. Exploitability counts
the invalid mass as that loss; best responses never move invalidly. With zero invalid mass every
number here equals OpenSpiel's ``exploitability``/``nash_conv`` for the same action probabilities.

Everything is exact enumeration in numpy: best responses are the maxima over a seat's 64 pure
strategies (6 information sets x 2 moves; enough for a perfect-recall game).
"""
from __future__ import annotations

import itertools
import os
from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np

from spiral_jax import files

TabularPolicy = dict[str, np.ndarray]  # info-state string -> f[2] probabilities of [pass, bet]

PASS, BET = 0, 1  # OpenSpiel's action ids
NUM_CARDS = 3
FIRST_MOVER_INFO_STATES = ("0", "1", "2", "0pb", "1pb", "2pb")
SECOND_MOVER_INFO_STATES = ("0p", "1p", "2p", "0b", "1b", "2b")
INFO_STATES = FIRST_MOVER_INFO_STATES + SECOND_MOVER_INFO_STATES
INFO_STATES_BY_SEAT = (FIRST_MOVER_INFO_STATES, SECOND_MOVER_INFO_STATES)
MOVE_NAMES = {s: ("[fold]", "[call]") if s.endswith("b") else ("[check]", "[bet]")
              for s in INFO_STATES}
FORFEIT_OFFENDER = -1.0  # chips of a seat that moves invalidly; the other seat gets +1
EQUILIBRIUM_VALUE = -1.0 / 18.0  # the first mover's value at every Nash equilibrium
BARE_RESPONSE_TEMPLATE = "\\boxed{{{move}}}"
_SUM_TOLERANCE = 1e-6
_ROUNDING = 1e-12  # leftover mass below this is float rounding of rows that sum to 1, not invalid


# ---- policies ----
def uniform_policy() -> TabularPolicy:
  """Pass and bet with probability 1/2 at every information state."""
  return {s: np.array([0.5, 0.5]) for s in INFO_STATES}


def equilibrium_policy(alpha: float) -> TabularPolicy:
  """Kuhn's one-parameter family of Nash equilibria (every one has first-mover value -1/18).

  The first mover bets a Jack with probability ``alpha``, a King with ``3 alpha``, never a Queen,
  and after check-bet calls with a Queen with ``alpha + 1/3``. The second mover bets or calls with a
  King, bluffs a Jack after a check with 1/3 and calls with a Queen with 1/3.
  """
  is_number = isinstance(alpha, (int, float, np.integer, np.floating))
  if not is_number or not 0.0 <= alpha <= 1.0 / 3.0 + 1e-12:
    raise ValueError(f"alpha must be a number in [0, 1/3] (the first mover's Jack bet probability "
                     f"in Kuhn's equilibrium family); got {alpha!r}")
  alpha = min(float(alpha), 1.0 / 3.0)
  bet = {"0": alpha, "1": 0.0, "2": 3 * alpha, "0pb": 0.0, "1pb": alpha + 1 / 3, "2pb": 1.0,
         "0p": 1 / 3, "1p": 0.0, "2p": 1.0, "0b": 0.0, "1b": 1 / 3, "2b": 1.0}
  return {s: np.array([1.0 - bet[s], bet[s]]) for s in INFO_STATES}


def invalid_mass(policy: Mapping[str, np.ndarray]) -> dict[str, float]:
  """The forfeiting mass ``1 - pass - bet`` at each of the 12 information states."""
  return _leftover(policy)


# ---- values ----
def expected_value(policy_first: Mapping[str, np.ndarray],
                   policy_second: Mapping[str, np.ndarray]) -> float:
  """The first mover's chips expected when seat 0 plays ``policy_first``, seat 1 ``policy_second``.

  Each policy needs (at least) its own seat's six information states.
  """
  return float(_first_mover_value(_seat_array(policy_first, 0), _seat_array(policy_second, 1)))


def best_response_value(policy: Mapping[str, np.ndarray], seat: int) -> float:
  """The most chips ``seat`` can expect against ``policy`` playing the other seat."""
  if seat not in (0, 1):
    raise ValueError(f"seat must be 0 (first mover) or 1 (second mover); got {seat!r}")
  if seat == 0:
    return float(np.max(_first_mover_value(_PURE_STRATEGIES, _seat_array(policy, 1))))
  return float(np.max(-_first_mover_value(_seat_array(policy, 0), _PURE_STRATEGIES)))


def nash_conv(policy: Mapping[str, np.ndarray]) -> float:
  """Sum over seats of what a best response gains over ``policy`` itself (OpenSpiel's NashConv)."""
  # Forfeits are zero-sum too, so the on-policy values cancel and NashConv is the sum of the BRs.
  return best_response_value(policy, 0) + best_response_value(policy, 1)


def exploitability(policy: Mapping[str, np.ndarray]) -> float:
  """NashConv / 2, as OpenSpiel's ``exploitability``: 0.458333 for uniform play, 0 at equilibria."""
  return nash_conv(policy) / 2.0


# ---- estimating a language policy's distributions ----
class Estimate(NamedTuple):
  """A policy read off a language model, with the mass it put outside the legal moves."""
  policy: TabularPolicy
  invalid_mass: dict[str, float]


def bare_responses(template: str = BARE_RESPONSE_TEMPLATE) -> dict[str, tuple[str, str]]:
  """The responses that are a bare move, per info state: (pass response, bet response)."""
  if "{move}" not in template:
    raise ValueError(f"template must contain '{{move}}' where the move string goes; "
                     f"got {template!r}")
  return {s: tuple(template.format(move=m) for m in MOVE_NAMES[s]) for s in INFO_STATES}


def distributions_from_scores(
    score_fn: Callable[[list[str], list[str]], np.ndarray],
    prompts_by_infoset: Mapping[str, str],
    moves: Mapping[str, Sequence[str]] | None = None) -> Estimate:
  """The policy's exact [pass, bet] distributions from the log-probabilities of bare-move responses.

  ``score_fn(prompts, responses)`` returns ``f[n]``, the total log-probability of each full response
  given its prompt (one call with all 24 pairs). ``moves[s]`` is the (pass, bet) response text at
  info state ``s``; the default is ``bare_responses()``. The distribution is the two probabilities
  normalised, with no invalid mass, which is exact when the policy only ever emits bare moves.
  ``invalid_mass`` reports the mass left over, ``1 - p(pass) - p(bet)``: mass on other responses
  (reasoning first, other wordings), which is not necessarily invalid and is not in the policy.
  """
  prompts = _check_prompts(prompts_by_infoset)
  moves = bare_responses() if moves is None else moves
  responses = []
  for s in INFO_STATES:
    pair = moves.get(s) if isinstance(moves, Mapping) else None
    if pair is None or len(pair) != 2 or not all(isinstance(r, str) for r in pair):
      raise ValueError(f"moves[{s!r}] must be two response strings (pass, bet), e.g. "
                       f"{bare_responses()[s]}; got {pair!r}")
    responses.extend(pair)
  flat_prompts = [p for p in prompts for _ in range(2)]
  log_probs = np.asarray(score_fn(flat_prompts, responses), dtype=np.float64)
  if log_probs.shape != (len(responses),):
    raise ValueError(f"score_fn must return f[{len(responses)}] (one log-probability per prompt "
                     f"and response); got shape {log_probs.shape}")
  if np.any(np.isnan(log_probs)) or np.any(log_probs > _SUM_TOLERANCE):
    raise ValueError(f"score_fn must return log-probabilities (<= 0, not NaN); got {log_probs}")
  policy, leftover = {}, {}
  for s, pair in zip(INFO_STATES, log_probs.reshape(-1, 2)):
    top = np.max(pair)
    if not np.isfinite(top):
      raise ValueError(f"both moves at info state {s!r} have probability 0; cannot normalise")
    total = float(np.exp(top) * np.sum(np.exp(pair - top)))
    if total > 1.0 + _SUM_TOLERANCE:
      raise ValueError(f"the move probabilities at info state {s!r} sum to {total} > 1: score_fn "
                       "must return total log-probabilities of whole responses")
    policy[s] = np.exp(pair - top) / np.sum(np.exp(pair - top))
    leftover[s] = max(0.0, 1.0 - total)
  return Estimate(policy, leftover)


def distributions_from_samples(
    sample_fn: Callable[[list[str], int], Sequence[Sequence[str]]],
    prompts_by_infoset: Mapping[str, str],
    parse_fn: Callable[[str, str], str | None],
    k: int) -> Estimate:
  """The policy's distributions estimated from ``k`` sampled responses per information state.

  ``sample_fn(prompts, k)`` returns ``k`` response texts per prompt; ``parse_fn(info_state, text)``
  returns ``"pass"``, ``"bet"`` or None (no legal move). The policy is the counts over ``k``; the
  None fraction is its invalid mass, which exploitability counts as a forfeit.
  """
  if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
    raise ValueError(f"k (samples per information state) must be a positive int; got {k!r}")
  prompts = _check_prompts(prompts_by_infoset)
  samples = sample_fn(prompts, int(k))
  if len(samples) != len(prompts):
    raise ValueError(f"sample_fn must return one list of responses per prompt ({len(prompts)}); "
                     f"got {len(samples)}")
  policy, invalid = {}, {}
  for s, texts in zip(INFO_STATES, samples):
    if len(texts) != k:
      raise ValueError(f"sample_fn returned {len(texts)} responses for info state {s!r}; "
                       f"expected k = {k}")
    counts = {"pass": 0, "bet": 0, None: 0}
    for text in texts:
      move = parse_fn(s, text)
      if move not in counts:
        raise ValueError(f"parse_fn must return 'pass', 'bet' or None; got {move!r} at info "
                         f"state {s!r}")
      counts[move] += 1
    policy[s] = np.array([counts["pass"], counts["bet"]], dtype=np.float64) / k
    invalid[s] = counts[None] / k
  return Estimate(policy, invalid)


# ---- reporting ----
def report(policy: Mapping[str, np.ndarray],
           invalid_mass: Mapping[str, float] | None = None) -> dict:
  """A JSON-ready summary: exploitability, NashConv, best responses and the 12 distributions.

  ``distributions`` holds [pass, bet] per OpenSpiel info-state string, so OpenSpiel can recompute
  the number. ``invalid_mass`` defaults to the policy's own leftover mass, which the exploitability
  counts as a forfeit. To report a score estimate, pass its normalised policy and its
  ``invalid_mass``: that mass is then reported only (``invalid_mass_in_exploitability`` false).
  """
  own_invalid = _leftover(policy)
  if invalid_mass is None:
    reported, counted = own_invalid, True
  else:
    if any(v > _SUM_TOLERANCE for v in own_invalid.values()):
      raise ValueError("pass invalid_mass only with a policy whose pass + bet sum to 1 (a score "
                       "estimate's normalised policy); this policy carries its own invalid mass")
    _check_keys(invalid_mass, "invalid_mass")
    reported, counted = {s: float(invalid_mass[s]) for s in INFO_STATES}, False
  br = [best_response_value(policy, 0), best_response_value(policy, 1)]
  on_policy = expected_value(policy, policy)
  return {
      "game": "kuhn_poker (OpenSpiel, single round)",
      "exploitability": (br[0] + br[1]) / 2.0,
      "nash_conv": br[0] + br[1],
      "best_response_values": br,
      "on_policy_values": [on_policy, -on_policy],
      "equilibrium_value_first_mover": EQUILIBRIUM_VALUE,
      "actions": ["pass", "bet"],
      "distributions": {s: [float(p) for p in _outcomes(policy, s)[:2]] for s in INFO_STATES},
      "invalid_mass": reported,
      "invalid_mass_mean": float(np.mean(list(reported.values()))),
      "invalid_mass_in_exploitability": counted,
      "forfeit": {"offender": FORFEIT_OFFENDER, "other": -FORFEIT_OFFENDER},
  }


def write_json(path: str | os.PathLike, report: Mapping) -> None:
  """Write ``report`` as indented JSON, creating parent folders; replaces the file atomically."""
  files.write_json(path, report, indent=2)


# ---- internals ----
def _check_keys(mapping: Mapping, name: str, required: Sequence[str] = INFO_STATES) -> None:
  if not isinstance(mapping, Mapping):
    raise TypeError(f"{name} must be a dict keyed by OpenSpiel info-state strings; got "
                    f"{type(mapping).__name__}")
  unknown = sorted(set(mapping) - set(INFO_STATES))
  missing = [s for s in required if s not in mapping]
  if unknown or missing:
    raise ValueError(f"{name} has unknown keys {unknown} and lacks {missing}; keys must be "
                     f"OpenSpiel's Kuhn info-state strings {list(INFO_STATES)}")


def _check_prompts(prompts_by_infoset: Mapping[str, str]) -> list[str]:
  _check_keys(prompts_by_infoset, "prompts_by_infoset")
  prompts = [prompts_by_infoset[s] for s in INFO_STATES]
  if not all(isinstance(p, str) for p in prompts):
    raise TypeError("prompts_by_infoset values must be prompt strings")
  return prompts


def _leftover(policy: Mapping[str, np.ndarray]) -> dict[str, float]:
  _check_keys(policy, "policy")
  return {s: float(_outcomes(policy, s)[2]) for s in INFO_STATES}


def _outcomes(policy: Mapping[str, np.ndarray], info_state: str) -> np.ndarray:
  """f[3] probabilities of (pass, bet, invalid) at one info state, validated."""
  probs = np.asarray(policy[info_state], dtype=np.float64)
  if probs.shape != (2,) or not np.all(np.isfinite(probs)) or np.any(probs < 0):
    raise ValueError(f"policy[{info_state!r}] must be f[2] non-negative probabilities of "
                     f"[pass, bet]; got {policy[info_state]!r}")
  total = float(probs.sum())
  if total > 1.0 + _SUM_TOLERANCE:
    raise ValueError(f"policy[{info_state!r}] sums to {total} > 1; its leftover mass below 1 is "
                     "the invalid mass, so pass + bet must be <= 1")
  leftover = 1.0 - total
  return np.array([probs[0], probs[1], leftover if leftover > _ROUNDING else 0.0])


def _seat_array(policy: Mapping[str, np.ndarray], seat: int) -> np.ndarray:
  """f[3 cards, 2 nodes, 3 outcomes]; node 0 is the seat's first decision, node 1 facing a bet."""
  states = INFO_STATES_BY_SEAT[seat]
  _check_keys(policy, "policy", states)
  rows = np.stack([_outcomes(policy, s) for s in states])  # f[6, 3], in INFO_STATES_BY_SEAT order
  return rows.reshape(2, NUM_CARDS, 3).transpose(1, 0, 2)


def _first_mover_value(first: np.ndarray, second: np.ndarray) -> np.ndarray:
  """Seat 0's expected chips; ``first``/``second`` are f[..., 3, 2, 3] seat arrays, broadcast."""
  lose = FORFEIT_OFFENDER  # the offender's chips; the other seat gets -lose
  value = 0.0
  for card0, card1 in itertools.permutations(range(NUM_CARDS), 2):
    win = 1.0 if card0 > card1 else -1.0  # showdown of the antes; a called bet doubles it
    a, b = first[..., card0, :, :], second[..., card1, :, :]
    after_check_bet = a[..., 1, PASS] * -1.0 + a[..., 1, BET] * 2 * win + a[..., 1, 2] * lose
    after_check = (b[..., 0, PASS] * win + b[..., 0, BET] * after_check_bet + b[..., 0, 2] * -lose)
    after_bet = b[..., 1, PASS] * 1.0 + b[..., 1, BET] * 2 * win + b[..., 1, 2] * -lose
    value = value + a[..., 0, PASS] * after_check + a[..., 0, BET] * after_bet + a[..., 0, 2] * lose
  return value / (NUM_CARDS * (NUM_CARDS - 1))


def _pure_strategies() -> np.ndarray:
  """f[64, 3, 2, 3]: every pure strategy of one seat, as one-hot outcome probabilities."""
  bets = np.array(list(itertools.product((0, 1), repeat=2 * NUM_CARDS)))  # i[64, 6]
  one_hot = np.eye(3)[bets]  # f[64, 6, 3], never the invalid outcome
  return one_hot.reshape(-1, 2, NUM_CARDS, 3).transpose(0, 2, 1, 3)


_PURE_STRATEGIES = _pure_strategies()
