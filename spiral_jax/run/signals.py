"""SIGTERM and SIGINT (a preemption notice, Ctrl-C) as a request to stop at the next step."""
from __future__ import annotations

import signal
import threading
from typing import Any

from spiral_jax.parallel import multihost


class StopSignals:
  """While its ``with`` block runs, SIGTERM and SIGINT ask the training loop to stop after the
  current step instead of killing the process; a second signal aborts at once (the previous
  handler's action). The previous handlers come back on exit. Python takes signals only on the
  main thread, so elsewhere it installs nothing.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.received: int | None = None  # the first signal's number
    self._elsewhere = False  # another process received one (``agreed``)
    self._previous: dict[int, Any] = {}

  @property
  def name(self) -> str:
    if self.received is not None:
      return signal.Signals(self.received).name
    return "a stop signal to another process" if self._elsewhere else ""

  def agreed(self) -> bool:
    """Whether any process has received a signal. A preemption notice may reach one host of a
    slice first; deciding per process would leave the others waiting in the next step's
    collectives, so every process calls this at the same point of each step and all stop after
    the same one. One process: whether this one received a signal."""
    mine = self.received is not None  # read once: the answer is what the others were told
    anyone = multihost.any_process(mine or self._elsewhere)
    self._elsewhere = self._elsewhere or (anyone and not mine)
    return anyone

  def __enter__(self) -> StopSignals:
    if threading.current_thread() is threading.main_thread():
      for signum in self.SIGNALS:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc_info) -> None:
    self._restore()

  def _restore(self) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, signal.SIG_DFL if handler is None else handler)
    self._previous = {}

  def _handle(self, signum: int, frame) -> None:
    if self.received is None:
      self.received = signum  # only a flag: no I/O inside a handler
      return
    previous = self._previous.get(signum, signal.SIG_DFL)
    self._restore()
    if callable(previous):
      previous(signum, frame)
    elif previous != signal.SIG_IGN:
      signal.raise_signal(signum)  # the default action, now that it is back
