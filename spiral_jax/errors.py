"""The error a user can fix: a config field, a flag, a path or a file given to a command.

Raised before anything compiles or trains, with a message that names the field or file and the
fix. The command lines (``cli.run``) print its message alone and exit 2; any other
exception is a bug and keeps its traceback.
"""
from __future__ import annotations


class InputError(ValueError):
  """Bad input from the user; the message names what is wrong and what to do."""
