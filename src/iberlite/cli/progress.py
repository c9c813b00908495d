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
    """One line when a model moves on from a task: what it evaluated there and how fast, and how
    far the model is (the first task's time includes loading the model)."""

    def __init__(self, err: Console) -> None:
        self.err = err
        self.current: tuple[str, str] | None = None
        self.state: tuple[int, int] = (0, 0)
        self.task_start: tuple[float, int] = (0.0, 0)

    def _close(self) -> None:
        if self.current is None:
            return
        model, task = self.current
        done, total = self.state
        seconds = time.perf_counter() - self.task_start[0]
        new = done - self.task_start[1]
        rate = f", {new / seconds:.2f} items/s" if new and seconds > 0 else ""
        self.err.print(f"{model} {task}: {new} items in {seconds:.0f} s{rate}; {done}/{total} of the "
                       "model done", highlight=False, markup=False, soft_wrap=True)

    def update(self, model: str, task: str, done: int, total: int) -> None:
        if self.current != (model, task):
            self._close()
            same_model = self.current is not None and self.current[0] == model
            self.task_start = (time.perf_counter(), self.state[0] if same_model else 0)
            self.current = (model, task)
        self.state = (done, total)

    def finish(self) -> None:
        self._close()
        self.current = None
