"""The converter's user-facing error: one line, names the file/tensor/flag at fault."""

from __future__ import annotations


class ConvertError(Exception):
    """A problem with the user's input or options. The CLI prints it as one line
    (no traceback unless ``--debug``) and exits with status 2."""
