"""Shared-prefix prefill: prompts grouped by prefix sample what whole prompts do."""
import jax
import numpy as np
import pytest

from spiral_jax.model import ModelConfig, Policy, transformer
from spiral_jax.parallel import mesh as mesh_lib
from spiral_jax.sampling import generate, prefixes

VOCAB = 96
CONFIG = ModelConfig(vocab_size=VOCAB, d_model=64, num_layers=2, num_heads=4, num_kv_heads=2,
                     head_dim=16, mlp_dim=128, max_seq_len=512)


def family_prompts(seed: int = 0) -> list[list[int]]:
  """Two families of prompts (as two games' rules): a long shared prefix each, then tails of
  different lengths, one of them a single token."""
  rng = np.random.RandomState(seed)
  heads = [rng.randint(1, VOCAB, 60).tolist(), rng.randint(1, VOCAB, 40).tolist()]
  heads[1][0] = heads[0][0] + 1 if heads[0][0] + 1 < VOCAB else 1  # they differ at token 0
  tails = [1, 5, 12, 3, 9, 2, 7]
  return [heads[i % 2] + rng.randint(1, VOCAB, n).tolist() for i, n in enumerate(tails)]


@pytest.fixture(scope="module")
def policy():
  graphdef, params = transformer.create(CONFIG, jax.random.key(1))
  return Policy(config=CONFIG, graphdef=graphdef, params=params)


def test_shared_length_leaves_every_row_a_token():
  assert prefixes.shared_length([[1, 2, 3], [1, 2, 4]]) == 2
  assert prefixes.shared_length([[1, 2, 3], [1, 2, 3]]) == 2
  assert prefixes.shared_length([[5], [5, 6]]) == 0
  assert prefixes.shared_length([[1, 2], [3, 2]]) == 0


def test_layout_groups_the_families_and_runs_fewer_tokens():
  rows = family_prompts()
  layout = prefixes.prompt_layout(rows, batch=8, pad_id=0)
  whole = prefixes.prompt_layout(rows, batch=8, pad_id=0, share_prefix=False)
  assert layout.prefix is not None and whole.prefix is None
  assert layout.prefix.shape == (2, 64) and layout.tokens.shape == (8, 16)  # prefixes 60 / 40
  assert whole.tokens.shape == (8, 128)
  assert layout.prefill_tokens == 2 * 64 + 8 * 16 < whole.prefill_tokens
  for i, row in enumerate(rows):  # prefix + tail give back the prompt, padding dropped
    g = layout.row_prefix[i]
    joined = (layout.prefix[g][layout.prefix_mask[g]].tolist()
              + layout.tokens[i][layout.mask[i]].tolist())
    assert joined == row and layout.row_prefix[i] == layout.row_prefix[i % 2]
  assert not layout.mask[len(rows):].any()  # batch padding rows are empty
  assert layout.row_prefix[0] != layout.row_prefix[1]


def test_unrelated_prompts_are_not_split():
  rows = np.random.RandomState(3).randint(0, VOCAB, (8, 40)).tolist()
  assert prefixes.prompt_layout(rows, batch=8, pad_id=0).prefix is None


@pytest.mark.parametrize("kwargs", [dict(greedy=True), dict(temperature=1.0, seed=7),
                                    dict(temperature=0.8, top_p=0.9, seed=3)],
                         ids=["greedy", "sampled", "top_p"])
def test_shared_prefix_samples_what_whole_prompts_do(policy, kwargs):
  rows = family_prompts()
  shared = generate(policy, rows, max_new_tokens=20, stop_ids=(), **kwargs)
  whole = generate(policy, rows, max_new_tokens=20, stop_ids=(), share_prefix=False, **kwargs)
  np.testing.assert_array_equal(shared.tokens, whole.tokens)
  np.testing.assert_allclose(shared.logprobs, whole.logprobs, atol=2e-5)
  np.testing.assert_array_equal(shared.lengths, whole.lengths)


@pytest.mark.parametrize("shape", [{"data": 2, "fsdp": 2, "tensor": 2}, {"data": 8}],
                         ids=["2x2x2", "8x1x1"])
def test_shared_prefix_on_8_devices_equals_one(policy, shape):
  rows = family_prompts(seed=1)
  one = generate(policy, rows, max_new_tokens=16, temperature=1.0, seed=2, stop_ids=(),
                 share_prefix=False)
  mesh = mesh_lib.make_mesh(shape)
  sharded = generate(policy, rows, max_new_tokens=16, temperature=1.0, seed=2, stop_ids=(),
                     mesh=mesh)
  np.testing.assert_array_equal(sharded.tokens, one.tokens)
  np.testing.assert_allclose(sharded.logprobs, one.logprobs, atol=2e-5)


def test_prefix_table_assigns_the_longest_prefix_and_names_bad_sizes():
  table = prefixes.PrefixTable(prefixes=((1, 2), (1, 2, 3, 4)), groups=2, prefix_len=16,
                               tail_len=3)
  assert table.assign([[1, 2, 3, 4, 5], [1, 2, 9], [1, 2, 3, 4]]) == [1, 0, 0]
  assert table.assign([[7, 1, 2, 3]]) is None  # starts with no prefix
  assert table.assign([[1, 2, 5, 5, 5, 5]]) is None  # a tail of 4 > tail_len
  with pytest.raises(ValueError, match="groups=1 must be >= the 2 prefixes"):
    prefixes.PrefixTable(prefixes=((1,), (2,)), groups=1, prefix_len=16, tail_len=3)
  with pytest.raises(ValueError, match="prefix_len=1 must hold the longest prefix"):
    prefixes.PrefixTable(prefixes=((1, 2),), groups=1, prefix_len=1, tail_len=3)


def test_a_prefix_table_fixes_the_shapes_and_samples_what_whole_prompts_do(policy):
  rows = family_prompts(seed=2)
  table = prefixes.PrefixTable(prefixes=(tuple(rows[0][:50]), tuple(rows[1][:30])), groups=4,
                               prefix_len=64, tail_len=40)
  layout = prefixes.prompt_layout(rows, batch=8, pad_id=0, table=table)
  assert layout.prefix.shape == (4, 64) and layout.tokens.shape == (8, 40)
  assert list(layout.row_prefix[:len(rows)]) == [i % 2 for i in range(len(rows))]
  shared = generate(policy, rows, max_new_tokens=12, temperature=1.0, seed=5, stop_ids=(),
                    prefix_table=table)
  whole = generate(policy, rows, max_new_tokens=12, temperature=1.0, seed=5, stop_ids=(),
                   share_prefix=False)
  np.testing.assert_array_equal(shared.tokens, whole.tokens)
  np.testing.assert_allclose(shared.logprobs, whole.logprobs, atol=2e-5)
