"""A run's folder, as one object: where every file of a training or SFT run lives.

  <workdir>/config.json            the run's config (``config.to_json``)
           checkpoints/<step>      Orbax checkpoints of the whole TrainState
           checkpoints/shape_floors.json  the learner's padded shapes per checkpoint
           tokenizer/              the games' SentencePiece model, trained once
           league/<step>           league snapshots (params only)
           warm_start/<step>       a stopped warm-start's state, until its step 0 is saved
           eval/<name>.json|md     evaluation reports
           transcripts/step_<N>.jsonl|md  a few whole games of each step, every response
           metrics.jsonl, tensorboard/, learning_curves.png, sft.jsonl

Every module that reads or writes these goes through ``Workdir``, so the layout is spelled once.
"""
from __future__ import annotations

import dataclasses
import os

from spiral_jax.errors import InputError


@dataclasses.dataclass(frozen=True)
class Workdir:
  root: str

  @property
  def config(self) -> str:
    return os.path.join(self.root, "config.json")

  @property
  def checkpoints(self) -> str:
    return os.path.join(self.root, "checkpoints")

  @property
  def shape_floors(self) -> str:
    return os.path.join(self.checkpoints, "shape_floors.json")

  @property
  def tokenizer(self) -> str:
    return os.path.join(self.root, "tokenizer")

  @property
  def warm_start(self) -> str:
    return os.path.join(self.root, "warm_start")

  @property
  def league(self) -> str:
    return os.path.join(self.root, "league")

  @property
  def eval(self) -> str:
    return os.path.join(self.root, "eval")

  @property
  def transcripts(self) -> str:
    return os.path.join(self.root, "transcripts")

  @property
  def metrics(self) -> str:
    return os.path.join(self.root, "metrics.jsonl")

  @property
  def tensorboard(self) -> str:
    return os.path.join(self.root, "tensorboard")

  @property
  def learning_curves(self) -> str:
    return os.path.join(self.root, "learning_curves.png")

  @property
  def sft_log(self) -> str:
    return os.path.join(self.root, "sft.jsonl")

  def checkpoint_steps(self) -> list[int]:
    """The steps saved under ``checkpoints/``, ascending ([] when there are none)."""
    if not os.path.isdir(self.checkpoints):
      return []
    return sorted(int(p) for p in os.listdir(self.checkpoints) if p.isdigit())

  def is_run(self) -> bool:
    """Whether this looks like a training run's folder (it has checkpoints)."""
    return os.path.isdir(self.checkpoints)

  def check_writable(self) -> None:
    """Fails early, naming the flag, when the folder cannot be created or written."""
    try:
      os.makedirs(self.root, exist_ok=True)
      probe = os.path.join(self.root, f".write_probe.{os.getpid()}")  # one per process of a job
      with open(probe, "w") as f:
        f.write("ok")
      os.remove(probe)
    except OSError as e:
      raise InputError(f"--workdir={self.root!r} is not writable ({e}); choose another folder") from e
