"""SimpleNegotiation-v1: rules, a differential test against TextArena's engine, parsing, players.

The observation text is the reference run's (spiral-rl 0.2.0's v1 env on TextArena 0.6.4 behind
``LLMObservationWrapper``), compared byte for byte in ``tests/reference/test_observations.py``;
the tests here on our text are checks of that wording.

The rules differential's reference is TextArena 0.7.4's ``SimpleNegotiationEnv`` set up as the
SPIRAL reference's v1 did (two resources, 10 Wood and 10 Gold each, fixed values), with invalid
moves ending the game and SPIRAL's legal-action rule on top (``[Accept]`` with no offer pending is
not a legal action there). It compares inventories, endings and rewards move for move, where 0.7.4
differs on purpose:
- 0.7.4 leaves a denied offer on the table (its maker could then accept it himself); the reference
  v1 and we clear it, and so does the test env;
- 0.7.4 with max_turns=10 plays 11 actions (it checks the limit before counting the move); the
  reference v1 and we play 10, so the test env's limit is lowered by one after its prompt is made;
- 0.7.4 parses offers more loosely (``findall``: ``[Offer 3 Wood -> 2 Gold]`` or
  ``3 Wood please``) and does not read ``Golds``; we parse as the reference v1 does.
"""
import collections

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
import textarena as ta
from hypothesis import HealthCheck, given, settings
from textarena.envs.SimpleNegotiation.env import SimpleNegotiationEnv

from spiral_jax.games import core, registry
from spiral_jax.games import simple_negotiation as sn

GAME = sn.SimpleNegotiation()
EVAL_GAME = sn.SimpleNegotiation(forfeit=core.EVAL_FORFEIT)
STEP = jax.jit(GAME.step)
EVAL_STEP = jax.jit(EVAL_GAME.step)
MASK = jax.jit(GAME.legal_action_mask)
IS_LEGAL = jax.jit(GAME.is_legal)
RANDOM_ACTION = jax.jit(GAME.random_action)
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _play(moves, game_step=STEP):
  state = GAME.init(jax.random.key(0))
  for move in moves:
    state = game_step(state, move)
  return state


def _state(seat, wood, gold, offer=None):
  """A mid-game state: seat 0 holds (wood, gold), seat 1 the rest; ``offer`` from 1 - seat."""
  state = GAME.init(jax.random.key(0))
  inventory = jnp.array([[wood, gold], [20 - wood, 20 - gold]], jnp.int32)
  pending = offer is not None
  return state.replace(
      current_seat=jnp.asarray(seat, jnp.int32), inventory=inventory,
      offer=jnp.asarray(offer if pending else (0, 0, 0, 0), jnp.int32),
      offer_from=jnp.asarray(1 - seat if pending else core.NO_SEAT, jnp.int32),
      num_moves=jnp.asarray(2 + seat, jnp.int32))


def _boxed(move):
  return f"Let me think. \\boxed{{{move}}}"


def _legal_count(state):
  """The number of legal ids, counted the slow way from the mask."""
  return int(np.asarray(MASK(state)).sum())


# ---------------------------------------------------------------- rules
def test_registered_with_the_reference_id():
  game = registry.make("SimpleNegotiation-v1", forfeit=core.EVAL_FORFEIT)
  assert isinstance(game, sn.SimpleNegotiation) and game.forfeit == core.EVAL_FORFEIT
  assert game.num_actions == 2 + 21**4


def test_an_accepted_offer_moves_the_goods():
  offer = sn.offer_action(3, 0, 0, 2)  # seat 0 gives 3 Wood for 2 Gold
  state = _play([offer])
  assert int(state.offer_from) == 0 and np.asarray(state.offer).tolist() == [3, 0, 0, 2]
  state = _play([offer, sn.ACCEPT])
  assert np.asarray(state.inventory).tolist() == [[7, 12], [13, 8]]
  assert int(state.offer_from) == core.NO_SEAT and not bool(state.terminated)
  two_sided = sn.offer_action(2, 1, 1, 4)
  state = _play([two_sided, sn.ACCEPT])
  assert np.asarray(state.inventory).tolist() == [[9, 13], [11, 7]]


def test_a_counter_offer_implicitly_denies_the_pending_one():
  first, counter = sn.offer_action(3, 0, 0, 2), sn.offer_action(0, 1, 4, 0)
  state = _play([first, counter])
  assert int(state.offer_from) == 1 and np.asarray(state.offer).tolist() == [0, 1, 4, 0]
  state = STEP(state, sn.ACCEPT)  # seat 0 accepts the counter-offer, not its own first offer
  assert np.asarray(state.inventory).tolist() == [[6, 11], [14, 9]]


def test_deny_clears_an_offer_and_is_a_pass_without_one():
  state = _play([sn.offer_action(1, 0, 0, 1), sn.DENY])
  assert int(state.offer_from) == core.NO_SEAT and int(state.forfeited_by) == core.NO_SEAT
  state = _play([sn.DENY, sn.DENY])
  assert int(state.num_moves) == 2 and not bool(state.terminated)
  assert np.asarray(state.inventory).tolist() == [[10, 10], [10, 10]]


@pytest.mark.parametrize("game_step,rewards", [(STEP, [0.5, -1.5]), (EVAL_STEP, [1.0, -1.0])])
def test_accepting_what_you_cannot_pay_forfeits(game_step, rewards):
  state = _play([sn.offer_action(1, 0, 0, 11)], game_step)  # asks 11 Gold; seat 1 holds 10
  assert not bool(IS_LEGAL(state, sn.ACCEPT)) and not bool(MASK(state)[sn.ACCEPT])
  assert GAME.parse(_boxed("[Accept]"), state) == core.INVALID
  state = game_step(state, sn.ACCEPT)
  assert bool(state.terminated) and int(state.forfeited_by) == 1
  assert np.asarray(state.rewards).tolist() == rewards
  assert np.asarray(state.inventory).tolist() == [[10, 10], [10, 10]]


@pytest.mark.parametrize("game_step,rewards", [(STEP, [-1.5, 0.5]), (EVAL_STEP, [-1.0, 1.0])])
def test_offering_what_you_do_not_hold_forfeits(game_step, rewards):
  unpaid = sn.offer_action(11, 0, 0, 1)
  state = _play([], game_step)
  assert not bool(MASK(state)[unpaid]) and bool(MASK(state)[sn.offer_action(10, 10, 0, 1)])
  assert GAME.parse(_boxed("[Offer: 11 Wood -> 1 Gold]"), state) == core.INVALID
  state = game_step(state, unpaid)
  assert int(state.forfeited_by) == 0 and np.asarray(state.rewards).tolist() == rewards


def test_accept_with_nothing_pending_and_empty_offers_are_illegal():
  state = _play([])
  for move in (sn.ACCEPT, sn.offer_action(0, 0, 0, 1), sn.offer_action(1, 0, 0, 0)):
    assert not bool(MASK(state)[move]) and not bool(IS_LEGAL(state, move))
  assert int(_play([sn.ACCEPT]).forfeited_by) == 0
  # A seat cannot accept its own offer: after a deny nothing is pending for the offerer.
  assert not bool(IS_LEGAL(_play([sn.offer_action(1, 0, 0, 1), sn.DENY]), sn.ACCEPT))


@pytest.mark.parametrize("move", [core.INVALID, GAME.num_actions, -7])
def test_unparseable_and_out_of_range_moves_forfeit(move):
  state = _play([sn.DENY, move])
  assert int(state.forfeited_by) == 1 and np.asarray(state.rewards).tolist() == [0.5, -1.5]


def test_the_game_ends_after_ten_actions_with_the_bigger_gain_winning():
  # Seat 0 gives 1 Wood (5 to it, 15 to seat 1) for 3 Gold (45 to it, 15 to seat 1): +40 vs 0.
  moves = [sn.offer_action(1, 0, 0, 3), sn.ACCEPT] + [sn.DENY] * 7
  state = _play(moves)
  assert not bool(state.terminated) and np.asarray(state.rewards).tolist() == [0, 0]
  state = STEP(state, sn.DENY)
  assert bool(state.terminated) and int(state.num_moves) == 10
  assert np.asarray(state.rewards).tolist() == [1.0, -1.0]
  # Seat 1 takes the same deal from the other side.
  state = _play([sn.DENY, sn.offer_action(0, 1, 3, 0), sn.ACCEPT] + [sn.DENY] * 7)
  assert np.asarray(state.rewards).tolist() == [-1.0, 1.0]


def test_equal_gains_draw():
  # 1 Wood for 1 Gold: +10 for each seat.
  state = _play([sn.offer_action(1, 0, 0, 1), sn.ACCEPT] + [sn.DENY] * 8)
  assert bool(state.terminated) and np.asarray(state.rewards).tolist() == [0.0, 0.0]
  state = _play([sn.DENY] * 10)
  assert bool(state.terminated) and np.asarray(state.rewards).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("ending", [[sn.DENY] * 10, [sn.DENY, sn.ACCEPT]])
def test_a_finished_game_is_absorbing(ending):
  state = _play(ending)
  assert bool(state.terminated) and not np.asarray(MASK(state)).any()
  for move in (sn.DENY, sn.offer_action(1, 0, 0, 1), core.INVALID):
    after = STEP(state, move)
    for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(state)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert GAME.parse(_boxed("[Deny]"), state) == core.INVALID


def test_one_id_checks_stay_scalar_at_batch_16384():
  """core.step reads ``legal_action_mask(state)[action]``: it must not build a 194k row per game."""
  batch = 16384
  states = jax.vmap(GAME.init)(jax.random.split(jax.random.key(0), batch))
  actions = jnp.zeros((batch,), jnp.int32)
  keys = jax.random.split(jax.random.key(1), batch)
  for fn, args in ((GAME.step, (states, actions)), (GAME.random_action, (states, keys))):
    compiled = jax.jit(jax.vmap(fn)).lower(*args).compile()
    assert compiled.memory_analysis().temp_size_in_bytes < 64 * 2**20


# ---------------------------------------------------------------- text
def test_render_shows_the_prompt_and_the_history():
  state = _play([sn.offer_action(3, 0, 0, 2), sn.offer_action(0, 1, 2, 0), sn.ACCEPT,
                 sn.offer_action(1, 1, 0, 3), sn.DENY])
  text = GAME.render(state, 1)
  assert text.startswith("\n[GAME] You are Player 1 in the Negotiation Game.\n")
  assert "\t+ [Wood]    Qty: 10   Value: 15\n\t+ [Gold]    Qty: 10   Value: 5\n" in text
  history = text.split("The game lasts for 10 turns in total.\n", 1)[1]
  assert history == (
      "\n[Player 0] [Offer: 3 Wood -> 2 Gold]"
      "\n[GAME] Player 0 made the following offer to Player 1: Offered items: 3 Wood -> "
      "Requested items: 2 Gold"
      "\n[Player 1] [Offer: 1 Gold -> 2 Wood]"
      "\n[GAME] Player 1 implicitly denied the previous offer by making a counter-offer."
      "\n[GAME] Player 1 made the following offer to Player 0: Offered items: 1 Gold -> "
      "Requested items: 2 Wood"
      "\n[Player 0] [Accept]"
      "\n[GAME] Player 0 accepted the trade offer from Player 1."
      "\n[Player 1] [Offer: 1 Wood, 1 Gold -> 3 Gold]"
      "\n[GAME] Player 1 made the following offer to Player 0: Offered items: 1 Wood, 1 Gold -> "
      "Requested items: 3 Gold"
      "\n[Player 0] [Deny]"
      "\n[GAME] Player 0 denied the trade offer from Player 1.")


def test_render_closes_with_the_outcome():
  won = GAME.render(_play([sn.offer_action(1, 0, 0, 3), sn.ACCEPT] + [sn.DENY] * 8), 0)
  assert won.endswith("\n[GAME] Player 0 won the game. Reason: Player 0 won by having a larger "
                      "gain in inventory value.")
  drawn = GAME.render(_play([sn.DENY] * 10), 1)
  assert drawn.endswith("\n[GAME] The game ended in a draw. Reason: Same change in inventory value "
                        "for all players. Draw.")
  lost = GAME.render(_play([sn.offer_action(1, 0, 0, 11), sn.ACCEPT]), 0)
  assert lost.endswith("\n[Player 1] [Accept]\n[GAME] Player 1 lost the game by way of invalid "
                       "move. Reason: Player 1 tried accepting a trade without having the "
                       "necessary resources.")


def test_action_text_is_canonical_and_round_trips_on_a_sweep_of_ids():
  assert GAME.action_text(sn.ACCEPT) == "[Accept]" and GAME.action_text(sn.DENY) == "[Deny]"
  assert GAME.action_text(sn.offer_action(3, 2, 0, 5)) == "[Offer: 3 Wood, 2 Gold -> 5 Gold]"
  assert GAME.action_text(sn.offer_action(0, 20, 20, 0)) == "[Offer: 20 Gold -> 20 Wood]"
  for action in range(sn.FIRST_OFFER, GAME.num_actions, 13):
    terms = sn.offer_terms(np.int64(action))
    expected = action if terms[:2].any() and terms[2:].any() else core.INVALID
    assert GAME.action_from_text(GAME.action_text(action)) == expected, action
  with pytest.raises(ValueError, match="action must lie in"):
    GAME.action_text(GAME.num_actions)
  with pytest.raises(ValueError, match="offer quantities"):
    sn.offer_action(21, 0, 0, 1)


@pytest.mark.parametrize("move,terms", [
    ("[Offer: 3 Wood -> 2 Gold]", (3, 0, 0, 2)),
    ("[Offer: 2 Gold, 3 Wood -> 1 Wood]", (3, 2, 1, 0)),
    ("[Offer: I give 3 Wood -> 2 Gold]", (3, 0, 0, 2)),
    ("[Offer: i offer 3 Wood -> 2 Gold]", (3, 0, 0, 2)),
    ("[offer: 3 WOOD and 1 gold -> 2 Golds.]", (3, 1, 0, 2)),
    ("[Offer: 3 Wood, 2 Wood -> 1 Gold, 1 gold]", (5, 0, 0, 2)),
    ("[Offer: 1 woods -> 4 Gold!...]", (1, 0, 0, 4)),
    ("[Offer:3 Wood->2 Gold]", (3, 0, 0, 2)),
    ("[Offer: 020 Wood -> 1 Gold]", (20, 0, 0, 1)),
    ("[Offer: 3 Wood, -> 2 Gold]", (3, 0, 0, 2)),
    ("[Offer: 0 Wood, 1 Gold -> 1 Wood]", None),  # zero quantities are malformed
    ("[Offer: 3 Wood]", None),
    ("[Offer: 3 Wood -> 2 Gold -> 1 Wood]", None),
    ("[Offer: 3 Sheep -> 2 Gold]", None),
    ("[Offer: 3 Wood please -> 2 Gold]", None),
    ("[Offer 3 Wood -> 2 Gold]", None),  # the reference v1 needs the colon
    ("[Offer: Wood -> Gold]", None),
    ("[Offer: 21 Wood -> 1 Gold]", None),  # more than exists: not in the action space
    ("[Offer: 11 Wood, 10 Wood -> 1 Gold]", None),
    ("[Offer: 1 Wood -> " + "9" * 5000 + " Gold]", None),
    ("[Offer: 3 Wood -> 2 Gold] thanks", None),  # one token, nothing around it
])
def test_offer_parsing_follows_the_reference_v1(move, terms):
  assert sn.parse_offer(move) == terms


@pytest.mark.parametrize("response,action", [
    (r"\boxed{Accept}", sn.ACCEPT),
    (r"\boxed{[Accept]}", sn.ACCEPT),
    (r"\boxed{  Deny }", core.INVALID),  # wrapped as "[ Deny ]": inner spaces survive
    (r"\boxed{[Accept]} then \boxed{[Deny]}", sn.DENY),
    (r"\boxed{[Offer:  1 Wood ->   2   Gold]}", sn.offer_action(1, 0, 0, 2)),
    (r"\boxed{accept}", core.INVALID),  # exact and case-sensitive (SPIRAL)
    (r"\boxed{I accept. [Accept]}", core.INVALID),
    (r"\boxed{Offer: 1 Wood -> 2 Gold}", core.INVALID),  # six words: not wrapped, no brackets
    ("[Accept]", sn.ACCEPT),  # no box: the whole text is the move
    ("I accept. [Accept]", core.INVALID),
])
def test_parse_applies_spiral_extraction(response, action):
  state = _play([sn.offer_action(2, 0, 0, 1)])
  assert GAME.parse(response, state) == action


# ---------------------------------------------------------------- differential vs TextArena
class _ReferenceV1Env(SimpleNegotiationEnv):
  """TextArena 0.7.4's negotiation engine set up as the SPIRAL reference's v1."""

  def __init__(self):
    super().__init__(max_turns=10)
    self.resource_names = ["Wood", "Gold"]

  def reset(self, num_players=2, seed=None):
    # error_allowance=0: an invalid move ends the game at once, as in SPIRAL.
    self.state = ta.TwoPlayerState(num_players=num_players, max_turns=self.max_turns, seed=seed,
                                   error_allowance=0)
    game_state = {
        "current_offer": None, "trade_history": [],
        "player_resources": {0: {"Wood": 10, "Gold": 10}, 1: {"Wood": 10, "Gold": 10}},
        "player_values": {0: {"Wood": 5, "Gold": 15}, 1: {"Wood": 15, "Gold": 5}}}
    game_state["inventory_value"] = {}
    for seat in (0, 1):
      value = self._calculate_player_inventory_value(seat, game_state)
      game_state["inventory_value"][seat] = {"initial": value, "current": value, "change": 0}
    self.state.reset(game_state=game_state, player_prompt_function=self._prompt)
    self.state.max_turns = self.max_turns - 1  # 0.7.4 would play 11 actions; v1 plays 10

  def _check_and_execute_existing_offer(self, player_id, action):
    super()._check_and_execute_existing_offer(player_id, action)
    # v1: any answer but a successful [Accept] takes the offer off the table; 0.7.4 leaves it.
    offer = self.state.game_state["current_offer"]
    if offer is not None and offer["to_player"] == player_id and not self.state.done:
      self.state.game_state["current_offer"] = None


def _reference_move(rng, state):
  """A move text: mostly legal, sometimes not (unpaid offers and accepts, accepting nothing)."""
  seat = int(state.current_seat)
  held = np.asarray(state.inventory)[seat]
  pending = int(state.offer_from) == 1 - seat
  if rng.random() < 0.03:
    return "[Accept]"  # legal only with an offer pending
  if pending and rng.random() < 0.5:
    return "[Accept]"  # illegal when the mover cannot pay
  if rng.random() < 0.2:
    return "[Deny]"
  if rng.random() < 0.1:
    return GAME.action_text(int(RANDOM_ACTION(state, jax.random.key(rng.integers(1 << 30)))))
  terms = rng.integers(0, 5, size=4)
  terms[rng.integers(0, 2)] += 1
  terms[2 + rng.integers(0, 2)] += 1
  if rng.random() < 0.03:  # an offer of more than the mover holds
    resource = rng.integers(0, 2)
    terms[resource] = min(held[resource] + 1 + rng.integers(0, 3), 20)
  return GAME.action_text(sn.offer_action(*[int(q) for q in terms]))


@pytest.mark.parametrize("first_seed", [0, 100])
def test_games_match_textarena_move_for_move(first_seed):
  endings = collections.Counter()
  for seed in range(first_seed, first_seed + 100):
    rng = np.random.default_rng(seed)
    env = ta.wrappers.LLMObservationWrapper(_ReferenceV1Env())
    env.reset(num_players=2, seed=seed)
    state = EVAL_GAME.init(jax.random.key(seed))
    while True:
      seat, _ = env.get_observation()
      assert seat == int(state.current_seat)
      move = _reference_move(rng, state)
      pending = env.state.game_state["current_offer"] is not None
      if move == "[Accept]" and not pending:
        # SPIRAL lists [Accept] only while an offer is pending: the game ends against the mover.
        done, ta_rewards = True, {seat: -1, 1 - seat: 1}
      else:
        done, _ = env.step(move)
        ta_rewards = env.state.rewards
      state = EVAL_STEP(state, GAME.parse(_boxed(move), state))
      resources = env.state.game_state["player_resources"]
      assert np.asarray(state.inventory).tolist() == [[resources[s]["Wood"], resources[s]["Gold"]]
                                                      for s in (0, 1)], (seed, move)
      assert bool(state.terminated) == done, (seed, move)
      if done:
        assert np.asarray(state.rewards).tolist() == [ta_rewards[0], ta_rewards[1]], seed
        if int(state.forfeited_by) == core.NO_SEAT:
          endings["draw" if ta_rewards[0] == 0 else "win"] += 1
        elif move == "[Accept]":
          endings["unpaid accept" if pending else "accept of nothing"] += 1
        else:
          endings["unpaid offer"] += 1
        break
  assert len(endings) == 5 and min(endings.values()) >= 3, endings  # every ending was exercised


_QUANTITY = st.integers(0, 9)


@st.composite
def _offer_spellings(draw):
  """A natural spelling of a random offer and its terms (no zero items, totals at most 18)."""
  give, get = [draw(st.tuples(_QUANTITY, _QUANTITY).filter(any)) for _ in range(2)]

  def side(quantities):
    items = [(q, name) for q, name in zip(quantities, ("Wood", "Gold")) if q > 0]
    if draw(st.booleans()):
      items.reverse()
    words = []
    for q, name in items:
      name = draw(st.sampled_from([name, name.lower(), name.upper()]))
      if name.lower() == "wood" and draw(st.booleans()):
        name += "s"  # TextArena 0.7.4 aliases Woods only
      words.append(f"{q}{draw(st.sampled_from([' ', '  ']))}{name}")
    return draw(st.sampled_from([", ", " and ", ",  "])).join(words)

  prefix = draw(st.sampled_from(["", "I give ", "I offer "]))
  suffix = draw(st.sampled_from(["", ".", " ."]))
  keyword = draw(st.sampled_from(["Offer", "offer", "OFFER"]))
  text = f"[{keyword}: {prefix}{side(give)} -> {side(get)}{suffix}]"
  return text, (*give, *get)


@SETTINGS
@given(_offer_spellings())
def test_offer_spellings_parse_as_textarena_parses_them(spelling):
  text, terms = spelling
  env = _ReferenceV1Env()
  found = env.offer_pattern.search(text)
  parsed = env._parse_offer(found.group(1).strip())
  ta_terms = tuple(parsed[side].get(name, 0) for side in ("offered_resources",
                                                          "requested_resources")
                   for name in ("Wood", "Gold"))
  assert sn.parse_offer(" ".join(text.split())) == ta_terms == terms


# ---------------------------------------------------------------- properties
_FRAGMENTS = st.sampled_from([
    "\\boxed{", "}", "{", "]", "[", "[Offer:", "[offer: I give", "->", " -> ", ",", " and ", "Wood",
    "gold", "Golds", " ", "3", "20", "0", "9" * 400, "1" * 5000, "٣", "[Accept]", "[Deny]",
    "Accept", "\n", "\\frac{1}{2}", ".", "!"])
_STATES = [_play([]), _play([sn.offer_action(3, 0, 0, 2)]), _state(0, 0, 20, (0, 5, 3, 0)),
           _state(1, 15, 3, (1, 1, 1, 1)), _play([sn.DENY] * 10)]


@SETTINGS
@given(st.one_of(st.text(max_size=300), st.lists(_FRAGMENTS, max_size=40).map("".join)),
       st.sampled_from(range(len(_STATES))))
def test_parse_never_raises_and_returns_legal_ids_or_invalid(response, which):
  state = _STATES[which]
  action = GAME.parse(response, state)
  assert action == core.INVALID or bool(IS_LEGAL(state, action))


@SETTINGS
@given(st.integers(0, 20), st.integers(0, 20), st.integers(0, 1), st.data())
def test_every_legal_offer_round_trips_through_text(wood, gold, seat, data):
  state = _state(seat, wood, gold)
  held = (wood, gold) if seat == 0 else (20 - wood, 20 - gold)
  give = data.draw(st.tuples(st.integers(0, held[0]), st.integers(0, held[1])).filter(any))
  get = data.draw(st.tuples(st.integers(0, 20), st.integers(0, 20)).filter(any))
  action = sn.offer_action(*give, *get)
  assert bool(MASK(state)[action])
  assert GAME.parse(_boxed(GAME.action_text(action)), state) == action


@st.composite
def _any_state(draw):
  pending = draw(st.booleans())
  offer = draw(st.tuples(*[st.integers(0, 20)] * 4)) if pending else None
  return _state(draw(st.integers(0, 1)), draw(st.integers(0, 20)), draw(st.integers(0, 20)), offer)


@SETTINGS
@given(_any_state(), st.integers(0, 2**31 - 1), st.lists(st.integers(-3, 2 + 21**4), max_size=8))
def test_random_action_is_legal_and_the_mask_agrees_with_one_id_checks(state, seed, probes):
  mask = np.asarray(MASK(state))
  action = int(RANDOM_ACTION(state, jax.random.key(seed)))
  assert mask[action] and bool(IS_LEGAL(state, action))
  seat = int(state.current_seat)
  wood, gold = np.asarray(state.inventory)[seat]
  accept = int(state.offer_from) == 1 - seat and (np.asarray(state.offer)[2:] <= (wood, gold)).all()
  assert mask.sum() == accept + 1 + ((wood + 1) * (gold + 1) - 1) * 440
  for probe in probes + [sn.ACCEPT, sn.DENY]:
    expected = 0 <= probe < GAME.num_actions and mask[probe]
    assert bool(IS_LEGAL(state, probe)) == expected
    assert GAME.parse(_boxed(GAME.action_text(probe)) if 0 <= probe < GAME.num_actions else "",
                      state) == (probe if expected else core.INVALID)


def test_random_action_is_uniform_over_the_legal_ids():
  state = _state(0, 0, 1, (1, 0, 0, 1))  # seat 0 holds one Gold: Accept, Deny and 440 offers
  legal = np.flatnonzero(np.asarray(MASK(state)))
  assert len(legal) == 442 == _legal_count(state)
  keys = jax.random.split(jax.random.key(7), 442 * 100)
  actions = np.asarray(jax.jit(jax.vmap(GAME.random_action, in_axes=(None, 0)))(state, keys))
  assert np.isin(actions, legal).all()
  counts = np.bincount(np.searchsorted(legal, actions), minlength=len(legal))
  assert scipy.stats.chisquare(counts).pvalue > 1e-3


@settings(max_examples=5, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_resources_are_conserved_under_random_play(seed):
  inventories, trades = _random_play_inventories(jax.random.key(seed))
  assert (inventories.sum(axis=2) == 20).all() and (inventories >= 0).all()
  assert trades > 0


@jax.jit
def _random_play_inventories(key):
  """i32[11, 64, 2(seat), 2(resource)] holdings before and after each of 10 random moves, and
  how many trades happened (random moves that accept half the time when they may)."""
  state = jax.vmap(GAME.init)(jax.random.split(key, 64))

  def move(state, key):
    k_move, k_accept = jax.random.split(key)
    action = jax.vmap(GAME.random_action)(state, jax.random.split(k_move, 64))
    accept = jax.vmap(GAME.is_legal, in_axes=(0, None))(state, sn.ACCEPT)
    accept &= jax.random.bernoulli(k_accept, 0.5, (64,))
    state = jax.vmap(GAME.step)(state, jnp.where(accept, sn.ACCEPT, action))
    return state, (state.inventory, accept.sum())

  first = state.inventory
  _, (later, trades) = jax.lax.scan(move, state, jax.random.split(key, 10))
  return jnp.concatenate([first[None], later]), trades.sum()


# ---------------------------------------------------------------- players
def test_heuristic_beats_random_and_never_forfeits():
  batch = 1000
  heuristic = sn.heuristic_player(EVAL_GAME)

  @jax.jit
  def play(key):
    state = jax.vmap(EVAL_GAME.init)(jax.random.split(key, batch))
    heuristic_seat = jnp.arange(batch) % 2

    def move(carry, key):
      state, all_legal = carry
      keys = jax.random.split(key, batch)
      ours = jax.vmap(heuristic)(state, keys)
      action = jnp.where(state.current_seat == heuristic_seat, ours,
                         jax.vmap(EVAL_GAME.random_action)(state, keys))
      ours_legal = jax.vmap(EVAL_GAME.is_legal)(state, ours)
      all_legal &= state.terminated | (state.current_seat != heuristic_seat) | ours_legal
      return (jax.vmap(EVAL_GAME.step)(state, action), all_legal), None

    (state, all_legal), _ = jax.lax.scan(move, (state, jnp.ones(batch, bool)),
                                         jax.random.split(key, 10))
    return state, all_legal, heuristic_seat

  state, all_legal, seat = play(jax.random.key(3))
  assert np.asarray(all_legal).all() and (np.asarray(state.forfeited_by) == core.NO_SEAT).all()
  reward = np.asarray(state.rewards)[np.arange(batch), np.asarray(seat)]
  assert bool(np.asarray(state.terminated).all())
  # It only accepts trades that net it items, so it never loses; it wins when random offers well.
  assert (reward >= 0).all() and reward.mean() > 0.3, reward.mean()


def test_heuristic_accepts_good_offers_and_proposes_favourable_trades():
  heuristic = jax.jit(sn.heuristic_player(GAME))
  key = jax.random.key(0)
  # Seat 1 values Wood: 3 Wood for 1 Gold raises its value and nets it two items.
  assert int(heuristic(_play([sn.offer_action(3, 0, 0, 1)]), key)) == sn.ACCEPT
  # 1 Wood for 3 Gold nets seat 1 two items fewer: it counter-offers Gold for more Wood.
  answer = int(heuristic(_play([sn.offer_action(1, 0, 0, 3)]), key))
  give_wood, give_gold, get_wood, get_gold = sn.offer_terms(np.int64(answer))
  assert give_wood == 0 and get_gold == 0 and get_wood == give_gold + 1 and 1 <= give_gold <= 3
  # With nothing of its cheap resource left it passes.
  assert int(heuristic(_state(0, 0, 20), key)) == sn.DENY
