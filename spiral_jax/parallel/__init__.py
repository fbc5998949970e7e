"""Device meshes, the logical-axis rules that shard parameters and batches over them, and
multi-host runs (``multihost``)."""
from spiral_jax.parallel import multihost
from spiral_jax.parallel.mesh import (MESH_AXES, SAMPLE_RULES, TRAIN_RULES, logical_to_sharding,
                                      make_mesh, param_shardings, shard_params)

__all__ = ["MESH_AXES", "SAMPLE_RULES", "TRAIN_RULES", "logical_to_sharding", "make_mesh",
           "multihost", "param_shardings", "shard_params"]
