"""The learner on a toy bigram policy: exact first-epoch ratio, micro-batching, the RAE fold's
baselines taken into the state."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from spiral_jax.rl import losses, train_step as ts

V = 7


def bigram_logprobs(params, prefix, prefix_mask, row_prefix, tokens, input_mask):
  del prefix, prefix_mask, row_prefix
  logits = params["w"][tokens[:, :-1]]
  logp_all = jax.nn.log_softmax(logits, -1)
  logp = jnp.take_along_axis(logp_all, tokens[:, 1:, None], -1)[..., 0]
  entropy = -(jnp.exp(logp_all) * logp_all).sum(-1)
  pad = jnp.zeros((tokens.shape[0], 1))
  return (jnp.concatenate([pad, logp], 1) * input_mask,
          jnp.concatenate([pad, entropy], 1) * input_mask)


def make_batch(key, b=8, length=6):
  k1, k2, k3 = jax.random.split(key, 3)
  tokens = jax.random.randint(k1, (b, length), 0, V)
  loss_mask = jnp.zeros((b, length)).at[:, 3:].set(1.0)
  return ts.TrainBatch(
      prefix=jnp.zeros((1, 0), jnp.int32), prefix_mask=jnp.zeros((1, 0), bool),
      row_prefix=jnp.zeros((b,), jnp.int32), tokens=tokens,
      input_mask=jnp.ones((b, length), bool), loss_mask=loss_mask,
      advantage=jax.random.choice(k2, jnp.array([-1.0, 0.95, 1.0, -1.5, 0.5]), (b,)),
      sample_valid=jnp.ones((b,), bool).at[-1].set(False),
      baselines=jax.random.uniform(k3, (1, 1, 2), minval=-1, maxval=1))


def make(num_micro_batches=1, epochs=2, name="ppo_clip"):
  tx = optax.adam(1e-2)
  params = {"w": jax.random.normal(jax.random.key(0), (V, V))}
  state = ts.init_state(params, tx, num_game_kinds=1, seed=0)
  step = jax.jit(ts.make_train_step(bigram_logprobs, tx, losses.LossConfig(name=name),
                                    epochs=epochs, num_micro_batches=num_micro_batches))
  return state, step


def test_first_epoch_ratio_is_exactly_one_and_the_second_moves():
  state, step = make()
  new, m = step(state, make_batch(jax.random.key(1)))
  assert float(m["ratio_first_epoch"]) == 1.0
  assert float(m["ratio_last_epoch"]) != 1.0
  assert int(new.step) == 1 and float(m["grad_norm"]) > 0
  assert not np.allclose(new.params["w"], state.params["w"])


def test_the_batch_advantages_train_and_its_baselines_become_the_state():
  state, step = make()
  batch = make_batch(jax.random.key(2)).replace(
      advantage=jnp.array([-1.0, 0.5, 1.0, -1.5, 0.25, 1.0, -0.5, jnp.nan]))  # last row: padding
  new, m = step(state, batch)
  np.testing.assert_array_equal(new.rae, batch.baselines)
  assert float(m["kept_samples"]) == 7 and int(m["nonfinite"]) == 0  # padding's NaN is ignored
  assert float(m["advantage_min"]) == -1.5 and float(m["advantage_max"]) == 1.0
  assert float(m["log_ratio_min"]) <= 0 <= float(m["log_ratio_max"])
  assert float(m["log_ratio_min"]) < float(m["log_ratio_max"])  # the second epoch moved


def test_micro_batches_equal_the_full_batch():
  batch = make_batch(jax.random.key(3))
  state, step1 = make(num_micro_batches=1)
  _, step4 = make(num_micro_batches=4)
  a, ma = step1(state, batch)
  b, mb = step4(state, batch)
  np.testing.assert_allclose(a.params["w"], b.params["w"], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(ma["loss"], mb["loss"], rtol=1e-5, atol=1e-7)


def test_zero_advantage_samples_give_no_gradient():
  state, step = make(epochs=1, name="reinforce")
  batch = make_batch(jax.random.key(4)).replace(advantage=jnp.zeros((8,)))
  new, m = step(state, batch)
  np.testing.assert_array_equal(new.params["w"], state.params["w"])


def test_kl_penalty_pulls_towards_the_reference_and_needs_it():
  tx = optax.adam(1e-2)
  params = {"w": jax.random.normal(jax.random.key(0), (V, V))}
  state = ts.init_state(params, tx, num_game_kinds=1, seed=0)
  batch = make_batch(jax.random.key(7))
  step = jax.jit(ts.make_train_step(bigram_logprobs, tx, losses.LossConfig(kl_beta=1.0)))
  new_same, m_same = step(state, batch, params)
  assert float(m_same["kl"]) == 0.0  # the first epoch's policy is the reference itself
  far = {"w": params["w"] + 3.0 * jax.random.normal(jax.random.key(9), (V, V))}
  new_far, m_far = step(state, batch, far)
  assert float(m_far["kl"]) > 1e-4  # (Dr.GRPO divides by its constant, 4096)
  assert not np.allclose(new_same.params["w"], new_far.params["w"])  # the penalty has a gradient
  # The reference is scored once per step, split into the same micro-batches as the policy.
  split = jax.jit(ts.make_train_step(bigram_logprobs, tx, losses.LossConfig(kl_beta=1.0),
                                     num_micro_batches=2))
  new_split, m_split = split(state, batch, far)
  np.testing.assert_allclose(new_split.params["w"], new_far.params["w"], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(float(m_split["kl"]), float(m_far["kl"]), rtol=1e-5)
  with pytest.raises(ValueError, match="ref_params"):
    step(state, batch)
