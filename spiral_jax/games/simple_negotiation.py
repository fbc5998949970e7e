"""SimpleNegotiation-v1: two seats trade Wood and Gold for 10 actions (SPIRAL.md sections 4, 6).

Rules (the SPIRAL reference's v1 env, two resources):
- Each seat starts with 10 Wood and 10 Gold. Seat 0 values Wood 5, Gold 15; seat 1 values Wood 15,
  Gold 5. Seat 0 moves first and the seats alternate; the game ends after 10 actions, when the seat
  whose inventory value grew more wins (+1/-1); equal gains draw.
- Moves: ``[Offer: 3 Wood -> 2 Gold]`` (give -> receive), ``[Accept]``, ``[Deny]``.
  An offer is legal iff both sides name a positive quantity and the offerer holds what it gives
  (any such offer, not the reference's random handful); a new offer implicitly denies a pending one.
  ``[Accept]`` is legal only while the other seat's offer is pending and the accepter holds what it
  is asked for; it executes the trade. ``[Deny]`` is always legal: it clears a pending offer, and
  with none pending it is a pass.

Action ids (fixed space): 0 = Accept, 1 = Deny, then ``2 + offer_index(give_wood, give_gold,
get_wood, get_gold)`` with each quantity in 0..20 (20 is all of a resource in the game), so
``num_actions = 2 + 21**4``. Canonical offer text lists Wood before Gold and omits zero quantities:
``[Offer: 3 Wood, 2 Gold -> 5 Gold]``.

``render(state, seat)`` reproduces the reference run's observation byte for byte: spiral-rl
0.2.0's own ``spiral/core/envs/SimpleNegotiation/env.py`` (registered as SimpleNegotiation-v1,
max_turns 10) on TextArena 0.6.4, behind TextArena's ``LLMObservationWrapper``
(``spiral.core.envs.make_env(id, True)``), stepped with each move's text and an error allowance of
0 as the reference run steps it: every message so far, each as ``"\\n[GAME] ..."`` or
``"\\n[Player k] ..."``: the seat's rules prompt (its trailing newline leaves a blank line), then
for each move its echo ``[Player k] <move>`` and the env's lines ("Player k made the following offer to
Player j: Offered items: 3 Wood -> Requested items: 2 Gold", "... implicitly denied the previous
offer by making a counter-offer.", "... accepted the trade offer from Player j.", "... denied the
trade offer from Player j.", the invalid-move verdict "Player k lost the game by way of invalid
move. Reason: ..." for the moves the env itself rejects), and after the 10th action the env's
outcome line ("Player k won the game. Reason: Player k won by having a larger gain in inventory
value." or "The game ended in a draw. Reason: Same change in inventory value for all players.
Draw."). Both seats see the same lines after their own prompts. ``tests/reference/
test_observations.py`` compares both seats' observations at every move and at the end with the
reference's. What it deliberately does not reproduce:
- Legal moves (SPIRAL.md section 6): any well-formed offer the offerer can pay for is legal; the
  reference's legal list is three random offers of at most 3 items, chat lines and, only while an
  offer is pending, ``[Accept]``/``[Deny]`` (and two chatty spellings of them). ``[Deny]`` with
  nothing pending is a legal pass here (the reference env ignores it: only its echo line shows,
  as here); ``[Accept]`` with nothing pending forfeits here (its absence from the reference's list
  makes it invalid there too; the env itself ignores it).
- The state keeps action ids, not response text: the echo line and the offer line show the
  canonical move (``[Offer: 3 Wood, 2 Gold -> 5 Gold]``, Wood before Gold, repeats summed), where
  the reference echoes the seat's own spelling and lists the items in the order written; chat
  (free talk, which the reference env echoes and otherwise ignores) is not a move here.
- A forfeit ends the game at once with the configured ``Forfeit`` (the reference env pays -1/0).
  Its text is the reference env's for that move: the echo, then the env's verdict where the env
  rejects the move (an offer the mover cannot pay for or with an empty side, an accept the mover
  cannot pay for); where the env accepts it (``[Accept]`` with nothing pending, an unparseable
  move, shown as spiral-rl's ``INVALID_ACTION`` placeholder ``[\uff5cINVALID_ACTION\uff5c]``, the
  string its evaluator plays then) the echo alone, or with the env's outcome line on the 10th
  action. (In the reference's training the env is not stepped on an invalid move, so no one sees
  this text there.) An offer of more than 20 of a resource is unparseable here (INVALID); the
  reference env takes it as an offer nobody can accept.
- Parsing follows SPIRAL's exact-match rule: after ``spiral_jax.text.actions.extract_action`` the
  move must be exactly ``[Accept]``, ``[Deny]`` (case-sensitive) or one offer token, with no chat
  around it. Inside an offer the reference env's leniency holds: any case of ``Offer`` and of
  resource names, an optional ``I give``/``I offer``, ``,``/``and`` separators, plurals
  ``Woods``/``Golds``, repeated resources summed, trailing punctuation. A quantity of 0 is
  malformed (as in the reference).
- TextArena 0.7.4's v0 (5 random resources) words a deny ``Player k rejected the trade offer.``,
  adds ``Player k made no new trade offer.`` after every non-offer move, leaves a denied offer
  pending and with max_turns=10 plays 11 actions; we keep the reference v1's wording and rules.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from spiral_jax.games import core, registry
from spiral_jax.text import actions as text_actions
from spiral_jax.text import offers

RESOURCES = ("Wood", "Gold")
WOOD, GOLD = 0, 1
START_QUANTITY = 10
VALUES = np.array([[5, 15], [15, 5]], np.int32)  # (seat, resource)
INITIAL_VALUE = START_QUANTITY * VALUES.sum(axis=1)  # i32[2]: 200 for each seat
MAX_QUANTITY = 2 * START_QUANTITY  # all of one resource in the game
NUM_QUANTITIES = MAX_QUANTITY + 1
NUM_OFFERS = NUM_QUANTITIES**4
ACCEPT, DENY, FIRST_OFFER = 0, 1, 2
MAX_MOVES = 10
_RESOURCE_NAMES = {"Wood": WOOD, "Woods": WOOD, "Gold": GOLD, "Golds": GOLD}  # for parse_offer
_NUM_RECEIVES = NUM_QUANTITIES**2 - 1  # receive sides naming at least one item
INVALID_TEXT = "[\uff5cINVALID_ACTION\uff5c]"  # spiral.tinker.renderer.INVALID_ACTION


@struct.dataclass
class NegotiationState(core.State):
  """Shared fields plus the trade state.

  inventory:  i32[2, 2] holdings by (seat, resource), resources ordered (Wood, Gold)
  offer:      i32[4]    the pending offer (give wood, give gold, get wood, get gold), from its
                        maker's side; zeros when none is pending
  offer_from: i32[]     the seat whose offer is pending, or NO_SEAT
  """
  inventory: jax.Array
  offer: jax.Array
  offer_from: jax.Array


def offer_action(give_wood: int, give_gold: int, get_wood: int, get_gold: int) -> int:
  """The action id of an offer; each quantity must lie in 0..20."""
  terms = (give_wood, give_gold, get_wood, get_gold)
  if not all(0 <= q <= MAX_QUANTITY for q in terms):
    raise ValueError(f"offer quantities must lie in 0..{MAX_QUANTITY}, got {terms}")
  return int(_encode(*terms))


def _encode(give_wood: Any, give_gold: Any, get_wood: Any, get_gold: Any) -> Any:
  """Elementwise offer ids of quantities in 0..20 (ints, numpy or jax arrays)."""
  n = NUM_QUANTITIES
  return FIRST_OFFER + ((give_wood * n + give_gold) * n + get_wood) * n + get_gold


def _quantities(action: Any) -> tuple[Any, Any, Any, Any]:
  """Elementwise (give wood, give gold, get wood, get gold) of offer ids."""
  index = action - FIRST_OFFER
  n = NUM_QUANTITIES
  return index // n**3, (index // n**2) % n, (index // n) % n, index % n


def offer_terms(action: Any) -> Any:
  """i32[..., 4] (give wood, give gold, get wood, get gold) of offer ids (numpy or jax arrays)."""
  stack = jnp.stack if isinstance(action, jax.Array) else np.stack
  return stack(_quantities(action), axis=-1)


def _is_legal(xp, state: NegotiationState, action) -> Any:
  """bool[...]: whether each ``action`` is legal; ``xp`` is numpy (host) or jax.numpy (traced).

  Elementwise in ``action``, so the full mask is one fusible expression over an iota.
  """
  seat = state.current_seat
  mine = xp.asarray(state.inventory)[seat]
  offer_is_pending = xp.asarray(state.offer_from) == 1 - seat
  can_accept = offer_is_pending & xp.all(xp.asarray(state.offer)[2:] <= mine)
  give_wood, give_gold, get_wood, get_gold = _quantities(xp.maximum(action, FIRST_OFFER))
  offer_ok = ((give_wood + give_gold > 0) & (get_wood + get_gold > 0)
              & (give_wood <= mine[WOOD]) & (give_gold <= mine[GOLD]))
  in_range = (action >= 0) & (action < FIRST_OFFER + NUM_OFFERS)
  legal = xp.where(action == ACCEPT, can_accept, xp.where(action == DENY, True, offer_ok))
  return in_range & legal & ~xp.asarray(state.terminated)


class SimpleNegotiation(core.Game):
  """Two-resource negotiation; see the module docstring for the rules and the action space."""

  id = "SimpleNegotiation-v1"
  num_actions = FIRST_OFFER + NUM_OFFERS
  max_moves = MAX_MOVES

  # ---- rules (pure, traceable) ----
  def init(self, key: jax.Array) -> NegotiationState:
    """The fixed start: 10 Wood and 10 Gold each, no offer, seat 0 to move (``key`` is unused)."""
    del key  # the game has no chance
    return NegotiationState(
        **core.base_fields(self.max_moves),
        inventory=jnp.full((core.NUM_SEATS, len(RESOURCES)), START_QUANTITY, jnp.int32),
        offer=jnp.zeros((4,), jnp.int32),
        offer_from=jnp.asarray(core.NO_SEAT, jnp.int32))

  def is_legal(self, state: NegotiationState, action: jax.Array) -> jax.Array:
    """bool[]: ``legal_action_mask(state)[action]`` without building the 194k-wide mask."""
    return _is_legal(jnp, state, jnp.asarray(action, jnp.int32))

  def legal_action_mask(self, state: NegotiationState) -> jax.Array:
    """bool[num_actions], elementwise over the ids so that under jit ``mask[action]`` fuses into
    one scalar check instead of a 194k-wide buffer per game."""
    return _is_legal(jnp, state, jnp.arange(self.num_actions, dtype=jnp.int32))

  def _apply(self, state: NegotiationState, action: jax.Array) -> NegotiationState:
    seat = state.current_seat
    other = 1 - seat
    # Accepting moves the pending offer's goods: its maker (``other``) pays give, receives get.
    maker_change = state.offer[2:] - state.offer[:2]
    traded = state.inventory.at[other].add(maker_change).at[seat].add(-maker_change)
    is_offer = action >= FIRST_OFFER
    inventory = jnp.where(action == ACCEPT, traded, state.inventory)
    offer = jnp.where(is_offer, offer_terms(jnp.maximum(action, FIRST_OFFER)), 0).astype(jnp.int32)
    offer_from = jnp.where(is_offer, seat, core.NO_SEAT).astype(jnp.int32)
    done = state.num_moves >= self.max_moves
    gains = (inventory * VALUES).sum(axis=1) - INITIAL_VALUE
    winner_sign = jnp.sign(gains[0] - gains[1]).astype(jnp.float32)
    rewards = jnp.where(done, winner_sign * jnp.array([1.0, -1.0], jnp.float32), 0.0)
    return state.replace(inventory=inventory, offer=offer, offer_from=offer_from,
                         current_seat=other.astype(jnp.int32), terminated=done, rewards=rewards)

  def random_action(self, state: NegotiationState, key: jax.Array) -> jax.Array:
    """i32[]: uniform over the legal ids, by counting them (no 194k-wide mask); DENY once over.

    Legal ids: Accept (when legal), Deny, and every (give, get) pair where give is one of the
    ``(wood+1)(gold+1) - 1`` non-empty bundles the mover holds and get one of 440 non-empty bundles.
    """
    seat = state.current_seat
    mine = state.inventory[seat]
    can_accept = self.is_legal(state, ACCEPT).astype(jnp.int32)
    gives = (mine[WOOD] + 1) * (mine[GOLD] + 1) - 1
    count = can_accept + 1 + gives * _NUM_RECEIVES
    pick = jax.random.randint(key, (), 0, count, dtype=jnp.int32)
    offer_index = jnp.maximum(pick - can_accept - 1, 0)
    give = offer_index // _NUM_RECEIVES + 1  # skip the empty bundle (0, 0)
    get = offer_index % _NUM_RECEIVES + 1
    give_wood, give_gold = give // (mine[GOLD] + 1), give % (mine[GOLD] + 1)
    get_wood, get_gold = get // NUM_QUANTITIES, get % NUM_QUANTITIES
    offer = _encode(give_wood, give_gold, get_wood, get_gold)
    action = jnp.where(pick < can_accept, ACCEPT, jnp.where(pick == can_accept, DENY, offer))
    return jnp.where(state.terminated, DENY, action).astype(jnp.int32)

  # ---- text (host) ----
  def action_text(self, action: int) -> str:
    """``[Accept]``, ``[Deny]`` or ``[Offer: 3 Wood, 2 Gold -> 5 Gold]`` (zeros omitted)."""
    action = int(action)
    if not 0 <= action < self.num_actions:
      raise ValueError(f"action must lie in [0, {self.num_actions}), got {action}")
    if action == ACCEPT:
      return "[Accept]"
    if action == DENY:
      return "[Deny]"
    terms = offer_terms(np.int64(action))
    return f"[Offer: {_bundle_text(terms[:2])} -> {_bundle_text(terms[2:])}]"

  def action_from_text(self, move: str) -> int:
    """The id ``move`` names: ``[Accept]``/``[Deny]`` exactly, or one offer token; else INVALID."""
    if move == "[Accept]":
      return ACCEPT
    if move == "[Deny]":
      return DENY
    terms = parse_offer(move)
    return core.INVALID if terms is None else offer_action(*terms)

  def parse(self, response: str, state: NegotiationState) -> int:
    """The legal id a response names (SPIRAL's ``\\boxed{}`` rules), or INVALID. Never raises."""
    move = text_actions.extract_action(response)
    if not isinstance(move, str):  # the earlier contract's None: no move
      return core.INVALID
    action = self.action_from_text(move)
    if action == core.INVALID or not bool(_is_legal(np, _to_numpy(state), action)):
      return core.INVALID
    return action

  def explain(self, state: NegotiationState, seat: int, action: int) -> str:
    """The seat's values and goods, and what ``action`` (or accepting the pending offer) is worth."""
    values = VALUES[seat]
    wood, gold = (int(q) for q in np.asarray(state.inventory)[seat])
    line = f"I value Wood {values[0]} and Gold {values[1]} and hold {wood} Wood and {gold} Gold."
    if action >= FIRST_OFFER:
      terms = np.asarray(offer_terms(np.int64(action)))
      change = int(((terms[2:] - terms[:2]) * values).sum())
      return f"{line} If accepted, this offer changes my value by {change:+d}."
    if int(state.offer_from) == 1 - seat:
      offer = np.asarray(state.offer)  # (give wood, give gold, get wood, get gold) of its maker
      change = int(((offer[:2] - offer[2:]) * values).sum())
      return f"{line} Accepting the pending offer changes my value by {change:+d}."
    return line

  def expert(self, **kwargs) -> core.Player:
    """A value-seeking negotiator."""
    return heuristic_player(self, **kwargs)

  def render(self, state: NegotiationState, seat: int) -> str:
    """What ``seat`` has seen: the reference env's messages behind TextArena 0.6.4's LLM
    observation wrapper, replayed from the history (see the module docstring)."""
    if seat not in (0, 1):
      raise ValueError(f"seat={seat!r} is not a seat; use 0 or 1")
    state = _to_numpy(state)
    if state.history.ndim != 1:
      raise ValueError(f"state.history has shape {state.history.shape}: render takes one "
                       "unbatched state; slice a batch with jax.tree.map(lambda x: x[i], state)")
    lines = [f"[GAME] {_prompt(seat)}"]
    inventory = np.full((core.NUM_SEATS, len(RESOURCES)), START_QUANTITY, np.int64)
    pending: tuple[int, np.ndarray] | None = None  # (maker, terms)
    for t in range(min(int(state.num_moves), self.max_moves)):
      mover, action = t % core.NUM_SEATS, int(state.history[t])
      known = 0 <= action < self.num_actions
      lines.append(f"[Player {mover}] {self.action_text(action) if known else INVALID_TEXT}")
      verdict = None  # the reason of the reference env's invalid-move verdict, where it has one
      if action == ACCEPT and pending is not None:
        maker, terms = pending
        if (terms[2:] <= inventory[mover]).all():
          inventory[maker] += terms[2:] - terms[:2]
          inventory[mover] -= terms[2:] - terms[:2]
          lines.append(f"[GAME] Player {mover} accepted the trade offer from Player {maker}.")
          pending = None
        else:
          verdict = (f"Player {mover} tried accepting a trade without having the necessary "
                     "resources.")
      elif action == DENY and pending is not None:
        lines.append(f"[GAME] Player {mover} denied the trade offer from Player {pending[0]}.")
        pending = None
      elif known and action >= FIRST_OFFER:
        terms = offer_terms(np.int64(action))
        if not (terms[:2].any() and terms[2:].any()):
          verdict = f"Player {mover} made a trade offer in an incorrect format."
        elif (terms[:2] > inventory[mover]).any():
          verdict = (f"Player {mover} tried to make a trade offer without having the necessary "
                     "resources.")
        else:
          if pending is not None:
            lines.append(f"[GAME] Player {mover} implicitly denied the previous offer by making "
                         "a counter-offer.")
          pending = (mover, terms)
          lines.append(f"[GAME] Player {mover} made the following offer to Player {1 - mover}: "
                       f"Offered items: {_bundle_text(terms[:2])} -> "
                       f"Requested items: {_bundle_text(terms[2:])}")
      if verdict is not None:
        lines.append(f"[GAME] Player {mover} lost the game by way of invalid move. "
                     f"Reason: {verdict}")
        break
      if t == self.max_moves - 1:
        lines.append(_outcome_line(inventory))
    return "".join(f"\n{line}" for line in lines)


def _to_numpy(state: NegotiationState) -> NegotiationState:
  return jax.tree.map(np.asarray, state)


def _bundle_text(quantities) -> str:
  named = [f"{int(q)} {name}" for q, name in zip(quantities, RESOURCES) if q > 0]
  return ", ".join(named) if named else "nothing"


def _prompt(seat: int) -> str:
  """The reference v1 prompt (TextArena's Negotiation wording with Wood and Gold)."""
  resource_lines = "\n\t+ ".join(
      f"{f'[{name}]':<8}  Qty: {START_QUANTITY:<2}   Value: {VALUES[seat, r]}"
      for r, name in enumerate(RESOURCES))
  return (
      f"You are Player {seat} in the Negotiation Game.\n"
      "You have some resources, and your task is to trade such that the total value of your "
      "resources increases.\n"
      f"The resources and associated values you currently have are:\n\t+ {resource_lines}\n"
      "At each turn, you can talk to your opponent or make a trade offer.\n"
      "Use the following special tokens for actions:\n"
      "  - [Offer]: To make a trade offer.\n"
      "    Format: [Offer: Offered Resources -> Requested Resources]\n"
      "    Example: [Offer: 3 Wood -> 2 Gold]\n"
      "  - [Accept]: To accept an incoming offer.\n"
      "  - [Deny]: To deny an incoming offer (default).\n"
      "YOU CAN INCLUDE ADDITIONAL TEXT BEFORE AND/OR AFTER THESE TOKENS.\n"
      "    Example: \"I'm open to negotiation.\"\n"
      f"The game lasts for {MAX_MOVES} turns in total.\n")


def _outcome_line(inventory: np.ndarray) -> str:
  """The reference env's verdict after the last action, from the seats' inventory gains."""
  gains = (inventory * VALUES).sum(axis=1) - INITIAL_VALUE
  if gains[0] == gains[1]:
    return ("[GAME] The game ended in a draw. Reason: Same change in inventory value for all "
            "players. Draw.")
  winner = int(np.argmax(gains))
  return (f"[GAME] Player {winner} won the game. Reason: Player {winner} won by having a larger "
          "gain in inventory value.")


def parse_offer(move: str) -> tuple[int, int, int, int] | None:
  """(give wood, give gold, get wood, get gold) of one offer token such as
  ``[Offer: 2 Gold, 3 Wood -> 1 Wood]``, or None when malformed or a total exceeds 20."""
  return offers.parse_offer(move, _RESOURCE_NAMES, MAX_QUANTITY)


# ---- expert ----
def heuristic_player(game: SimpleNegotiation) -> core.Player:
  """A sensible negotiator, pure JAX ``(state, key) -> i32[]``; it never makes an illegal move.

  The winner is whoever gains more value, and with these values a seat's gain minus the other's is
  20 x (items it received - items it gave). So it accepts an offer that nets it items, or that keeps
  the count and raises its own value; otherwise it proposes ``g`` of the resource it values less for
  ``g + 1`` of the one it values more (g in 1..3, within both seats' holdings), which also raises
  the other seat's value, tempting a value-seeking opponent; when it cannot, it denies.
  """
  def play(state: NegotiationState, key: jax.Array) -> jax.Array:
    seat = state.current_seat
    other = 1 - seat
    values = jnp.asarray(VALUES)
    received = state.offer[:2] - state.offer[2:]  # what accepting the pending offer nets this seat
    own_gain = (received * values[seat]).sum()
    other_gain = -(received * values[other]).sum()
    accept = game.is_legal(state, ACCEPT) & (
        (own_gain > other_gain) | ((own_gain == other_gain) & (own_gain > 0)))
    cheap = jnp.argmin(values[seat])
    dear = 1 - cheap
    most = jnp.minimum(jnp.minimum(3, state.inventory[seat, cheap]),
                       state.inventory[other, dear] - 1)
    g = jax.random.randint(key, (), 1, jnp.maximum(most, 1) + 1, dtype=jnp.int32)
    give = jnp.zeros((2,), jnp.int32).at[cheap].set(g)
    get = jnp.zeros((2,), jnp.int32).at[dear].set(g + 1)
    offer = _encode(give[WOOD], give[GOLD], get[WOOD], get[GOLD])
    return jnp.where(accept, ACCEPT, jnp.where(most >= 1, offer, DENY)).astype(jnp.int32)

  return play


registry.register(SimpleNegotiation.id, SimpleNegotiation)
