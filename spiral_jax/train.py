"""Command line: ``python -m spiral_jax.train --config=experiments/tiny_cpu.py --workdir=DIR``.

``--config.x=y`` overrides any field (``--config.num_steps=N`` sets the policy steps); rerunning
with the same workdir resumes from its latest intact checkpoint. SIGTERM or SIGINT stops the run
after the current step with a checkpoint written, and exits 0.

Multi-host: run the same command on every host. Pass ``--multihost`` on TPU VM slices (JAX detects
the job); elsewhere pass ``--coordinator_address=HOST:PORT --num_processes=N --process_id=I`` (JAX's runtime).
"""
from __future__ import annotations

from absl import app, flags, logging
from ml_collections import config_flags

from spiral_jax import config as config_lib
from spiral_jax import metrics as metrics_lib
from spiral_jax.workdir import Workdir

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/tiny_cpu.py",
                                          "an ml_collections config file")
_WORKDIR = flags.DEFINE_string("workdir", "runs/tiny_cpu", "checkpoints, metrics and plots go here")
_PROGRESS = flags.DEFINE_bool("progress", True, "show a tqdm progress bar")
# Multi-host: TPU VM slices join automatically; GPU clusters name the coordinator explicitly.
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0, for multi-process runs off TPU")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "processes in the job")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "this process's index in the job")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "join the multi-host job JAX detects (TPU VM "
                               "slices, SLURM) with jax.distributed.initialize()")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
  from spiral_jax.parallel import multihost  # joins the job before anything else touches JAX
  multihost.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                        auto=_MULTIHOST.value)
  cfg = config_lib.from_config_dict(_CONFIG.value)  # validates before anything compiles
  from spiral_jax.run.trainer import Trainer  # after validation: imports pull in the model stack
  from spiral_jax import plots
  trainer = Trainer(cfg, _WORKDIR.value, progress=_PROGRESS.value)
  state = trainer.run()
  if int(state.step) < cfg.num_steps:  # stopped by SIGTERM/SIGINT, checkpoint committed: exit 0
    return
  if not multihost.is_chief():  # process 0 writes the plot and the summary
    return
  rows = metrics_lib.read(_WORKDIR.value)
  png = plots.learning_curves({"run": rows}, Workdir(_WORKDIR.value).learning_curves)
  print(summary(rows, png))


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
  app.run(main)
