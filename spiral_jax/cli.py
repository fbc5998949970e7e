"""Command lines: parsing into a command's own ``FlagValues`` (so several commands share one
process, the tests or a notebook, without their flags colliding) and running one, where an input
error prints one line and exits 2.

  python -m spiral_jax.train --config.batch_size=0
  error: batch_size=0 must be positive                      # exit status 2
  python -m spiral_jax.train --config.batch_size=0 --debug  # the same, with its traceback
"""
from __future__ import annotations

import ast
import os
import sys
from typing import Callable, Sequence

from absl import app, flags, logging

from spiral_jax.errors import InputError

# What a user can fix: our own InputError (config fields, checkpoints that do not fit or do not
# read), flag syntax, and paths that do not exist or cannot be read. Any other error is a bug and
# keeps its traceback.
INPUT_ERRORS = (InputError, flags.Error, app.UsageError, FileNotFoundError, NotADirectoryError,
                IsADirectoryError, PermissionError)
DEBUG_FLAG = "--debug"  # stripped before parsing; SPIRAL_DEBUG=1 does the same


def _override_error(error: Exception, argv: Sequence[str]) -> InputError:
  """ml_collections' error for ``--config.<typo>=...`` (a KeyError's repr inside an
  AttributeError, with a literal ``\\n``) as one line naming the flag."""
  text = str(error)
  try:
    text = ast.literal_eval(text)  # the repr of the KeyError's message
  except (ValueError, SyntaxError):
    pass
  name, _, hint = str(text).partition("\n")
  name = name.strip("'\"")
  flag = next((a.split("=")[0] for a in argv if a.startswith("--config.")
               and a.split("=")[0].endswith("." + name)), f"--config.{name}")
  return InputError(f"{flag}: unknown config field " + (f"{name!r}; {hint[0].lower()}{hint[1:]}"
                                                         if hint else f"{name!r}; see --help"))


def _config_file_error(error: OSError, argv: Sequence[str]) -> InputError:
  path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), "")
  cause = error.__cause__ or error
  return InputError(f"--config={path} could not be loaded: {str(cause).splitlines()[-1].strip()}"
                    "; pass an ml_collections config file, e.g. experiments/tiny_cpu.py")


def parse_with(define: Callable[[flags.FlagValues], None], argv: Sequence[str],
               doc: str) -> flags.FlagValues:
  """Parses ``argv`` (``argv[0]`` is the program) into a new ``FlagValues`` that ``define`` fills;
  the arguments it does not know go to absl's own flags (``--verbosity``, ``--logtostderr``), so
  an unknown flag is an error. ``--help`` prints ``doc`` and the flags."""
  fv = flags.FlagValues()
  old, sys.argv = sys.argv, list(argv)  # config_flags reads --config and overrides from sys.argv
  try:
    define(fv)
    if any(a in ("--help", "-h", "--helpfull") for a in argv[1:]):
      print(doc + "\n" + fv.get_help())
      sys.exit(0)
    rest = fv(list(argv), known_only=True)
    if "config" in fv and fv.config is not None:
      fv.config.keys()  # a file that failed to load is a placeholder that raises on first use
  except (AttributeError, KeyError) as e:  # config_flags applying --config.<unknown field>
    raise _override_error(e, argv) from e
  except OSError as e:  # config_flags failing to load the --config file
    raise _config_file_error(e, argv) from e
  finally:
    sys.argv = old
  flags.FLAGS(list(rest))  # absl's flags; raises UnrecognizedFlagError for the rest
  return fv


def quiet_libraries() -> None:
  """Orbax logs every save and restore at INFO: WARNING unless the user set ``--verbosity``."""
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)


def _guarded(fn: Callable[[list[str]], object], argv: list[str], debug: bool):
  try:
    return fn(argv)
  except INPUT_ERRORS as e:
    if debug:
      raise
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(2)


def run(parse: Callable[[list[str]], list[str]], main: Callable[[list[str]], None]) -> None:
  """``app.run(main)`` with ``parse`` as the flags parser; an ``INPUT_ERRORS`` error in either
  prints ``error: <message>`` on stderr and exits 2, its traceback only with ``--debug``."""
  debug = DEBUG_FLAG in sys.argv or os.environ.get("SPIRAL_DEBUG", "") not in ("", "0")
  sys.argv = [a for a in sys.argv if a != DEBUG_FLAG]
  app.run(lambda argv: _guarded(main, argv, debug),
          flags_parser=lambda argv: _guarded(parse, argv, debug))
