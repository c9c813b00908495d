"""The labelling tables: a task's pool of unlabelled rows, the choice scores of pool rows per
model (a cache), the batches `select` picked, and every label given, as an append-only log.

A label is never overwritten: giving, undoing and skipping are events, and a row's state is its
newest event. So two tabs labelling at once, or an undo, lose nothing; the history stays.
The tables are created on first use, like the bench table.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from iberlite.store.schema import tables
from iberlite.store.store import Store, _retry_locked

LABEL_SCHEMA = """
CREATE TABLE IF NOT EXISTS pool_rows (
    task TEXT NOT NULL,
    row_hash TEXT NOT NULL,
    seq INTEGER NOT NULL,
    fields_json TEXT NOT NULL,
    text TEXT NOT NULL,
    source TEXT NOT NULL,
    evaluated INTEGER NOT NULL,
    added_at REAL NOT NULL,
    PRIMARY KEY (task, row_hash)
);
CREATE TABLE IF NOT EXISTS pool_scores (
    scorer TEXT NOT NULL,
    task TEXT NOT NULL,
    prompt_hash TEXT NOT NULL,
    row_hash TEXT NOT NULL,
    logprobs_json TEXT NOT NULL,
    n_tokens_json TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (scorer, task, prompt_hash, row_hash)
);
CREATE TABLE IF NOT EXISTS selections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task TEXT NOT NULL,
    model TEXT NOT NULL,
    scorer TEXT NOT NULL,
    strategy TEXT NOT NULL,
    n INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    seconds REAL NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS selected_rows (
    selection_id INTEGER NOT NULL REFERENCES selections(id),
    rank INTEGER NOT NULL,
    row_hash TEXT NOT NULL,
    prediction INTEGER,
    score REAL,
    PRIMARY KEY (selection_id, rank)
);
CREATE TABLE IF NOT EXISTS label_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task TEXT NOT NULL,
    row_hash TEXT NOT NULL,
    kind TEXT NOT NULL,
    label TEXT,
    labeller TEXT NOT NULL,
    source TEXT NOT NULL,
    seconds REAL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS label_events_task ON label_events(task, row_hash);
"""

EVENT_KINDS = ("label", "undo", "skip")


@dataclass(frozen=True)
class PoolRow:
    """One unlabelled row of a task's pool: the fields the task's templates read, the text a
    person reads, and whether that text is also an evaluated item (never trained on)."""

    task: str
    row_hash: str
    fields: dict[str, Any]
    text: str
    source: str  # the file it was added from
    evaluated: bool
    seq: int = 0


@dataclass(frozen=True)
class Pick:
    """One row of a selected batch: its place, the model's guess and the strategy's score."""

    row_hash: str
    rank: int
    prediction: int | None
    score: float | None


@dataclass(frozen=True)
class Selection:
    """A batch `select` picked from a pool."""

    id: int
    task: str
    model: str
    scorer: str
    strategy: str
    n: int
    seed: int
    seconds: float
    created_at: float
    picks: tuple[Pick, ...]


@dataclass(frozen=True)
class LabelEvent:
    """A label given (or undone, or a row skipped): who, how, and how long it took."""

    row_hash: str
    kind: str  # "label" | "undo" | "skip"
    label: str | None
    labeller: str
    source: str  # "page", "import:FILE", "simulation"
    seconds: float | None = None
    created_at: float = 0.0
    id: int = 0


class LabelBook:
    """The labelling tables of one open store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db

    def _ensure(self) -> None:
        if "label_events" not in tables(self.db):
            def write() -> None:
                with self.db:
                    self.db.executescript(LABEL_SCHEMA)
            _retry_locked(write)

    def _has_tables(self) -> bool:
        return "label_events" in tables(self.db)

    def _rows(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        return self.store._rows(sql, args)

    # -- the pool ----------------------------------------------------------------------------

    def add_pool(self, rows: Sequence[PoolRow]) -> int:
        """Add rows (one transaction); a row already in the pool is kept as it is. Returns how
        many were new."""
        self._ensure()
        now = time.time()

        def write() -> int:
            with self.db:
                last = dict(self.db.execute("SELECT task, MAX(seq) FROM pool_rows GROUP BY task").fetchall())
                added = 0
                for r in rows:
                    seq = (last.get(r.task) or 0) + 1
                    cur = self.db.execute(
                        "INSERT OR IGNORE INTO pool_rows VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (r.task, r.row_hash, seq, json.dumps(r.fields, ensure_ascii=False, sort_keys=True),
                         r.text, r.source, int(r.evaluated), now))
                    if cur.rowcount:
                        last[r.task] = seq
                        added += 1
                return added
        return _retry_locked(write)

    def pool(self, task: str) -> list[PoolRow]:
        """The task's pool rows in the order they were added."""
        if not self._has_tables():
            return []
        return [PoolRow(r["task"], r["row_hash"], json.loads(r["fields_json"]), r["text"], r["source"],
                        bool(r["evaluated"]), r["seq"])
                for r in self._rows("SELECT * FROM pool_rows WHERE task = ? ORDER BY seq", (task,))]

    def pool_sizes(self) -> dict[str, int]:
        """Rows per task pool."""
        if not self._has_tables():
            return {}
        return {t: n for t, n in self.db.execute("SELECT task, COUNT(*) FROM pool_rows GROUP BY task")}

    # -- scores of pool rows (cache) -----------------------------------------------------------

    def scores(self, scorer: str, task: str, prompt_hash: str) -> dict[str, tuple[list[float], list[int]]]:
        """Stored choice log-probabilities (and token counts) of pool rows, by row hash."""
        if not self._has_tables():
            return {}
        rows = self.db.execute("SELECT row_hash, logprobs_json, n_tokens_json FROM pool_scores "
                               "WHERE scorer = ? AND task = ? AND prompt_hash = ?", (scorer, task, prompt_hash))
        return {h: (json.loads(lp), json.loads(nt)) for h, lp, nt in rows}

    def add_scores(self, scorer: str, task: str, prompt_hash: str,
                   scores: Iterable[tuple[str, Sequence[float], Sequence[int]]]) -> None:
        """Store scores of pool rows (a batch at a time, so an interrupted scoring keeps them)."""
        self._ensure()
        now = time.time()
        batch = [(scorer, task, prompt_hash, h, json.dumps(list(lp)), json.dumps(list(nt)), now)
                 for h, lp, nt in scores]

        def write() -> None:
            with self.db:
                self.db.executemany("INSERT OR REPLACE INTO pool_scores VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
        _retry_locked(write)

    # -- selections ------------------------------------------------------------------------------

    def add_selection(self, task: str, model: str, scorer: str, strategy: str, seed: int, seconds: float,
                      picks: Sequence[Pick]) -> int:
        """Record a selected batch; returns its id."""
        self._ensure()

        def write() -> int:
            with self.db:
                cur = self.db.execute(
                    "INSERT INTO selections (task, model, scorer, strategy, n, seed, seconds, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (task, model, scorer, strategy, len(picks), seed, seconds, time.time()))
                sid = int(cur.lastrowid or 0)
                self.db.executemany("INSERT INTO selected_rows VALUES (?, ?, ?, ?, ?)",
                                    [(sid, p.rank, p.row_hash, p.prediction, p.score) for p in picks])
                return sid
        return _retry_locked(write)

    def selections(self, task: str) -> list[Selection]:
        """Every batch selected for the task, oldest first."""
        if not self._has_tables():
            return []
        out = []
        for s in self._rows("SELECT * FROM selections WHERE task = ? ORDER BY id", (task,)):
            picks = tuple(Pick(r["row_hash"], r["rank"], r["prediction"], r["score"]) for r in self._rows(
                "SELECT * FROM selected_rows WHERE selection_id = ? ORDER BY rank", (s["id"],)))
            out.append(Selection(s["id"], s["task"], s["model"], s["scorer"], s["strategy"], s["n"], s["seed"],
                                 s["seconds"], s["created_at"], picks))
        return out

    # -- labels -----------------------------------------------------------------------------------

    def add_events(self, task: str, events: Sequence[LabelEvent]) -> list[int]:
        """Append label events in one transaction (all or none); returns their ids."""
        self._ensure()
        for e in events:
            if e.kind not in EVENT_KINDS:
                raise ValueError(f"unknown label event kind {e.kind!r}")
        now = time.time()

        def write() -> list[int]:
            with self.db:
                ids = []
                for e in events:
                    cur = self.db.execute(
                        "INSERT INTO label_events (task, row_hash, kind, label, labeller, source, seconds, "
                        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (task, e.row_hash, e.kind, e.label, e.labeller, e.source, e.seconds, e.created_at or now))
                    ids.append(int(cur.lastrowid or 0))
                return ids
        return _retry_locked(write)

    def events(self, task: str) -> list[LabelEvent]:
        """Every label event of the task, oldest first."""
        if not self._has_tables():
            return []
        return [LabelEvent(r["row_hash"], r["kind"], r["label"], r["labeller"], r["source"], r["seconds"],
                           r["created_at"], r["id"])
                for r in self._rows("SELECT * FROM label_events WHERE task = ? ORDER BY id", (task,))]

    def states(self, task: str) -> dict[str, LabelEvent]:
        """Each row's newest event: its label, or that it was undone or skipped."""
        return {e.row_hash: e for e in self.events(task)}

    def labels(self, task: str) -> dict[str, LabelEvent]:
        """The rows that hold a label now (their newest event gives one), in labelling order."""
        current = {h: e for h, e in self.states(task).items() if e.kind == "label"}
        return dict(sorted(current.items(), key=lambda kv: kv[1].id))

    def label_seconds(self, task: str | None = None) -> list[float]:
        """Seconds each label given on the page took (imports and simulations have none)."""
        if not self._has_tables():
            return []
        sql = "SELECT seconds FROM label_events WHERE kind = 'label' AND seconds IS NOT NULL"
        args: tuple = ()
        if task is not None:
            sql, args = sql + " AND task = ?", (task,)
        return [float(s) for (s,) in self.db.execute(sql, args)]
