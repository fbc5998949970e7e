"""Device meshes and the logical-axis rules that shard parameters and batches over them."""
from spiral_jax.parallel.mesh import (MESH_AXES, SAMPLE_RULES, TRAIN_RULES, logical_to_sharding,
                                      make_mesh, maybe_initialize_distributed, param_shardings,
                                      shard_params)

__all__ = ["MESH_AXES", "SAMPLE_RULES", "TRAIN_RULES", "logical_to_sharding", "make_mesh",
           "maybe_initialize_distributed", "param_shardings", "shard_params"]
