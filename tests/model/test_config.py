"""ModelConfig: validation, presets with the published sizes, Hugging Face config round trips."""
import dataclasses

import pytest
import transformers

from spiral_jax.model import PRESETS, ModelConfig, RopeScaling, preset

# parameter counts of the published checkpoints (their model cards / safetensors totals)
PUBLISHED_PARAMS = {
    "qwen3_0_6b": 0.596e9, "qwen3_1_7b": 1.72e9, "qwen3_4b": 4.02e9, "qwen3_4b_base": 4.02e9,
    "qwen3_8b": 8.19e9, "qwen2_5_7b": 7.62e9, "llama3_2_3b": 3.21e9, "llama3_1_8b": 8.03e9,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_presets_have_the_published_sizes(name):
  assert PRESETS[name].num_params == pytest.approx(PUBLISHED_PARAMS[name], rel=0.01)


def test_tiny_preset_and_overrides():
  tiny = preset("tiny", vocab_size=4096)
  assert (tiny.d_model, tiny.num_layers, tiny.num_heads, tiny.num_kv_heads, tiny.head_dim,
          tiny.mlp_dim, tiny.tie_embeddings) == (256, 4, 4, 2, 64, 1024, True)
  assert tiny.vocab_size == 4096
  assert PRESETS["tiny"].vocab_size == 8192  # the preset itself is not mutated
  with pytest.raises(ValueError, match="unknown model preset 'qwen9'"):
    preset("qwen9")


@pytest.mark.parametrize("changes, message", [
    (dict(num_heads=6, num_kv_heads=4), "num_heads .* multiple of num_kv_heads"),
    (dict(head_dim=7), "head_dim must be even"),
    (dict(d_model=0), "d_model must be a positive int"),
    (dict(family="gpt2"), "family must be one of"),
    (dict(param_dtype="float8"), "param_dtype must be one of"),
    (dict(dtype="int8"), "dtype must be 'auto' or one of"),
    (dict(rms_eps=0.0), "rms_eps"),
    (dict(rope_scaling={"factor": 8}), "rope_scaling must be a RopeScaling"),
])
def test_bad_fields_are_named(changes, message):
  with pytest.raises(ValueError, match=message):
    dataclasses.replace(PRESETS["tiny"], **changes)


def test_config_is_frozen_and_hashable():
  config = PRESETS["llama3_1_8b"]
  with pytest.raises(dataclasses.FrozenInstanceError):
    config.d_model = 3
  assert hash(config) == hash(preset("llama3_1_8b"))
  with pytest.raises(ValueError, match="high_freq_factor"):
    RopeScaling(factor=8, low_freq_factor=4, high_freq_factor=1, original_max_position_embeddings=8)


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_presets_round_trip_through_transformers_configs(name):
  config = PRESETS[name]
  hf_class = {"qwen3": transformers.Qwen3Config, "qwen2": transformers.Qwen2Config,
              "llama": transformers.LlamaConfig}[config.family]
  hf_config = hf_class.from_dict(config.to_hf_config())
  assert hf_config.hidden_size == config.d_model
  assert hf_config.rope_parameters["rope_theta"] == config.rope_theta
  back = ModelConfig.from_hf_config(hf_config.to_dict())
  assert back == config.replace(dtype="auto")


def test_from_hf_config_reads_transformers_4_keys():
  legacy = dict(model_type="llama", vocab_size=128256, hidden_size=4096, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=8, intermediate_size=14336,
                rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
                max_position_embeddings=131072,
                rope_scaling=dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                  original_max_position_embeddings=8192, rope_type="llama3"))
  assert ModelConfig.from_hf_config(legacy) == PRESETS["llama3_1_8b"]
  with pytest.raises(ValueError, match="use_sliding_window"):
    ModelConfig.from_hf_config({**legacy, "model_type": "qwen2", "use_sliding_window": True})
  with pytest.raises(ValueError, match="'yarn' is not supported"):
    ModelConfig.from_hf_config({**legacy, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}})
