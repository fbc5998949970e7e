"""The learner's shared-prefix log-probs equal the model's plain full-sequence log-probs."""
import jax
import jax.numpy as jnp
import numpy as np

from spiral_jax.model import config as model_config
from spiral_jax.model import transformer
from spiral_jax.play import rollout
from spiral_jax.rl import batching, logprobs

CONFIG = model_config.ModelConfig(vocab_size=64, d_model=32, num_layers=2, num_heads=4,
                                  num_kv_heads=2, head_dim=8, mlp_dim=64, max_seq_len=128)


def _moves(key, n=6):
  """Prompts as in SPIRAL: a shared start, a seat token, a long shared middle, a short tail."""
  rng = np.random.default_rng(0)
  start, middle = rng.integers(3, 64, 5).tolist(), rng.integers(3, 64, 40).tolist()
  moves = []
  for i in range(n):
    tail = [10 + i] + rng.integers(3, 64, rng.integers(0, 5)).tolist()
    response = rng.integers(3, 64, rng.integers(1, 5)).tolist()
    moves.append(rollout.Move(start + [1 + i % 2] + middle + tail, response, 0, i % 2, 0, False,
                              False))
  return moves


def test_prefix_logprobs_and_gradients_equal_the_full_sequence():
  graphdef, params = transformer.create(CONFIG, jax.random.key(0))
  moves = _moves(jax.random.key(1))
  batch = batching.train_batch(moves, response_len=4, pad_id=0)
  # Two groups (one per seat token), each prefix 46 tokens, left-padded to 64.
  assert batch.prefix.shape == (2, 64) and batch.prefix_mask.sum(-1).tolist() == [46, 46]
  np.testing.assert_array_equal(batch.row_prefix, [0, 1, 0, 1, 0, 1])
  fn = logprobs.make_logprob_fn(graphdef, temperature=0.7)
  args = [jnp.asarray(x) for x in (batch.prefix, batch.prefix_mask, batch.row_prefix,
                                   batch.tokens, batch.input_mask)]
  got, entropy = jax.jit(fn)(params, *args)
  # Reference: every row's whole sequence, left-padded, through the model's own token_logprobs.
  full = [m.prompt_ids + m.response_ids for m in moves]
  width = max(map(len, full))
  tokens = np.zeros((len(full), width), np.int32)
  mask = np.zeros((len(full), width), bool)
  for i, r in enumerate(full):
    tokens[i, width - len(r):], mask[i, width - len(r):] = r, True
  want = transformer.token_logprobs(graphdef, params, jnp.asarray(tokens), jnp.asarray(mask),
                                    temperature=0.7)
  loss_mask = np.asarray(batch.loss_mask) > 0
  for i, m in enumerate(moves):
    n = len(m.response_ids)
    np.testing.assert_allclose(np.asarray(got)[i][loss_mask[i]], np.asarray(want)[i, -n:],
                               rtol=1e-5, atol=1e-5)
  assert np.all(np.asarray(entropy)[loss_mask] > 0)

  def total(p, use_prefix):
    if use_prefix:
      lp, _ = fn(p, *args)
      return (lp * batch.loss_mask).sum()
    lp = transformer.token_logprobs(graphdef, p, jnp.asarray(tokens), jnp.asarray(mask), 0.7)
    resp = np.zeros_like(mask)
    for i, m in enumerate(moves):
      resp[i, width - len(m.response_ids):] = True
    return (lp * resp).sum()

  g1 = jax.jit(jax.grad(lambda p: total(p, True)))(params)
  g2 = jax.jit(jax.grad(lambda p: total(p, False)))(params)
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_common_prefix_keeps_a_prompt_token_in_every_row():
  same = [rollout.Move(list(range(3, 40)), [5, 6], 0, 0, 0, False, False) for _ in range(3)]
  batch = batching.train_batch(same, response_len=2, pad_id=0)
  assert batch.prefix_mask.sum() == 36  # one prompt token stays with every row
  assert batch.loss_mask[:, 0].sum() == 0 and batch.loss_mask.sum() == 6


def test_two_d_head_equals_log_softmax_and_entropy_has_no_gradient():
  """``logit[target] - logsumexp`` gives log_softmax's values and gradients; the entropy (a
  logged metric) equals -sum p log p and contributes no gradient to the parameters."""
  logits = 3.0 * jax.random.normal(jax.random.key(0), (3, 5, 64))
  targets = jax.random.randint(jax.random.key(1), (3, 5), 0, 64)
  weights = jax.random.normal(jax.random.key(2), (3, 5))

  def old(x):
    logp_all = jax.nn.log_softmax(x, axis=-1)
    picked = jnp.take_along_axis(logp_all, targets[..., None], axis=-1)[..., 0]
    return picked, -(jnp.exp(logp_all) * logp_all).sum(-1)

  (got, got_h), (want, want_h) = logprobs._picked_and_entropy(logits, targets), old(logits)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)
  np.testing.assert_allclose(got_h, want_h, rtol=1e-6, atol=1e-5)
  grad_new = jax.grad(lambda x: (logprobs._picked_and_entropy(x, targets)[0] * weights).sum())
  grad_old = jax.grad(lambda x: (old(x)[0] * weights).sum())
  np.testing.assert_allclose(grad_new(logits), grad_old(logits), rtol=1e-5, atol=1e-6)

  graphdef, params = transformer.create(CONFIG, jax.random.key(0))
  batch = batching.train_batch(_moves(jax.random.key(1)), response_len=4, pad_id=0)
  args = [jnp.asarray(x) for x in (batch.prefix, batch.prefix_mask, batch.row_prefix,
                                   batch.tokens, batch.input_mask)]
  fn = logprobs.make_logprob_fn(graphdef)
  entropy_grad = jax.jit(jax.grad(lambda p: fn(p, *args)[1].sum()))(params)
  assert all(not np.any(np.asarray(g)) for g in jax.tree.leaves(entropy_grad))
  logp_grad = jax.jit(jax.grad(lambda p: fn(p, *args)[0].sum()))(params)
  assert any(np.any(np.asarray(g)) for g in jax.tree.leaves(logp_grad))
