"""A real run on the real engine, stored in a real SQLite file, read back as a user would.

Slow: these tests run the catalog models (llama.cpp, CPU) on a handful of items. The sample
suite tasks ship with the package; the real-data test needs the evaluation data
(IBERLITE_DATA_DIR, else ../shared/data beside the repository) and is skipped without it.
"""

from __future__ import annotations

import hashlib
import json
import math
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

from iberlite.models.names import resolve_model  # noqa: E402
from iberlite.run.runner import run  # noqa: E402
from iberlite.run.spec import RunSpec  # noqa: E402

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m"
MC_TASK = "sample_commonsense_es"
GEN_TASK = "sample_translation_es-en"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def query(db: Path, sql: str, args: tuple = ()) -> list[dict]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(sql, args)]
    finally:
        con.close()


def items(db: Path) -> list[dict]:
    """Every stored item with the task, model and scoring of its evaluation."""
    rows = query(db, "SELECT i.*, e.task, e.model, e.engine_json FROM items i "
                     "JOIN evals e USING (eval_key) ORDER BY i.id")
    for r in rows:
        r["scoring"] = json.loads(r.pop("engine_json"))["scoring"]
    return rows


def copy_db(src: Path, dst_dir: Path) -> Path:
    """A private copy of a closed database (the store checkpoints its WAL on close)."""
    dst = dst_dir / src.name
    shutil.copy(src, dst)
    return dst


def sample_spec(db: Path, data_dir: Path, **kw) -> RunSpec:
    base = dict(models=(MODEL,), tasks=(MC_TASK, GEN_TASK), limit=3, db=db, data_dir=data_dir)
    return RunSpec(**{**base, **kw})


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    """The sample-suite run every test here starts from: 3 items of an MC and a generation task."""
    d = tmp_path_factory.mktemp("sample_run")
    no_data = d / "no_data"  # the sample tasks read their items beside their YAML
    no_data.mkdir()
    calls: list[tuple] = []
    spec = sample_spec(d / "iberlite.db", no_data)
    result = run(spec, progress=lambda *a: calls.append(a))
    return spec, result, calls


def test_items_are_stored_with_prompts_answers_and_costs(sample_run):
    spec, result, _ = sample_run
    rows = items(spec.db)
    assert len(rows) == 6
    assert {r["run_id"] for r in rows} == {result.run_id}

    mc = [r for r in rows if r["task"] == MC_TASK]
    assert [r["doc_id"] for r in mc] == ["commonsense_es_01", "commonsense_es_02", "commonsense_es_03"]
    for r in mc:
        assert r["prompt"]
        choices, logprobs = json.loads(r["choices_json"]), json.loads(r["logprobs_json"])
        assert len(choices) == 2 and all(isinstance(c, str) and c for c in choices)
        assert len(logprobs) == 2
        assert all(math.isfinite(lp) and lp < 0 for lp in logprobs)
        assert r["prediction"] in ("0", "1") and r["gold"] in ("0", "1")
        assert int(r["prediction"]) == max(range(2), key=lambda i: logprobs[i])
        assert r["correct"] == int(r["prediction"] == r["gold"])
        assert r["generated"] is None
        assert r["wall_ms"] > 0 and r["prompt_tokens"] > 0
    assert mc[0]["prompt"].startswith("Ana se despertó y miró por la ventana.")
    assert json.loads(mc[0]["choices_json"])[0] == "Cogió el paraguas y el impermeable."

    gen = [r for r in rows if r["task"] == GEN_TASK]
    assert [r["doc_id"] for r in gen] == ["translation_es_01", "translation_es_02", "translation_es_03"]
    for r in gen:
        assert r["prompt"].startswith("Spanish sentence: ") and r["prompt"].endswith("\nEnglish sentence:")
        assert r["choices_json"] is None and r["logprobs_json"] is None
        assert isinstance(r["generated"], str)
        assert r["gold"]  # the reference translation
        assert r["stop_reason"] in ("until", "eos", "length")
        assert r["prompt_tokens"] > 0 and r["gen_tokens"] >= 0
        assert r["gen_tokens"] <= 64  # the task's max_tokens
        assert "\n" not in r["generated"]  # cut at the task's `until`
        for timing in ("wall_ms", "prefill_ms", "decode_ms", "ttft_ms"):
            assert r[timing] is not None and r[timing] >= 0, timing
        assert r["wall_ms"] > 0 and r["ttft_ms"] > 0
    assert any(r["generated"].strip() for r in gen)
    assert gen[0]["gold"] == "The weather will be sunny tomorrow, but it will be cold in the morning."


def test_aggregates_carry_signatures(sample_run):
    spec, result, _ = sample_run
    sha = sha256_of(resolve_model(MODEL).path)
    aggs = query(spec.db, "SELECT * FROM aggregates WHERE run_id = ? ORDER BY task, metric",
                 (result.run_id,))
    assert [(a["task"], a["metric"]) for a in aggs] == [
        (MC_TASK, "acc"), (MC_TASK, "acc_norm"),
        (GEN_TASK, "bleu"), (GEN_TASK, "chrf"), (GEN_TASK, "lang_ok")]
    for a in aggs:
        sig = a["signature"]
        assert f"model:{MODEL}@{sha[:12]}" in sig
        assert f"task:{a['task']}@" in sig
        assert "n:3" in sig.split("|")
        assert "scoring:fast" in sig and "seed:1234" in sig
        assert a["n"] == 3 and a["model"] == MODEL
        assert a["ci_low"] <= a["value"] <= a["ci_high"]
    outcomes = {o.task: o for o in result.outcomes}
    assert set(outcomes) == {MC_TASK, GEN_TASK}
    for o in outcomes.values():
        assert o.n_items == 3 and o.n_new == 3
        assert {a["signature"] for a in aggs if a["task"] == o.task} == {o.signature}
    runs = query(spec.db, "SELECT status FROM runs WHERE id = ?", (result.run_id,))
    assert runs == [{"status": "done"}]


def test_progress_reports_every_item(sample_run):
    _, _, calls = sample_run
    assert calls, "no progress was reported"
    assert all(model == MODEL and total == 6 for model, _, _, total in calls)
    done = [c[2] for c in calls]
    assert done == sorted(done) and done[-1] == 6


def test_rerunning_the_same_spec_evaluates_nothing(sample_run, tmp_path):
    spec, first, _ = sample_run
    db = copy_db(spec.db, tmp_path)
    before = items(db)
    again = run(sample_spec(db, spec.data_dir))
    assert again.run_id != first.run_id
    assert {o.task: (o.n_items, o.n_new) for o in again.outcomes} == {MC_TASK: (3, 0), GEN_TASK: (3, 0)}
    assert items(db) == before  # same rows, same ids, nothing replaced
    # the rerun reports the same numbers under the same signatures
    assert {o.task: o.signature for o in again.outcomes} == {o.task: o.signature for o in first.outcomes}
    assert ({o.task: [s.value for s in o.scores] for o in again.outcomes}
            == {o.task: [s.value for s in o.scores] for o in first.outcomes})


def test_raising_the_limit_evaluates_only_the_new_items(sample_run, tmp_path):
    spec, first, _ = sample_run
    db = copy_db(spec.db, tmp_path)
    before = items(db)
    more = run(sample_spec(db, spec.data_dir, limit=5))
    assert {o.task: (o.n_items, o.n_new) for o in more.outcomes} == {MC_TASK: (5, 2), GEN_TASK: (5, 2)}
    after = items(db)
    assert len(after) == 10
    assert after[:6] == before  # the first three of each task were kept, not re-evaluated
    new = after[6:]
    assert {r["run_id"] for r in new} == {more.run_id}
    assert sorted(r["doc_id"] for r in new) == [
        "commonsense_es_04", "commonsense_es_05", "translation_es_04", "translation_es_05"]
    assert all("n:5" in o.signature.split("|") for o in more.outcomes)


def test_naive_scoring_is_its_own_evaluation(sample_run, tmp_path):
    spec, first, _ = sample_run
    db = copy_db(spec.db, tmp_path)
    before = items(db)
    naive = run(sample_spec(db, spec.data_dir, tasks=(MC_TASK,), scoring="naive"))
    (outcome,) = naive.outcomes
    assert (outcome.n_items, outcome.n_new) == (3, 3)
    assert "scoring:naive" in outcome.signature
    after = items(db)
    assert after[:6] == before
    added = after[6:]
    assert len(added) == 3 and {r["scoring"] for r in added} == {"naive"}
    fast_keys = {r["eval_key"] for r in before if r["task"] == MC_TASK}
    assert len(fast_keys) == 1 and {r["eval_key"] for r in added}.isdisjoint(fast_keys)
    for r in added:
        logprobs = json.loads(r["logprobs_json"])
        assert len(logprobs) == 2 and all(math.isfinite(lp) and lp < 0 for lp in logprobs)


# ---------------------------------------------------------------- real data, both models


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, data_dir):
    d = tmp_path_factory.mktemp("real_run")
    spec = RunSpec(models=("smollm2-135m", "gemma3-270m"), tasks=("xstorycloze_es", "xnli_eu"),
                   limit=3, db=d / "iberlite.db", data_dir=data_dir)
    return spec, run(spec)


def test_real_data_on_both_catalog_models(real_run):
    spec, result = real_run
    assert {(o.model, o.task) for o in result.outcomes} == {
        (m, t) for m in ("smollm2-135m", "gemma3-270m") for t in ("xstorycloze_es", "xnli_eu")}
    assert all(o.n_items == 3 and o.n_new == 3 for o in result.outcomes)
    rows = items(spec.db)
    assert len(rows) == 12
    n_choices = {"xstorycloze_es": 2, "xnli_eu": 3}
    for r in rows:
        logprobs = json.loads(r["logprobs_json"])
        choices = json.loads(r["choices_json"])
        assert len(logprobs) == len(choices) == n_choices[r["task"]], r["task"]
        assert all(isinstance(lp, float) and math.isfinite(lp) and lp < 0 for lp in logprobs), logprobs
        pred = int(r["prediction"])
        assert 0 <= pred < len(choices)
        assert pred == max(range(len(logprobs)), key=lambda i: logprobs[i])
        assert 0 <= int(r["gold"]) < len(choices)
    # both models saw exactly the same items
    by_model = {m: [(r["task"], r["doc_id"], r["prompt"], r["choices_json"], r["gold"])
                    for r in rows if r["model"] == m] for m in ("smollm2-135m", "gemma3-270m")}
    assert by_model["smollm2-135m"] == by_model["gemma3-270m"]
    # two different model files: their logprobs differ
    assert ([r["logprobs_json"] for r in rows if r["model"] == "smollm2-135m"]
            != [r["logprobs_json"] for r in rows if r["model"] == "gemma3-270m"])


def test_results_command_shows_both_models(real_run, tmp_path):
    spec, _ = real_run
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    proc = subprocess.run([sys.executable, "-m", "iberlite.cli.app", "results", "--db", str(spec.db)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    for text in ("smollm2-135m", "gemma3-270m", "xnli_eu", "xstorycloze_es", "acc_norm"):
        assert text in proc.stdout, f"{text!r} missing from:\n{proc.stdout}"
