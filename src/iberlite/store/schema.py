"""The database schema, its version, and the steps that bring an older database up to it.

`SCHEMA` creates a fresh database at `SCHEMA_VERSION`. A database written by an older
iberlite is upgraded on open by applying `MIGRATIONS[v]` for every v from its version up
(each step is additive: a new column or table, never a rewrite, so nothing stored is lost).
A database from a newer iberlite is refused: this code cannot know what its tables mean.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from iberlite.errors import UserError

SCHEMA_VERSION = 4

SCHEMA = """
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
    lang_detected TEXT,
    device_id TEXT,
    device_class TEXT,
    UNIQUE (eval_key, doc_id)
);
CREATE TABLE IF NOT EXISTS devices (
    fingerprint_id TEXT PRIMARY KEY,
    device_json TEXT NOT NULL,
    created_at REAL NOT NULL
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
""" + """
CREATE TABLE IF NOT EXISTS failures (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    eval_key TEXT NOT NULL REFERENCES evals(eval_key),
    run_id INTEGER NOT NULL REFERENCES runs(id),
    doc_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    reason TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS failures_eval ON failures(eval_key, doc_id);
"""

# Created by the first `iberlite bench` on a database, so that "no bench table" (never
# benchmarked) and "empty bench table" stay distinguishable in the report.
BENCH_SCHEMA = """
CREATE TABLE IF NOT EXISTS benches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at REAL NOT NULL,
    model TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    file_type TEXT NOT NULL,
    test TEXT NOT NULL,
    n_tokens INTEGER NOT NULL,
    reps INTEGER NOT NULL,
    median REAL NOT NULL,
    min REAL NOT NULL,
    max REAL NOT NULL,
    std REAL NOT NULL,
    n_threads INTEGER NOT NULL,
    device_json TEXT NOT NULL,
    samples_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS benches_model ON benches(model_sha256, test);
"""

ADVICE_SCHEMA = """
CREATE TABLE IF NOT EXISTS advice (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at REAL NOT NULL,
    family TEXT NOT NULL,
    device_id TEXT NOT NULL,
    device_json TEXT NOT NULL,
    advice_json TEXT NOT NULL
);
"""

REQUIRED_TABLES = ("runs", "evals", "items", "aggregates")


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}


def _v1_to_v2(conn: sqlite3.Connection) -> None:
    """Version 2 stores the language identified in each generated output when it is scored,
    so the report shows it without running language ID again. The outputs already stored are
    identified once, here (with the identifier installed now)."""
    if "lang_detected" not in _columns(conn, "items"):
        conn.execute("ALTER TABLE items ADD COLUMN lang_detected TEXT")
    rows = conn.execute("SELECT id, generated FROM items WHERE generated IS NOT NULL "
                        "AND lang_detected IS NULL").fetchall()
    if rows:
        from iberlite.scoring.language_id import LanguageIdentifier

        detected = LanguageIdentifier().identify_many([text for _id, text in rows])
        conn.executemany("UPDATE items SET lang_detected = ? WHERE id = ?",
                         [(lang, item_id) for (item_id, _text), lang in zip(rows, detected) if lang])
    # decisions arrived within version 1; a version-1 file may predate them
    _execute_script(conn, SCHEMA)


def _v2_to_v3(conn: sqlite3.Connection) -> None:
    """Version 3 records items that failed (an endpoint that timed out, answered 5xx or sent a
    broken body) in their own append-only table: `items` keeps answers only, so every reader
    of items stays correct, a resumed run retries exactly the failed documents, and the
    history of failures is kept after a retry succeeds."""
    _execute_script(conn, SCHEMA)


def _v3_to_v4(conn: sqlite3.Connection) -> None:
    """Version 4 records, per item, the fingerprint of the device that answered it and the
    device class it was pinned to (a sweep spread over several machines mixes devices within
    one run), and keeps each fingerprint once in `devices`. Items stored before were answered
    on their run's device: they take its fingerprint id, with no class."""
    import json

    cols = _columns(conn, "items")
    for name in ("device_id", "device_class"):
        if name not in cols:
            conn.execute(f"ALTER TABLE items ADD COLUMN {name} TEXT")
    _execute_script(conn, SCHEMA)
    for run_id, device_json, started in conn.execute(
            "SELECT id, device_json, started_at FROM runs WHERE device_json IS NOT NULL").fetchall():
        try:
            device = json.loads(device_json)
        except ValueError:
            continue
        fid = device.get("fingerprint_id") if isinstance(device, dict) else None
        if not fid:
            continue
        conn.execute("INSERT OR IGNORE INTO devices VALUES (?, ?, ?)", (fid, device_json, started))
        conn.execute("UPDATE items SET device_id = ? WHERE run_id = ? AND device_id IS NULL", (fid, run_id))


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4}
"""Version v -> the step that turns a version-v database into a version v+1 one."""


def tables(conn: sqlite3.Connection) -> set[str]:
    """Names of the tables in the database."""
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def stored_version(conn: sqlite3.Connection, path: Path) -> int | None:
    """The schema version recorded in the database; None for a database with no iberlite
    tables at all. Files from before the version was recorded count as version 1."""
    names = tables(conn)
    if "meta" not in names:
        return 1 if "runs" in names else None
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        return 1 if "runs" in names else None
    try:
        version = int(row[0])
    except ValueError:
        raise UserError(f"{path} has an unknown schema version {row[0]!r}: it was not written by "
                        "iberlite, or by a version this one cannot read.") from None
    if version > SCHEMA_VERSION:
        raise UserError(f"{path} was written by a newer iberlite (schema version {version}; this one "
                        f"reads up to {SCHEMA_VERSION}): upgrade iberlite to open it.")
    if version < 1:
        raise UserError(f"{path} has an unknown schema version {version}: it was not written by iberlite.")
    return version


def _execute_script(conn: sqlite3.Connection, script: str) -> None:
    """Run DDL statements one by one inside the open transaction (`executescript` would
    commit first, letting a second process see half a schema)."""
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def create_or_migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Bring the database to `SCHEMA_VERSION` (creating it when empty); returns the version it had
    (`SCHEMA_VERSION` for a new one).

    The version is read and the schema written under one write lock (`BEGIN IMMEDIATE`), so two
    processes opening a new or old file at once create or migrate it exactly once.
    """
    version = stored_version(conn, path)
    if version == SCHEMA_VERSION:
        return version
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = stored_version(conn, path)  # another process may have done it meanwhile
        found = SCHEMA_VERSION if version is None else version
        if version is None:
            _execute_script(conn, SCHEMA)
            _set_version(conn, SCHEMA_VERSION)
        else:
            while version < SCHEMA_VERSION:
                MIGRATIONS[version](conn)
                version += 1
                _set_version(conn, version)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found


def _set_version(conn: sqlite3.Connection, version: int) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(version),))
