"""The queue a person labels from: the newest batch `select` picked for a task, row by row.

Every call opens its own store and closes it again, because the page answers from a pool of
threads and a SQLite connection belongs to the thread that opened it. Each label, skip or undo
is committed the moment it is given, so a killed server loses nothing that was answered.
"""

from __future__ import annotations

import os
import statistics
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from iberlite.errors import UserError
from iberlite.store.labels import LabelBook, LabelEvent, Pick, PoolRow, Selection
from iberlite.store.store import Store
from iberlite.tasks.registry import load_task_specs
from iberlite.tasks.render import render_fields
from iberlite.tasks.spec import TaskSpec

SOURCE = "page"


class AlreadyLabelled(UserError):
    """The row got a label (from another page, or a second key press) after this card was shown."""


@dataclass(frozen=True)
class Progress:
    """How far the batch is: rows holding a label, rows in the batch, and the median seconds a
    label given on the page took for this task (None before the first)."""

    done: int
    total: int
    median_seconds: float | None


@dataclass(frozen=True)
class Card:
    """One row to label, as the page shows it."""

    row_hash: str
    text: str
    choices: tuple[str, ...]
    rank: int
    guess: str | None  # the model's choice, only when asked for (it anchors a labeller)
    progress: Progress
    last_label: str | None  # the label this row held before it was undone


def default_labeller() -> str:
    """Who labels when nobody says: the login name, else "anonymous"."""
    return os.environ.get("USER") or os.environ.get("USERNAME") or "anonymous"


class LabelQueue:
    """The newest batch of one task, for one labeller, in a database file."""

    def __init__(self, db_path: Path, task: TaskSpec, labeller: str) -> None:
        self.db_path = Path(db_path)
        self.task = task
        self.labeller = labeller
        # a check and the event it allows happen as one step (two tabs, one server process)
        self._write = threading.Lock()
        self._rows: dict[str, PoolRow] = {}  # pool rows never change once added

    @classmethod
    def for_task(cls, db_path: Path, task: str, labeller: str, tasks_dirs: tuple[Path, ...] = ()) -> LabelQueue:
        """The queue of a task named as on the command line; refuses an unknown or generation
        task, a missing database and a task with no batch selected."""
        specs = load_task_specs(tasks_dirs)
        if task not in specs:
            raise UserError(f"Unknown task {task!r}; `iberlite tasks` lists the task names.")
        spec = specs[task]
        if spec.output != "multiple_choice":
            raise UserError(f"Task {task} is a generation task; the labelling page labels multiple-choice tasks only.")
        if not Path(db_path).is_file():
            raise UserError(f"No database at {db_path}; pass --db, or run "
                            f"`iberlite select MODEL --task {task} --n N` first.")
        queue = cls(Path(db_path), spec, labeller)
        queue.progress()  # no batch: say so now, not on the page
        return queue

    @contextmanager
    def _book(self) -> Iterator[LabelBook]:
        with Store(self.db_path) as store:
            yield LabelBook(store)

    def _batch(self, book: LabelBook) -> Selection:
        selections = book.selections(self.task.name)
        if not selections:
            name = self.task.name
            raise UserError(f"No batch selected for {name}; run `iberlite select MODEL --task {name} --n N` first.")
        return selections[-1]

    def _progress(self, book: LabelBook, batch: Selection, states: dict[str, LabelEvent]) -> Progress:
        done = sum(1 for p in batch.picks if _holds_label(states, p.row_hash))
        seconds = book.label_seconds(self.task.name)
        return Progress(done, len(batch.picks), statistics.median(seconds) if seconds else None)

    def progress(self) -> Progress:
        """How far the newest batch is."""
        with self._book() as book:
            batch = self._batch(book)
            return self._progress(book, batch, book.states(self.task.name))

    def current(self, show_guess: bool = False) -> Card | None:
        """The row to label next, or None when every row of the newest batch holds a label.

        Rows come by rank; skipped rows come after the unlabelled ones, the longest-skipped first,
        so skipping walks through them instead of showing the same row again."""
        with self._book() as book:
            batch = self._batch(book)
            events = book.events(self.task.name)
            states = {e.row_hash: e for e in events}
            pick = _next_pick(batch.picks, states)
            if pick is None:
                return None
            row = self._pool_row(book, pick.row_hash)
            choices = self._choices(row)
            guess = None
            if show_guess and pick.prediction is not None and 0 <= pick.prediction < len(choices):
                guess = choices[pick.prediction]
            last = [e.label for e in events if e.row_hash == pick.row_hash and e.kind == "label"]
            return Card(pick.row_hash, row.text, choices, pick.rank, guess,
                        self._progress(book, batch, states), last[-1] if last else None)

    def _pool_row(self, book: LabelBook, row_hash: str) -> PoolRow:
        if row_hash not in self._rows:
            self._rows.update((r.row_hash, r) for r in book.pool(self.task.name))
        if row_hash not in self._rows:
            raise UserError(f"Row {row_hash[:12]} of the batch is missing from the pool of {self.task.name}; "
                            "select a new batch.")
        return self._rows[row_hash]

    def _choices(self, row: PoolRow) -> tuple[str, ...]:
        return render_fields(self.task, row.fields, row.row_hash).choices

    def give(self, row_hash: str, choice_index: int, seconds: float | None) -> LabelEvent:
        """Label a row of the newest batch with its choice number `choice_index` (from 0).

        The label stored is the choice's text. A row that already holds a label is refused
        (AlreadyLabelled): a stale second page or a repeated key must not replace a label
        silently; undo it first to change it."""
        with self._write, self._book() as book:
            self._in_batch(book, row_hash)
            choices = self._choices(self._pool_row(book, row_hash))
            if not 0 <= choice_index < len(choices):
                raise UserError(f"Choice {choice_index + 1} does not exist: this row has choices 1 to {len(choices)}.")
            if _holds_label(book.states(self.task.name), row_hash):
                raise AlreadyLabelled("This row was labelled meanwhile (another page?); here is the next one.")
            event = LabelEvent(row_hash, "label", choices[choice_index], self.labeller, SOURCE, seconds)
            book.add_events(self.task.name, [event])
            return event

    def skip(self, row_hash: str) -> None:
        """Put an unlabelled row of the newest batch after the other unlabelled ones."""
        with self._write, self._book() as book:
            self._in_batch(book, row_hash)
            if _holds_label(book.states(self.task.name), row_hash):
                raise AlreadyLabelled("This row was labelled meanwhile (another page?); here is the next one.")
            book.add_events(self.task.name, [LabelEvent(row_hash, "skip", None, self.labeller, SOURCE)])

    def undo(self) -> str | None:
        """Undo the task's newest label or skip that still stands (whoever gave it); returns its
        row, or None when there is nothing left to undo."""
        with self._write, self._book() as book:
            events = book.events(self.task.name)
            states = {e.row_hash: e for e in events}
            for e in reversed(events):
                if e.kind in ("label", "skip") and states[e.row_hash].id == e.id:
                    book.add_events(self.task.name, [LabelEvent(e.row_hash, "undo", None, self.labeller, SOURCE)])
                    return e.row_hash
            return None

    def _in_batch(self, book: LabelBook, row_hash: str) -> None:
        if row_hash not in {p.row_hash for p in self._batch(book).picks}:
            raise UserError(f"Row {row_hash[:12]} is not in the newest batch of {self.task.name}; reload the page.")


def _holds_label(states: dict[str, LabelEvent], row_hash: str) -> bool:
    state = states.get(row_hash)
    return state is not None and state.kind == "label"


def _next_pick(picks: tuple[Pick, ...], states: dict[str, LabelEvent]) -> Pick | None:
    """Unlabelled rows by rank, then skipped rows by when they were skipped (0: not skipped)."""
    def order(p: Pick) -> tuple[int, int]:
        state = states.get(p.row_hash)
        return (state.id if state is not None and state.kind == "skip" else 0, p.rank)

    open_ = [p for p in picks if not _holds_label(states, p.row_hash)]
    return min(open_, key=order) if open_ else None
