"""Policy.from_hf against transformers on tiny random Qwen3 / Qwen2 / Llama checkpoints (fp32)."""
import numpy as np
import pytest

from spiral_jax.model import Policy
from spiral_jax.sampling import generate
from tests.model import hf_checkpoints as ckpt

FAMILIES = ["qwen3", "qwen2", "llama"]
LENGTHS = [12, 7, 3]  # a left-padded batch: rows of different lengths


@pytest.fixture(scope="module", params=FAMILIES)
def checkpoint(request, tmp_path_factory):
  model = ckpt.build_model(request.param)
  folder = ckpt.save(model, str(tmp_path_factory.mktemp(request.param)))
  return request.param, model, Policy.from_hf(folder, dtype="float32")


def test_config_read_from_the_checkpoint(checkpoint):
  family, model, policy = checkpoint
  config = policy.config
  assert config.family == family
  assert config.tie_embeddings == model.config.tie_word_embeddings
  assert config.qk_norm == (family == "qwen3") and config.qkv_bias == (family == "qwen2")
  assert (config.rope_scaling is not None) == (family == "llama")
  assert policy.num_params == sum(p.numel() for p in model.parameters())


def test_logits_match_transformers_on_a_padded_batch(checkpoint):
  _, model, policy = checkpoint
  rows = ckpt.random_prompts(1, LENGTHS)
  expected, mask = ckpt.hf_logits(model, rows)
  ours = np.asarray(policy.logits(rows))
  assert ours.shape == expected.shape == (3, 12, ckpt.VOCAB)
  assert ours.dtype == np.float32
  np.testing.assert_allclose(ours[mask], expected[mask], atol=1e-4, rtol=0)
  # the logits are not trivially close: rows differ from each other by far more than 1e-4
  assert np.abs(expected[0, -1] - expected[1, -1]).max() > 0.1


def test_greedy_generate_matches_transformers_for_64_tokens(checkpoint):
  _, model, policy = checkpoint
  rows = ckpt.random_prompts(2, LENGTHS)
  expected = ckpt.hf_greedy(model, rows, 64)
  out = generate(policy, rows, max_new_tokens=64, greedy=True)
  np.testing.assert_array_equal(out.tokens, expected)
  assert out.truncated.all() and (out.lengths == 64).all()  # no stop ids without a tokenizer
  assert len(set(map(tuple, out.tokens))) == 3  # the rows really decoded differently


def test_token_logprobs_match_transformers(checkpoint):
  import torch
  _, model, policy = checkpoint
  tokens = np.array(ckpt.random_prompts(3, [10, 10]))
  mask = np.ones_like(tokens, bool)
  mask[1, 6:] = False  # right padding, as the learner's batches have
  ours = np.asarray(policy.token_logprobs(tokens, mask, temperature=0.7))
  with torch.no_grad():
    logits = model(input_ids=torch.tensor(tokens)).logits.float() / 0.7
  expected = torch.log_softmax(logits, -1)[:, :-1].gather(-1, torch.tensor(tokens[:, 1:, None]))
  expected = np.concatenate([np.zeros((2, 1)), expected[..., 0].numpy()], 1)
  real = np.concatenate([np.zeros((2, 1), bool), mask[:, 1:]], 1)
  np.testing.assert_allclose(ours[real], expected[real], atol=1e-5)
  assert (ours[~real] == 0).all()
