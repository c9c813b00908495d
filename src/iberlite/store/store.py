"""SQLite store: runs, evaluations, items, aggregates, benches and decisions. Append-only, so
nothing stored is ever lost. The only module of iberlite that speaks SQL.

Items are keyed by an *evaluation key* (model file, engine, scoring, task prompt, data file,
seed): rerunning the same evaluation finds its items and evaluates only the missing ones.
WAL mode lets `iberlite results` and `iberlite report` read while a run writes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from iberlite.errors import UserError
from iberlite.store.records import (
    AdviceRecord,
    AggregateRecord,
    BenchRecord,
    DecisionRecord,
    EvalRecord,
    ItemFailure,
    ItemRecord,
    RunCost,
    RunRecord,
)
from iberlite.store.schema import (
    ADVICE_SCHEMA,
    BENCH_SCHEMA,
    REQUIRED_TABLES,
    SCHEMA_VERSION,
    create_or_migrate,
    stored_version,
    tables,
)

T = TypeVar("T")

_JSON_FIELDS = {"choices": "choices_json", "logprobs": "logprobs_json",
                "n_tokens": "n_tokens_json", "greedy": "greedy_json"}
_ITEM_FIELDS = tuple(f.name for f in fields(ItemRecord))
_AGG_FIELDS = tuple(f.name for f in fields(AggregateRecord))

BUSY_TIMEOUT_S = 30.0
"""How long a write waits for another process's write lock (SQLite's busy timeout)."""

_LOCK_RETRIES = 5


def _retry_locked(write: Callable[[], T]) -> T:
    """Run a write, retrying when SQLite still reports the file locked after its busy timeout
    (two runs writing one database: each transaction is short, so the lock comes free)."""
    for attempt in range(_LOCK_RETRIES):
        try:
            return write()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if attempt == _LOCK_RETRIES - 1:
                raise UserError(f"The database stayed locked by another process for "
                                f"{BUSY_TIMEOUT_S * _LOCK_RETRIES:.0f} s ({exc}); nothing was lost: "
                                "rerun the same command to continue.") from exc
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


# The newest aggregate row per (signature, metric): one row per distinct measurement.
_LATEST_AGGREGATES = ("SELECT a.* FROM aggregates a JOIN (SELECT MAX(id) AS id FROM aggregates {where} "
                      "GROUP BY signature, metric) l ON a.id = l.id ORDER BY a.model, a.task, a.metric")


class Store:
    """A connection to one iberlite database file.

    `Store(path)` opens for writing and creates the file if needed;
    `Store.open_readonly(path)` never creates or changes anything but an older schema (which
    it upgrades once, see :mod:`iberlite.store.schema`). Both check the schema version and
    can be used as context managers.
    """

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if readonly:
            self.db = self._connect_readonly()
            return
        if self.path.parent and not self.path.parent.exists():
            raise UserError(f"Cannot create the database {self.path}: folder {self.path.parent} does not exist.")
        try:
            self.db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
            _retry_locked(lambda: self.db.execute("PRAGMA journal_mode=WAL"))
            self.db.execute("PRAGMA foreign_keys=ON")
            _retry_locked(lambda: create_or_migrate(self.db, self.path))
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{self.path} is not an iberlite database ({exc}).") from exc

    @classmethod
    def open_readonly(cls, path: Path) -> Store:
        """Open an existing database for reading (a report never writes to it)."""
        return cls(path, readonly=True)

    def _connect_readonly(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise UserError(f"No results database at {self.path}; run `iberlite run` first or pass --db.")
        try:
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
            names = tables(conn)
            missing = [t for t in REQUIRED_TABLES if t not in names]
            if missing:
                conn.close()
                raise UserError(f"{self.path} is not an iberlite database (no {', '.join(missing)} table).")
            version = stored_version(conn, self.path)
            if version is not None and version < SCHEMA_VERSION:
                conn.close()
                self._upgrade(version)
                conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{self.path} is not an iberlite database ({exc}).") from exc
        return conn

    def _upgrade(self, version: int) -> None:
        """Migrate an older database once, so that it can be read as usual afterwards."""
        try:
            conn = sqlite3.connect(self.path, timeout=30)
            try:
                create_or_migrate(conn, self.path)
            finally:
                conn.close()
        except sqlite3.OperationalError as exc:
            raise UserError(f"{self.path} has schema version {version} and cannot be upgraded to {SCHEMA_VERSION} "
                            f"here ({exc}): open it once where it is writable.") from exc

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        """The schema version of the open database."""
        return stored_version(self.db, self.path) or SCHEMA_VERSION

    # -- runs -------------------------------------------------------------------------------

    def start_run(self, spec: dict[str, Any], command: str, device: dict[str, Any],
                  versions: dict[str, str]) -> int:
        """Record a run as started (and the device it starts on); returns its id."""
        row = (time.time(), command, json.dumps(spec, default=str), json.dumps(device), json.dumps(versions))

        def write() -> int:
            with self.db:
                cur = self.db.execute(
                    "INSERT INTO runs (started_at, status, command, spec_json, device_json, "
                    "versions_json) VALUES (?, 'running', ?, ?, ?, ?)", row)
            return int(cur.lastrowid or 0)

        run_id = _retry_locked(write)
        if device.get("fingerprint_id"):
            self.add_device(device)
        return run_id

    def end_run(self, run_id: int, status: str, costs: dict[str, RunCost] | None = None) -> None:
        """Mark a run finished (`done`, `incomplete`: some items or models failed, `failed` or
        `interrupted`) with each model's device cost."""
        cost_json = json.dumps({m: c.to_json() for m, c in costs.items()}) if costs is not None else None
        def write() -> None:
            with self.db:
                self.db.execute("UPDATE runs SET ended_at = ?, status = ?, cost_json = ? WHERE id = ?",
                                (time.time(), status, cost_json, run_id))

        _retry_locked(write)

    def end_run_if_running(self, run_id: int, status: str) -> None:
        """Mark a run that died without ending itself (`killed`, `crashed`); a run that had
        ended keeps its status."""
        def write() -> None:
            with self.db:
                self.db.execute("UPDATE runs SET ended_at = ?, status = ? WHERE id = ? AND "
                                "status = 'running'", (time.time(), status, run_id))

        _retry_locked(write)

    def add_device(self, device: dict[str, Any]) -> None:
        """Keep a device fingerprint (`DeviceFingerprint.to_dict()`) once, by its id."""
        row = (str(device["fingerprint_id"]), json.dumps(device, sort_keys=True), time.time())

        def write() -> None:
            with self.db:
                self.db.execute("INSERT OR IGNORE INTO devices VALUES (?, ?, ?)", row)

        _retry_locked(write)

    def devices(self) -> dict[str, dict[str, Any]]:
        """Every stored device fingerprint: fingerprint id -> fingerprint, oldest first."""
        rows = self.db.execute("SELECT fingerprint_id, device_json FROM devices ORDER BY created_at, rowid")
        return {fid: _json(blob, {}) or {} for fid, blob in rows}

    def runs(self) -> list[RunRecord]:
        """Every run, oldest first."""
        out = []
        for r in self._rows("SELECT * FROM runs ORDER BY id"):
            costs = _json(r["cost_json"], {}) or {}
            out.append(RunRecord(
                id=r["id"], started_at=r["started_at"], ended_at=r["ended_at"], status=r["status"],
                command=r["command"] or "", spec=_json(r["spec_json"], {}),
                device=_json(r["device_json"], {}) or {}, versions=_json(r["versions_json"], {}) or {},
                costs={m: RunCost.from_json(c) for m, c in costs.items() if isinstance(c, dict)},
            ))
        return out

    # -- evaluations and items --------------------------------------------------------------

    def ensure_eval(self, eval_key: str, *, model: str, task: str, lang: str, family: str,
                    output: str, engine: dict[str, Any], task_info: dict[str, Any]) -> None:
        """Register an evaluation key (first writer wins; keys are content hashes)."""
        row = (eval_key, model, task, lang, family, output, json.dumps(engine, default=str),
               json.dumps(task_info, default=str), time.time())

        def write() -> None:
            with self.db:
                self.db.execute("INSERT OR IGNORE INTO evals VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)

        _retry_locked(write)

    def evals(self) -> list[EvalRecord]:
        """Every registered evaluation, by model and task."""
        return [EvalRecord(r["eval_key"], r["model"], r["task"], r["lang"], r["family"], r["output"],
                           _json(r["engine_json"], {}) or {}, _json(r["task_json"], {}) or {},
                           r["created_at"])
                for r in self._rows("SELECT * FROM evals ORDER BY model, task, rowid")]

    def item_counts(self) -> dict[str, int]:
        """Number of stored items per evaluation key."""
        return {k: n for k, n in self.db.execute("SELECT eval_key, COUNT(*) FROM items GROUP BY eval_key")}

    def evals_with_most_items(self, model: str | None = None,
                              device_class: str | None = None) -> dict[tuple[str, str], EvalRecord]:
        """Per (model, task), the evaluation with the most stored items (the newest on a tie);
        with `device_class`, among the evaluations pinned to that class only.

        When a task was evaluated several ways (another limit, scoring or engine), the item-level
        views all read this one evaluation, so they agree with each other.
        """
        counts = self.item_counts()
        chosen: dict[tuple[str, str], EvalRecord] = {}
        for ev in self.evals():
            n = counts.get(ev.eval_key, 0)
            if not n or (model is not None and ev.model != model):
                continue
            if device_class is not None and ev.device_class != device_class:
                continue
            cur = chosen.get((ev.model, ev.task))
            if cur is None or (n, ev.created_at) > (counts[cur.eval_key], cur.created_at):
                chosen[(ev.model, ev.task)] = ev
        return chosen

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

        def write() -> int:
            with self.db:
                return self.db.executemany(sql, rows).rowcount

        return _retry_locked(write)

    def add_failures(self, eval_key: str, run_id: int, failures: Iterable[ItemFailure]) -> None:
        """Record items this run could not evaluate, with why (appended: a failure is kept as
        history even after a later run stores the item)."""
        now = time.time()
        rows = [(eval_key, run_id, f.doc_id, f.seq, f.reason, now) for f in failures]
        if not rows:
            return

        def write() -> None:
            with self.db:
                self.db.executemany("INSERT INTO failures (eval_key, run_id, doc_id, seq, reason, "
                                    "created_at) VALUES (?, ?, ?, ?, ?, ?)", rows)

        _retry_locked(write)

    def open_failures(self, eval_key: str) -> list[ItemFailure]:
        """Items of an evaluation whose latest attempt failed and that no run has stored since
        (what a resumed run retries; what a score leaves out), in document order."""
        rows = self.db.execute(
            "SELECT f.doc_id, f.seq, f.reason, f.run_id FROM failures f "
            "JOIN (SELECT MAX(id) AS id FROM failures WHERE eval_key = ? GROUP BY doc_id) l "
            "ON f.id = l.id WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.eval_key = f.eval_key "
            "AND i.doc_id = f.doc_id) ORDER BY f.seq", (eval_key,))
        return [ItemFailure(doc_id, seq, reason, run_id) for doc_id, seq, reason, run_id in rows]

    def items(self, eval_key: str, doc_ids: Sequence[str] | None = None) -> list[ItemRecord]:
        """Stored items of an evaluation in document order, optionally only the given docs."""
        rows = self._rows("SELECT * FROM items WHERE eval_key = ? ORDER BY seq, id", (eval_key,))
        if doc_ids is not None:
            wanted = set(doc_ids)
            rows = [r for r in rows if r["doc_id"] in wanted]
        return [_item_from_row(r) for r in rows]

    def new_item_counts(self) -> dict[tuple[int, str], int]:
        """Items each run stored per model: (run id, model) -> count (a rerun that found every
        item stored has none)."""
        rows = self.db.execute("SELECT i.run_id, e.model, COUNT(*) FROM items i JOIN evals e USING (eval_key) "
                               "GROUP BY i.run_id, e.model")
        return {(run_id, model): n for run_id, model, n in rows}

    # -- aggregates -------------------------------------------------------------------------

    def add_aggregates(self, run_id: int, aggs: Iterable[AggregateRecord]) -> None:
        """Append aggregates (older ones stay: the history of a number is kept)."""
        now = time.time()
        rows = [(run_id, a.eval_key, a.model, a.task, a.lang, a.metric, a.value, a.ci_low,
                 a.ci_high, a.n, a.signature, now) for a in aggs]

        def write() -> None:
            with self.db:
                self.db.executemany(
                    "INSERT INTO aggregates (run_id, eval_key, model, task, lang, metric, value, "
                    "ci_low, ci_high, n, signature, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)

        _retry_locked(write)

    def latest_aggregates(self, run_id: int | None = None) -> list[AggregateRecord]:
        """The newest aggregate per (signature, metric): one row per distinct measurement;
        with `run_id`, those computed by that run."""
        where, args = ("WHERE run_id = ?", (run_id,)) if run_id is not None else ("", ())
        rows = self._rows(_LATEST_AGGREGATES.format(where=where), args)
        return [AggregateRecord(**{k: r[k] for k in _AGG_FIELDS}) for r in rows]

    # -- engine ceilings (`iberlite bench`) ---------------------------------------------------

    def add_benches(self, benches: Sequence[BenchRecord]) -> list[int]:
        """Append bench results (the `benches` table is created on first use); returns row ids."""
        now = time.time()
        ids = []
        with self.db:
            self.db.executescript(BENCH_SCHEMA)
            for b in benches:
                cur = self.db.execute(
                    "INSERT INTO benches (created_at, model, model_sha256, file_type, test, n_tokens, "
                    "reps, median, min, max, std, n_threads, device_json, samples_json) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (now, b.model, b.model_sha256, b.file_type, b.test, b.n_tokens, b.reps, b.median,
                     b.min, b.max, b.std, b.n_threads, json.dumps(b.device, sort_keys=True, default=str),
                     json.dumps(list(b.samples))),
                )
                ids.append(int(cur.lastrowid or 0))
        return ids

    def has_bench_table(self) -> bool:
        """Whether `iberlite bench` ever wrote to this database."""
        return "benches" in tables(self.db)

    def benches(self) -> list[BenchRecord]:
        """Every stored bench row, oldest first. Rows of older layouts without a model, test or
        median are skipped; other missing columns are left empty."""
        if not self.has_bench_table():
            return []
        try:
            rows = self._rows("SELECT * FROM benches ORDER BY rowid")
        except sqlite3.DatabaseError:
            return []
        out = []
        for r in rows:
            if any(r.get(k) is None for k in ("model", "test", "median")):
                continue
            med = float(r["median"])
            out.append(BenchRecord(
                model=str(r["model"]), test=str(r["test"]), median=med,
                min=float(r["min"] if r.get("min") is not None else med),
                max=float(r["max"] if r.get("max") is not None else med),
                model_sha256=str(r.get("model_sha256") or ""), file_type=str(r.get("file_type") or ""),
                n_tokens=r.get("n_tokens"), reps=r.get("reps"), std=r.get("std"), n_threads=r.get("n_threads"),
                device=_json(r.get("device_json"), {}) or {},
                samples=tuple(_json(r.get("samples_json"), []) or ()),
                id=r.get("id"), created_at=r.get("created_at"),
            ))
        return out

    # -- quantization advice ----------------------------------------------------------------

    def add_advice(self, family: str, device_id: str, device: dict[str, Any], advice: dict[str, Any]) -> int:
        """Store one `iberlite advise` outcome (the table is created on first use)."""
        with self.db:
            self.db.executescript(ADVICE_SCHEMA)
            cur = self.db.execute(
                "INSERT INTO advice (created_at, family, device_id, device_json, advice_json) "
                "VALUES (?, ?, ?, ?, ?)",
                (time.time(), family, device_id, json.dumps(device, sort_keys=True, default=str),
                 json.dumps(json_safe(advice))))
        return int(cur.lastrowid or 0)

    def latest_advice(self) -> list[AdviceRecord]:
        """The newest advice per (model, device), oldest first."""
        if "advice" not in tables(self.db):
            return []
        rows = self._rows("SELECT * FROM advice WHERE id IN (SELECT MAX(id) FROM advice "
                          "GROUP BY family, device_id) ORDER BY id")
        return [AdviceRecord(r["id"], r["created_at"], r["family"], r["device_id"],
                             _json(r["device_json"], {}) or {}, _json(r["advice_json"], {}) or {})
                for r in rows]

    # -- routing decisions ------------------------------------------------------------------

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
        return int(cur.lastrowid or 0)

    def latest_decision(self) -> DecisionRecord | None:
        """The newest stored `iberlite decide` outcome, or None."""
        if "decisions" not in tables(self.db):
            return None
        rows = self._rows("SELECT * FROM decisions ORDER BY id DESC LIMIT 1")
        if not rows:
            return None
        r = rows[0]
        return DecisionRecord(r["id"], r["created_at"], r["command"] or "", r["device_model"],
                              r["cloud_model"], r["min_accuracy"], _json(r["profile_json"], {}) or {},
                              tuple(_json(r["decisions_json"], []) or ()))

    def _rows(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        cur = self.db.execute(sql, args)
        names = [c[0] for c in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def _json(value: str | None, default: Any) -> Any:
    if not value:
        return default
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return default


def _item_from_row(r: dict[str, Any]) -> ItemRecord:
    kwargs = {k: r[k] for k in _ITEM_FIELDS if k in r}
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
