"""Command line: ``python -m spiral_jax.train --config=experiments/tiny_cpu.py --workdir=DIR``.

``--config.x=y`` overrides any field (``--config.num_steps=N`` sets the policy steps); rerunning
with the same workdir resumes from its latest intact checkpoint. SIGTERM or SIGINT stops the run
after the current step with a checkpoint written, and exits 0.

Multi-host: run the same command on every host. Pass ``--multihost`` on TPU VM slices (JAX detects
the job); elsewhere pass ``--coordinator_address=HOST:PORT --num_processes=N --process_id=I`` (JAX's runtime).
"""
from __future__ import annotations

from typing import Sequence

from absl import flags
from ml_collections import config_flags

from spiral_jax import cli
from spiral_jax import config as config_lib
from spiral_jax import metrics as metrics_lib
from spiral_jax.workdir import Workdir


def define_flags(fv: flags.FlagValues) -> None:
  """This command's flags, on a fresh ``FlagValues`` per parse (see ``evaluate.define_flags``)."""
  config_flags.DEFINE_config_file("config", "experiments/tiny_cpu.py",
                                  "an ml_collections config file", flag_values=fv)
  flags.DEFINE_string("workdir", "runs/tiny_cpu", "checkpoints, metrics and plots go here",
                      flag_values=fv)
  flags.DEFINE_bool("progress", True, "show a tqdm progress bar", flag_values=fv)
  # Multi-host: TPU VM slices join automatically; GPU clusters name the coordinator explicitly.
  flags.DEFINE_string("coordinator_address", None,
                      "host:port of process 0, for multi-process runs off TPU", flag_values=fv)
  flags.DEFINE_integer("num_processes", None, "processes in the job", flag_values=fv)
  flags.DEFINE_integer("process_id", None, "this process's index in the job", flag_values=fv)
  flags.DEFINE_bool("multihost", False, "join the multi-host job JAX detects (TPU VM slices, "
                    "SLURM) with jax.distributed.initialize()", flag_values=fv)


FLAGS = flags.FlagValues()  # the parsed flags; private, so this CLI and others share a process


def parse_flags(argv: Sequence[str]) -> list[str]:
  """Parses this command's flags (``argv[0]`` is the program) into ``FLAGS``."""
  global FLAGS
  FLAGS = cli.parse_with(define_flags, argv, __doc__)
  return list(argv[:1])


def main(argv: Sequence[str]) -> None:
  """Runs the command on already parsed flags (``parse_flags``)."""
  del argv
  cli.quiet_libraries()
  from spiral_jax.parallel import multihost  # joins the job before anything else touches JAX
  multihost.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                        auto=FLAGS.multihost)
  cfg = config_lib.from_config_dict(FLAGS.config)  # validates before anything compiles
  from spiral_jax.run.trainer import Trainer  # after validation: imports pull in the model stack
  trainer = Trainer(cfg, FLAGS.workdir, progress=FLAGS.progress)
  state = trainer.run()
  if int(state.step) < cfg.num_steps:  # stopped by SIGTERM/SIGINT, checkpoint committed: exit 0
    return
  if not multihost.is_chief():  # process 0 writes the plot and the summary
    return
  print(summary(metrics_lib.read(FLAGS.workdir), Workdir(FLAGS.workdir).learning_curves))


def summary(rows: list[dict], png: str) -> str:
  """What the run learned: first and last evaluation side by side."""
  evals = [r for r in rows if any(k.startswith("eval/") for k in r)]
  if not evals:
    return f"no evaluation rows; curves in {png}"
  first, last = evals[0], evals[-1]
  lines = [f"What the policy learned (step {first['step']} -> step {last['step']}):"]
  for k in sorted(k for k in last if k.startswith("eval/") and not k.endswith("ci95")):
    if first.get(k) is not None and last[k] is not None:
      lines.append(f"  {k}: {first[k]:.3f} -> {last[k]:.3f}")
  lines.append(f"learning curves: {png}")
  return "\n".join(lines)


if __name__ == "__main__":
  cli.run(parse_flags, main)
