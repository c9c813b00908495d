"""The data layer: schema versions, migrations of older databases, and a report of an old
database that shows the same numbers it showed before the upgrade.

`data/report_v1.db.gz` is a schema-version-1 database written by iberlite before the data
layer was split out (both catalog models on the sample suite, es/eu/en, 4 items, plus a
`decide` outcome and a bench row); `data/report_v1_before.md` and
`data/report_v1_before_numbers.json` are the Markdown report and the number strings of the
HTML report that version rendered from it.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from iberlite.errors import UserError
from iberlite.store import SCHEMA_VERSION, ItemFailure, ItemRecord, RunCost, Store
from report_numbers import number_strings

DATA = Path(__file__).parent / "data"

# The version-1 layout of the items table (the other tables are unchanged in version 2).
V1_ITEMS = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, started_at REAL NOT NULL, ended_at REAL,
    status TEXT NOT NULL, command TEXT, spec_json TEXT NOT NULL, device_json TEXT, versions_json TEXT,
    cost_json TEXT);
CREATE TABLE evals (eval_key TEXT PRIMARY KEY, model TEXT NOT NULL, task TEXT NOT NULL, lang TEXT NOT NULL,
    family TEXT NOT NULL, output TEXT NOT NULL, engine_json TEXT NOT NULL, task_json TEXT NOT NULL,
    created_at REAL NOT NULL);
CREATE TABLE items (id INTEGER PRIMARY KEY AUTOINCREMENT, eval_key TEXT NOT NULL REFERENCES evals(eval_key),
    run_id INTEGER NOT NULL REFERENCES runs(id), doc_id TEXT NOT NULL, seq INTEGER NOT NULL,
    prompt TEXT NOT NULL, choices_json TEXT, logprobs_json TEXT, n_tokens_json TEXT, greedy_json TEXT,
    prediction TEXT, gold TEXT NOT NULL, correct INTEGER, generated TEXT, stop_reason TEXT,
    eval_tokens REAL, prompt_tokens INTEGER, gen_tokens INTEGER, reused_tokens INTEGER, wall_ms REAL,
    prefill_ms REAL, decode_ms REAL, ttft_ms REAL, confidence REAL, created_at REAL NOT NULL,
    UNIQUE (eval_key, doc_id));
CREATE TABLE aggregates (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id INTEGER NOT NULL, eval_key TEXT NOT NULL,
    model TEXT NOT NULL, task TEXT NOT NULL, lang TEXT NOT NULL, metric TEXT NOT NULL, value REAL NOT NULL,
    ci_low REAL NOT NULL, ci_high REAL NOT NULL, n INTEGER NOT NULL, signature TEXT NOT NULL,
    created_at REAL NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO runs VALUES (1, 1.0, 2.0, 'done', 'iberlite run', '{}', '{"fingerprint_id": "d1"}', '{}',
    '{"m": {"load_ms": 5.0, "energy_j": 2.5, "energy_method": "estimate", "peak_rss_bytes": 100}}');
INSERT INTO evals VALUES ('k1', 'm', 'sample_translation_en-es', 'es', 'translation', 'generate', '{}',
    '{"prompt_hash": "p"}', 1.0);
INSERT INTO items (eval_key, run_id, doc_id, seq, prompt, gold, generated, wall_ms, created_at) VALUES
    ('k1', 1, 'doc_1', 0, 'English sentence: The cat sleeps.', 'El gato duerme.',
     ' El gato duerme en la casa de mi abuela todos los días.', 12.5, 1.0),
    ('k1', 1, 'doc_2', 1, 'English sentence: It rains.', 'Llueve.', '', 3.0, 1.0);
"""


def _v1_db(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(V1_ITEMS)
    conn.close()
    return path


def _version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])


def test_a_new_database_is_at_the_current_version(tmp_path):
    with Store(tmp_path / "new.db") as store:
        assert store.schema_version == SCHEMA_VERSION
    assert _version(tmp_path / "new.db") == SCHEMA_VERSION


def test_a_version_1_database_is_migrated_on_open(tmp_path):
    db = _v1_db(tmp_path / "v1.db")
    with Store(db) as store:
        assert store.schema_version == SCHEMA_VERSION
        (run,) = store.runs()
        assert run.costs == {"m": RunCost(load_ms=5.0, energy_j=2.5, energy_method="estimate",
                                          peak_rss_bytes=100)}
        first, empty = store.items("k1")
        # the migration identified the stored outputs once; an empty output stays unidentified
        assert first.lang_detected == "es" and first.run_id == 1
        assert empty.generated == "" and empty.lang_detected is None
        # version 4: each item names the device that answered it (its run's, for old items)
        assert {it.device_id for it in (first, empty)} == {"d1"}
        assert {it.device_class for it in (first, empty)} == {None}
        assert store.devices() == {"d1": {"fingerprint_id": "d1"}}
        # and the new column is written from now on
        store.add_items("k1", 1, [ItemRecord("doc_3", 2, "p", "g", generated=" x", lang_detected="en")])
        assert store.items("k1", ["doc_3"])[0].lang_detected == "en"
    assert _version(db) == SCHEMA_VERSION


def test_a_version_2_database_gains_the_failures_table_and_keeps_its_items(tmp_path):
    db = _v1_db(tmp_path / "v2.db")
    with Store(db):
        pass
    with sqlite3.connect(db) as conn:  # back to version 2: no failures table
        conn.execute("DROP TABLE failures")
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    with Store(db) as store:
        assert store.schema_version == SCHEMA_VERSION == 4
        assert [it.doc_id for it in store.items("k1")] == ["doc_1", "doc_2"]
        store.add_failures("k1", 1, [ItemFailure("doc_3", 2, "HTTP 503"), ItemFailure("doc_4", 3, "timeout")])
        store.add_failures("k1", 1, [ItemFailure("doc_3", 2, "timeout")])
        assert [(f.doc_id, f.reason) for f in store.open_failures("k1")] == [("doc_3", "timeout"),
                                                                             ("doc_4", "timeout")]
        store.add_items("k1", 1, [ItemRecord("doc_3", 2, "p", "g", generated=" x")])
        # once stored, an item is no longer failed; its failures stay as history
        assert [f.doc_id for f in store.open_failures("k1")] == ["doc_4"]
        assert store.done_doc_ids("k1") == {"doc_1", "doc_2", "doc_3"}
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM failures").fetchone()[0] == 3


def test_a_read_only_open_upgrades_an_old_database_too(tmp_path):
    db = _v1_db(tmp_path / "v1.db")
    with Store.open_readonly(db) as store:
        assert [it.doc_id for it in store.items("k1")] == ["doc_1", "doc_2"]
    assert _version(db) == SCHEMA_VERSION


@pytest.mark.parametrize("value,message", [
    ("99", r"written by a newer iberlite \(schema version 99; this one reads up to \d+\): upgrade iberlite"),
    ("banana", r"unknown schema version 'banana'"),
])
def test_a_newer_or_unknown_version_is_refused_in_one_sentence(tmp_path, value, message):
    db = _v1_db(tmp_path / "future.db")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (value,))
    for open_db in (Store, Store.open_readonly):
        with pytest.raises(UserError, match=message) as err:
            open_db(db)
        assert str(err.value).count(". ") == 0  # one sentence
    with sqlite3.connect(db) as conn:  # nothing was rewritten
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == value


def test_reading_never_creates_a_database(tmp_path):
    with pytest.raises(UserError, match="No results database"):
        Store.open_readonly(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()


def test_evals_with_most_items_picks_the_largest_then_the_newest(tmp_path):
    with Store(tmp_path / "t.db") as store:
        run = store.start_run({}, "", {}, {})
        for key, n in (("small", 2), ("large", 3), ("tie", 3)):
            store.ensure_eval(key, model="m", task="t", lang="es", family="f", output="generate",
                              engine={}, task_info={})
            store.add_items(key, run, [ItemRecord(f"d{i}", i, "p", "g") for i in range(n)])
        store.db.execute("UPDATE evals SET created_at = 0 WHERE eval_key = 'tie'")
        store.db.commit()
        assert store.evals_with_most_items()[("m", "t")].eval_key == "large"
        assert store.evals_with_most_items("other") == {}


# --- the same numbers before and after: a report of a version-1 database ---------------------


@pytest.fixture
def v1_report_db(tmp_path) -> Path:
    db = tmp_path / "fixture_ro.db"
    with gzip.open(DATA / "report_v1.db.gz", "rb") as src, db.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    return db


def _added_lines(old: list[str], new: list[str]) -> list[str]:
    """The lines `new` inserts into `old`; anything old that changed or went missing fails."""
    import difflib

    added = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if tag == "insert":
            added += new[j1:j2]
        elif tag != "equal" and not (i2 - i1 == 1 and "generated" in old[i1]):
            raise AssertionError(f"old report lines changed: {old[i1:i2]!r} -> {new[j1:j2]!r}")
    return added


def test_markdown_of_an_old_database_keeps_every_line(v1_report_db):
    from iberlite.report.render import render

    before = (DATA / "report_v1_before.md").read_text(encoding="utf-8").splitlines()
    after = render(v1_report_db, "md").splitlines()
    # line 3 names the database file and the time the report was generated
    old = [b for i, b in enumerate(before) if i != 2]
    new = [a for i, a in enumerate(after) if i != 2]
    # every line of the old report is still there, in order; the only lines a later version
    # adds are new sections built from the same rows (issue 24: where an item's time goes)
    added = _added_lines(old, new)
    assert added and added[0].startswith("Where an item's time goes")
    assert all(a.startswith("|") or not a or a.startswith("Where an item's time goes") for a in added), added


def test_html_of_an_old_database_shows_the_same_numbers(v1_report_db):
    pytest.importorskip("plotly", reason="the HTML report needs plotly")
    from iberlite.report.render import render

    before = set(json.loads((DATA / "report_v1_before_numbers.json").read_text()))
    page = render(v1_report_db, "html").replace(str(v1_report_db), "fixture_ro.db")  # a tmp path has digits
    after = number_strings(page)
    assert before - after == set(), "numbers the old report showed are missing"
    # new numbers come only from sections added since (the same ones the Markdown adds)
    old_md = (DATA / "report_v1_before.md").read_text(encoding="utf-8").splitlines()
    added = "\n".join(_added_lines(old_md, render(v1_report_db, "md").splitlines()))
    assert after - before <= number_strings(added) | number_strings(added.replace(",", "")), \
        "numbers the old report did not show"
