"""Batched KV-cache sampling: ``generate`` (prefill + ``lax.while_loop`` decode)."""
from spiral_jax.sampling.choice import filter_logits, sample_logits
from spiral_jax.sampling.sampler import SampleOutput, compile_count, generate, trace_counts

__all__ = ["SampleOutput", "compile_count", "filter_logits", "generate", "sample_logits",
           "trace_counts"]
