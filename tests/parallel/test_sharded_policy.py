"""On 8 fake CPU devices the sharded policy computes what the single-device one does."""
import numpy as np
import pytest

from spiral_jax.model import Policy
from spiral_jax.parallel import mesh as mesh_lib
from spiral_jax.sampling import generate
from tests.model import hf_checkpoints as ckpt

LENGTHS = [11, 4, 7, 2]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  folder = ckpt.save(ckpt.build_model("qwen3", seed=3), str(tmp_path_factory.mktemp("qwen3")))
  policy = Policy.from_hf(folder, dtype="float32")
  rows = ckpt.random_prompts(9, LENGTHS)
  greedy = generate(policy, rows, max_new_tokens=24, greedy=True)
  return folder, rows, np.asarray(policy.logits(rows)), greedy.tokens


@pytest.mark.parametrize("shape", [{"data": 2, "fsdp": 2, "tensor": 2}, {"data": 8}],
                         ids=["2x2x2", "8x1x1"])
def test_sharded_logits_and_greedy_tokens_equal_one_device(reference, shape):
  folder, rows, logits, tokens = reference
  mesh = mesh_lib.make_mesh(shape)
  policy = Policy.from_hf(folder, mesh=mesh, dtype="float32")
  embed = policy.params["embed_tokens"].get_value()
  assert len(embed.sharding.device_set) == 8
  if shape.get("tensor", 1) == 2:  # loaded straight onto (vocab: tensor, embed: fsdp) shards
    assert embed.addressable_shards[0].data.shape == (ckpt.VOCAB // 2, 32)
  np.testing.assert_allclose(np.asarray(policy.logits(rows)), logits, atol=1e-5)
  out = generate(policy, rows, max_new_tokens=24, greedy=True)
  np.testing.assert_array_equal(out.tokens, tokens)
