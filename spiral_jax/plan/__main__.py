"""Command line: ``python -m spiral_jax.plan --config=experiments/paper_kuhn_qwen3_4b.py
--topology=v5p-16`` prints the per-device memory plan of a training config on a topology.

Per device: parameters, optimizer state, gradients, the learner micro-batch's activations (and
what per-layer remat would leave), the sampler's weights, KV cache and prefill temporaries, the
mesh, and each phase's total against the device's memory. No weights are read and no device is
needed: shapes come from ``jax.eval_shape``. A model folder that does not exist on this machine
(``/data/Qwen3-4B-Base``) is planned with the preset of the same name (``qwen3_4b_base``).

When the configured sampler batch does not fit, it prints how many rows per sampler call do and
into how many calls a turn splits. When the learner or even a one-row-per-device sampler call does
not fit, it exits 1 naming what to change (micro-batches, remat, mesh, budgets); a bad config
or flag exits 2 with one line.
"""
from __future__ import annotations

import sys
from typing import Sequence

from absl import flags
from ml_collections import config_flags

from spiral_jax import cli
from spiral_jax.plan.planner import run


def define_flags(fv: flags.FlagValues) -> None:
  config_flags.DEFINE_config_file("config", "experiments/tiny_cpu.py",
                                  "an ml_collections config file", flag_values=fv)
  flags.DEFINE_string("topology", "v5p-16", "v4-8, v5e-8, v5p-16, v6e-8, h100x8, h200x8, cpu, "
                      "... (TPU names count TensorCores for v4/v5p)", flag_values=fv)
  flags.DEFINE_enum("mesh", "config", ["config", "auto"],
                    "config: the config's mesh.data/fsdp/tensor; auto: the least "
                    "communication-heavy mesh that fits", flag_values=fv)
  flags.DEFINE_float("headroom", 0.9, "plan to use at most this share of each device's memory "
                     "(XLA's scratch, fragmentation, the runtime)", flag_values=fv)
  flags.DEFINE_float("hbm_gib", 0.0, "override the per-device memory in GiB (0: the "
                     "topology's)", flag_values=fv)


FLAGS = flags.FlagValues()


def parse_flags(argv: Sequence[str]) -> list[str]:
  global FLAGS
  FLAGS = cli.parse_with(define_flags, argv, __doc__)
  return list(argv[:1])


def main(argv) -> None:
  del argv
  table, refusal = run(FLAGS.config, FLAGS.topology, FLAGS.mesh, FLAGS.headroom, FLAGS.hbm_gib)
  print(table, flush=True)
  if refusal:
    sys.exit(refusal)


if __name__ == "__main__":
  cli.run(parse_flags, main)
