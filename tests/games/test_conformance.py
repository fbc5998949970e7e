"""One conformance test over every registered game (the shape of pgx's api_test).

Single (eager), jitted and vmapped steps must agree move for move over random legal and illegal
moves; finished games are absorbing; rewards sum as the rules say.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spiral_jax as sj
from spiral_jax.games import core, experts

GAME_IDS = sj.games.list_games()
BATCH = 128
ILLEGAL_RATE = 0.05


def test_the_reference_games_are_registered():
  assert {"TicTacToe-v0", "KuhnPoker-v1", "SimpleNegotiation-v1"} <= set(GAME_IDS)


def _moves(game, state, key):
  """Mostly random legal moves; sometimes an arbitrary id (INVALID and out of range included)."""
  k_legal, k_any, k_pick = jax.random.split(key, 3)
  legal = game.random_action(state, k_legal)
  arbitrary = jax.random.randint(k_any, (), -1, game.num_actions + 2)
  return jnp.where(jax.random.uniform(k_pick) < ILLEGAL_RATE, arbitrary, legal).astype(jnp.int32)


def _assert_trees_equal(a, b, msg=""):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=msg)


@pytest.mark.parametrize("game_id", GAME_IDS)
def test_jit_vmap_and_single_steps_agree(game_id):
  game = sj.games.make(game_id)
  init = jax.jit(jax.vmap(game.init))
  step = jax.jit(jax.vmap(game.step))
  moves = jax.jit(jax.vmap(lambda s, k: _moves(game, s, k)))
  single_step = jax.jit(game.step)
  key = jax.random.key(0)
  state = init(jax.random.split(key, BATCH))
  first = jax.tree.map(lambda x: x[0], state)
  eager = jax.tree.map(lambda x: x[1], state)
  total_moves = 0
  for t in range(game.max_moves + 2):  # two extra steps exercise the absorbing terminal state
    actions = moves(state, jax.random.split(jax.random.fold_in(key, t), BATCH))
    total_moves += int((~state.terminated).sum())
    new_state = step(state, actions)
    # The same move through a jitted unbatched step, and eagerly (no jit at all) for one game.
    _assert_trees_equal(jax.tree.map(lambda x: x[0], new_state), single_step(first, actions[0]),
                        f"{game_id} jit(step) != jit(vmap(step)) at move {t}")
    first = jax.tree.map(lambda x: x[0], new_state)
    with jax.disable_jit():
      eager = game.step(eager, actions[1])
    _assert_trees_equal(jax.tree.map(lambda x: x[1], new_state), eager,
                        f"{game_id} eager step != jit(vmap(step)) at move {t}")
    # Finished games do not change, whatever is played.
    _assert_trees_equal(jax.tree.map(lambda x, y: x[state.terminated], new_state, state),
                        jax.tree.map(lambda x: x[state.terminated], state))
    state = new_state
  assert bool(state.terminated.all()), f"{game_id}: games outlived max_moves={game.max_moves}"
  assert total_moves >= BATCH * 2


@pytest.mark.parametrize("game_id", GAME_IDS)
def test_rewards_and_forfeits_follow_the_rules(game_id):
  for forfeit in (core.TRAIN_FORFEIT, core.EVAL_FORFEIT):
    game = sj.games.make(game_id, forfeit=forfeit)
    state = jax.jit(jax.vmap(game.init))(jax.random.split(jax.random.key(1), 512))
    step = jax.jit(jax.vmap(game.step))
    moves = jax.jit(jax.vmap(lambda s, k: _moves(game, s, k)))
    masks = jax.jit(jax.vmap(game.legal_action_mask))
    illegal_move_by = np.full(512, core.NO_SEAT)
    for t in range(game.max_moves):
      active = ~np.asarray(state.terminated)
      assert (np.asarray(state.rewards)[active] == 0).all(), "rewards are terminal only"
      actions = np.asarray(moves(state, jax.random.split(jax.random.key(t), 512)))
      in_range = (actions >= 0) & (actions < game.num_actions)
      legal = in_range & np.asarray(masks(state))[np.arange(512), np.clip(actions, 0, None) %
                                                   game.num_actions]
      offenders = active & ~legal
      illegal_move_by[offenders] = np.asarray(state.current_seat)[offenders]
      state = step(state, jnp.asarray(actions))
    rewards = np.asarray(state.rewards)
    forfeited_by = np.asarray(state.forfeited_by)
    # Exactly the games with an illegal move were forfeited, by the seat that made it.
    np.testing.assert_array_equal(forfeited_by, illegal_move_by)
    forfeits = forfeited_by != core.NO_SEAT
    assert forfeits.any() and (~forfeits).any(), "the test should see both kinds of ending"
    # A natural ending is zero-sum; a forfeit pays the configured pair.
    np.testing.assert_allclose(rewards[~forfeits].sum(-1), 0.0)
    rows = np.nonzero(forfeits)[0]
    np.testing.assert_allclose(rewards[rows, forfeited_by[rows]], forfeit.offender)
    np.testing.assert_allclose(rewards[rows, 1 - forfeited_by[rows]], forfeit.other)


@pytest.mark.parametrize("game_id", GAME_IDS)
def test_terminal_states_have_no_legal_moves_and_render(game_id):
  game = sj.games.make(game_id)
  state = game.init(jax.random.key(3))
  assert state.history.shape == (game.max_moves,)
  assert game.legal_action_mask(state).shape == (game.num_actions,)
  for seat in range(core.NUM_SEATS):
    assert isinstance(game.render(state, seat), str) and game.render(state, seat)
  state = game.step(state, core.INVALID)
  assert bool(state.terminated)
  assert not bool(game.legal_action_mask(state).any())
  assert game.parse("\\boxed{anything}", state) == core.INVALID


@pytest.mark.parametrize("game_id", GAME_IDS)
def test_each_game_owns_its_expert_and_its_explanation(game_id):
  """A game brings its scripted expert and its SFT explanation (``Game.expert``,
  ``Game.explain``): batched, the expert only makes legal moves, and every explanation is text."""
  game = sj.games.make(game_id)
  expert = jax.jit(jax.vmap(experts.expert_player(game)))
  state = jax.jit(jax.vmap(game.init))(jax.random.split(jax.random.key(0), 32))
  step = jax.jit(jax.vmap(game.step))
  for t in range(game.max_moves):
    live = ~np.asarray(state.terminated)
    if not live.any():
      break
    moves = expert(state, jax.random.split(jax.random.key(t), 32))
    legal = np.asarray(jax.vmap(game.legal_action_mask)(state))
    assert legal[np.arange(32), np.asarray(moves)][live].all()
    one = jax.tree.map(lambda x: np.asarray(x[0]), state)
    if live[0]:
      said = game.explain(one, int(one.current_seat), int(moves[0]))
      assert isinstance(said, str) and said == said.strip()
    state = step(state, moves)
  assert np.asarray(state.terminated).all()  # experts finish their games
