"""Broken data rows: counted per file and skipped, or refused with --strict.

Each test copies the first rows of a real data file (same format, same relative path) into a
tmp data dir, breaks some rows the way real files break (a missing column, an empty premise, a
label that is not a choice, Latin-1 bytes in a UTF-8 file, a truncated JSON line, a blank line
in a FLORES file), and runs the built-in task on it. No model is needed; the run through the
runner uses the deterministic fake engine of tests/fakes.py.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
try:
    import iberlite  # noqa: F401
except ImportError:  # package not installed into the venv yet: use the src tree
    sys.path.insert(0, str(REPO / "src"))

from iberlite.cli.views import tasks_check_table  # noqa: E402
from iberlite.errors import RowError  # noqa: E402
from iberlite.tasks.items import load_items  # noqa: E402
from iberlite.tasks.registry import load_task_specs  # noqa: E402

XNLI_ES = "xnlivar/data/es/xnli-es-original.tsv"
BEC = "basqueglue/bec/test.jsonl"
IROSVA_TEST = "irosva/data/IroSvA-test/irosva.es - irosva.es.test.csv"
IROSVA_TRUTH = "irosva/data/IroSvA-truth/irosva.es.test.truth.csv"
FLORES_ES, FLORES_EN = "flores200/spa_Latn.devtest", "flores200/eng_Latn.devtest"


@pytest.fixture(scope="module")
def specs():
    return load_task_specs()


def head(data_dir: Path, rel: str, n: int) -> list[bytes]:
    """The first `n` lines of a real data file, as bytes (line endings kept)."""
    with (data_dir / rel).open("rb") as f:
        return [f.readline() for _ in range(n)]


def put(root: Path, rel: str, lines: list[bytes]) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(lines))
    return path


def kinds(items) -> dict[tuple[str, int], str]:
    """(file name, line) -> fault kind."""
    return {(Path(f.file).name, f.line): f.kind for f in items.faults}


def broken_xnli(data_dir: Path, root: Path) -> Path:
    """Header + 8 real rows of xnli_es, of which rows on lines 3, 5, 6 and 8 are broken."""
    lines = head(data_dir, XNLI_ES, 9)
    premise, hypothesis, label = lines[2].rstrip(b"\n").split(b"\t")
    lines[2] = premise + b"\t" + hypothesis + b"\n"  # a column lost
    lines[4] = b"   \t" + lines[4].split(b"\t", 1)[1]  # an empty premise
    lines[5] = b"\t".join(lines[5].rstrip(b"\n").split(b"\t")[:2] + [b"7"]) + b"\n"  # label 7 of 3
    lines[7] = lines[7].rstrip(b"\n").decode("utf-8").encode("latin-1", errors="replace") + b"\xff\n"
    return put(root, XNLI_ES, lines)


def test_broken_tsv_rows_are_counted_by_kind_and_skipped(data_dir, specs, tmp_path):
    path = broken_xnli(data_dir, tmp_path)
    items = load_items(specs["xnli_es"], tmp_path)
    assert len(items.instances) == 4  # 8 rows, 4 broken
    assert kinds(items) == {
        (path.name, 3): "wrong_column_count", (path.name, 5): "empty_text",
        (path.name, 6): "label_out_of_range", (path.name, 8): "undecodable_bytes",
    }
    [check] = items.files
    assert (check.rows, check.n_skipped) == (8, 4)
    # the good rows are exactly the unbroken ones, in file order
    real = load_items(specs["xnli_es"], data_dir, limit=8).instances
    assert [i.choices for i in items.instances] == [real[k].choices for k in (0, 2, 5, 7)]


def test_strict_makes_the_first_broken_row_an_error_naming_file_and_line(data_dir, specs, tmp_path):
    path = broken_xnli(data_dir, tmp_path)
    with pytest.raises(RowError) as exc:
        load_items(specs["xnli_es"], tmp_path, strict=True)
    msg = str(exc.value)
    assert exc.value.exit_code == 2
    assert f"line 3 of {path}" in msg and "has 2 fields, expected 3" in msg and "--strict" in msg


def test_a_label_out_of_range_alone_is_refused_by_strict(data_dir, specs, tmp_path):
    lines = head(data_dir, XNLI_ES, 4)
    lines[2] = b"\t".join(lines[2].rstrip(b"\n").split(b"\t")[:2] + [b"neutral"]) + b"\n"
    put(tmp_path, XNLI_ES, lines)
    items = load_items(specs["xnli_es"], tmp_path)
    assert len(items.instances) == 2 and [f.kind for f in items.faults] == ["label_out_of_range"]
    assert "'neutral'" in items.faults[0].detail  # not silently read as label 0
    with pytest.raises(RowError) as exc:
        load_items(specs["xnli_es"], tmp_path, strict=True)
    assert "line 3 of" in str(exc.value) and "neutral" in str(exc.value)


def test_broken_jsonl_rows_are_counted(data_dir, specs, tmp_path):
    lines = head(data_dir, BEC, 7)
    lines[1] = lines[1][: len(lines[1]) // 2] + b"\n"  # truncated mid-write
    row = json.loads(lines[2])
    del row["text"]
    lines[2] = json.dumps(row).encode() + b"\n"  # a missing field
    row = json.loads(lines[3])
    row["label"] = "VERY_POSITIVE"
    lines[3] = json.dumps(row).encode() + b"\n"  # not one of N / NEU / P
    row = json.loads(lines[4])
    row["text"] = None
    lines[4] = json.dumps(row).encode() + b"\n"  # null is missing too
    put(tmp_path, BEC, lines)
    items = load_items(specs["bec_eu"], tmp_path)
    assert kinds(items) == {("test.jsonl", 2): "invalid_json", ("test.jsonl", 3): "missing_field",
                            ("test.jsonl", 4): "label_out_of_range", ("test.jsonl", 5): "missing_field"}
    assert [i.doc_id for i in items.instances] == [str(json.loads(lines[k])["idx"]) for k in (0, 5, 6)]


def test_csv_row_without_a_truth_label_is_a_missing_field(data_dir, specs, tmp_path):
    """IroSvA's test CSV has quoted messages over several lines; rows are written back with the
    csv module in the file's own dialect (CRLF, minimal quoting)."""
    import csv
    import io

    with (data_dir / IROSVA_TEST).open(encoding="utf-8", newline="") as f:
        records = [row for _, row in zip(range(6), csv.reader(f))]
    ids = [r[0] for r in records[1:]]
    records[3] = records[3] + ["extra"]  # a wrong column count
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    line_of = []
    for r in records:
        line_of.append(buf.getvalue().count("\n") + 1)
        writer.writerow(r)
    put(tmp_path, IROSVA_TEST, [buf.getvalue().encode()])
    truth = head(data_dir, IROSVA_TRUTH, 601)
    put(tmp_path, IROSVA_TRUTH, [truth[0]] + [ln for ln in truth[1:] if ln.split(b",", 1)[0].decode() in ids[1:]])
    items = load_items(specs["irosva_es"], tmp_path)
    found = {(f.kind, f.line) for f in items.faults}
    end_of = {k: line_of[k + 1] - 1 if k + 1 < len(line_of) else None for k in range(len(records))}
    assert ("missing_field", end_of[1]) in found  # its ID is not in the truth file
    assert ("wrong_column_count", end_of[3]) in found
    assert len(found) == 2 and len(items.instances) == 3
    missing = next(f for f in items.faults if f.kind == "missing_field")
    assert ids[0] in missing.detail and "truth" in missing.detail


def test_lines_source_counts_the_file_that_holds_the_bad_line(data_dir, specs, tmp_path):
    es, en = head(data_dir, FLORES_ES, 5), head(data_dir, FLORES_EN, 5)
    es[1] = b"   \n"  # an empty source sentence
    en[3] = en[3].rstrip(b"\n") + b" caf\xe9\n"  # Latin-1 byte in the reference
    put(tmp_path, FLORES_ES, es)
    put(tmp_path, FLORES_EN, en)
    items = load_items(specs["flores_es-en"], tmp_path)
    assert kinds(items) == {("spa_Latn.devtest", 2): "empty_text", ("eng_Latn.devtest", 4): "undecodable_bytes"}
    assert len(items.instances) == 3
    assert {Path(f.file).name: (f.rows, f.n_skipped) for f in items.files} == {
        "spa_Latn.devtest": (5, 1), "eng_Latn.devtest": (5, 1)}


def test_a_task_whose_rows_are_all_broken_is_an_error(data_dir, specs, tmp_path):
    lines = head(data_dir, XNLI_ES, 3)
    lines[1] = lines[1].replace(b"\t2\n", b"\t9\n").replace(b"\t0\n", b"\t9\n").replace(b"\t1\n", b"\t9\n")
    lines[2] = lines[2].replace(b"\t2\n", b"\t9\n").replace(b"\t0\n", b"\t9\n").replace(b"\t1\n", b"\t9\n")
    put(tmp_path, XNLI_ES, lines)
    with pytest.raises(RowError) as exc:
        load_items(specs["xnli_es"], tmp_path)
    assert "none of its rows can be evaluated (2 skipped)" in str(exc.value)


def test_the_real_data_dir_has_no_broken_row(data_dir):
    """Every row of every built-in task's data is usable: what `tasks --check` reports here."""
    table = tasks_check_table(data_dir)
    rows = {r[1]: r for r in table.rows}
    assert sum(r[2] for r in table.rows) == 51932  # rows in the 52 files (sample suite included)
    assert len(rows) == 52
    assert sum(r[3] for r in table.rows) == 0
    assert rows[str(data_dir / XNLI_ES)][2] == 5010


# ---------------------------------------------------------------- through the CLI and the runner


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("IBERLITE_DATA_DIR", "COLUMNS")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "iberlite.cli.app", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_tasks_check_prints_the_counts_per_file(data_dir, tmp_path):
    data = tmp_path / "data"
    broken_xnli(data_dir, data)
    shutil.copytree(data_dir / "flores200", data / "flores200")
    proc = cli("tasks", "--check", "--data-dir", str(data), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert max(len(line) for line in proc.stdout.splitlines()) <= 80
    line = next(ln for ln in proc.stdout.splitlines() if "xnli-es-original.tsv" in ln)
    assert [c.strip() for c in line.split("│")][1:3] == ["8", "4"]
    assert ("1 empty text, 1 label out of range, 1 undecodable bytes, 1 wrong column count"
            in " ".join(proc.stdout.replace("│", " ").split()))
    assert "xnli-es-original.tsv: first at line 3 has 2 fields, expected 3" in " ".join(proc.stdout.split())
    as_json = json.loads(cli("tasks", "--check", "--data-dir", str(data), "--format", "json",
                             cwd=tmp_path).stdout)
    rec = next(r for r in as_json["rows"] if r["path"].endswith("xnli-es-original.tsv"))
    assert {k: rec[k] for k in ("rows", "skipped", "missing_field", "empty_text", "label_out_of_range",
                                "undecodable_bytes", "wrong_column_count", "invalid_json")} == {
        "rows": 8, "skipped": 4, "missing_field": 0, "empty_text": 1, "label_out_of_range": 1,
        "undecodable_bytes": 1, "wrong_column_count": 1, "invalid_json": 0}
    assert rec["tasks"] == "xnli_es"


def test_tasks_check_strict_and_run_strict_exit_2_naming_the_row(data_dir, tmp_path):
    data = tmp_path / "data"
    path = broken_xnli(data_dir, data)
    for args in (("tasks", "--check", "--strict"),
                 ("run", "--models", "smollm2-135m", "--tasks", "xnli_es", "--strict",
                  "--db", str(tmp_path / "r.db"))):
        proc = cli(*args, "--data-dir", str(data), cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stdout + proc.stderr
        [msg] = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert msg.startswith("Error: Task xnli_es: line 3 of ") and str(path) in msg
    assert not (tmp_path / "r.db").exists()  # refused before anything was stored


def test_a_run_skips_broken_rows_and_says_so(data_dir, tmp_path, fake_engine_factory):
    from iberlite.run.runner import run
    from iberlite.run.spec import RunSpec

    data = tmp_path / "data"
    broken_xnli(data_dir, data)
    db = tmp_path / "r.db"
    result = run(RunSpec(models=("smollm2-135m",), tasks=("xnli_es",), data_dir=data, db=db),
                 engine_factory=fake_engine_factory)
    assert result.outcomes[0].n_items == 4
    assert result.skipped is not None and result.skipped.startswith("Skipped 4 data rows")
    assert "1 label out of range" in result.skipped
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 4


def test_a_limit_reports_only_the_faults_it_reached_but_strict_checks_every_row(data_dir, specs, tmp_path):
    broken_xnli(data_dir, tmp_path)  # broken rows on lines 3, 5, 6 and 8; good ones on 2, 4, 7, 9
    first_two = load_items(specs["xnli_es"], tmp_path, limit=2)
    assert len(first_two.instances) == 2
    assert [(f.line, f.kind) for f in first_two.faults] == [(3, "wrong_column_count")]
    with pytest.raises(RowError):  # line 8 is beyond the limit, but --strict means every row
        load_items(specs["xnli_es"], tmp_path, limit=1, strict=True)
