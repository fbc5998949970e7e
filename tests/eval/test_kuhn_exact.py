"""Exact Kuhn exploitability, checked against OpenSpiel's ``kuhn_poker``, the outside authority."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pyspiel = pytest.importorskip("pyspiel")
from open_spiel.python import policy as openspiel_policy  # noqa: E402
from open_spiel.python.algorithms import exploitability as openspiel_exploitability  # noqa: E402
from open_spiel.python.algorithms import expected_game_score  # noqa: E402

from spiral_jax.eval import kuhn_exact  # noqa: E402

GAME = pyspiel.load_game("kuhn_poker")


def to_openspiel(policy: dict) -> openspiel_policy.TabularPolicy:
  """OpenSpiel's tabular policy holding our [pass, bet] probabilities, set by info-state string."""
  table = openspiel_policy.TabularPolicy(GAME)
  for info_state, row in table.state_lookup.items():
    table.action_probability_array[row] = policy[info_state]
  return table


def random_policy(rng: np.random.Generator) -> dict:
  """Dirichlet rows, a third of them made pure, so corner strategies are covered too."""
  policy = {}
  for s in kuhn_exact.INFO_STATES:
    probs = rng.dirichlet([0.5, 0.5])
    if rng.random() < 1 / 3:
      probs = np.eye(2)[rng.integers(2)]
    policy[s] = probs
  return policy


def with_invalid(policy: dict, info_state: str, action: int, mass: float) -> dict:
  """A copy of ``policy`` with ``mass`` of ``action`` at ``info_state`` moved to invalid."""
  moved = {s: np.array(p, dtype=np.float64) for s, p in policy.items()}
  moved[info_state][action] -= mass
  return moved


def test_info_states_and_moves_are_openspiels():
  table = openspiel_policy.TabularPolicy(GAME)
  assert set(table.state_lookup) == set(kuhn_exact.INFO_STATES)
  assert len(kuhn_exact.INFO_STATES) == 12
  for state in table.states:
    s = state.information_state_string()
    assert state.legal_actions() == [kuhn_exact.PASS, kuhn_exact.BET]
    assert s in kuhn_exact.INFO_STATES_BY_SEAT[state.current_player()]
    facing_bet = "b" in s  # OpenSpiel's history: a bet not yet answered
    expected = ("[fold]", "[call]") if facing_bet else ("[check]", "[bet]")
    assert kuhn_exact.MOVE_NAMES[s] == expected


def test_matches_openspiel_on_100_random_policies():
  rng = np.random.default_rng(0)
  worst = 0.0
  for _ in range(100):
    policy = random_policy(rng)
    theirs = openspiel_exploitability.nash_conv(GAME, to_openspiel(policy),
                                                return_only_nash_conv=False)
    ours = kuhn_exact.exploitability(policy)
    worst = max(worst, abs(ours - theirs.nash_conv / 2))
    assert ours == pytest.approx(
        openspiel_exploitability.exploitability(GAME, to_openspiel(policy)), abs=1e-6)
    assert kuhn_exact.nash_conv(policy) == pytest.approx(theirs.nash_conv, abs=1e-6)
    on_policy = kuhn_exact.expected_value(policy, policy)
    improvements = [kuhn_exact.best_response_value(policy, 0) - on_policy,
                    kuhn_exact.best_response_value(policy, 1) + on_policy]
    np.testing.assert_allclose(improvements, theirs.player_improvements, atol=1e-6)
  assert worst < 1e-9


def test_expected_value_of_two_different_policies_matches_openspiel():
  rng = np.random.default_rng(1)
  for _ in range(10):
    first, second = random_policy(rng), random_policy(rng)
    theirs = expected_game_score.policy_value(GAME.new_initial_state(),
                                              [to_openspiel(first), to_openspiel(second)])
    assert kuhn_exact.expected_value(first, second) == pytest.approx(theirs[0], abs=1e-9)


def test_uniform_play():
  uniform = kuhn_exact.uniform_policy()
  assert kuhn_exact.exploitability(uniform) == pytest.approx(0.4583333, abs=1e-7)
  assert kuhn_exact.exploitability(uniform) == pytest.approx(
      openspiel_exploitability.exploitability(GAME, to_openspiel(uniform)), abs=1e-12)
  assert kuhn_exact.nash_conv(uniform) == pytest.approx(11 / 12)


@pytest.mark.parametrize("alpha", [0.0, 0.05, 1 / 6, 0.3, 1 / 3])
def test_equilibrium_family(alpha):
  equilibrium = kuhn_exact.equilibrium_policy(alpha)
  assert kuhn_exact.exploitability(equilibrium) == pytest.approx(0.0, abs=1e-12)
  assert kuhn_exact.expected_value(equilibrium, equilibrium) == pytest.approx(-1 / 18, abs=1e-12)
  assert kuhn_exact.best_response_value(equilibrium, 0) == pytest.approx(-1 / 18, abs=1e-12)
  assert openspiel_exploitability.exploitability(GAME, to_openspiel(equilibrium)) == pytest.approx(
      0.0, abs=1e-12)


def test_off_equilibrium_is_exploitable():
  policy = kuhn_exact.equilibrium_policy(0.1)
  policy["1b"] = np.array([0.0, 1.0])  # the second mover always calls with a Queen
  assert kuhn_exact.exploitability(policy) > 0.01


@pytest.mark.parametrize("alpha", [-0.1, 0.34, 1.0, float("nan"), "0.1"])
def test_equilibrium_rejects_alpha_outside_family(alpha):
  with pytest.raises(ValueError, match="alpha"):
    kuhn_exact.equilibrium_policy(alpha)


@pytest.mark.parametrize("change, match", [
    (lambda p: p.pop("0pb"), "lacks \\['0pb'\\]"),
    (lambda p: p.update({"0bp": np.array([0.5, 0.5])}), "unknown keys \\['0bp'\\]"),
    (lambda p: p.update({"1": np.array([0.7, 0.7])}), "sums to"),
    (lambda p: p.update({"1": np.array([-0.1, 0.5])}), "non-negative"),
    (lambda p: p.update({"1": np.array([0.2, 0.3, 0.5])}), "f\\[2\\]"),
])
def test_bad_policies_raise(change, match):
  policy = kuhn_exact.uniform_policy()
  change(policy)
  with pytest.raises(ValueError, match=match):
    kuhn_exact.exploitability(policy)


def test_invalid_mass_increases_exploitability():
  base = kuhn_exact.equilibrium_policy(0.1)
  masses = np.linspace(0.0, 1.0, 11)  # of the King's call facing a bet, moved to invalid
  values = [kuhn_exact.exploitability(with_invalid(base, "2b", kuhn_exact.BET, m)) for m in masses]
  assert values[0] == pytest.approx(0.0, abs=1e-12)
  assert np.all(np.diff(values) > 1e-6), values
  assert kuhn_exact.invalid_mass(with_invalid(base, "2b", kuhn_exact.BET, 0.3))["2b"] == (
      pytest.approx(0.3))


@pytest.mark.parametrize("info_state", ["0pb", "1pb", "0b", "1b", "2b"])
def test_invalid_facing_a_bet_costs_the_same_as_folding(info_state):
  # Forfeit = -1 chip for the offender, which is what a fold facing a bet costs.
  policy = random_policy(np.random.default_rng(2))
  policy[info_state] = np.array([0.2, 0.8])
  invalid = with_invalid(policy, info_state, kuhn_exact.BET, 0.5)
  folded = dict(policy, **{info_state: np.array([0.7, 0.3])})
  assert kuhn_exact.exploitability(invalid) == pytest.approx(kuhn_exact.exploitability(folded))
  assert kuhn_exact.expected_value(invalid, invalid) == pytest.approx(
      kuhn_exact.expected_value(folded, folded))


def test_invalid_opening_forfeits_one_chip():
  policy = kuhn_exact.uniform_policy()
  policy.update({s: np.zeros(2) for s in kuhn_exact.FIRST_MOVER_INFO_STATES})
  assert kuhn_exact.expected_value(policy, policy) == pytest.approx(-1.0)
  assert kuhn_exact.best_response_value(policy, 1) == pytest.approx(1.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=12, max_size=12))
def test_best_responses_do_at_least_as_well_as_the_policy(rows):
  # Each row is (pass share, kept mass): probabilities with arbitrary invalid mass.
  policy = {s: kept * np.array([share, 1 - share])
            for s, (share, kept) in zip(kuhn_exact.INFO_STATES, rows)}
  on_policy = kuhn_exact.expected_value(policy, policy)
  assert kuhn_exact.best_response_value(policy, 0) >= on_policy - 1e-12
  assert kuhn_exact.best_response_value(policy, 1) >= -on_policy - 1e-12
  assert kuhn_exact.exploitability(policy) >= -1e-12


def prompts() -> dict:
  return {s: f"<prompt for {s}>" for s in kuhn_exact.INFO_STATES}


def test_distributions_from_scores_recovers_distribution_and_invalid_mass():
  rng = np.random.default_rng(3)
  truth = {s: rng.dirichlet([1.0, 1.0, 1.0]) for s in kuhn_exact.INFO_STATES}  # pass, bet, other
  responses = kuhn_exact.bare_responses()
  assert responses["0b"] == ("\\boxed{[fold]}", "\\boxed{[call]}")
  calls = []

  def score_fn(prompt_list, response_list):
    calls.append(len(prompt_list))
    out = []
    for prompt, response in zip(prompt_list, response_list):
      s = prompt[len("<prompt for "):-1]
      out.append(np.log(truth[s][responses[s].index(response)]))
    return np.array(out)

  estimate = kuhn_exact.distributions_from_scores(score_fn, prompts())
  assert calls == [24]
  for s in kuhn_exact.INFO_STATES:
    np.testing.assert_allclose(estimate.policy[s], truth[s][:2] / truth[s][:2].sum(), rtol=1e-12)
    assert estimate.invalid_mass[s] == pytest.approx(truth[s][2], abs=1e-12)
  assert kuhn_exact.invalid_mass(estimate.policy)["1p"] == pytest.approx(0.0, abs=1e-12)


def test_distributions_from_scores_rejects_bad_scores():
  with pytest.raises(ValueError, match="f\\[24\\]"):
    kuhn_exact.distributions_from_scores(lambda p, r: np.zeros(12), prompts())
  with pytest.raises(ValueError, match="sum to"):  # log(0.6) twice: 1.2 > 1
    kuhn_exact.distributions_from_scores(lambda p, r: np.full(24, np.log(0.6)), prompts())
  with pytest.raises(ValueError, match="prompts_by_infoset"):
    kuhn_exact.distributions_from_scores(lambda p, r: np.zeros(24), {"0": "x"})


def test_distributions_from_samples_counts():
  k = 8
  plan = {s: (i % 5, (2 * i) % 4) for i, s in enumerate(kuhn_exact.INFO_STATES)}  # passes, bets

  def sample_fn(prompt_list, num):
    assert num == k
    out = []
    for prompt in prompt_list:
      passes, bets = plan[prompt[len("<prompt for "):-1]]
      out.append(["P"] * passes + ["B"] * bets + ["rambling"] * (num - passes - bets))
    return out

  seen = set()

  def parse_fn(info_state, text):
    seen.add(info_state)
    return {"P": "pass", "B": "bet"}.get(text)

  estimate = kuhn_exact.distributions_from_samples(sample_fn, prompts(), parse_fn, k)
  assert seen == set(kuhn_exact.INFO_STATES)
  for s, (passes, bets) in plan.items():
    np.testing.assert_allclose(estimate.policy[s], [passes / k, bets / k])
    assert estimate.invalid_mass[s] == pytest.approx((k - passes - bets) / k)
  assert kuhn_exact.invalid_mass(estimate.policy) == pytest.approx(estimate.invalid_mass)
  with pytest.raises(ValueError, match="parse_fn"):
    kuhn_exact.distributions_from_samples(sample_fn, prompts(), lambda s, t: "call", k)
  with pytest.raises(ValueError, match="k"):
    kuhn_exact.distributions_from_samples(sample_fn, prompts(), parse_fn, 0)


def test_report_json_recomputes_with_openspiel(tmp_path):
  policy = random_policy(np.random.default_rng(4))
  path = tmp_path / "eval" / "kuhn.json"
  kuhn_exact.write_json(path, kuhn_exact.report(policy))
  loaded = json.loads(path.read_text())
  assert set(loaded["distributions"]) == set(kuhn_exact.INFO_STATES)
  recomputed = openspiel_exploitability.exploitability(
      GAME, to_openspiel({s: np.array(p) for s, p in loaded["distributions"].items()}))
  assert loaded["exploitability"] == pytest.approx(recomputed, abs=1e-9)
  assert loaded["nash_conv"] == pytest.approx(2 * recomputed, abs=1e-9)
  assert loaded["equilibrium_value_first_mover"] == pytest.approx(-1 / 18)
  assert loaded["invalid_mass_mean"] == 0.0 and loaded["invalid_mass_in_exploitability"]
  assert len(loaded["best_response_values"]) == 2


def test_report_of_invalid_mass():
  carried = with_invalid(kuhn_exact.uniform_policy(), "2", kuhn_exact.PASS, 0.25)
  out = kuhn_exact.report(carried)
  assert out["invalid_mass"]["2"] == pytest.approx(0.25) and out["invalid_mass_in_exploitability"]
  assert out["distributions"]["2"] == pytest.approx([0.25, 0.5])
  reported = {s: 0.1 for s in kuhn_exact.INFO_STATES}
  out = kuhn_exact.report(kuhn_exact.uniform_policy(), invalid_mass=reported)
  assert out["invalid_mass_mean"] == pytest.approx(0.1)
  assert not out["invalid_mass_in_exploitability"]
  assert out["exploitability"] == pytest.approx(0.4583333, abs=1e-7)
  with pytest.raises(ValueError, match="invalid_mass"):
    kuhn_exact.report(carried, invalid_mass=reported)
