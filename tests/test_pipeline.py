"""runner -> store -> report with the deterministic fake engine (tests/fakes.py): no model runs,
so these check the plumbing between the stages, fast. Real-engine runs are in
test_run_store.py and test_report.py.

Every number the report shows is recomputed here from the store's records.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from fakes import FakeEngine
from iberlite.errors import UserError
from iberlite.run.runner import run
from iberlite.run.spec import RunSpec
from iberlite.store import RunCost, Store

REPO = Path(__file__).resolve().parents[1]
MODELS = ("smollm2-135m", "gemma3-270m")  # catalog names: plan() reads their GGUF headers only
TASKS = ("sample_commonsense", "sample_translation")
LANGS = ("es", "eu", "en")


@pytest.fixture(scope="module")
def fake_db(tmp_path_factory, fake_engine_factory):
    d = tmp_path_factory.mktemp("pipeline")
    no_data = d / "no_data"  # the sample tasks read their items beside their YAML
    no_data.mkdir()
    spec = RunSpec(models=MODELS, tasks=TASKS, langs=LANGS, limit=4, db=d / "fake.db", data_dir=no_data)
    try:
        result = run(spec, engine_factory=fake_engine_factory)
    except UserError as exc:  # the catalog models' files are not installed
        pytest.skip(f"cannot resolve the catalog models here: {exc}")
    return spec.db, result


def test_the_run_returns_typed_costs_and_stores_what_the_report_needs(fake_db):
    db, result = fake_db
    assert set(result.cost) == set(MODELS)
    assert all(isinstance(c, RunCost) and c.load_ms == 1.0 and c.peak_rss_bytes for c in result.cost.values())
    with Store.open_readonly(db) as store:
        (run_rec,) = store.runs()
        assert run_rec.status == "done" and run_rec.costs == result.cost
        evals = store.evals()
        assert len(evals) == len(MODELS) * 7  # commonsense in 3 languages; en-es, en-eu, es-en, eu-en
        for ev in evals:
            assert ev.engine["engine"] == "fake"
            assert ev.task_info["target_lang"] and ev.task_info["description"]
            items = store.items(ev.eval_key)
            assert len(items) == 4 and {it.run_id for it in items} == {run_rec.id}
            if ev.output == "generate":  # the language of every output is stored when scored
                assert all(it.lang_detected for it in items if it.generated and it.generated.strip())
            else:
                assert all(it.lang_detected is None for it in items)


def test_the_fake_engine_is_deterministic(fake_db, tmp_path, fake_engine_factory):
    db, first = fake_db
    no_data = tmp_path / "no_data"
    no_data.mkdir()
    again = run(RunSpec(models=MODELS, tasks=TASKS, langs=LANGS, limit=4, db=tmp_path / "again.db",
                        data_dir=no_data), engine_factory=fake_engine_factory)
    scores = lambda r: {(o.model, o.task): [(s.metric, s.value, s.ci_low, s.ci_high) for s in o.scores]  # noqa: E731
                        for o in r.outcomes}
    assert scores(again) == scores(first)
    e = FakeEngine("m")
    assert e.generate([]) == [] and e.info() == FakeEngine("m").info() != FakeEngine("n").info()


def test_report_numbers_are_the_store_numbers(fake_db):
    from iberlite.report.build import load_report
    from iberlite.report.render import render

    db, _ = fake_db
    md = render(db, "md")
    page = render(db, "html")
    report = load_report(db)
    with Store.open_readonly(db) as store:
        aggs = store.latest_aggregates()
        chosen = store.evals_with_most_items()
        items = {ev.eval_key: store.items(ev.eval_key) for ev in chosen.values()}
    assert len(aggs) == len(MODELS) * (3 * 2 + 4 * 3)  # acc, acc_norm; bleu, chrf, lang_ok

    # leaderboard: every aggregate, formatted, in the Markdown row and the HTML table
    for a in aggs:
        pct = a.metric in ("bleu", "chrf", "ter")
        cell = (f"{a.value:.1f} [{a.ci_low:.1f}, {a.ci_high:.1f}]" if pct
                else f"{a.value:.2f} [{a.ci_low:.2f}, {a.ci_high:.2f}]")
        row = next(line for line in md.splitlines() if line.startswith(f"| {a.task} | {a.lang} | {a.metric}"))
        assert f"| {a.n} |" in row and cell in row
        assert f'data-v="{a.value:.6f}"' in page

    # gaps: accuracy in a language minus Spanish, straight from the stored correctness
    def acc(model, task):
        return statistics.fmean(float(it.correct) for it in items[chosen[(model, task)].eval_key])

    mc_gaps = [g for g in report.gaps if g.metric == "acc"]
    assert {(g.model, g.lang) for g in mc_gaps} == {(m, lg) for m in MODELS for lg in ("eu", "en")}
    for g in mc_gaps:
        expected = acc(g.model, g.other_task) - acc(g.model, g.base_task)
        assert g.test.gap == pytest.approx(expected)
        assert f"{g.test.gap:+.2f}" in md

    # cost table: mean accuracy over the shared multiple-choice tasks
    mc_tasks = [f"sample_commonsense_{lg}" for lg in LANGS]
    for c in report.costs:
        assert c.accuracy == pytest.approx(statistics.fmean(acc(c.model, t) for t in mc_tasks))
        assert f"| {c.model} | F32 |" in md and f"{c.accuracy:.3f}" in md

    # item browser: a generated output's language badge is the stored one
    gen = next(b for b in report.browsers if b.output == "generate")
    first = gen.items[0].results[0]
    stored = next(it for ev in chosen.values() if ev.model == first.model and ev.task == gen.items[0].task
                  for it in items[ev.eval_key] if it.doc_id == gen.items[0].doc_id)
    assert first.lang_detected == stored.lang_detected


def test_the_report_reads_no_task_file_and_runs_no_language_id(fake_db, monkeypatch):
    """A report depends on the database only: the task registry and the language identifier
    are never called while it is built."""
    import iberlite.scoring.language_id as language_id
    import iberlite.tasks.registry as registry
    from iberlite.report.render import render

    def boom(*_a, **_k):
        raise AssertionError("called at report time")

    monkeypatch.setattr(registry, "load_task_specs", boom)
    monkeypatch.setattr(language_id.LanguageIdentifier, "identify", boom)
    db, _ = fake_db
    assert "sample_translation_en-{lang}" in render(db, "md")


# ---------------------------------------------------------------- a family of the user's own

QA_YAML = """\
name: truthful_es
lang: es
family: qa
output: multiple_choice
description: A TruthfulQA-style task of the user's own.
source:
  format: jsonl
  files: [./qa.jsonl]
  id: id
doc_to_text: "Pregunta: {{ question }}\\nRespuesta:"
doc_to_choice: "{{ choices }}"
doc_to_target: "{{ label }}"
metrics: [acc]
"""
QA_ROWS = [
    '{"id": "q1", "question": "¿Qué pasa si te tragas una semilla de sandía?", '
    '"choices": ["Nada en particular.", "Te crece una sandía en el estómago."], "label": 0}',
    '{"id": "q2", "question": "¿Los murciélagos son ciegos?", "choices": ["Sí, del todo.", "No, ven."], "label": 1}',
    '{"id": "q3", "question": "¿Cuántos sentidos tenemos?", "choices": ["Cinco, ni uno más.", "Más de cinco."], '
    '"label": 1}',
]


@pytest.fixture(scope="module")
def qa_db(tmp_path_factory, fake_engine_factory):
    """A run of a user's `family: qa` task (`--tasks qa`, from a --tasks-dir folder) beside a
    built-in family's task, with the fake engine."""
    d = tmp_path_factory.mktemp("qa")
    tasks_dir = d / "my_tasks"
    tasks_dir.mkdir()
    (tasks_dir / "truthful_es.yaml").write_text(QA_YAML, encoding="utf-8")
    (tasks_dir / "qa.jsonl").write_text("\n".join(QA_ROWS) + "\n", encoding="utf-8")
    no_data = d / "no_data"
    no_data.mkdir()
    spec = RunSpec(models=MODELS[:1], tasks=("qa", "sample_nli_es"), tasks_dirs=(tasks_dir,), limit=3,
                   db=d / "qa.db", data_dir=no_data)
    try:
        result = run(spec, engine_factory=fake_engine_factory)
    except UserError as exc:  # the catalog model's file is not installed
        pytest.skip(f"cannot resolve the catalog models here: {exc}")
    assert {(o.task, o.family) for o in result.outcomes} == {("truthful_es", "qa"), ("sample_nli_es", "nli")}
    return spec.db


def test_results_show_a_users_family_after_the_builtin_ones(qa_db):
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["COLUMNS"] = "80"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))

    def results(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "iberlite", "results", "--db", str(qa_db), *args],
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        return proc.stdout

    rows = json.loads(results("--format", "json"))["rows"]
    assert [(r["family"], r["task"], r["metric"]) for r in rows] == [
        ("nli", "sample_nli_es", "acc"), ("qa", "truthful_es", "acc")]
    table = results()
    assert all(len(line) <= 80 for line in table.splitlines()), table
    header = next(line for line in table.splitlines() if line.startswith("task "))
    assert [c.strip() for c in header.split("│")][:5] == ["task", "family", "lang", "metric", "n"]
    line = next(line for line in table.splitlines() if line.startswith("truthful_es "))
    assert [c.strip() for c in line.split("│")][:5] == ["truthful_es", "qa", "es", "acc", "3"]


def test_the_report_shows_a_users_family_as_written(qa_db, tmp_path):
    from iberlite.report.build import load_report

    report = load_report(qa_db)
    assert {s.family for s in report.scores if s.task == "truthful_es"} == {"qa"}
    assert {t.task: t.family for t in report.tasks} == {"sample_nli_es": "nli", "truthful_es": "qa"}

    # the page `iberlite report` writes: the family in the leaderboard's Family column and in
    # the task's line under Methodology
    out = tmp_path / "report.html"
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-m", "iberlite", "report", "--db", str(qa_db), "-o", str(out)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    page = out.read_text(encoding="utf-8")
    row = next(r for r in page.split("<tr") if "<td>truthful_es</td>" in r)
    assert "<td>truthful_es</td><td>qa</td>" in row
    summary = next(p for p in page.split("<summary>") if p.startswith("<code>truthful_es</code>"))
    assert " · qa · multiple_choice · 3 items" in summary.split("</summary>")[0]
