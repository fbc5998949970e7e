"""Command line: the "SFT on expert trajectories" baseline (``run/sft.train_sft``).

  python -m spiral_jax.sft --config=experiments/sft_baseline_kuhn_tiny.py --workdir=runs/sft_kuhn
  python -m spiral_jax.evaluate --workdir=runs/sft_kuhn   # the run's own config.json

``warm_start.steps`` supervised steps at ``warm_start.learning_rate`` on the scripted experts' games
(``--player=random`` for the format-only control); the policy is saved as the run's step-0
checkpoint, so ``evaluate`` reads it and ``python -m spiral_jax.train`` with the same config and
workdir continues from it by self-play. SIGTERM or SIGINT stops it after the current step with
its state saved (exit 0); the same command resumes it.
"""
from __future__ import annotations

from typing import Sequence

from absl import flags
from ml_collections import config_flags

from spiral_jax import cli
from spiral_jax import config as config_lib


def define_flags(fv: flags.FlagValues) -> None:
  config_flags.DEFINE_config_file("config", "experiments/sft_baseline_kuhn_tiny.py",
                                  "an ml_collections config file", flag_values=fv,
                                  lock_config=False, accept_new_attributes=True)
  flags.DEFINE_string("workdir", "runs/sft_baseline_kuhn_tiny",
                      "checkpoints, metrics and the SFT log go here", flag_values=fv)
  flags.DEFINE_enum("player", "expert", ["expert", "random"], "whose games to imitate",
                    flag_values=fv)
  flags.DEFINE_bool("progress", True, "show a tqdm progress bar", flag_values=fv)


FLAGS = flags.FlagValues()  # the parsed flags; private, so this CLI and train's share a process


def parse_flags(argv: Sequence[str]) -> list[str]:
  """Parses this command's flags (``argv[0]`` is the program) into ``FLAGS``."""
  global FLAGS
  FLAGS = cli.parse_with(define_flags, argv, __doc__)
  return list(argv[:1])


def main(argv: Sequence[str]) -> None:
  del argv
  cli.quiet_libraries()
  cfg = config_lib.from_config_dict(FLAGS.config)  # validates before anything compiles
  from spiral_jax.run import sft  # after validation: imports pull in the model stack
  state, metrics = sft.train_sft(cfg, FLAGS.workdir, player=FLAGS.player, progress=FLAGS.progress)
  if state is None:  # stopped by SIGTERM/SIGINT, its state saved: exit 0
    return
  print(f"SFT on {FLAGS.player} games, {cfg.warm_start.steps} steps: held-out NLL per response "
        f"token {metrics['sft/heldout_nll_before']:.3f} -> {metrics['sft/heldout_nll_after']:.3f}")
  for k in sorted(k for k in metrics if k.startswith("eval/") and not k.endswith("ci95")):
    print(f"  {k}: {metrics[k]:.3f}")
  print(f"checkpoint (step 0) in {FLAGS.workdir}/checkpoints; evaluate it with "
        f"python -m spiral_jax.evaluate --workdir={FLAGS.workdir}")


if __name__ == "__main__":
  cli.run(parse_flags, main)
