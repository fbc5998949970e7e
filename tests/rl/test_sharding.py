"""Two learner steps on 8 fake devices equal two steps on 1 device."""
import jax
import numpy as np
import optax
import pytest

from spiral_jax.model import config as model_config
from spiral_jax.model.policy import Policy
from spiral_jax.parallel import mesh as mesh_lib
from spiral_jax.play import rollout
from spiral_jax.rl import batching, losses
from spiral_jax.rl import train_step as ts
from spiral_jax.rl.logprobs import make_logprob_fn

CONFIG = model_config.ModelConfig(vocab_size=64, d_model=32, num_layers=2, num_heads=4,
                                  num_kv_heads=2, head_dim=8, mlp_dim=64, max_seq_len=128,
                                  dtype="float32")


def _batch(seed):
  rng = np.random.default_rng(seed)
  shared = rng.integers(3, 64, 40).tolist()
  advantages = [1, -1, -1, 1, 0.95, -0.05, -1.5, 0.5]
  moves = [rollout.Move(shared[:3] + [1 + i % 2] + shared + rng.integers(3, 64, 3).tolist(),
                        rng.integers(3, 64, rng.integers(1, 5)).tolist(), 0, i % 2, i // 2,
                        False, False, advantage=advantages[i % 8]) for i in range(16)]
  return batching.train_batch(moves, response_len=4, pad_id=0,
                              baselines=rng.uniform(-1, 1, (1, 1, 2)))


def _two_steps(mesh, num_micro_batches):
  policy = Policy.init(CONFIG, None, jax.random.key(0), mesh=mesh)
  tx = optax.adam(1e-2)
  step = ts.make_train_step(make_logprob_fn(policy.graphdef, 1.0), tx, losses.LossConfig(),
                            num_micro_batches=num_micro_batches)
  state = ts.init_state(policy.params, tx, 1, 0)
  fn, state = ts.jit_train_step(step, state, mesh, mesh_lib.TRAIN_RULES)
  for seed in (1, 2):
    state, metrics = fn(state, _batch(seed))
  return jax.device_get(state), jax.device_get(metrics)


@pytest.mark.parametrize("shape", [{"data": 8}, {"data": 2, "fsdp": 2, "tensor": 2}])
def test_eight_devices_equal_one(shape):
  one, m1 = _two_steps(mesh_lib.single_device_mesh(), 1)
  eight, m8 = _two_steps(mesh_lib.make_mesh(shape), 2)
  for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(eight.params)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
  np.testing.assert_allclose(one.rae, eight.rae, rtol=1e-6)
  np.testing.assert_allclose(m1["loss"], m8["loss"], rtol=1e-5, atol=1e-7)
  assert float(m1["grad_norm"]) > 0
