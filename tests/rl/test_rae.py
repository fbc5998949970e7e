import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from spiral_jax.rl import rae


def reference_rae(num_kinds, kinds, returns, alpha):
  """Plain-Python loop, straight from SPIRAL.md section 2."""
  b = [[0.0, 0.0] for _ in range(num_kinds)]
  adv = []
  for g, r in zip(kinds, returns):
    adv.append([r[p] - b[g][p] for p in range(2)])
    for p in range(2):
      b[g][p] = alpha * b[g][p] + (1 - alpha) * r[p]
  return np.array(adv, np.float32).reshape(-1, 2), np.array(b, np.float32)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from([-1.5, -1.0, 0.0, 0.5, 1.0]),
                          st.sampled_from([-1.5, -1.0, 0.0, 0.5, 1.0])), min_size=1, max_size=40))
def test_rae_matches_a_plain_python_loop(games):
  kinds = [g for g, _, _ in games]
  returns = [(a, b) for _, a, b in games]
  want_adv, want_b = reference_rae(3, kinds, returns, 0.95)
  adv, b = rae.advantages(rae.init(3), jnp.array(kinds), jnp.array(returns))
  np.testing.assert_allclose(adv, want_adv, atol=1e-6)
  np.testing.assert_allclose(b, want_b, atol=1e-6)


def test_first_game_uses_zero_baseline_and_order_matters():
  adv, b = rae.advantages(rae.init(1), jnp.array([0, 0]), jnp.array([[1.0, -1.0], [1.0, -1.0]]))
  np.testing.assert_allclose(adv[0], [1.0, -1.0])
  np.testing.assert_allclose(adv[1], [0.95, -0.95], rtol=1e-6)  # baseline after one game: 0.05
  np.testing.assert_allclose(b, [[0.0975, -0.0975]], rtol=1e-6)


def test_invalid_rows_are_skipped_and_disabled_rae_is_reinforce():
  returns = jnp.array([[1.0, -1.0], [5.0, 5.0], [-1.0, 1.0]])
  adv, b = rae.advantages(rae.init(1), jnp.array([0, 0, 0]), returns,
                          valid=jnp.array([True, False, True]))
  want_adv, want_b = reference_rae(1, [0, 0], [(1.0, -1.0), (-1.0, 1.0)], 0.95)
  np.testing.assert_allclose(adv[jnp.array([0, 2])], want_adv, atol=1e-6)
  np.testing.assert_allclose(b, want_b, atol=1e-6)
  adv_off, b_off = rae.advantages(rae.init(1), jnp.array([0, 0, 0]), returns, enabled=False)
  np.testing.assert_array_equal(adv_off, returns)
  assert not np.allclose(b_off, 0.0)  # still tracked for the logs


def test_zero_advantage_filter():
  a = jnp.array([0.0, 0.5, -0.0, -1.0])
  np.testing.assert_array_equal(rae.keep_mask(a), [False, True, False, True])
  np.testing.assert_array_equal(rae.keep_mask(a, filter_zero=False), [True] * 4)
