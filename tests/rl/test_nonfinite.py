"""The learner's non-finite guard: a NaN or infinite loss or gradient skips the update, leaving the
parameters, optimizer state and RAE baselines bit for bit as they were, and is counted."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from spiral_jax.parallel import mesh as mesh_lib
from spiral_jax.rl import losses
from spiral_jax.rl import train_step as ts
from tests.rl.test_sharding import CONFIG
from tests.rl.test_sharding import _batch as sharded_batch
from tests.rl.test_train_step import V, bigram_logprobs, make_batch

# The NaN comes from the data, as a real overflow would: the parameter row of token POISON is NaN,
# so only rows holding POISON score NaN. (A NaN *constant* in ``jnp.where(flag, nan, logp)`` is no
# good here: XLA:CPU in jax 0.10.2 miscompiles ``exp(v - v)`` of such a ``v`` into garbage.)
POISON = V - 1


def nan_row_params():
  w = jax.random.normal(jax.random.key(0), (V, V))
  return {"w": w.at[POISON].set(jnp.nan)}


def clean_batch(seed):
  """``make_batch`` (no zero advantages) without the POISON token."""
  batch = make_batch(jax.random.key(seed))
  return batch.replace(tokens=batch.tokens % POISON)


def poison_row(batch, row=0):
  return batch.replace(tokens=batch.tokens.at[row, 2].set(POISON))


def tx():
  return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-2, weight_decay=0.01))


@functools.cache
def _jitted_step(logprob_fn, epochs, num_micro_batches, skip_nonfinite):
  """Cached, so tests that share a configuration share one compilation."""
  return jax.jit(ts.make_train_step(logprob_fn, tx(), losses.LossConfig(), epochs=epochs,
                                    num_micro_batches=num_micro_batches,
                                    skip_nonfinite=skip_nonfinite))


def make(logprob_fn=bigram_logprobs, *, epochs=2, num_micro_batches=1, skip_nonfinite=True,
         params=None):
  params = params or {"w": jax.random.normal(jax.random.key(0), (V, V))}
  state = ts.init_state(params, tx(), 1, 0)
  return state, _jitted_step(logprob_fn, epochs, num_micro_batches, skip_nonfinite)


def assert_bitwise(a, b):
  a, b = jax.device_get(a), jax.device_get(b)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
    x, y = np.asarray(x), np.asarray(y)
    assert x.dtype == y.dtype and x.shape == y.shape, jax.tree_util.keystr(path)
    assert x.tobytes() == y.tobytes(), f"{jax.tree_util.keystr(path)} changed"


def assert_untouched(before, after):
  """Everything but the step counter equals ``before`` bit for bit; the step still advances."""
  assert_bitwise(before.replace(step=0), after.replace(step=0))
  assert int(after.step) == int(before.step) + 1


def warm(state, step, seeds=(10, 11)):
  """A few clean steps first, so the optimizer moments and baselines are not all zero."""
  for seed in seeds:
    state, m = step(state, clean_batch(seed))
    assert int(m["nonfinite"]) == 0
  assert float(jnp.abs(state.rae).sum()) > 0 and int(state.opt_state[1][0].count) == 4
  return state


@pytest.mark.parametrize("num_micro_batches", [1, 4])
def test_nan_logprobs_in_one_row_skip_every_update_and_leave_the_state(num_micro_batches):
  state, step = make(params=nan_row_params(), num_micro_batches=num_micro_batches)
  state = warm(state, step)
  before = jax.device_get(state)
  after, m = step(state, poison_row(clean_batch(1), row=5))  # one row, in one micro-batch
  assert int(m["nonfinite"]) == 2  # both epochs' updates
  assert not np.isfinite(float(m["loss"]))
  assert_untouched(before, after)
  # The run goes on: the next clean batch trains as if the bad one had never come.
  want, _ = step(before, clean_batch(2))
  got, m = step(after, clean_batch(2))
  assert int(m["nonfinite"]) == 0
  assert_bitwise(want.replace(step=0), got.replace(step=0))


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_non_finite_baselines_never_reach_the_state(bad):
  state, step = make()
  state = warm(state, step)
  before = jax.device_get(state)
  batch = clean_batch(3)
  after, m = step(state, batch.replace(baselines=batch.baselines.at[0, 0, 1].set(bad)))
  assert int(m["nonfinite"]) == 2
  assert np.isfinite(np.asarray(after.rae)).all()
  assert_untouched(before, after)


def test_a_non_finite_advantage_skips_the_step():
  state, step = make()
  batch = clean_batch(4)
  batch = batch.replace(advantage=batch.advantage.at[2].set(jnp.inf))
  after, m = step(state, batch)
  assert int(m["nonfinite"]) == 2
  assert_untouched(jax.device_get(state), after)


def test_a_gradient_norm_that_overflows_is_caught_even_with_a_finite_loss():
  # The log-probs keep their values but their gradient is scaled by 1e30: every gradient entry
  # is finite, their global norm is not.
  def huge(params, *args):
    logp, entropy = bigram_logprobs(params, *args)
    return logp * 1e30 - jax.lax.stop_gradient(logp * 1e30) + jax.lax.stop_gradient(logp), entropy

  state, step = make(huge)
  after, m = step(state, clean_batch(5))
  assert np.isfinite(float(m["loss"])) and not np.isfinite(float(m["grad_norm"]))
  assert int(m["nonfinite"]) == 2
  assert_untouched(jax.device_get(state), after)


def test_only_the_bad_epoch_is_skipped_and_the_baselines_wait_for_a_clean_step():
  # NaN once the parameters have moved: epoch 1 (initial parameters) is finite, epoch 2 is not.
  state, step1 = make(epochs=1)
  start = np.asarray(state.params["w"])

  def after_first_update(params, *args):
    logp, entropy = bigram_logprobs(params, *args)
    moved = jnp.abs(params["w"] - start).sum()  # 0 until the first update, then > 0
    return logp + jax.lax.stop_gradient(jnp.sqrt(-moved)), entropy  # + (-0.0), then + NaN

  _, step2 = make(after_first_update, epochs=2)
  batch = clean_batch(6)
  one_epoch, _ = step1(state, batch)
  after, m = step2(state, batch)
  assert int(m["nonfinite"]) == 1
  np.testing.assert_allclose(after.params["w"], one_epoch.params["w"], rtol=1e-6, atol=1e-7)
  assert not np.allclose(after.params["w"], state.params["w"])
  assert int(after.opt_state[1][0].count) == 1  # one Adam step taken, one skipped
  assert_bitwise(after.rae, state.rae)  # a step with a skipped update folds no games in


@pytest.mark.parametrize("num_micro_batches", [1, 2])
def test_clean_steps_are_what_they_were_without_the_guard(num_micro_batches):
  guarded, step = make(num_micro_batches=num_micro_batches)
  plain, step_plain = make(num_micro_batches=num_micro_batches, skip_nonfinite=False)
  for seed in range(3):
    guarded, m = step(guarded, clean_batch(seed))
    plain, m_plain = step_plain(plain, clean_batch(seed))
    assert int(m["nonfinite"]) == 0 and int(m_plain["nonfinite"]) == 0
    for key in m_plain:
      np.testing.assert_allclose(m[key], m_plain[key], rtol=1e-6, atol=1e-8, err_msg=key)
  # The guard's select may move XLA's fusion by an ulp; nothing more.
  for a, b in zip(jax.tree.leaves(guarded), jax.tree.leaves(plain)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)
  assert_bitwise(guarded.rae, plain.rae)
  assert int(guarded.opt_state[1][0].count) == 6


def test_without_the_guard_nans_spread_into_the_state():
  # The failure the guard prevents (and a check that the poisoned batch really is poisonous).
  state, step = make(params=nan_row_params(), skip_nonfinite=False)
  after, m = step(state, poison_row(clean_batch(1)))
  assert int(m["nonfinite"]) == 2
  assert np.isfinite(np.asarray(state.params["w"][:POISON])).all()
  assert not np.isfinite(np.asarray(after.params["w"][:POISON])).any()


def _check_sharded_skip(fn, state, batches, poison):
  """A clean step, a poisoned one (``state`` donated) that changes nothing, then a clean one."""
  state, m = fn(state, batches[0])
  assert int(m["nonfinite"]) == 0
  shardings = [x.sharding for x in jax.tree.leaves(state)]
  before = jax.device_get(state)
  after, m = fn(state, poison(batches[1]))
  assert int(m["nonfinite"]) == 2
  assert_untouched(before, after)
  assert [x.sharding for x in jax.tree.leaves(after)] == shardings
  after, m = fn(after, batches[2])  # training goes on, without recompiling
  assert int(m["nonfinite"]) == 0 and float(m["grad_norm"]) > 0
  assert fn._cache_size() == 1


def test_sharded_and_donated_a_skipped_step_keeps_the_state_and_shardings():
  mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  # An 8 x 8 bigram table (tokens stay below V = 7), sharded over fsdp x tensor like a weight.
  w = jax.random.normal(jax.random.key(0), (8, 8)).at[POISON].set(jnp.nan)
  params = {"w": jax.device_put(w, jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec("fsdp", "tensor")))}
  opt = tx()
  step = ts.make_train_step(bigram_logprobs, opt, losses.LossConfig(), num_micro_batches=2)
  fn, state = ts.jit_train_step(step, ts.init_state(params, opt, 1, 0), mesh,
                                mesh_lib.TRAIN_RULES)
  assert state.params["w"].sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")
  _check_sharded_skip(fn, state, [clean_batch(s) for s in range(3)], poison_row)


@pytest.mark.slow
def test_sharded_transformer_step_skips_nan_returns():
  from spiral_jax.model.policy import Policy
  from spiral_jax.rl.logprobs import make_logprob_fn

  mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  policy = Policy.init(CONFIG, None, jax.random.key(0), mesh=mesh)
  opt = tx()
  step = ts.make_train_step(make_logprob_fn(policy.graphdef, 1.0), opt, losses.LossConfig(),
                            num_micro_batches=2)
  fn, state = ts.jit_train_step(step, ts.init_state(policy.params, opt, 1, 0), mesh,
                                mesh_lib.TRAIN_RULES)

  def nan_return(batch):
    baselines = np.array(batch.baselines)
    baselines[0, 0, 1] = np.nan
    return batch.replace(baselines=baselines)

  _check_sharded_skip(fn, state, [sharded_batch(s) for s in (1, 2, 3)], nan_return)
