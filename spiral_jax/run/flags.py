"""Parsing a command line into its own ``FlagValues``, so several commands share one process
(the tests, a notebook) without their flags colliding."""
from __future__ import annotations

import sys
from typing import Callable, Sequence

from absl import app, flags


def parse_with(define: Callable[[flags.FlagValues], None], argv: Sequence[str],
               doc: str) -> flags.FlagValues:
  """Parses ``argv`` (``argv[0]`` is the program) into a new ``FlagValues`` that ``define`` fills;
  ``--help`` prints ``doc`` and the flags."""
  fv = flags.FlagValues()
  old, sys.argv = sys.argv, list(argv)  # config_flags reads --config and overrides from sys.argv
  try:
    define(fv)
    if any(a in ("--help", "-h", "--helpfull") for a in argv[1:]):
      print(doc + "\n" + fv.get_help())
      sys.exit(0)
    rest = fv(list(argv), known_only=True)
  finally:
    sys.argv = old
  if len(rest) > 1:
    raise app.UsageError(f"unknown arguments {rest[1:]}; see --help")
  return fv
