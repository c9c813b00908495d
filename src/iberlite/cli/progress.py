"""Progress of a run on stderr: a live bar per model on a terminal; on a pipe or in a log, one
whole line per finished task (a bar redrawn into a file is cut to the width rich assumes,
which cuts its numbers: `164/…`, `ETA 0:00:…`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

ProgressFn = Callable[[str, str, int, int], None]


class _ItemsPerSecond(TextColumn):
    def __init__(self) -> None:
        super().__init__("")

    def render(self, task):  # type: ignore[override]
        speed = task.finished_speed or task.speed
        return f"{speed:5.2f} items/s" if speed else "  -- items/s"


@contextmanager
def run_progress(err: Console) -> Iterator[tuple[ProgressFn, Callable[[], None]]]:
    """(on_progress(model, task, done, total), stop()) for a run, drawn as `err` allows."""
    if err.is_terminal:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   _ItemsPerSecond(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
        bars: dict[str, TaskID] = {}
        with Progress(*columns, console=err, transient=False) as prog:
            def on_progress(model: str, task: str, done: int, total: int) -> None:
                label = f"{model} [dim]{task}[/dim]"
                if model not in bars:
                    bars[model] = prog.add_task(label, total=total, completed=done)
                prog.update(bars[model], completed=done, description=label)

            yield on_progress, prog.stop
        return
    lines = _Lines(err)
    yield lines.update, lines.finish
    lines.finish()


class _Lines:
    """One line when a model moves to its next task, and one when it is done."""

    def __init__(self, err: Console) -> None:
        self.err = err
        self.current: tuple[str, str] | None = None
        self.state: tuple[int, int] = (0, 0)
        self.started: dict[str, float] = {}
        self.first_done: dict[str, int] = {}

    def _say(self, text: str) -> None:
        self.err.print(text, highlight=False, markup=False, soft_wrap=True)

    def _close(self) -> None:
        if self.current is None:
            return
        model, task = self.current
        done, total = self.state
        seconds = time.perf_counter() - self.started[model]
        new = done - self.first_done[model]
        rate = f", {new / seconds:.2f} items/s" if new and seconds > 0 else ""
        self._say(f"{model} {task}: {done}/{total} items of the model done ({seconds:.0f} s{rate})")

    def update(self, model: str, task: str, done: int, total: int) -> None:
        if self.current != (model, task):
            self._close()
            if model not in self.started:
                self.started[model] = time.perf_counter()
                self.first_done[model] = done
            self.current = (model, task)
        self.state = (done, total)

    def finish(self) -> None:
        self._close()
        self.current = None
