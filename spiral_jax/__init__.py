"""spiral_jax: SPIRAL (self-play on zero-sum text games with RAE) in JAX and Flax."""
from spiral_jax import games, model, parallel, sampling, text

__version__ = "0.1.0"
__all__ = ["games", "model", "parallel", "sampling", "text"]
