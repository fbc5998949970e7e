"""The NNX decoder used functionally: cache consistency, log-probs, dtypes, logical axes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from spiral_jax.model import Policy, preset, transformer
from spiral_jax.parallel import mesh as mesh_lib

CONFIG = preset("tiny", vocab_size=96, d_model=32, num_layers=2, num_heads=4, num_kv_heads=2,
                head_dim=8, mlp_dim=64, dtype="float32", tie_embeddings=False)


@pytest.fixture(scope="module")
def policy():
  return Policy.init(CONFIG, None, key=0)


def test_every_parameter_names_its_axes(policy):
  axes = dict(nnx.to_flat_state(mesh_lib.logical_axes(policy.params)))
  assert axes[("embed_tokens",)] == jax.sharding.PartitionSpec("vocab", "embed")
  assert axes[("layers", 0, "mlp", "down_proj", "kernel")] == jax.sharding.PartitionSpec(
      "mlp", "embed")
  assert axes[("lm_head", "kernel")] == jax.sharding.PartitionSpec("embed", "vocab")
  for path, variable in nnx.to_flat_state(policy.params):
    spec = axes[path]
    assert len(spec) == variable.get_value().ndim and None not in tuple(spec), path


def test_cached_decoding_equals_the_full_forward(policy):
  """Prefill a left-padded prompt into the cache, feed the rest one token at a time."""
  rows = [[5, 6, 7, 8, 9, 10, 11], [20, 21, 22, 23]]
  full = np.asarray(policy.logits(rows))  # [2, 7, V], row 1 left-padded by 3
  tokens, mask = np.zeros((2, 7), np.int32), np.zeros((2, 7), bool)
  for i, row in enumerate(rows):
    tokens[i, 7 - len(row):], mask[i, 7 - len(row):] = row, True
  positions = np.asarray(transformer.positions_from_mask(jnp.asarray(mask)))
  cache = transformer.init_cache(CONFIG, 2, 10)
  step = jax.jit(transformer.forward, static_argnums=0)
  logits, cache = step(policy.graphdef, policy.params, tokens[:, :4], positions[:, :4],
                       mask[:, :4], cache)
  pieces = [np.asarray(logits)]
  for t in range(4, 7):
    logits, cache = step(policy.graphdef, policy.params, tokens[:, t:t + 1],
                         positions[:, t:t + 1], mask[:, t:t + 1], cache)
    pieces.append(np.asarray(logits))
  cached = np.concatenate(pieces, axis=1)
  assert int(cache.index) == 7
  np.testing.assert_allclose(cached[mask], full[mask], atol=1e-5)


def test_token_logprobs_chunks_and_gradients(policy):
  tokens = jnp.asarray(np.random.RandomState(0).randint(0, 96, (3, 11)), jnp.int32)
  mask = jnp.asarray(np.arange(11)[None] < np.array([[11], [8], [5]]))
  logprobs = jax.jit(transformer.token_logprobs, static_argnums=(0, 5))
  whole = logprobs(policy.graphdef, policy.params, tokens, mask, 1.3, 256)
  chunked = logprobs(policy.graphdef, policy.params, tokens, mask, 1.3, 3)
  np.testing.assert_allclose(chunked, whole, atol=1e-6)
  logits = policy.logits(tokens, mask) / 1.3
  direct = np.take_along_axis(np.asarray(jax.nn.log_softmax(logits[:, :-1])),
                              np.asarray(tokens)[:, 1:, None], -1)[..., 0]
  real = np.asarray(mask[:, 1:])
  whole = np.asarray(whole)
  np.testing.assert_allclose(whole[:, 1:][real], direct[real], atol=1e-5)
  assert (whole[:, 0] == 0).all() and (whole[:, 1:][~real] == 0).all()

  def loss(params, chunk):
    return transformer.token_logprobs(policy.graphdef, params, tokens, mask, 1.0, chunk).sum()
  grads = [jax.jit(jax.grad(loss), static_argnums=1)(policy.params, c) for c in (256, 4)]
  for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
    np.testing.assert_allclose(a, b, atol=1e-5)
  assert float(jnp.abs(grads[0]["embed_tokens"].get_value()).sum()) > 0


def test_bfloat16_compute_keeps_float32_master_weights(policy):
  config = CONFIG.replace(dtype="bfloat16")
  fp32 = policy
  bf16 = fp32.replace(config=config, graphdef=transformer.abstract(config)[0])
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(bf16.params))
  rows = [[1, 2, 3, 4, 5, 6]]
  a, b = np.asarray(bf16.logits(rows)), np.asarray(fp32.logits(rows))
  assert a.dtype == np.float32
  np.testing.assert_allclose(a, b, atol=0.05)
  assert np.abs(a - b).max() > 0  # bf16 really was used
  cache = transformer.init_cache(config, 1, 8, dtype=jnp.bfloat16)
  assert cache.k[0].dtype == jnp.bfloat16 and cache.k[0].shape == (1, 2, 8, 8)
  assert transformer.init_cache(config, 1, 8).k[0].dtype == jnp.float32  # on CPU


def test_auto_dtype_is_float32_on_cpu():
  assert preset("tiny").jnp_dtype == jnp.float32
  assert preset("tiny").jnp_param_dtype == jnp.float32


def test_llama3_rope_scaling_changes_only_low_frequencies():
  plain = transformer.rope_inv_freq(preset("llama3_1_8b").replace(rope_scaling=None))
  scaled = transformer.rope_inv_freq(preset("llama3_1_8b"))
  wavelength = 2 * np.pi / plain
  np.testing.assert_array_equal(scaled[wavelength < 8192 / 4], plain[wavelength < 8192 / 4])
  np.testing.assert_allclose(scaled[wavelength > 8192], plain[wavelength > 8192] / 8, rtol=1e-6)


def _dots(jaxpr) -> list:
  """Every dot_general equation of a jaxpr, nested jaxprs (jit, checkpoint, scan) included."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      found.append(eqn)
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          found += _dots(inner)
  return found


def test_weight_products_are_2d_dots_forward_and_backward(policy):
  """Every dot without batch dimensions (the Linear layers, the vocabulary projection, and their
  gradients) multiplies 2-D operands: XLA:CPU runs the backward of a [B, T, d] dot ~2x slower."""
  tokens = jnp.ones((2, 6), jnp.int32)
  mask = jnp.ones((2, 6), bool)

  def loss(params):
    return transformer.token_logprobs(policy.graphdef, params, tokens, mask).sum()

  dots = _dots(jax.make_jaxpr(jax.grad(loss))(policy.params).jaxpr)
  weight_dots = [e for e in dots if not e.params["dimension_numbers"][1][0]]
  # 2 layers x 7 projections forward, 2 per projection backward, and the vocabulary head
  assert len(weight_dots) >= 3 * 2 * 7
  ranks = {tuple(v.aval.ndim for v in e.invars) for e in weight_dots}
  assert ranks == {(2, 2)}, ranks
  # and the flattening changes nothing: one Linear equals the 3-D product
  x = jax.random.normal(jax.random.key(1), (2, 5, 32))
  kernel = jax.random.normal(jax.random.key(2), (32, 7))
  np.testing.assert_allclose(transformer.dense(x, kernel, jnp.float32),
                             jnp.einsum("btd,do->bto", x, kernel), rtol=1e-5, atol=1e-5)
