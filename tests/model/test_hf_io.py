"""Hugging Face import details (sharded / bf16 checkpoints, errors, tokenizer) and export_hf."""
import json
import os

import jax
import numpy as np
import pytest
import torch
import transformers

from spiral_jax.errors import InputError
from spiral_jax.model import Policy, export_hf
from spiral_jax.model.hf import SafetensorsFolder
from spiral_jax.sampling import generate
from tests.model import hf_checkpoints as ckpt


@pytest.mark.parametrize("family", ["qwen3", "llama"])
def test_export_round_trips_through_transformers(family, tmp_path):
  model = ckpt.build_model(family, seed=5)
  policy = Policy.from_hf(ckpt.save(model, str(tmp_path / "in")), dtype="float32")
  export_hf(policy, str(tmp_path / "out"))
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "out")).eval()
  assert type(reloaded) is type(model)
  for key in ("rope_parameters", "tie_word_embeddings", "head_dim", "num_key_value_heads",
              "rms_norm_eps"):
    assert getattr(reloaded.config, key) == getattr(model.config, key), key
  rows = ckpt.random_prompts(4, [9, 5])
  expected, mask = ckpt.hf_logits(model, rows)
  theirs, _ = ckpt.hf_logits(reloaded, rows)
  np.testing.assert_allclose(theirs[mask], expected[mask], atol=1e-5)
  again = Policy.from_hf(str(tmp_path / "out"), dtype="float32")
  assert jax.tree.all(jax.tree.map(lambda a, b: bool((np.asarray(a) == np.asarray(b)).all()),
                                   policy.params, again.params))


def test_export_in_bfloat16_and_in_shards(tmp_path):
  model = ckpt.build_model("qwen2", seed=6)
  policy = Policy.from_hf(ckpt.save(model, str(tmp_path / "in")), dtype="float32")
  export_hf(policy, str(tmp_path / "out"), dtype="bfloat16", max_shard_bytes=40_000)
  files = sorted(f for f in os.listdir(tmp_path / "out") if f.endswith(".safetensors"))
  assert len(files) > 2 and os.path.exists(tmp_path / "out" / "model.safetensors.index.json")
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "out"))
  assert reloaded.dtype == torch.bfloat16
  for name, param in model.state_dict().items():
    np.testing.assert_array_equal(reloaded.state_dict()[name].float().numpy(),
                                  param.to(torch.bfloat16).float().numpy(), err_msg=name)


def test_loads_sharded_checkpoints_and_bfloat16_weights(tmp_path):
  model = ckpt.build_model("qwen3", seed=7).to(torch.bfloat16)
  folder = ckpt.save(model, str(tmp_path), max_shard_size="60KB")
  assert len(json.load(open(tmp_path / "model.safetensors.index.json"))["weight_map"]) > 10
  assert len({f for f in os.listdir(tmp_path) if f.endswith(".safetensors")}) > 2
  assert SafetensorsFolder(folder).info("model.norm.weight")[1] == "BF16"
  policy = Policy.from_hf(folder, dtype="float32")
  kernel = np.asarray(policy.params["layers"][1]["mlp"]["down_proj"]["kernel"].get_value())
  assert kernel.dtype == np.float32
  expected = model.model.layers[1].mlp.down_proj.weight.detach().float().T.numpy()
  np.testing.assert_array_equal(kernel, expected)
  embed = np.asarray(policy.params["embed_tokens"].get_value())
  np.testing.assert_array_equal(embed, model.model.embed_tokens.weight.detach().float().numpy())


def test_missing_or_mismatched_tensors_are_named(tmp_path):
  model = ckpt.build_model("llama")
  folder = ckpt.save(model, str(tmp_path))
  config = json.load(open(tmp_path / "config.json"))
  json.dump({**config, "tie_word_embeddings": False, "intermediate_size": 96},
            open(tmp_path / "config.json", "w"))
  with pytest.raises(ValueError, match=r"mlp.*shape.*config.json"):
    Policy.from_hf(folder)
  json.dump({**config, "model_type": "mistral"}, open(tmp_path / "config.json", "w"))
  with pytest.raises(ValueError, match="model_type"):
    Policy.from_hf(folder)
  from safetensors.numpy import load_file, save_file
  tensors = load_file(str(tmp_path / "model.safetensors"))
  del tensors["lm_head.weight"]
  save_file(tensors, str(tmp_path / "model.safetensors"))
  json.dump(config, open(tmp_path / "config.json", "w"))
  with pytest.raises(KeyError, match="lm_head.weight"):
    Policy.from_hf(folder)


def test_tokenizer_is_read_used_and_exported(tmp_path):
  model = ckpt.build_model("qwen3", seed=8)
  folder = ckpt.save(model, str(tmp_path / "in"))
  ckpt.save_tokenizer(folder)
  policy = Policy.from_hf(folder, dtype="float32")
  tok = policy.tokenizer
  assert tok.eos_id == 2 and tok.pad_id == 0 and tok.vocab_size == ckpt.VOCAB
  out = generate(policy, ["w1 w2 w3", "w7"], max_new_tokens=20, greedy=True)
  for text, row, n, truncated in zip(out.texts, out.tokens, out.lengths, out.truncated):
    body = row[:n - (0 if truncated else 1)].tolist()
    assert text == tok.decode(body) and tok.eos_id not in body
    assert truncated or row[n - 1] == tok.eos_id
  export_hf(policy, str(tmp_path / "out"))
  again = Policy.from_hf(str(tmp_path / "out"), dtype="float32")
  assert again.tokenizer.encode("w5 w6") == tok.encode("w5 w6")
  assert json.load(open(tmp_path / "out" / "config.json"))["eos_token_id"] == tok.eos_id


@pytest.mark.parametrize("damage, says", [
    (lambda p: p.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n"),
     "is a git-LFS pointer, not a safetensors file"),
    (lambda p: p.write_bytes(p.read_bytes()[:4]), "it is cut short or not a safetensors file"),
], ids=["lfs-pointer", "cut-short"])
@pytest.mark.parametrize("sharded", [False, True])
def test_a_weights_file_that_is_not_one_is_named(tmp_path, damage, says, sharded):
  """A Hugging Face folder cloned without git-lfs (or copied halfway) fails with the file's name
  before any tensor is read (safetensors alone says "header too large")."""
  model = ckpt.build_model("qwen3", seed=8)
  folder = ckpt.save(model, str(tmp_path), **({"max_shard_size": "60KB"} if sharded else {}))
  victim = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))[-1]
  damage(tmp_path / victim)
  with pytest.raises(InputError, match=victim) as error:
    Policy.from_hf(folder)
  assert says in str(error.value) and str(tmp_path / victim) in str(error.value), error.value
