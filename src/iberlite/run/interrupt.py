"""Ctrl-C during a run: stop after the chunk being evaluated, store it, say how to resume.

A first SIGINT (Ctrl-C) or SIGTERM only asks the run to stop; the runner checks between chunks,
so the chunk in flight is finished and committed. A second one stops at once (what is
committed stays safe either way). The run is marked `interrupted` and the command line prints
how many items are stored and the command that resumes it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_asked: list[int] = []  # signals received while a run is listening


class RunInterrupted(KeyboardInterrupt):
    """A run stopped on request; everything it evaluated before is stored."""

    def __init__(self, run_id: int, stored: int, db: Path) -> None:
        super().__init__(f"run {run_id} interrupted with {stored} items stored in {db}")
        self.run_id, self.stored, self.db = run_id, stored, db


@contextmanager
def stop_between_chunks() -> Iterator[None]:
    """While active, the first Ctrl-C or SIGTERM sets a flag that `check` turns into
    KeyboardInterrupt at the next chunk boundary; a second one interrupts at once.
    Outside the main thread (where signals cannot be handled) it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def ask(signum: int, _frame: object) -> None:
        if _asked:
            raise KeyboardInterrupt
        _asked.append(signum)

    previous = {s: signal.signal(s, ask) for s in _STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _asked.clear()


def check() -> None:
    """Raise KeyboardInterrupt if a stop was asked (call it where stopping loses nothing)."""
    if _asked:
        raise KeyboardInterrupt
