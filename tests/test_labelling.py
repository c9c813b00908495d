"""Labels from the field without a model: the pool, the exchange formats and the strategies.

Every refusal is checked the way a user meets it (the real command, exit 2, one sentence, no
traceback) and against the database file itself: a refused file leaves it byte for byte as it
was. The pools are real Basque tweets from BEC2016eu's train split; the evaluated split is the
real test split, so the overlap flag is checked on real rows.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from test_cli_errors import cli

TASK = "bec_eu"


def _train_rows(data_dir: Path, n: int) -> list[dict]:
    with (data_dir / "basqueglue/bec/train.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(n), f)]


def _test_row(data_dir: Path) -> dict:
    with (data_dir / "basqueglue/bec/test.jsonl").open(encoding="utf-8") as f:
        return json.loads(f.readline())


def _dump(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def _one_sentence(proc) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def _csv(path: Path, rows: list[dict], column: str = "message") -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", column])
        for r in rows:
            w.writerow([r.get("idx", ""), r["text"]])
    return path


@pytest.fixture()
def pooled(tmp_path, data_dir):
    """A database whose bec_eu pool holds 30 train tweets and one evaluated tweet."""
    rows = _train_rows(data_dir, 30) + [_test_row(data_dir)]
    src = _csv(tmp_path / "tweets.csv", rows)
    db = tmp_path / "lab.db"
    proc = cli("pool", "add", TASK, str(src), "--column", "text=message", "--db", str(db),
               "--data-dir", str(data_dir), "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return db, json.loads(proc.stdout)["rows"][0]


def test_pool_add_stores_each_row_once_and_flags_evaluated_items(pooled, tmp_path, data_dir):
    db, first = pooled
    assert (first["read"], first["added"], first["flagged"], first["pool"]) == (31, 31, 1, 31)
    # the same texts again, as JSONL with the task's own field name and other whitespace: nothing new
    again = tmp_path / "again.jsonl"
    again.write_text("".join(json.dumps({"text": "  " + r["text"].replace(" ", "  ") + " "}) + "\n"
                             for r in _train_rows(data_dir, 30)), encoding="utf-8")
    proc = cli("pool", "add", TASK, str(again), "--db", str(db), "--data-dir", str(data_dir),
               "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)["rows"][0]
    assert (out["read"], out["added"], out["pool"]) == (30, 0, 31)


def test_a_pool_file_with_broken_rows_is_refused_whole_or_skipped_on_request(pooled, tmp_path, data_dir):
    db, _ = pooled
    before = _dump(db)
    bad = tmp_path / "bad.jsonl"
    good = [json.dumps({"text": r["text"]}) for r in _train_rows(data_dir, 40)[30:]]
    bad.write_text("\n".join([good[0], '{"text": ', json.dumps({"text": "   "}), *good[1:]]) + "\n",
                   encoding="utf-8")
    line = _one_sentence(cli("pool", "add", TASK, str(bad), "--db", str(db), "--data-dir", str(data_dir),
                             cwd=tmp_path))
    assert "line 2 of bad.jsonl" in line and "1 more" in line and "--skip-broken" in line
    assert _dump(db) == before
    proc = cli("pool", "add", TASK, str(bad), "--skip-broken", "--db", str(db), "--data-dir", str(data_dir),
               "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rows"][0]["added"] == 10
    assert "Skipped line 3 of bad.jsonl has no 'text' (empty)." in proc.stderr
    # a one-text-per-line file fills the task's only field
    lines = tmp_path / "more.txt"
    lines.write_text("Gaur eguraldi ona dago Donostian.\nBihar greba orokorra izango da.\n", encoding="utf-8")
    proc = cli("pool", "add", TASK, str(lines), "--db", str(db), "--data-dir", str(data_dir),
               "--format", "json", cwd=tmp_path)
    assert json.loads(proc.stdout)["rows"][0]["pool"] == 43


def _labels_db(db: Path) -> dict[str, str]:
    from iberlite.store import Store
    from iberlite.store.labels import LabelBook

    with Store(db) as store:
        return {h: e.label for h, e in LabelBook(store).labels(TASK).items()}


def _fake_batch(db: Path, n: int) -> list[str]:
    """A selected batch of the pool's first n trainable rows (what `select` would record)."""
    from iberlite.store import Store
    from iberlite.store.labels import LabelBook, Pick

    with Store(db) as store:
        book = LabelBook(store)
        rows = [r for r in book.pool(TASK) if not r.evaluated][:n]
        book.add_selection(TASK, "test", "test", "random", 0, 0.0,
                           [Pick(r.row_hash, i, i % 3, None) for i, r in enumerate(rows)])
    return [r.row_hash for r in rows]


@pytest.mark.parametrize("fmt,suffix", [("label-studio", "json"), ("jsonl", "jsonl"), ("csv", "csv")])
def test_labels_go_out_and_come_back_in_every_format(pooled, tmp_path, fmt, suffix):
    db, _ = pooled
    hashes = _fake_batch(db, 6)
    out = tmp_path / f"batch.{suffix}"
    proc = cli("labels", "export", "--task", TASK, "--format", fmt, "-o", str(out), "--db", str(db), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text(encoding="utf-8")
    choices = ["negatiboa", "neutrala", "positiboa"]
    given = {h: choices[(i * 2) % 3] for i, h in enumerate(hashes[:4])}
    if fmt == "label-studio":
        tasks = json.loads(text)
        assert [t["predictions"][0]["result"][0]["value"]["choices"][0] for t in tasks] == \
            [choices[i % 3] for i in range(6)]
        for t in tasks:
            if t["data"]["iberlite_row"] in given:
                t["annotations"] = [{"completed_by": "ane", "result": [
                    {"from_name": "label", "to_name": "text", "type": "choices",
                     "value": {"choices": [given[t["data"]["iberlite_row"]]]}}]}]
        out.write_text(json.dumps(tasks), encoding="utf-8")
    elif fmt == "jsonl":
        recs = [json.loads(line) for line in text.splitlines()]
        out.write_text("".join(json.dumps({**r, "label": given.get(r["row"]), "labeller": "ane"}) + "\n"
                               for r in recs), encoding="utf-8")
    else:
        rows = list(csv.DictReader(text.splitlines()))
        with out.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            for r in rows:
                w.writerow({**r, "label": given.get(r["row"], ""), "labeller": "ane"})
    proc = cli("labels", "import", str(out), "--task", TASK, "--db", str(db), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Imported 4 labels" in proc.stderr
    assert _labels_db(db) == given
    # exported again, the labels are in the file: a second import changes nothing
    cli("labels", "export", "--task", TASK, "--format", fmt, "-o", str(out), "--db", str(db), cwd=tmp_path)
    proc = cli("labels", "import", str(out), "--task", TASK, "--db", str(db), cwd=tmp_path)
    assert "Imported 0 labels" in proc.stderr and "4 unchanged" in proc.stderr


def test_a_bad_labels_file_is_refused_whole_and_the_store_is_unchanged(pooled, tmp_path):
    db, _ = pooled
    hashes = _fake_batch(db, 3)
    before = _dump(db)
    broken = tmp_path / "broken.json"
    broken.write_text('[{"data": {"iberlite_row": "' + hashes[0] + '"}, "annotations": [', encoding="utf-8")
    assert "not valid JSON" in _one_sentence(cli("labels", "import", str(broken), "--task", TASK,
                                                 "--db", str(db), cwd=tmp_path))
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text(json.dumps({"row": hashes[0], "label": "neutrala"}) + "\n"
                     + json.dumps({"row": hashes[1], "label": "mixed"}) + "\n", encoding="utf-8")
    line = _one_sentence(cli("labels", "import", str(wrong), "--task", TASK, "--db", str(db), cwd=tmp_path))
    assert "'mixed'" in line and "negatiboa, neutrala, positiboa" in line and "nothing was imported" in line
    stranger = tmp_path / "stranger.csv"
    stranger.write_text("row,label\ndeadbeefdeadbeef,neutrala\n", encoding="utf-8")
    assert "not in the bec_eu pool" in _one_sentence(cli("labels", "import", str(stranger), "--task", TASK,
                                                         "--db", str(db), cwd=tmp_path))
    assert _dump(db) == before


def test_strategies_pick_uncertain_rows_and_never_two_near_duplicates():
    from iberlite.label.strategies import Candidate, calibrated_probs, select

    words = ["mendia", "itsasoa", "greba", "hauteskundeak", "futbola", "eguraldia", "musika", "liburua"]
    # a model leaning to choice 0 on every row: raw margins say "sure"; calibrated, rows differ
    cands = [Candidate(f"r{i}", f"{words[i % 8]} {words[(i * 3) % 8]} testua {i}",
                       (-0.2 + 0.05 * (i % 5), -2.0 - 0.1 * (i % 7), -3.0)) for i in range(40)]
    twin = Candidate("twin", cands[0].text + " ", cands[0].logprobs)
    cands.append(twin)
    probs = calibrated_probs([c.logprobs for c in cands])
    assert np.allclose([p.sum() for p in probs], 1)
    for strategy in ("random", "margin", "entropy", "diverse", "mix"):
        picked = select(cands, 12, strategy, seed=1)
        ids = [p.row_hash for p in picked]
        assert len(ids) == len(set(ids)) == 12
        assert not {"r0", "twin"} <= set(ids), strategy  # near-duplicates never together
        assert [p.rank for p in picked] == list(range(12))
    margin = select(cands, 5, "margin")
    all_m = sorted(p.score for p in select(cands, 40, "margin"))
    assert [p.score for p in margin] == all_m[:5]  # the five smallest margins, smallest first
    assert select(cands, 12, "random", seed=3) == select(cands, 12, "random", seed=3)
    assert select(cands, 12, "random", seed=3) != select(cands, 12, "random", seed=4)
