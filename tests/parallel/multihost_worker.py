"""One process of the multi-host test: trains the shared tiny config and saves what it ends with.

  python tests/parallel/multihost_worker.py PROCESS_ID NUM_PROCESSES PORT DEVICES WORKDIR OUT.npz \
      EVAL_EVERY

With NUM_PROCESSES > 1 the processes join one JAX job on localhost (CPU collectives over gloo);
the chief (process 0) writes the final parameters and RAE baselines to OUT.npz.
"""
import os
import sys


def main(process_id: int, num_processes: int, port: int, devices: int, workdir: str, out: str,
         eval_every: int):
  os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  os.environ["JAX_PLATFORMS"] = "cpu"
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
  from spiral_jax.parallel import multihost
  if num_processes > 1:
    multihost.initialize(f"localhost:{port}", num_processes, process_id)
  import jax
  import numpy as np
  from spiral_jax import config as config_lib
  from spiral_jax.rl.trainer import Trainer
  from tests import tiny_config

  c = tiny_config.get_config()
  c.num_steps = 3
  c.rollout_shards = 2
  c.eval_every = eval_every
  c.eval_games = 8
  state = Trainer(config_lib.from_config_dict(c), workdir, progress=False).run()
  leaves = {f"p{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(state.params))}
  if multihost.is_chief():
    np.savez(out, rae=np.asarray(state.rae), step=np.asarray(state.step), **leaves)
  multihost.barrier("worker_done")


if __name__ == "__main__":
  a = sys.argv[1:]
  main(int(a[0]), int(a[1]), int(a[2]), int(a[3]), a[4], a[5], int(a[6]))
