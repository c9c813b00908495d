"""Errors the CLI reports as one sentence, never a traceback, with a consistent exit code.

Exit codes (docs/reliability.md): 2 for a user error, something the user can fix in what they
asked for or in the files they gave (an unknown name, a missing or malformed file, a bad task
YAML, a bad data row under --strict); 1 for a failure of the run itself (an engine or a tool
that failed on valid input, a crash); 130 after Ctrl-C.
"""

from __future__ import annotations

USER_ERROR = 2
RUN_FAILURE = 1


class UserError(Exception):
    """Something the user asked for cannot be done as asked; the message says what to do.

    `exit_code` is 2 (a user error) unless a subclass says otherwise.
    """

    def __init__(self, message: str, exit_code: int = USER_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class RunFailure(UserError):
    """The run failed on input that was valid (an engine or an external tool failed): exit 1.

    A subclass of UserError so that it is reported the same way, as one sentence.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, RUN_FAILURE)


class TaskSpecError(UserError):
    """A task YAML is malformed; the message names the file, the line and the field."""


class RowError(UserError):
    """A data row cannot be evaluated (missing field, empty text, label out of range...).

    Loaders count and skip such rows; with --strict the first one is this error. `detail` is
    the problem as a clause ("has the target 3, which is ..."), for the per-file count.
    """

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail
