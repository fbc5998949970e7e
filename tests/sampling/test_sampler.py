"""generate() on a stub bigram model whose next-token probabilities are known exactly."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from flax import nnx
from hypothesis import given, settings, strategies as st

from spiral_jax.model import ModelConfig, Policy
from spiral_jax.sampling import choice, sampler
from spiral_jax.sampling import generate

VOCAB = 8
STOP = 7
# row r: the next-token distribution after token r, BASE rotated so the likeliest is r + 1 mod 8
BASE = np.array([0.3, 0.2, 0.15, 0.11, 0.09, 0.08, 0.05, 0.02])  # no ties: filters are exact
PROBS = np.stack([np.roll(BASE, r + 1) for r in range(VOCAB)])


class Bigram(nnx.Module):
  """The sampler's model interface with logits log PROBS[previous token]; the cache is unused."""

  def __init__(self, config: ModelConfig, table: np.ndarray):
    self.config = config
    self.table = nnx.Param(jnp.asarray(table, jnp.float32))

  def __call__(self, tokens, positions, mask, cache=None):
    if cache is not None:
      cache = cache.replace(index=cache.index + tokens.shape[1])
    return tokens[..., None], cache

  def unembedding(self):
    return self.table.get_value()

  def logits(self, hidden, unembedding=None):
    return self.unembedding()[hidden[..., 0]]


class CharTokenizer:
  """Token i is the letter chr(97 + i); STOP is the end of turn."""
  vocab_size, eos_id, pad_id, stop_ids = VOCAB, STOP, 0, (STOP,)

  def encode(self, text):
    return [ord(c) - 97 for c in text]

  def encode_batch(self, texts):
    return [self.encode(t) for t in texts]

  def decode(self, ids):
    return "".join(chr(97 + i) for i in ids)


@pytest.fixture(scope="module")
def policy():
  config = ModelConfig(vocab_size=VOCAB, d_model=2, num_layers=1, num_heads=1, num_kv_heads=1,
                       head_dim=2, mlp_dim=2, max_seq_len=1024)
  graphdef, params = nnx.split(Bigram(config, np.log(PROBS)))
  return Policy(config=config, graphdef=graphdef, params=params, tokenizer=CharTokenizer())


def expected_probs(previous: int, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0):
  p = PROBS[previous] ** (1 / temperature)
  p = p / p.sum()
  keep = np.ones(VOCAB, bool)
  order = np.argsort(-p)
  if top_k:
    keep[order[top_k:]] = False
  q = np.where(keep, p, 0) / np.where(keep, p, 0).sum()
  before = np.cumsum(q[order]) - q[order]
  keep[order[before >= top_p]] = False
  return np.where(keep, p, 0) / np.where(keep, p, 0).sum()


def chi_square_pvalue(samples: np.ndarray, probs: np.ndarray) -> float:
  counts = np.bincount(samples, minlength=VOCAB)
  assert counts[probs == 0].sum() == 0, "drew a token the filter removed"
  support = probs > 0
  return scipy.stats.chisquare(counts[support], probs[support] * len(samples)).pvalue


SETTINGS = [dict(), dict(temperature=0.7), dict(temperature=1.5), dict(top_p=0.6),
            dict(temperature=0.7, top_p=0.8), dict(top_k=3), dict(top_k=5, top_p=0.5)]


@pytest.mark.parametrize("kwargs", SETTINGS,
                         ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()) or "plain")
def test_sampling_frequencies_pass_chi_square(policy, kwargs):
  rows = 4000
  out = generate(policy, [[3]] * rows, max_new_tokens=3, seed=11, stop_ids=(), **kwargs)
  first = out.tokens[:, 0]  # drawn in the prefill, after token 3
  assert chi_square_pvalue(first, expected_probs(3, **kwargs)) > 1e-3
  # a later step, drawn inside the decode loop, given the token before it
  previous = np.bincount(out.tokens[:, 1]).argmax()
  later = out.tokens[:, 2][out.tokens[:, 1] == previous]
  assert len(later) > 500
  assert chi_square_pvalue(later, expected_probs(previous, **kwargs)) > 1e-3
  if kwargs:  # the test has power: the plain distribution is rejected
    assert chi_square_pvalue(first, expected_probs(3)) < 1e-6


def test_logprobs_are_under_temperature_scaled_unfiltered_logits(policy):
  out = generate(policy, [[1], [2, 5]], max_new_tokens=6, temperature=0.7, top_p=0.5, seed=2,
                 stop_ids=())
  previous = np.concatenate([[[1], [5]], out.tokens[:, :-1]], axis=1)
  tempered = PROBS ** (1 / 0.7)
  expected = np.log(tempered / tempered.sum(1, keepdims=True))[previous, out.tokens]
  np.testing.assert_allclose(out.logprobs, expected, atol=1e-5)
  greedy = generate(policy, [[1]], max_new_tokens=3, greedy=True, stop_ids=())
  np.testing.assert_array_equal(greedy.tokens[0], [2, 3, 4])  # the argmax after r is r + 1
  np.testing.assert_allclose(greedy.logprobs[0], np.log(0.3), atol=1e-6)


def test_fixed_seed_reproduces_and_seeds_differ(policy):
  prompts = [[1, 2], [3], [4, 4, 4]] * 10
  a = generate(policy, prompts, max_new_tokens=12, seed=5, stop_ids=())
  b = generate(policy, prompts, max_new_tokens=12, seed=5, stop_ids=())
  c = generate(policy, prompts, max_new_tokens=12, seed=6, stop_ids=())
  np.testing.assert_array_equal(a.tokens, b.tokens)
  np.testing.assert_array_equal(a.logprobs, b.logprobs)
  assert (a.tokens != c.tokens).any()


def test_rows_stop_on_their_own_stop_ids(policy):
  out = generate(policy, [[0], [5], [6]] * 30, max_new_tokens=10, seed=3)  # default: the eos
  saw_stop = False
  for row, logprobs, length, truncated, text in zip(out.tokens, out.logprobs, out.lengths,
                                                    out.truncated, out.texts):
    hits = np.flatnonzero(row == STOP)
    if len(hits):
      saw_stop = True
      assert not truncated and length == hits[0] + 1
      assert (row[length:] == 0).all() and (logprobs[length:] == 0).all()
      assert text == CharTokenizer().decode(row[:length - 1])
    else:
      assert truncated and length == 10 and text == CharTokenizer().decode(row)
  assert saw_stop and out.truncated.any()
  custom = generate(policy, [[0]] * 20, max_new_tokens=10, seed=3, stop_ids=[1, 2])
  for row, length in zip(custom.tokens, custom.lengths):
    assert not set(row[:length - 1].tolist()) & {1, 2}


def test_text_prompts_use_the_tokenizer(policy):
  out = generate(policy, ["abc", "h"], max_new_tokens=4, greedy=True, stop_ids=())
  assert out.texts == ["defg", "abcd"]  # the argmax after token r is r + 1 (mod 8)


def test_a_second_call_in_the_same_bucket_compiles_nothing(policy):
  generate(policy, [[1, 2, 3]] * 5, max_new_tokens=20, temperature=0.9, top_p=0.95, seed=0)
  traces, compiles = sampler.trace_counts(), sampler.compile_count()
  # other batch size, prompt lengths, max_new_tokens, temperature, top_p, seed: same buckets
  # (only switching top-p on or off, greedy, or top_k changes the program)
  out = generate(policy, [[1] * 9, [2]] * 3 + [[3]], max_new_tokens=25, temperature=0.5,
                 top_p=0.8, seed=4)
  assert out.tokens.shape == (7, 25)
  assert sampler.trace_counts() == traces
  assert sampler.compile_count() == compiles
  generate(policy, [[1] * 20], max_new_tokens=20, top_p=0.9)  # prompt bucket 16 -> 32
  assert sampler.trace_counts()["prefill"] == traces["prefill"] + 1


def test_buckets():
  assert [sampler.bucket(n) for n in (1, 2, 3, 17, 64)] == [1, 2, 4, 32, 64]
  assert sampler.bucket(5, minimum=16) == 16 and sampler.bucket(5, multiple_of=4) == 8
  assert sampler.bucket(3, multiple_of=8) == 8
  assert sampler.bucket(100, buckets=[64, 128, 512]) == 128
  with pytest.raises(ValueError, match="largest bucket 512"):
    sampler.bucket(600, buckets=[64, 512])


@pytest.mark.parametrize("kwargs, message", [
    (dict(prompts=[[]]), "prompt 0 is empty"),
    (dict(prompts=[[1, 99]]), "outside"),
    (dict(max_new_tokens=0), "max_new_tokens must be >= 1"),
    (dict(top_p=0.0), "top_p must be in"),
    (dict(temperature=-1.0), "temperature must be >= 0"),
    (dict(top_k=-2), "top_k"),
    (dict(max_new_tokens=2000), "max_seq_len"),
])
def test_bad_arguments_are_named(policy, kwargs, message):
  args = dict(prompts=[[1]], max_new_tokens=4) | kwargs
  with pytest.raises(ValueError, match=message):
    generate(policy, **args)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.0, 1e-30, 1e-3, 0.5, 1.0, 7.0]), min_size=1,
                max_size=300).filter(lambda w: sum(w) > 0),
       st.sampled_from([0.0, 0.3, 0.999, 1.0 - 2 ** -24]))
def test_inverse_cdf_never_draws_a_zero_weight(weights, uniform):
  padded = np.zeros((1, 300), np.float32)  # one shape, one compile; zero tails are part of the test
  padded[0, :len(weights)] = weights
  index = int(_inverse_cdf(padded, np.array([uniform], np.float32))[0])
  assert 0 <= index < len(weights) and weights[index] > 0


_inverse_cdf = jax.jit(choice.inverse_cdf)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([-jnp.inf, -3.0, 0.0, 0.5, 2.0]), min_size=1, max_size=300)
       .filter(lambda x: max(x) > -jnp.inf))
def test_block_argmax_is_the_first_maximum(values):
  padded = np.full((1, 300), -np.inf, np.float32)
  padded[0, :len(values)] = values
  assert int(_block_argmax(padded)[0]) == int(np.argmax(padded[0]))


_block_argmax = jax.jit(choice.block_argmax)
