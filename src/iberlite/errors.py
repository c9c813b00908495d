"""Errors a user can fix. The CLI prints their message as one sentence and exits non-zero."""

from __future__ import annotations


class UserError(Exception):
    """Something the user asked for cannot be done as asked; the message says what to do.

    `exit_code` follows the CLI convention: 2 for a bad choice on the command line (unknown
    model, task or language), 1 for everything else (missing file, corrupt model).
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class TaskSpecError(UserError):
    """A task YAML is malformed; the message names the file and the field."""
