"""One process of the multi-host test: trains the shared tiny config and saves what it ends with.

  python tests/parallel/multihost_worker.py PROCESS_ID NUM_PROCESSES PORT DEVICES WORKDIR OUT_DIR \
      EVAL_EVERY

Every run joins a JAX job on localhost, a run of one process too, so the CPU backend's cross-device
collectives are gloo's in every layout (XLA's in-process all-reduce, which a plain 1-process run
uses, sums in yet another order). The layouts still round differently inside the per-device
kernels; test_multihost.py says what is compared exactly and what within a bound.
Each process writes OUT_DIR/process<PROCESS_ID>.npz: its own copy of the final state (parameters
p*, optimizer state opt*, RAE baselines, step) and every step's rollout (the finished games and
the moves trained on, as the process gathered them).
"""
import os
import sys


def main(process_id: int, num_processes: int, port: int, devices: int, workdir: str, out: str,
         eval_every: int):
  os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  os.environ["JAX_PLATFORMS"] = "cpu"
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
  from spiral_jax.parallel import multihost
  multihost.initialize(f"localhost:{port}", num_processes, process_id)  # gloo, even for 1 process
  import jax
  import numpy as np
  from spiral_jax import config as config_lib
  from spiral_jax.run.trainer import Trainer
  from tests import tiny_config

  rollouts = []

  class RecordingTrainer(Trainer):
    def collect(self, state, runners=None):
      r, baselines = super().collect(state, runners)
      rollouts.append(r)
      return r, baselines

  c = tiny_config.get_config()
  c.num_steps = 3
  c.rollout_shards = 2
  c.rl.rae_groups = 2  # each shard folds its own baselines
  c.eval.every = eval_every
  c.eval.games = 8
  state = RecordingTrainer(config_lib.from_config_dict(c), workdir, progress=False).run()
  saved = {"rae": np.asarray(state.rae), "step": np.asarray(state.step)}
  saved.update({f"p{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(state.params))})
  saved.update({f"opt{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(state.opt_state))})
  for step, r in enumerate(rollouts, 1):
    saved[f"step{step}_games"] = np.array([[g.kind, g.forfeited_by, g.num_moves] for g in r.games])
    saved[f"step{step}_returns"] = np.stack([g.returns for g in r.games])
    saved[f"step{step}_moves"] = np.array([[m.kind, m.seat, m.game, m.truncated, m.invalid,
                                            m.advantage] for m in r.moves])
    saved[f"step{step}_tokens"] = np.concatenate(  # each move: prompt length, prompt, response...
        [[len(m.prompt_ids), *m.prompt_ids, len(m.response_ids), *m.response_ids]
         for m in r.moves])
  os.makedirs(out, exist_ok=True)
  np.savez(os.path.join(out, f"process{process_id}.npz"), **saved)
  multihost.barrier("worker_done")


if __name__ == "__main__":
  a = sys.argv[1:]
  main(int(a[0]), int(a[1]), int(a[2]), int(a[3]), a[4], a[5], int(a[6]))
