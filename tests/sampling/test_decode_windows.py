"""Decode windows: a cache grown window by window samples what one full-size cache does."""
import jax
import numpy as np
import pytest

from spiral_jax.model import ModelConfig, Policy, transformer
from spiral_jax.parallel import mesh as mesh_lib
from spiral_jax.sampling import generate, sampler

VOCAB = 96
CONFIG = ModelConfig(vocab_size=VOCAB, d_model=64, num_layers=2, num_heads=4, num_kv_heads=2,
                     head_dim=16, mlp_dim=128, max_seq_len=512)


@pytest.fixture(scope="module")
def policy():
  graphdef, params = transformer.create(CONFIG, jax.random.key(4))
  return Policy(config=CONFIG, graphdef=graphdef, params=params)


def prompts(seed: int = 0) -> list[list[int]]:
  rng = np.random.RandomState(seed)
  return [rng.randint(1, VOCAB, n).tolist() for n in (9, 30, 17, 4, 25)]


def one_window(policy, monkeypatch, rows, **kwargs):
  """``generate`` with a first window as large as any budget: the whole cache from the start."""
  with monkeypatch.context() as m:
    m.setattr(sampler, "DECODE_WINDOW", 1 << 20)
    return generate(policy, rows, **kwargs)


def test_windows_double_up_to_the_budget():
  assert sampler.decode_windows(16) == [16]
  assert sampler.decode_windows(64) == [64]
  assert sampler.decode_windows(128) == [64, 128]
  assert sampler.decode_windows(4096) == [64 * 2 ** i for i in range(7)]


def test_extend_cache_appends_empty_slots():
  cache = transformer.init_cache(CONFIG, 2, 5)
  cache = cache.replace(mask=cache.mask.at[:, :3].set(True), index=cache.index + 3)
  grown = transformer.extend_cache(cache, 8)
  assert grown.size == 8 and int(grown.index) == 3
  assert grown.k[0].shape == (2, 2, 16, 8) and grown.v[0].shape == (2, 2, 8, 16)
  assert grown.mask[:, :3].all() and not grown.mask[:, 3:].any()
  with pytest.raises(ValueError, match="below the cache's 5 slots"):
    transformer.extend_cache(cache, 4)


@pytest.mark.parametrize("kwargs", [dict(greedy=True), dict(temperature=1.0, seed=5)],
                         ids=["greedy", "sampled"])
def test_windowed_decode_samples_what_one_window_does(policy, monkeypatch, kwargs):
  """200 new tokens: windows of 64, 128 and 256 slots (three decode loops, two cache growths)."""
  rows = prompts()
  windowed = generate(policy, rows, max_new_tokens=200, stop_ids=(), **kwargs)
  whole = one_window(policy, monkeypatch, rows, max_new_tokens=200, stop_ids=(), **kwargs)
  np.testing.assert_array_equal(windowed.tokens, whole.tokens)
  np.testing.assert_allclose(windowed.logprobs, whole.logprobs, atol=2e-5)
  assert (windowed.lengths == 200).all()


def test_rows_stop_inside_and_across_windows(policy, monkeypatch):
  """Stop ids end rows at different steps; a budget that is not a window end (100 of 128) stops
  the last window early."""
  rows = prompts(seed=1)
  probe = generate(policy, rows, max_new_tokens=100, temperature=1.0, seed=9, stop_ids=())
  # a stop id that one row first emits inside the first window and another after it (or never)
  first = {t: [row.tolist().index(t) if t in row else 100 for row in probe.tokens]
           for t in range(VOCAB)}
  stops = [next(t for t, at in first.items() if min(at) < 63 and max(at) > 64)]
  windowed = generate(policy, rows, max_new_tokens=100, temperature=1.0, seed=9, stop_ids=stops)
  whole = one_window(policy, monkeypatch, rows, max_new_tokens=100, temperature=1.0, seed=9,
                     stop_ids=stops)
  np.testing.assert_array_equal(windowed.tokens, whole.tokens)
  np.testing.assert_array_equal(windowed.lengths, whole.lengths)
  np.testing.assert_array_equal(windowed.truncated, whole.truncated)
  assert windowed.lengths.min() < 64 < windowed.lengths.max()  # inside and after window one


@pytest.mark.parametrize("shape", [{"data": 2, "fsdp": 2, "tensor": 2}, {"data": 8}],
                         ids=["2x2x2", "8x1x1"])
def test_windowed_decode_on_8_devices_equals_one(policy, shape):
  rows = prompts(seed=2)
  one = generate(policy, rows, max_new_tokens=130, temperature=1.0, seed=3, stop_ids=())
  sharded = generate(policy, rows, max_new_tokens=130, temperature=1.0, seed=3, stop_ids=(),
                     mesh=mesh_lib.make_mesh(shape))
  np.testing.assert_array_equal(one.tokens, sharded.tokens)
  np.testing.assert_allclose(one.logprobs, sharded.logprobs, atol=2e-5)


def test_a_second_windowed_call_compiles_nothing(policy):
  rows = prompts(seed=3)
  generate(policy, rows, max_new_tokens=150, greedy=True, stop_ids=())
  traces, compiles = sampler.trace_counts(), sampler.compile_count()
  generate(policy, prompts(seed=4), max_new_tokens=140, greedy=True, stop_ids=())
  assert sampler.trace_counts() == traces and sampler.compile_count() == compiles
