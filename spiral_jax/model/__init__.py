"""The policy model: configs, the NNX decoder, Hugging Face interop and ``Policy``."""
from spiral_jax.model.config import PRESETS, ModelConfig, RopeScaling, preset
from spiral_jax.model.policy import Policy, export_hf, left_pad
from spiral_jax.model.transformer import KVCache, Transformer, forward, init_cache, token_logprobs

__all__ = ["PRESETS", "ModelConfig", "RopeScaling", "preset", "Policy", "export_hf", "left_pad",
           "KVCache", "Transformer", "forward", "init_cache", "token_logprobs"]
