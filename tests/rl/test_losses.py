import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spiral_jax.rl import losses


def _toy_logp(theta, tokens):
  """A toy policy: per-position softmax over a 5-token vocabulary; f32[B, T] log-probs."""
  logits = theta[None, :, :] * jnp.arange(1, tokens.shape[0] + 1)[:, None, None] / 2.0
  logp = jax.nn.log_softmax(logits, -1)
  return jnp.take_along_axis(logp, tokens[..., None], -1)[..., 0]


@pytest.mark.parametrize("name", ["ppo_clip", "reinforce"])
@pytest.mark.parametrize("aggregation", ["drgrpo", "token_mean", "sample_mean"])
def test_gradient_matches_finite_differences(name, aggregation):
  jax.config.update("jax_enable_x64", True)
  try:
    key = jax.random.key(0)
    theta = jax.random.normal(key, (6, 5), jnp.float64)
    tokens = jax.random.randint(jax.random.key(1), (4, 6), 0, 5)
    old = _toy_logp(theta + 0.05 * jax.random.normal(jax.random.key(2), theta.shape), tokens)
    adv = jnp.array([1.0, -0.5, 0.0, 2.0])
    mask = jnp.array([[1, 1, 1, 0, 0, 0], [1] * 6, [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0]])
    weight = jnp.array([1.0, 1.0, 0.0, 1.0])
    cfg = losses.LossConfig(name=name, aggregation=aggregation, drgrpo_constant=8.0, kl_beta=0.1)
    ref = _toy_logp(jnp.zeros_like(theta), tokens)

    def f(t):
      return losses.policy_loss(cfg, _toy_logp(t, tokens), old, adv, mask, weight, ref)[0]

    grad = jax.grad(f)(theta)
    eps = 1e-6
    direction = jax.random.normal(jax.random.key(3), theta.shape, jnp.float64)
    numeric = (f(theta + eps * direction) - f(theta - eps * direction)) / (2 * eps)
    np.testing.assert_allclose((grad * direction).sum(), numeric, rtol=1e-5, atol=1e-9)
    assert float(jnp.abs(grad).sum()) > 0
  finally:
    jax.config.update("jax_enable_x64", False)


def test_ratio_is_exactly_one_when_policies_match_and_clipping_bites():
  logp = jnp.log(jnp.array([[0.2, 0.5, 0.9]]))
  cfg = losses.LossConfig()
  loss, m = losses.policy_loss(cfg, logp, logp, jnp.array([1.0]), jnp.ones((1, 3)), jnp.ones(1))
  assert float(m["ratio_sum"]) == 3.0 and float(m["clipped_tokens"]) == 0.0
  np.testing.assert_allclose(loss, -3.0 / 4096.0)  # Dr.GRPO: token sum over the constant
  # Ratio 2 with a positive advantage is clipped at 1.2: the gradient through logp is zero.
  g = jax.grad(lambda lp: losses.policy_loss(cfg, lp, logp - jnp.log(2.0), jnp.array([1.0]),
                                             jnp.ones((1, 3)), jnp.ones(1))[0])(logp)
  np.testing.assert_array_equal(g, 0.0)


def test_zero_weight_samples_do_not_count():
  logp = jnp.log(jnp.array([[0.5, 0.5], [0.1, 0.1]]))
  cfg = losses.LossConfig(name="reinforce", aggregation="sample_mean")
  loss, _ = losses.policy_loss(cfg, logp, logp, jnp.array([1.0, 7.0]), jnp.ones((2, 2)),
                               jnp.array([1.0, 0.0]))
  np.testing.assert_allclose(loss, -np.log(0.5), rtol=1e-6)


@pytest.mark.parametrize("field,value", [("name", "dpo"), ("aggregation", "max"),
                                         ("clip_eps", 0.0), ("kl_beta", -1.0),
                                         ("drgrpo_constant", 0.0)])
def test_bad_config_names_the_field(field, value):
  with pytest.raises(ValueError, match=f"loss.{field}"):
    losses.LossConfig(**{field: value})


def test_micro_batches_with_the_batch_denominator_sum_to_the_full_loss():
  key = jax.random.key(5)
  logp = -jax.random.uniform(key, (6, 4))
  old = logp + 0.1
  adv = jnp.array([1.0, -1.0, 0.5, 0.0, 2.0, -0.3])
  mask = (jax.random.uniform(jax.random.key(6), (6, 4)) > 0.3).astype(jnp.float32)
  weight = jnp.array([1.0, 1.0, 1.0, 0.0, 1.0, 1.0])
  for aggregation in losses.AGGREGATIONS:
    cfg = losses.LossConfig(aggregation=aggregation)
    full = losses.policy_loss(cfg, logp, old, adv, mask, weight)[0]
    den = losses.denominator(cfg, mask, weight)
    parts = sum(losses.policy_loss(cfg, logp[i:i + 2], old[i:i + 2], adv[i:i + 2], mask[i:i + 2],
                                   weight[i:i + 2], denom=den)[0] for i in (0, 2, 4))
    np.testing.assert_allclose(parts, full, rtol=1e-6)
