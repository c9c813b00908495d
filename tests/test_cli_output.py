"""What `iberlite` prints: whole names and numbers in 80 columns for a person, csv and json for a
script, the same figures in each, and nothing but the data on stdout.

Every command runs as `python -m iberlite` in a subprocess with COLUMNS=80 and stdout a pipe, on
one real database built once: both catalog models on three real tasks with long names (4 items
each, one thread), one `iberlite bench` for the device ceiling and a `decide` over the two models
(SmolLM2 as the device, Gemma as the cloud, as tests/test_routing.py does).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("IBERLITE_DATA_DIR") or REPO.parent / "shared" / "data")
PROFILE = REPO / "examples" / "cost_profile.yaml"
MODELS = ("smollm2-135m", "gemma3-270m")
TASKS = ("xstorycloze_es", "xnli_es", "flores_en-es")
WIDTH = 80
ANSI = re.compile(r"\x1b\[")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m iberlite ARGS` with stdout a pipe and COLUMNS=80, as a script would run it;
    it must succeed."""
    env = {k: v for k, v in os.environ.items() if k not in ("IBERLITE_DATA_DIR", "COLUMNS")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    env["COLUMNS"] = str(WIDTH)
    proc = subprocess.run([sys.executable, "-m", "iberlite", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def assert_fits(text: str, width: int = WIDTH) -> None:
    """Every line within `width` columns, and no colour or rich markup on a pipe."""
    assert not ANSI.search(text), "ANSI escapes on a pipe"
    too_long = [line for line in text.splitlines() if len(line) > width]
    listing = "\n".join(too_long)
    assert not too_long, f"lines over {width} columns:\n{listing}\n\nin:\n{text}"


def parse_table(text: str, first_header: str) -> list[dict[str, str]]:
    """Read the human output back, in either layout: a grid (`a │ b`, a `─┼─` rule under
    the headers, wrapped cells continued on lines whose first cell is empty) or stacked
    blocks (`key: value`, blocks starting with the first column's key)."""
    lines = text.splitlines()
    rule = next((i for i, line in enumerate(lines) if "─┼─" in line or (line and set(line) == {"─"})), None)
    if rule is not None:
        start = rule
        while start > 0 and "│" in lines[start - 1]:
            start -= 1
        header_parts = [[c.strip() for c in line.split("│")] for line in lines[start:rule]]
        headers = [" ".join(filter(None, col)) for col in zip(*header_parts)]
        assert headers[0] == first_header, headers
        rows: list[list[str]] = []
        for line in lines[rule + 1:]:
            if not line.strip():
                break
            cells = [c.strip() for c in line.split("│")]
            cells += [""] * (len(headers) - len(cells))
            if cells[0] or not rows:
                rows.append(cells)
            else:  # a wrapped cell goes on
                rows[-1] = [" ".join(filter(None, (a, b))) for a, b in zip(rows[-1], cells)]
        return [dict(zip(headers, r)) for r in rows]
    rows_d: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    key = None
    for line in lines:
        if not line.strip():
            current = None
            continue
        m = re.match(r"^(\S[^:]*?):(?: +(.*))?$", line)
        if m and (current is not None or m.group(1) == first_header):
            if m.group(1) == first_header:
                current = {}
                rows_d.append(current)
            key = m.group(1)
            current[key] = m.group(2) or ""
        elif current is not None and line.startswith(" ") and key:
            current[key] = " ".join(filter(None, (current[key], line.strip())))
    return rows_d


def json_rows(proc: subprocess.CompletedProcess) -> list[dict]:
    payload = json.loads(proc.stdout)
    assert set(payload) == {"title", "rows", "notes"}
    return payload["rows"]


def csv_rows(proc: subprocess.CompletedProcess) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(proc.stdout)))


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> dict:
    """A real run of both models on three tasks, a bench and what each printed."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"evaluation data not found at {DATA_DIR}")
    cwd = tmp_path_factory.mktemp("output")
    db = cwd / "iberlite.db"
    run = cli("run", "--models", ",".join(MODELS), "--tasks", ",".join(TASKS), "--limit", "4",
              "--threads", "1", "--db", str(db), "--data-dir", str(DATA_DIR), cwd=cwd)
    bench = cli("bench", MODELS[0], "--reps", "1", "--threads", "1", "--db", str(db), cwd=cwd)
    return {"cwd": cwd, "db": db, "run": run, "bench": bench}


def est(value: float, lo: float, hi: float, metric: str) -> str:
    d = 1 if metric in ("bleu", "chrf", "ter") else 2
    return f"{value:.{d}f} [{lo:.{d}f},{hi:.{d}f}]"


# ---------------------------------------------------------------- run and results


def test_run_prints_only_the_results_on_stdout(work):
    out = work["run"].stdout
    assert_fits(out)
    assert "items/s" not in out and "stored in" not in out  # progress and status go to stderr
    assert "stored in" in work["run"].stderr
    rows = parse_table(out, "task")
    assert {r["task"] for r in rows} == set(TASKS)
    for r in rows:
        assert all(r[m] for m in MODELS), r  # every cell whole: both models scored every row


def test_results_table_csv_and_json_hold_the_same_numbers(work):
    db, cwd = str(work["db"]), work["cwd"]
    table = cli("results", "--db", db, cwd=cwd).stdout
    assert_fits(table)
    recs = json_rows(cli("results", "--db", db, "--format", "json", cwd=cwd))
    assert {(r["task"], r["model"]) for r in recs} == {(t, m) for t in TASKS for m in MODELS}
    assert all(r["signature"] for r in recs)
    by_row = {(r["task"], r["lang"], r["metric"], r["n"]): r for r in parse_table(table, "task")}
    for r in recs:
        assert isinstance(r["value"], float) and r["ci_low"] <= r["value"] <= r["ci_high"]
        cell = by_row[(r["task"], r["lang"], r["metric"], str(r["n"]))][r["model"]]
        assert cell == est(r["value"], r["ci_low"], r["ci_high"], r["metric"])
    md = cli("results", "--db", db, "--format", "md", cwd=cwd).stdout.splitlines()
    assert md[2] == f"| task | family | lang | metric | n | {' | '.join(sorted(MODELS))} |"
    md_rows = {tuple(c.strip() for c in line.strip("|").split("|")) for line in md[4:] if line.startswith("|")}
    for r in recs:
        i = sorted(MODELS).index(r["model"])
        assert any(row[:5] == (r["task"], r["family"], r["lang"], r["metric"], str(r["n"])) and
                   row[5 + i] == est(r["value"], r["ci_low"], r["ci_high"], r["metric"]) for row in md_rows)
    signed = cli("results", "--db", db, "--signatures", cwd=cwd).stdout
    assert_fits(signed)  # a signature wraps after a `|`: each of its fields stays whole
    for r in recs:
        assert all(re.search(rf"(^|\|| ){re.escape(f)}(\||$)", signed, re.MULTILINE) for f in r["signature"].split("|"))
    rows = csv_rows(cli("results", "--db", db, "--format", "csv", cwd=cwd))
    assert [(c["task"], c["model"], c["metric"]) for c in rows] == [(r["task"], r["model"], r["metric"]) for r in recs]
    for c, r in zip(rows, recs):
        assert (float(c["value"]), float(c["ci_low"]), float(c["ci_high"])) == (r["value"], r["ci_low"], r["ci_high"])
        assert int(c["n"]) == r["n"]


def test_results_device_keeps_every_name_and_figure_whole(work):
    db, cwd = str(work["db"]), work["cwd"]
    proc = cli("results", "--db", db, "--device", cwd=cwd)
    assert_fits(proc.stdout)
    table = {(r["model"], r["task"], r["lang"]): r for r in parse_table(proc.stdout, "model")}
    recs = json_rows(cli("results", "--db", db, "--device", "--format", "json", cwd=cwd))
    assert set(table) == {(r["model"], r["task"], r["lang"]) for r in recs} == {
        (m, t, "es") for m in MODELS for t in TASKS}
    shown = {"n": "d", "latency_p50_ms": ".0f", "latency_p95_ms": ".0f", "ttft_p50_ms": ".0f",
             "prefill_tokens_per_s": ".0f", "decode_tokens_per_s": ".0f", "peak_rss_mb": ".0f",
             "energy_per_item_j": ".2f", "energy_per_1k_tokens_j": ".1f", "ceiling_share": ".0%",
             "prefill_share": ".0%", "prompt_tokens_p50": ".0f", "gen_tokens_p50": ".0f"}
    headers = {"n": "n", "latency_p50_ms": "p50 ms", "latency_p95_ms": "p95 ms", "ttft_p50_ms": "TTFT p50 ms",
               "prefill_tokens_per_s": "prefill tok/s", "decode_tokens_per_s": "decode tok/s",
               "peak_rss_mb": "peak RSS MiB", "energy_per_item_j": "J/item",
               "energy_per_1k_tokens_j": "J/1k tok", "ceiling_share": "of ceiling",
               "prefill_share": "prefill share", "prompt_tokens_p50": "prompt tok p50",
               "gen_tokens_p50": "gen tok p50"}
    for r in recs:
        row = table[(r["model"], r["task"], r["lang"])]
        for key, fmt in shown.items():
            want = "" if r[key] is None else format(r[key], fmt)
            assert row.get(headers[key], "") == want, (key, row, r)
        assert row["energy"] == r["energy_method"]
    # the bench stored a pp512 ceiling for SmolLM2: its multiple-choice rows say their share of it
    assert all(r["ceiling_share"] for r in recs if r["model"] == MODELS[0] and r["output"] == "multiple_choice")
    rows = csv_rows(cli("results", "--db", db, "--device", "--format", "csv", cwd=cwd))
    assert [float(c["latency_p50_ms"]) for c in rows] == [r["latency_p50_ms"] for r in recs]
    if any(r["energy_method"] == "estimate" for r in recs):
        assert "It is not a measurement." in proc.stdout.replace("\n", " ")


# ---------------------------------------------------------------- catalog and tasks


def test_tasks_names_whole_in_80_columns_and_grep_finds_them(work):
    cwd = work["cwd"]
    proc = cli("tasks", "--data-dir", str(DATA_DIR), cwd=cwd)
    assert_fits(proc.stdout)
    table = {r["task"]: r for r in parse_table(proc.stdout, "task")}
    recs = json_rows(cli("tasks", "--data-dir", str(DATA_DIR), "--format", "json", cwd=cwd))
    assert set(table) == {r["task"] for r in recs} >= set(TASKS) | {"xstorycloze_eu", "sample_translation_en-es"}
    for r in recs:
        row = table[r["task"]]
        assert (row["lang"], row["family"], row["output"]) == (r["lang"], r["family"], r["output"])
        assert row["items"] == (str(r["items"]) if r["items"] is not None else "no data")
        assert isinstance(r["items"], int) or r["items"] is None
    # one line per task at full width, for grep
    wide = cli("tasks", "--data-dir", str(DATA_DIR), "--wide", cwd=cwd).stdout
    lines = [line for line in wide.splitlines() if "xstorycloze" in line]
    assert len(lines) == 3 and all("multiple_choice" in line and "1511" in line for line in lines), lines
    rows = csv_rows(cli("tasks", "--data-dir", str(DATA_DIR), "--format", "csv", cwd=cwd))
    assert [(c["task"], c["items"]) for c in rows] == [(r["task"], str(r["items"] or "")) for r in recs]


def test_models_show_the_whole_gguf_path(work):
    cwd = work["cwd"]
    proc = cli("models", cwd=cwd)
    assert_fits(proc.stdout)
    table = {r["name"]: r for r in parse_table(proc.stdout, "name")}
    recs = json_rows(cli("models", "--format", "json", cwd=cwd))
    assert set(table) == {r["name"] for r in recs} == set(MODELS)
    for r in recs:
        row = table[r["name"]]
        assert Path(r["path"]).is_file()
        assert str(Path(row["folder"]) / row["file"]) == r["path"]
        assert row["size"] == f"{r['size_bytes'] / 2**20:.0f} MiB"
        assert row["params"] == f"{r['n_params'] / 1e6:.0f}M"
        assert (row["arch"], row["quant"]) == (r["architecture"], r["quant"])
        assert row["tensor types"].replace(" ", "") == r["tensor_types"]
    rows = csv_rows(cli("models", "--format", "csv", cwd=cwd))
    assert [(c["name"], c["path"], int(c["size_bytes"]), int(c["n_params"])) for c in rows] == [
        (r["name"], r["path"], r["size_bytes"], r["n_params"]) for r in recs]


# ---------------------------------------------------------------- bench and decide


def stored_benches(db: Path) -> dict[str, float]:
    con = sqlite3.connect(db)
    rows = con.execute("SELECT test, median FROM benches ORDER BY id").fetchall()
    con.close()
    return dict(rows)  # the latest per test


def test_bench_table_has_the_stored_figures(work):
    out = work["bench"].stdout
    assert_fits(out)
    assert MODELS[0] in out.splitlines()[0]
    table = {r["test"]: r for r in parse_table(out, "test")}
    assert set(table) == {"pp512", "tg128"}
    for test, median in stored_benches(work["db"]).items():
        assert table[test]["tok/s median"] == f"{median:,.1f}"
        assert table[test]["reps"] == "1"
    assert "stored in" in work["bench"].stderr.lower() and "stored in" not in out.lower()


def test_bench_csv_holds_the_stored_numbers(work, tmp_path):
    db = tmp_path / "bench.db"
    rows = csv_rows(cli("bench", MODELS[0], "--reps", "1", "--threads", "1", "--db", str(db),
                        "--format", "csv", cwd=tmp_path))
    stored = stored_benches(db)
    assert [c["test"] for c in rows] == ["pp512", "tg128"]
    for c in rows:
        assert c["model"] == MODELS[0] and c["reps"] == "1" and c["n_threads"] == "1"
        assert float(c["tokens_per_s_median"]) == stored[c["test"]]


def decide_args(db: Path) -> list[str]:
    return ["decide", "--device", MODELS[0], "--cloud", MODELS[1], "--profile", str(PROFILE),
            "--min-accuracy", "0.4", "--db", str(db)]


def test_decide_fits_writes_no_policy_unless_asked_and_parses(work, tmp_path):
    db = work["db"]
    proc = cli(*decide_args(db), cwd=tmp_path)
    assert_fits(proc.stdout)
    assert list(tmp_path.iterdir()) == []  # no policy.json, nothing else
    assert "no policy written" in proc.stderr and "--policy-out" in proc.stderr
    assert "illustrative" in proc.stdout
    table = {r["task"]: r for r in parse_table(proc.stdout, "task")}
    recs = json_rows(cli(*decide_args(db), "--format", "json", cwd=tmp_path))
    assert set(table) == {r["task"] for r in recs} == set(TASKS)
    for r in recs:
        row = table[r["task"]]
        assert row["accuracy [95% CI]"] == f"{r['accuracy']:.3f} [{r['accuracy_ci_low']:.2f},{r['accuracy_ci_high']:.2f}]"
        assert row["recommend"].split()[0] == r["recommend"]
        assert row["target"] == ("met" if r["meets_target"] else "below")
        assert row["monthly"] == f"{r['monthly_cost']:,.2f} {r['currency']}"
        assert row["cloud share"] == f"{r['cloud_share']:.0%}"
        assert row["device"] == f"{r['device_accuracy']:.3f}" and row["cloud"] == f"{r['cloud_accuracy']:.3f}"
        assert row["volume/mo"] == f"{r['volume']:,}"
    rows = csv_rows(cli(*decide_args(db), "--format", "csv", cwd=tmp_path))
    assert [float(c["accuracy"]) for c in rows] == [r["accuracy"] for r in recs]
    assert list(tmp_path.iterdir()) == []
    policy = tmp_path / "p" / "policy.json"
    policy.parent.mkdir()
    proc = cli(*decide_args(db), "--policy-out", str(policy), cwd=tmp_path)
    assert f"policy written to {policy}" in proc.stderr
    assert {r["task"] for r in json.loads(policy.read_text())["routes"]} == set(TASKS)


# ---------------------------------------------------------------- report and entry points


def test_report_md_to_stdout_writes_no_file(work, tmp_path):
    proc = cli("report", "--db", str(work["db"]), "--format", "md", "-o", "-", cwd=tmp_path)
    assert proc.stdout.startswith("# ") and "| task |" in proc.stdout
    assert all(t in proc.stdout for t in TASKS)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("module", ["iberlite", "iberlite.cli.app"])
def test_python_dash_m_knows_every_command(module, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "COLUMNS": "80"}
    top = subprocess.run([sys.executable, "-m", module, "--help"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert top.returncode == 0, top.stderr
    for command in ("models", "tasks", "run", "bench", "results", "serve", "decide", "route", "report"):
        assert re.search(rf"^\W*{command}\b", top.stdout, re.MULTILINE), (command, top.stdout)
    # serve is the last command cli.py registers: main() must run after it
    proc = subprocess.run([sys.executable, "-m", module, "serve", "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and "--port" in proc.stdout, proc.stdout + proc.stderr


def _early_breaks(lines: list[str], continues) -> list[str]:
    """Lines that end before the terminal does although the next line's first word would fit."""
    return [line.strip() for line, nxt in zip(lines, lines[1:])
            if line.strip() and nxt.strip() and continues(line, nxt)
            and len(line.rstrip()) + 1 + len(nxt.split()[0]) <= len(line) - 1]


def test_help_prose_flows_at_80_columns():
    """No help text breaks a sentence early: a paragraph wraps only where the terminal ends."""
    from typer.testing import CliRunner

    from iberlite.cli.app import app

    env = {"COLUMNS": "80", "TERMINAL_WIDTH": "80"}
    top = CliRunner().invoke(app, ["--help"], env=env)
    assert top.exit_code == 0, top.output
    panel = top.output.split("Commands")[1].splitlines()[1:]
    rows = [line.strip()[1:-1] for line in panel[:next(i for i, x in enumerate(panel) if x.startswith("╰"))]]
    # in the commands panel a description goes on where the next row has no command name
    assert _early_breaks(rows, lambda _, nxt: not nxt[:2].strip()) == []
    names = [r.split()[0] for r in rows if r[:2].strip()]
    assert "adapt" in names and "doctor" in names

    def indent(line: str) -> int:
        return len(line) - len(line.lstrip())

    for name in names:
        out = CliRunner().invoke(app, [name, "--help"], env=env).output
        prose = [line for line in out.splitlines() if not line.lstrip().startswith(("│", "╭", "╰", "Usage"))]
        assert _early_breaks(prose, lambda line, nxt: indent(line) == indent(nxt)) == [], (name, out)


def test_unknown_format_is_a_one_line_error(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-m", "iberlite", "tasks", "--format", "xml"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "Error: Unknown output format 'xml'; valid formats are table, csv, json, md."


# ---------------------------------------------------------------- the layout rules, on a terminal


def test_a_terminal_hides_secondary_columns_and_says_which():
    try:
        from iberlite.cli.tables import Column, Est, TableData, render
    except ImportError:  # package not installed into the venv yet: use the src tree
        sys.path.insert(0, str(REPO / "src"))
        from iberlite.cli.tables import Column, Est, TableData, render
    cols = (Column("task", "task"), Column("lang", "lang"), Column("value", "acc [95% CI]", "num", ci=True),
            Column("note", "note", "text", priority=2), Column("volume", "volume per month", "num", priority=1, fmt=",d"))
    rows = (("sample_translation_en-es", "es", Est(0.5, 0.25, 0.75), "some free text that wraps", 1_000_000),)
    table = TableData("t", cols, rows, ("a note",))
    tty = render(table, "table", 66, tty=True)
    assert_fits(tty, 66)
    assert "sample_translation_en-es" in tty and "0.50 [0.25,0.75]" in tty and "1,000,000" in tty
    assert "Not shown at 66 columns: note (" in tty and "--wide" in tty
    pipe = render(table, "table", 66, tty=False)  # never drops: each CI goes under its value
    assert_fits(pipe, 66)
    assert "Not shown" not in pipe and "1,000,000" in pipe and "sample_translation_en-es" in pipe
    value_line = next(i for i, ln in enumerate(pipe.splitlines()) if "sample_translation_en-es" in ln)
    row = pipe.splitlines()[value_line:value_line + 2]
    assert "0.50" in row[0] and "[0.25,0.75]" in row[1]
    assert row[0].index("0.50") + 4 == row[1].index("[0.25,0.75]") + 11  # right-aligned, one column
    stacked = render(table, "table", 50, tty=False)  # still too wide: one block per row
    assert_fits(stacked, 50)
    assert stacked.splitlines()[2] == "task:             sample_translation_en-es"
    assert "note:             some free text that wraps" in stacked
    narrow = render(table, "table", 30, tty=True)  # even the essential columns do not fit
    assert "task:" in narrow and "sample_translation_en-es" in narrow
    wide = render(table, "table", 66, wide=True)
    assert len(wide.splitlines()[1]) > 66 and len(wide.splitlines()) == 6
    assert json.loads(render(table, "json"))["rows"] == [{
        "task": "sample_translation_en-es", "lang": "es", "value": 0.5, "ci_low": 0.25, "ci_high": 0.75,
        "note": "some free text that wraps", "volume": 1_000_000}]
    assert render(table, "md").splitlines()[2:4] == [
        "| task | lang | acc [95% CI] | note | volume per month |", "|---|---|---:|---|---:|"]


def test_the_fast_gguf_header_reader_agrees_with_gguf():
    """`models` and every model load read the header without gguf's per-element array views
    (15 s for Gemma's vocabulary); on SmolLM2's file it must say what GGUFReader says."""
    from collections import Counter

    from gguf import GGUFReader

    from iberlite.models.gguf_facts import gguf_facts
    from iberlite.models.names import resolve_model

    path = resolve_model("smollm2-135m").path
    facts, reader = gguf_facts(path), GGUFReader(str(path))
    assert facts.tensor_types == tuple(Counter(t.tensor_type.name for t in reader.tensors).most_common())
    assert facts.n_params == sum(int(t.n_elements) for t in reader.tensors)
    arch = reader.fields["general.architecture"]
    assert facts.architecture == bytes(arch.parts[arch.data[0]]).decode() == "llama"
    ctx = reader.fields["llama.context_length"]
    assert facts.context_length == int(ctx.parts[ctx.data[0]][0])
    assert facts.file_type == "Q4_1"
