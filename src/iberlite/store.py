"""SQLite store: runs, items and aggregates. Append-only, so nothing stored is ever lost.

Items are keyed by an *evaluation key* (model file, engine, scoring, task prompt, data file,
seed): rerunning the same evaluation finds its items and evaluates only the missing ones.
WAL mode lets `iberlite results` read while a run writes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import UserError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at REAL NOT NULL,
    ended_at REAL,
    status TEXT NOT NULL,
    command TEXT,
    spec_json TEXT NOT NULL,
    device_json TEXT,
    versions_json TEXT,
    cost_json TEXT
);
CREATE TABLE IF NOT EXISTS evals (
    eval_key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    task TEXT NOT NULL,
    lang TEXT NOT NULL,
    family TEXT NOT NULL,
    output TEXT NOT NULL,
    engine_json TEXT NOT NULL,
    task_json TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    eval_key TEXT NOT NULL REFERENCES evals(eval_key),
    run_id INTEGER NOT NULL REFERENCES runs(id),
    doc_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    prompt TEXT NOT NULL,
    choices_json TEXT,
    logprobs_json TEXT,
    n_tokens_json TEXT,
    greedy_json TEXT,
    prediction TEXT,
    gold TEXT NOT NULL,
    correct INTEGER,
    generated TEXT,
    stop_reason TEXT,
    eval_tokens REAL,
    prompt_tokens INTEGER,
    gen_tokens INTEGER,
    reused_tokens INTEGER,
    wall_ms REAL,
    prefill_ms REAL,
    decode_ms REAL,
    ttft_ms REAL,
    confidence REAL,
    created_at REAL NOT NULL,
    UNIQUE (eval_key, doc_id)
);
CREATE TABLE IF NOT EXISTS aggregates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    eval_key TEXT NOT NULL REFERENCES evals(eval_key),
    model TEXT NOT NULL,
    task TEXT NOT NULL,
    lang TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    ci_low REAL NOT NULL,
    ci_high REAL NOT NULL,
    n INTEGER NOT NULL,
    signature TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at REAL NOT NULL,
    command TEXT,
    device_model TEXT NOT NULL,
    cloud_model TEXT NOT NULL,
    min_accuracy REAL NOT NULL,
    profile_json TEXT NOT NULL,
    decisions_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS items_eval ON items(eval_key);
CREATE INDEX IF NOT EXISTS aggregates_task ON aggregates(model, task, metric);
"""


def latest_aggregates_sql(where: str = "") -> str:
    """SELECT of the newest aggregate row per (signature, metric), optionally filtered.

    Shared with the report, which reads the database through its own read-only connection.
    """
    return (
        "SELECT a.* FROM aggregates a JOIN (SELECT MAX(id) AS id FROM aggregates "
        f"{where} GROUP BY signature, metric) l ON a.id = l.id"
    )


@dataclass(frozen=True)
class ItemRecord:
    """One evaluated item as stored: what was asked, what came back, what it cost."""

    doc_id: str
    seq: int
    prompt: str
    gold: str
    choices: tuple[str, ...] | None = None
    logprobs: tuple[float, ...] | None = None
    n_tokens: tuple[int, ...] | None = None
    greedy: tuple[bool, ...] | None = None
    prediction: str | None = None
    correct: bool | None = None
    generated: str | None = None
    stop_reason: str | None = None
    eval_tokens: float | None = None
    prompt_tokens: int | None = None
    gen_tokens: int | None = None
    reused_tokens: int | None = None
    wall_ms: float | None = None
    prefill_ms: float | None = None
    decode_ms: float | None = None
    ttft_ms: float | None = None
    confidence: float | None = None


@dataclass(frozen=True)
class AggregateRecord:
    """One metric over one evaluation, with its CI and its signature."""

    eval_key: str
    model: str
    task: str
    lang: str
    metric: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    signature: str


_JSON_FIELDS = {"choices": "choices_json", "logprobs": "logprobs_json",
                "n_tokens": "n_tokens_json", "greedy": "greedy_json"}


class Store:
    """A connection to one iberlite database file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            raise UserError(f"Cannot create the database {self.path}: folder {self.path.parent} does not exist.")
        try:
            self.db = sqlite3.connect(self.path, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.executescript(_SCHEMA)
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            self.db.commit()
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{self.path} is not an iberlite database ({exc}).") from exc

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    # -- runs -------------------------------------------------------------------------------

    def start_run(self, spec: dict[str, Any], command: str, device: dict[str, Any],
                  versions: dict[str, str]) -> int:
        """Record a run as started; returns its id."""
        cur = self.db.execute(
            "INSERT INTO runs (started_at, status, command, spec_json, device_json, versions_json) "
            "VALUES (?, 'running', ?, ?, ?, ?)",
            (time.time(), command, json.dumps(spec, default=str), json.dumps(device), json.dumps(versions)),
        )
        self.db.commit()
        return int(cur.lastrowid)

    def end_run(self, run_id: int, status: str, cost: dict[str, Any] | None = None) -> None:
        """Mark a run finished (`done`, `failed` or `interrupted`) with its device cost."""
        self.db.execute(
            "UPDATE runs SET ended_at = ?, status = ?, cost_json = ? WHERE id = ?",
            (time.time(), status, json.dumps(cost) if cost is not None else None, run_id),
        )
        self.db.commit()

    def runs(self) -> list[dict[str, Any]]:
        """Every run, newest first."""
        return self._rows("SELECT * FROM runs ORDER BY id DESC")

    # -- evaluations and items --------------------------------------------------------------

    def ensure_eval(self, eval_key: str, *, model: str, task: str, lang: str, family: str,
                    output: str, engine: dict[str, Any], task_info: dict[str, Any]) -> None:
        """Register an evaluation key (first writer wins; keys are content hashes)."""
        self.db.execute(
            "INSERT OR IGNORE INTO evals VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (eval_key, model, task, lang, family, output, json.dumps(engine, default=str),
             json.dumps(task_info, default=str), time.time()),
        )
        self.db.commit()

    def done_doc_ids(self, eval_key: str) -> set[str]:
        """Documents already evaluated under this key."""
        rows = self.db.execute("SELECT doc_id FROM items WHERE eval_key = ?", (eval_key,))
        return {r[0] for r in rows}

    def add_items(self, eval_key: str, run_id: int, items: Iterable[ItemRecord]) -> int:
        """Insert items in one transaction; an item already stored is kept, never replaced."""
        now = time.time()
        rows = []
        for it in items:
            d = asdict(it)
            for k, col in _JSON_FIELDS.items():
                value = d.pop(k)
                d[col] = json.dumps(value) if value is not None else None
            d["correct"] = None if it.correct is None else int(it.correct)
            rows.append({**d, "eval_key": eval_key, "run_id": run_id, "created_at": now})
        if not rows:
            return 0
        cols = list(rows[0])
        sql = (f"INSERT OR IGNORE INTO items ({', '.join(cols)}) "
               f"VALUES ({', '.join(':' + c for c in cols)})")
        with self.db:
            cur = self.db.executemany(sql, rows)
        return cur.rowcount

    def items(self, eval_key: str, doc_ids: Sequence[str] | None = None) -> list[ItemRecord]:
        """Stored items of an evaluation in document order, optionally only the given docs."""
        rows = self._rows("SELECT * FROM items WHERE eval_key = ? ORDER BY seq", (eval_key,))
        if doc_ids is not None:
            wanted = set(doc_ids)
            rows = [r for r in rows if r["doc_id"] in wanted]
        return [_item_from_row(r) for r in rows]

    def evals(self) -> list[dict[str, Any]]:
        """Every registered evaluation."""
        return self._rows("SELECT * FROM evals ORDER BY model, task")

    # -- aggregates -------------------------------------------------------------------------

    def add_aggregates(self, run_id: int, aggs: Iterable[AggregateRecord]) -> None:
        """Append aggregates (older ones stay: the history of a number is kept)."""
        now = time.time()
        with self.db:
            self.db.executemany(
                "INSERT INTO aggregates (run_id, eval_key, model, task, lang, metric, value, ci_low, "
                "ci_high, n, signature, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [(run_id, a.eval_key, a.model, a.task, a.lang, a.metric, a.value, a.ci_low,
                  a.ci_high, a.n, a.signature, now) for a in aggs],
            )

    def latest_aggregates(self, run_id: int | None = None) -> list[AggregateRecord]:
        """The newest aggregate per (signature, metric): one row per distinct measurement;
        with `run_id`, those computed by that run."""
        where, args = ("WHERE run_id = ?", (run_id,)) if run_id is not None else ("", ())
        rows = self._rows(latest_aggregates_sql(where) + " ORDER BY a.model, a.task, a.metric", args)
        return [AggregateRecord(**{k: r[k] for k in AggregateRecord.__dataclass_fields__}) for r in rows]

    def add_decision(self, command: str, device: str, cloud: str, min_accuracy: float,
                     profile: dict[str, Any], decisions: list[dict[str, Any]]) -> int:
        """Store one `iberlite decide` outcome (infinite thresholds as null); return its id."""
        cur = self.db.execute(
            "INSERT INTO decisions (created_at, command, device_model, cloud_model, min_accuracy, "
            "profile_json, decisions_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (time.time(), command, device, cloud, min_accuracy, json.dumps(profile),
             json.dumps(json_safe(decisions))),
        )
        self.db.commit()
        return int(cur.lastrowid)

    def _rows(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        cur = self.db.execute(sql, args)
        names = [c[0] for c in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def _item_from_row(r: dict[str, Any]) -> ItemRecord:
    kwargs = {k: r[k] for k in ItemRecord.__dataclass_fields__ if k in r}
    for k, col in _JSON_FIELDS.items():
        kwargs[k] = tuple(json.loads(r[col])) if r[col] is not None else None
    kwargs["correct"] = None if r["correct"] is None else bool(r["correct"])
    return ItemRecord(**kwargs)


def json_safe(value: Any) -> Any:
    """JSON-safe copy: infinities and NaN become null (browsers reject them in JSON)."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value

