"""KuhnPoker-v1: rules and chips, a TextArena differential (round logic, turns, legality,
outcomes), the equilibrium family's exact value (by enumeration and OpenSpiel), and properties.
The observation texts are checked against the reference run's in
``tests/reference/test_kuhn_observations.py``."""
import copy
import itertools
import random
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pyspiel
import pytest
import textarena as ta
from hypothesis import given, settings
from hypothesis import strategies as st
from open_spiel.python import policy as openspiel_policy
from open_spiel.python.algorithms import exploitability as openspiel_exploitability
from open_spiel.python.algorithms import expected_game_score
from textarena.envs.KuhnPoker.env import KuhnPokerEnv
from textarena.envs.registration import ENV_REGISTRY

from spiral_jax.games import core, registry
from spiral_jax.games import kuhn_poker as kp

GAMES = {rounds: kp.KuhnPoker(rounds=rounds) for rounds in (1, 2, 5)}
STEPS = {rounds: jax.jit(game.step) for rounds, game in GAMES.items()}
MASKS = {rounds: jax.jit(game.legal_action_mask) for rounds, game in GAMES.items()}
# Written out here so the tests do not trust the module's own constants.
TEXTS = ["[check]", "[bet]", "[fold]", "[call]"]
J, Q, K = 0, 1, 2


def _host(state):
  return jax.tree.map(np.asarray, state)


def _play(moves, cards):
  """States after each move (text or id) from fixed cards i32[rounds, 2]."""
  game, step = GAMES[len(cards)], STEPS[len(cards)]
  state = game.init_with_cards(np.asarray(cards, np.int32))
  states = [state]
  for move in moves:
    state = step(state, np.int32(TEXTS.index(move) if isinstance(move, str) else move))
    states.append(state)
  return states


def plain_match(cards, moves, chips_move=True):
  """An independent plain-Python count: per-round (winner, pot, chips after) and final chips.

  ``chips_move=False`` is TextArena's accounting: bets and calls put nothing in the pot.
  """
  chips, results, moves = [0, 0], [], list(moves)
  for r, (card0, card1) in enumerate(cards):
    if not moves:
      break
    actor = 1 if r % 2 == 0 else 0  # seat 1 opens the first round
    chips = [chips[0] - 1, chips[1] - 1]
    pot, previous = 2, None
    while True:
      move = moves.pop(0)
      if chips_move and move in ("[bet]", "[call]"):
        chips[actor] -= 1
        pot += 1
      if move == "[fold]":
        winner = 1 - actor
        break
      if move == "[call]" or (move == "[check]" and previous == "[check]"):
        winner = 0 if card0 > card1 else 1
        break
      previous, actor = move, 1 - actor
    chips[winner] += pot
    results.append((winner, pot, tuple(chips)))
  return results, chips


def match_rewards(chips, rounds):
  if rounds == 1:
    return [float(chips[0]), float(chips[1])]
  lead = (chips[0] > chips[1]) - (chips[0] < chips[1])
  return [float(lead), float(-lead)]


# ---------------------------------------------------------------- rules and chips
def test_registered_with_rounds_and_forfeit():
  game = registry.make("KuhnPoker-v1", rounds=1, forfeit=core.EVAL_FORFEIT)
  assert isinstance(game, kp.KuhnPoker) and game.rounds == 1 and game.max_moves == 3
  assert game.forfeit == core.EVAL_FORFEIT
  default = registry.make("KuhnPoker-v1")
  assert default.rounds == 5 and default.max_moves == 15 and default.forfeit == core.TRAIN_FORFEIT
  assert [default.action_text(a) for a in range(4)] == TEXTS
  assert [default.action_from_text(t) for t in TEXTS] == [0, 1, 2, 3]
  with pytest.raises(ValueError, match="action=4"):
    default.action_text(4)


@pytest.mark.parametrize("rounds", [0, -1, 2.5, True, "5"])
def test_bad_rounds_are_rejected(rounds):
  with pytest.raises(ValueError, match="rounds="):
    kp.KuhnPoker(rounds=rounds)


def test_bad_cards_are_rejected():
  with pytest.raises(ValueError, match=r"i32\[5, 2\]"):
    GAMES[5].init_with_cards(np.zeros((3, 2), np.int32))
  with pytest.raises(ValueError, match="distinct"):
    GAMES[1].init_with_cards([[1, 1]])
  with pytest.raises(ValueError, match="distinct"):
    GAMES[1].init_with_cards([[0, 3]])


# (cards [seat0, seat1], moves, final chips of seat 0/1, pot taken, seats to move in order)
SINGLE_ROUNDS = {
    "bet-fold": ([Q, J], ["[bet]", "[fold]"], [-1, 1], 3, [1, 0]),
    "bet-call": ([K, Q], ["[bet]", "[call]"], [2, -2], 4, [1, 0]),
    "check-check": ([J, Q], ["[check]", "[check]"], [-1, 1], 2, [1, 0]),
    "check-bet-call": ([Q, K], ["[check]", "[bet]", "[call]"], [-2, 2], 4, [1, 0, 1]),
    "check-bet-fold": ([J, K], ["[check]", "[bet]", "[fold]"], [1, -1], 3, [1, 0, 1]),
}


@pytest.mark.parametrize("name", sorted(SINGLE_ROUNDS))
def test_single_round_sequences_pay_chips(name):
  cards, moves, chips, pot, movers = SINGLE_ROUNDS[name]
  states = _play(moves, [cards])
  assert [int(s.current_seat) for s in states[:-1]] == movers
  for before, move, after in zip(states, moves, states[1:]):
    mover = int(before.current_seat)
    puts_in = int(move in ("[bet]", "[call]"))
    if not bool(after.terminated):
      assert int(after.pot) == int(before.pot) + puts_in
      assert int(after.chips[mover]) == int(before.chips[mover]) - puts_in
  end = states[-1]
  assert bool(end.terminated) and not any(bool(s.terminated) for s in states[:-1])
  np.testing.assert_array_equal(end.chips, chips)
  np.testing.assert_array_equal(end.rewards, np.asarray(chips, np.float32))  # rounds=1 pays chips
  assert int(end.round_pot[0]) == pot and int(end.forfeited_by) == core.NO_SEAT
  assert plain_match([cards], moves) == ([(int(np.argmax(chips)), pot, tuple(chips))], chips)


def test_opening_state():
  state = GAMES[5].init(jax.random.key(0))
  assert int(state.current_seat) == 1 and int(state.pot) == 2
  np.testing.assert_array_equal(state.chips, [-1, -1])
  np.testing.assert_array_equal(GAMES[5].legal_action_mask(state), [True, True, False, False])
  after_bet = GAMES[5].step(state, kp.BET)
  np.testing.assert_array_equal(GAMES[5].legal_action_mask(after_bet), [False, False, True, True])


def test_deals_are_distinct_and_uniform():
  cards = np.asarray(jax.jit(jax.vmap(GAMES[5].init))(jax.random.split(jax.random.key(1), 1200))
                     .cards).reshape(-1, 2)
  assert (cards[:, 0] != cards[:, 1]).all() and ((cards >= 0) & (cards < 3)).all()
  counts = np.bincount(cards[:, 0] * 3 + cards[:, 1], minlength=9)[[1, 2, 3, 5, 6, 7]]
  assert counts.sum() == 6000 and (np.abs(counts - 1000) < 150).all(), counts  # ~5 sigma


def test_opener_alternates_each_round():
  cards = [[K, J], [J, Q], [Q, K], [K, Q], [J, K]]
  moves = ["[check]", "[check]"] * 5
  states = _play(moves, cards)
  openers = [int(s.current_seat) for s in states[0:-1:2]]
  assert openers == [1, 0, 1, 0, 1]
  assert [int(s.round) for s in states[0:-1:2]] == [0, 1, 2, 3, 4]


def test_match_goes_to_the_chip_leader_not_the_most_rounds():
  # Seat 0 wins three rounds by a fold (+1 each) and loses two called showdowns (-2 each).
  cards = [[J, K], [Q, K], [J, K], [Q, J], [Q, K]]
  moves = ["[bet]", "[call]", "[bet]", "[fold]", "[bet]", "[call]", "[bet]", "[fold]",
           "[check]", "[bet]", "[fold]"]
  end = _host(_play(moves, cards)[-1])
  assert bool(end.terminated) and int(end.round) == 5
  np.testing.assert_array_equal(end.round_winner, [1, 0, 1, 0, 0])
  np.testing.assert_array_equal(end.chips, [-1, 1])
  np.testing.assert_array_equal(end.rewards, [-1.0, 1.0])
  # TextArena's accounting (pot always 2) would give this match to seat 0.
  assert plain_match(cards, moves, chips_move=False)[1] == [1, -1]
  assert plain_match(cards, moves)[1] == [-1, 1]


def test_chip_tie_draws():
  cards = [[K, J], [J, Q], [K, Q], [Q, J], [J, Q]]
  moves = ["[bet]", "[call]", "[check]", "[bet]", "[fold]", "[bet]", "[fold]", "[bet]", "[fold]",
           "[check]", "[check]"]
  end = _host(_play(moves, cards)[-1])
  np.testing.assert_array_equal(end.round_chips[:, 0], [2, 1, 0, 1, 0])
  assert bool(end.terminated) and end.chips.tolist() == [0, 0]
  assert end.rewards.tolist() == [0.0, 0.0] and not np.signbit(end.rewards).any()


@pytest.mark.parametrize("forfeit", [core.TRAIN_FORFEIT, core.EVAL_FORFEIT])
@pytest.mark.parametrize("illegal", [kp.FOLD, kp.CALL, core.INVALID, 4, 99])
def test_illegal_moves_forfeit(forfeit, illegal):
  game = kp.KuhnPoker(forfeit=forfeit, rounds=5)
  state = game.init_with_cards(np.asarray([[K, J]] * 5, np.int32))
  state = game.step(state, kp.CHECK)  # seat 1 checks: seat 0 has nothing to fold or call
  ended = game.step(state, illegal)
  assert bool(ended.terminated) and int(ended.forfeited_by) == 0
  np.testing.assert_allclose(ended.rewards, [forfeit.offender, forfeit.other])
  assert not bool(game.legal_action_mask(ended).any())
  again = game.step(ended, kp.CHECK)  # absorbing
  for x, y in zip(jax.tree.leaves(again), jax.tree.leaves(ended)):
    np.testing.assert_array_equal(x, y)
  game.render(ended, 1)  # renders (the text: tests/reference/test_kuhn_observations.py)


def test_bet_facing_bet_forfeits_with_eval_rewards():
  game = kp.KuhnPoker(forfeit=core.EVAL_FORFEIT, rounds=1)
  state = game.step(game.init(jax.random.key(2)), kp.BET)
  for illegal in (kp.CHECK, kp.BET):
    ended = game.step(state, illegal)
    assert int(ended.forfeited_by) == 0
    np.testing.assert_array_equal(ended.rewards, [-1.0, 1.0])


@settings(max_examples=40, deadline=None)
@given(rounds=st.sampled_from([1, 2, 5]), seed=st.integers(0, 2**16),
       choices=st.lists(st.integers(0, 1), min_size=15, max_size=15))
def test_chips_are_conserved(rounds, seed, choices):
  game, step, mask = GAMES[rounds], STEPS[rounds], MASKS[rounds]
  state = game.init(jax.random.key(seed))
  moves = []
  for choice in choices:
    before = _host(state)
    if before.terminated:
      break
    legal = np.flatnonzero(np.asarray(mask(state)))
    assert len(legal) == 2
    action = int(legal[choice])
    moves.append(TEXTS[action])
    state = step(state, np.int32(action))
    after = _host(state)
    assert after.chips.sum() + after.pot == 0, "chips are neither made nor lost"
    if after.round == before.round:  # the round goes on: the mover paid exactly its bet or call
      paid = int(action in (kp.BET, kp.CALL))
      assert after.pot == before.pot + paid
      row = after.round_moves[after.round]
      assert after.pot == 2 + np.isin(row, [kp.BET, kp.CALL]).sum()
  end = _host(state)
  assert end.terminated and end.pot == 0 and end.chips.sum() == 0
  assert (end.round_chips.sum(1) == 0).all()
  results, chips = plain_match(np.asarray(end.cards).tolist(), moves)
  assert [r[2] for r in results] == [tuple(c) for c in end.round_chips.tolist()]
  assert end.chips.tolist() == chips
  assert end.rewards.tolist() == match_rewards(chips, rounds)


# ---------------------------------------------------------------- differential vs TextArena
def _textarena_env(rounds):
  """TextArena's KuhnPokerEnv(max_rounds=rounds) wrapped as ``ta.make`` wraps its LLM ids."""
  env_id = f"KuhnPoker-spiral-jax-test-{rounds}"
  if env_id not in ENV_REGISTRY:
    ta.register(id=env_id, entry_point=KuhnPokerEnv, max_rounds=rounds,
                default_wrappers=[ta.wrappers.LLMObservationWrapper,
                                  ta.wrappers.ActionFormattingWrapper])
  return ta.make(env_id)


def _textarena_cards(seed, rounds):
  """The deal TextArena makes after ``reset(seed=seed)``: one shuffle of its deck a round."""
  random.seed(seed)
  deck, cards = [0, 1, 2], []
  for _ in range(rounds):
    random.shuffle(deck)
    cards.append(deck[:2])
  return cards


def _play_differential(rounds, seed):
  """One seeded random game in TextArena and here, checked move by move; returns a summary."""
  game, step, mask = GAMES[rounds], STEPS[rounds], MASKS[rounds]
  cards = _textarena_cards(seed, rounds)  # before reset: TextArena deals later rounds as it goes
  env = _textarena_env(rounds)
  env.reset(num_players=2, seed=seed)
  state = game.init_with_cards(np.asarray(cards, np.int32))
  rng = np.random.default_rng(seed)
  probe_at = int(rng.integers(0, 2 * rounds))
  moves = []
  while True:
    s = _host(state)
    assert bool(s.terminated) == env.state.done
    assert int(s.current_seat) == env.state.current_player_id, "whose turn"
    if env.state.done:
      break
    game_state = env.state.game_state
    assert game_state["current_round"] == int(s.round) + 1
    assert [game_state["player_cards"][0], game_state["player_cards"][1]] == cards[int(s.round)]
    if not any(m in ("[bet]", "[call]") for m in moves):
      assert game_state["pot"] == int(s.pot)
    legal = np.flatnonzero(np.asarray(mask(state)))
    assert [TEXTS[a][1:-1] for a in legal] == list(game_state["current_legal_action_tree"])
    seat = int(s.current_seat)
    player, _ = env.get_observation()
    assert player == seat
    if len(moves) == probe_at:  # an illegal move is one in TextArena too (there: a retry)
      illegal = int(rng.choice([a for a in range(4) if a not in legal]))
      probe = copy.deepcopy(env)
      probe.step(TEXTS[illegal])
      assert probe.state.error_count == 1 and probe.state.current_player_id == seat
      assert int(step(state, np.int32(illegal)).forfeited_by) == seat
    action = int(rng.choice(legal))
    moves.append(TEXTS[action])
    env.step(TEXTS[action])
    state = step(state, np.int32(action))
  textarena_rewards, _ = env.close()
  return dict(cards=cards, moves=moves, rewards=np.asarray(state.rewards).tolist(),
              textarena_rewards=[float(textarena_rewards[0]), float(textarena_rewards[1])],
              round_chips=[tuple(c) for c in np.asarray(state.round_chips).tolist()])


@pytest.mark.parametrize("rounds,num_games", [(5, 60), (1, 60)])
def test_differential_against_textarena(rounds, num_games):
  outcome_differs = 0
  for seed in range(num_games):
    game = _play_differential(rounds, seed)
    results, chips = plain_match(game["cards"], game["moves"])
    ta_results, ta_chips = plain_match(game["cards"], game["moves"], chips_move=False)
    assert [r[0] for r in results] == [r[0] for r in ta_results]  # same round winners
    # Ours matches the independent correct count, TextArena the count without moving chips.
    assert game["rewards"] == match_rewards(chips, rounds)
    assert game["textarena_rewards"] == match_rewards(ta_chips, 2)  # TextArena pays +-1 or 0
    assert game["round_chips"] == [r[2] for r in results]
    if rounds == 1:
      assert np.sign(game["rewards"]).tolist() == game["textarena_rewards"]
    elif "[call]" not in game["moves"]:
      assert game["rewards"] == game["textarena_rewards"]
    outcome_differs += game["rewards"] != game["textarena_rewards"]
  assert outcome_differs > 0, "the chip fix should change some outcomes"


# ---------------------------------------------------------------- the equilibrium family
def _expected_first_mover_payoff(table):
  """The single-round payoff of the first mover (seat 1) with both seats on ``table``, exactly."""
  game, step = GAMES[1], STEPS[1]

  def value(state):
    if bool(state.terminated):
      return Fraction(int(state.rewards[1]))
    seat = int(state.current_seat)
    p_pass, p_bet = table[game.info_state(state, seat)]
    legal = np.asarray(game.legal_action_mask(state))
    pass_action, bet_action = (kp.FOLD, kp.CALL) if legal[kp.FOLD] else (kp.CHECK, kp.BET)
    total = Fraction(0)
    for p, action in ((p_pass, pass_action), (p_bet, bet_action)):
      if p:
        total += p * value(step(state, np.int32(action)))
    return total

  deals = list(itertools.permutations(range(3), 2))
  return sum(Fraction(1, len(deals)) * value(game.init_with_cards([deal])) for deal in deals)


@pytest.mark.parametrize("alpha", [Fraction(0), Fraction(1, 12), Fraction(1, 6), Fraction(1, 3)])
def test_equilibrium_value_is_minus_one_eighteenth(alpha):
  table = kp.equilibrium_table(alpha)
  assert len(table) == 12 and all(sum(p) == 1 for p in table.values())
  assert _expected_first_mover_payoff(table) == Fraction(-1, 18)


def test_uniform_play_value_by_enumeration():
  # The enumerator itself, on a policy that is not an equilibrium, against OpenSpiel.
  uniform = {key: (Fraction(1, 2), Fraction(1, 2)) for key in kp.equilibrium_table()}
  openspiel_value = expected_game_score.policy_value(
      pyspiel.load_game("kuhn_poker").new_initial_state(),
      [openspiel_policy.UniformRandomPolicy(pyspiel.load_game("kuhn_poker"))] * 2)[0]
  assert float(_expected_first_mover_payoff(uniform)) == pytest.approx(openspiel_value, abs=1e-12)


def _openspiel_policy(game, table):
  policy = openspiel_policy.TabularPolicy(game)
  for info_state, probs in table.items():
    policy.policy_for_key(info_state)[:] = [float(p) for p in probs]
  return policy


@pytest.mark.parametrize("alpha", [0.0, 1 / 6, 1 / 3])
def test_equilibrium_matches_openspiel(alpha):
  game = pyspiel.load_game("kuhn_poker")
  policy = _openspiel_policy(game, kp.equilibrium_table(alpha))
  assert openspiel_exploitability.exploitability(game, policy) == pytest.approx(0.0, abs=1e-12)
  values = expected_game_score.policy_value(game.new_initial_state(), [policy, policy])
  np.testing.assert_allclose(values, [-1 / 18, 1 / 18], atol=1e-12)
  uniform = openspiel_policy.TabularPolicy(game)
  assert openspiel_exploitability.exploitability(game, uniform) == pytest.approx(0.4583, abs=1e-4)


def test_info_states_seats_and_payoffs_match_openspiel():
  """Every deal and history: OpenSpiel player p is our seat 1 - p, with the same strings/returns."""
  game, step = GAMES[1], STEPS[1]
  os_game = pyspiel.load_game("kuhn_poker")
  assert [kp.openspiel_player(seat) for seat in (0, 1)] == [1, 0]
  seen = set()

  def walk(os_state, state):
    for s in (0, 1):  # terminal states too, where fold and call show
      assert game.info_state(state, s) == os_state.information_state_string(
          kp.openspiel_player(s))
    if os_state.is_terminal():
      assert bool(state.terminated)
      for seat in (0, 1):
        assert float(state.rewards[seat]) == os_state.returns()[kp.openspiel_player(seat)]
      return
    player = os_state.current_player()
    seat = int(state.current_seat)
    assert kp.openspiel_player(seat) == player
    seen.add(game.info_state(state, seat))
    legal = np.flatnonzero(np.asarray(game.legal_action_mask(state)))
    for os_action in os_state.legal_actions():  # pass 0, bet 1
      action = legal[os_action]  # check/fold pass, bet/call bet
      walk(os_state.child(os_action), step(state, np.int32(action)))

  for card0, card1 in itertools.permutations(range(3), 2):  # OpenSpiel players 0 and 1
    os_state = os_game.new_initial_state().child(card0).child(card1)
    cards = np.zeros((1, 2), np.int32)
    cards[0, kp.openspiel_player(0)], cards[0, kp.openspiel_player(1)] = card0, card1
    walk(os_state, game.init_with_cards(cards))
  assert seen == set(kp.equilibrium_table())
  with pytest.raises(ValueError, match="rounds=1"):
    GAMES[5].info_state(GAMES[5].init(jax.random.key(0)), 0)


def _states_at_every_info_set():
  """One single-round state per (card of the mover, round history), as a batch."""
  game = GAMES[1]
  states, keys = [], []
  for card0, card1 in itertools.permutations(range(3), 2):
    for prefix in ([], ["[check]"], ["[bet]"], ["[check]", "[bet]"]):
      state = _play(prefix, [[card0, card1]])[-1]
      key = game.info_state(state, int(state.current_seat))
      if key not in keys:
        states.append(state)
        keys.append(key)
  return jax.tree.map(lambda *x: jnp.stack(x), *states), keys


def test_equilibrium_player_samples_the_table():
  game = GAMES[1]
  states, keys = _states_at_every_info_set()
  assert sorted(keys) == sorted(kp.equilibrium_table())
  table = kp.equilibrium_table(1 / 6)
  player = kp.equilibrium_player(game, alpha=1 / 6)
  samples = 4000
  play = jax.jit(jax.vmap(jax.vmap(player, in_axes=(None, 0)), in_axes=(0, None)))
  actions = np.asarray(play(states, jax.random.split(jax.random.key(3), samples)))
  masks = np.asarray(jax.vmap(game.legal_action_mask)(states))
  for i, key in enumerate(keys):
    assert masks[i][actions[i]].all(), f"illegal move at {key}"
    bet_rate = np.isin(actions[i], [kp.BET, kp.CALL]).mean()
    assert bet_rate == pytest.approx(table[key][1], abs=0.03), key  # 4 sigma at most


def test_equilibrium_player_plays_five_round_matches_batched():
  game, batch = GAMES[5], 256
  play = jax.vmap(kp.equilibrium_player(game, alpha=0.25))

  @jax.jit
  def move(state, key):
    actions = play(state, jax.random.split(key, batch))
    return jax.vmap(game.step)(state, actions), actions

  state = jax.jit(jax.vmap(game.init))(jax.random.split(jax.random.key(5), batch))
  played = []
  for t in range(game.max_moves):
    live = ~np.asarray(state.terminated)
    state, actions = move(state, jax.random.key(100 + t))
    played.append(np.asarray(actions)[live])
  assert bool(state.terminated.all()) and (np.asarray(state.forfeited_by) == core.NO_SEAT).all()
  rewards = np.asarray(state.rewards)
  assert set(rewards[:, 0].tolist()) <= {-1.0, 0.0, 1.0} and (rewards.sum(1) == 0).all()
  counts = np.bincount(np.concatenate(played), minlength=4)
  assert (counts > 0).all(), counts  # every kind of move occurs


@pytest.mark.parametrize("alpha", [-0.01, 0.34, float("nan"), "1/6", None, True])
def test_bad_alpha_is_rejected(alpha):
  with pytest.raises(ValueError, match="alpha"):
    kp.equilibrium_player(GAMES[5], alpha=alpha)


def test_tabular_player_validates_its_table_and_game():
  table = kp.equilibrium_table()
  with pytest.raises(ValueError, match="'2pb'"):
    kp.tabular_player(GAMES[1], {k: v for k, v in table.items() if k != "2pb"})
  with pytest.raises(ValueError, match="sum to 1"):
    kp.tabular_player(GAMES[1], {**table, "0": (0.5, 0.6)})
  with pytest.raises(ValueError, match="KuhnPoker"):
    kp.equilibrium_player(object())


# ---------------------------------------------------------------- parse
_STATES = {
    "opening": GAMES[5].init(jax.random.key(4)),
    "facing bet": GAMES[5].step(GAMES[5].init(jax.random.key(4)), kp.BET),
    "over": GAMES[5].step(GAMES[5].init(jax.random.key(4)), core.INVALID),
}
_LEGAL = {name: set(np.flatnonzero(np.asarray(GAMES[5].legal_action_mask(s))).tolist())
          for name, s in _STATES.items()}


def test_parse_examples():
  opening, facing = _STATES["opening"], _STATES["facing bet"]
  parse = GAMES[5].parse
  assert parse("I hold a K, so \\boxed{bet}", opening) == kp.BET
  assert parse("\\boxed{[check]} no wait \\boxed{ [bet]  }", opening) == kp.BET
  assert parse("\\boxed{check}", opening) == kp.CHECK
  assert parse("\\boxed{Check}", opening) == core.INVALID  # case-sensitive
  assert parse("\\boxed{call}", opening) == core.INVALID  # not legal yet
  assert parse("\\boxed{call}", facing) == kp.CALL
  assert parse("[fold]", facing) == kp.FOLD  # no box: the whole text (SPIRAL.md section 6)
  assert parse("\\boxed{fold}", _STATES["over"]) == core.INVALID


_BOXED = st.sampled_from(["check", "bet", "fold", "call", "[check]", " [bet] ", "Call", "FOLD",
                          "raise", "[check] [bet]", "", "{call}"]).map(lambda m: f"\\boxed{{{m}}}")


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(sorted(_STATES)),
       text=st.one_of(st.text(), st.lists(st.one_of(st.text(max_size=8), _BOXED)).map("".join)))
def test_parse_returns_a_legal_id_or_invalid(name, text):
  action = GAMES[5].parse(text, _STATES[name])
  assert action == core.INVALID or action in _LEGAL[name]
