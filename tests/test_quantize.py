"""Quantized variants (MODEL@TYPE): made through llama.cpp, read back from the file, cached,
swept like any model, and compared with the paired tests of the report's quantization study.

The sweep runs SmolLM2 (shipped Q4_1) and two variants on real data, a few items per task."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

SMOL = "smollm2-135m"
VARIANTS = (SMOL, f"{SMOL}@Q8_0", f"{SMOL}@Q4_0")
MC_TASKS = ("xstorycloze_es", "xstorycloze_eu")
GEN_TASKS = ("flores_en-es", "flores_en-eu")


def cli(*args: str, env_extra: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "80", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "iberlite", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=1800)


def test_unknown_type_is_one_sentence_and_exit_2(tmp_path):
    proc = cli("quantize", SMOL, "--to", "Q8_0,Q9_9", "--models-dir", str(tmp_path))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Q9_9" in lines[0] and "Q4_K_M" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir())  # every type is checked before any work


def test_a_variant_of_a_variant_is_refused(tmp_path):
    proc = cli("quantize", f"{SMOL}@Q8_0", "--to", "Q4_0", "--models-dir", str(tmp_path))
    assert proc.returncode == 2 and "source model" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_quantize_writes_the_types_the_file_holds_and_a_second_call_is_a_cache_hit(tmp_path):
    import gguf

    proc = cli("quantize", SMOL, "--to", "Q4_0,q4_k_m", "--models-dir", str(tmp_path), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)["rows"]}
    assert set(rows) == {f"{SMOL}@Q4_0", f"{SMOL}@Q4_K_M"}
    for name, row in rows.items():
        assert row["status"] == "made" and row["made_from"] == "Q4_1"
        reader = gguf.GGUFReader(row["path"])  # an independent reader of the written file
        types = Counter(t.tensor_type.name for t in reader.tensors)
        assert row["tensor_types"] == ",".join(f"{t}:{n}" for t, n in types.most_common())
        quantized = [t for t in reader.tensors if t.tensor_type.name not in ("F32", "F16", "BF16")]
        assert row["n_quantized"] == len(quantized)
        fallback = [t for t in quantized if int(t.shape[0]) % 256 and not t.tensor_type.name.endswith("_K")]
        # SmolLM2's 576-wide rows cannot hold K-quants: llama.cpp falls back, and we say so
        assert row["kquant_fallback"] == (len(fallback) if name.endswith("K_M") else 0)
    assert rows[f"{SMOL}@Q4_K_M"]["kquant_fallback"] > 0
    assert "Q4_0:" in rows[f"{SMOL}@Q4_0"]["tensor_types"]
    mtimes = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.gguf")}

    again = cli("quantize", SMOL, "--to", "Q4_0", "--models-dir", str(tmp_path), "--format", "json")
    assert again.returncode == 0, again.stderr
    assert [r["status"] for r in json.loads(again.stdout)["rows"]] == ["cached"]
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.gguf")} == mtimes

    listed = cli("models", "--models-dir", str(tmp_path), "--format", "json")
    by_name = {r["name"]: r for r in json.loads(listed.stdout)["rows"]}
    assert by_name[f"{SMOL}@Q4_0"]["made_from"] == "Q4_1" and by_name[SMOL]["made_from"] == "pip"
    table = cli("models", "--models-dir", str(tmp_path))
    assert all(len(line) <= 80 for line in table.stdout.splitlines())
    assert f"{SMOL}@Q4_K_M" in table.stdout and "181/211" in table.stdout


@pytest.mark.slow
def test_a_variant_loads_with_its_lineage_and_scores_differently(tmp_path, monkeypatch):
    from iberlite.engines.base import LoglikelihoodRequest
    from iberlite.engines.factory import EngineOptions, open_engine
    from iberlite.models.gguf_facts import gguf_facts
    from iberlite.models.names import resolve_model

    monkeypatch.setenv("IBERLITE_MODELS_DIR", str(tmp_path))
    req = [LoglikelihoodRequest("The capital of Spain is", " Madrid")]
    lps = {}
    for name in (SMOL, f"{SMOL}@Q4_0"):
        mf = resolve_model(name)
        engine = open_engine(mf, EngineOptions(n_threads=1))
        try:
            info = engine.info()
            lps[name] = engine.loglikelihood(req)[0].logprob
        finally:
            engine.close()
        facts = gguf_facts(mf.file)
        assert info.file_type == facts.file_type and info.tensor_types == facts.tensor_types_label
        assert info.bits_per_weight == facts.bits_per_weight
    assert info.file_type == "Q4_0" and info.extra["quantized_from"] == "Q4_1"
    assert mf.label == f"{SMOL}@Q4_0 (from Q4_1)"
    assert np.isfinite(list(lps.values())).all() and lps[SMOL] != lps[f"{SMOL}@Q4_0"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, data_dir):
    """Three SmolLM2 variants x 2 story-ending tasks (16 items) and 2 translation tasks (6)."""
    work = tmp_path_factory.mktemp("quant-sweep")
    db = work / "q.db"
    env = {"IBERLITE_MODELS_DIR": str(work / "models")}
    common = ("--models", ",".join(VARIANTS), "--db", str(db), "--data-dir", str(data_dir), "--threads", "1")
    for tasks, limit in ((MC_TASKS, "16"), (GEN_TASKS, "6")):
        proc = cli("run", *common, "--tasks", ",".join(tasks), "--limit", limit, env_extra=env, cwd=work)
        assert proc.returncode == 0, proc.stderr[-2000:]
    return work, db


@pytest.mark.slow
def test_the_sweep_stores_one_row_per_model_task_and_language(sweep):
    work, db = sweep
    proc = cli("results", "--db", str(db), "--format", "json", cwd=work)
    rows = json.loads(proc.stdout)["rows"]
    primary = {(r["model"], r["task"], r["lang"]) for r in rows if r["metric"] in ("acc", "chrf")}
    assert len(primary) == len(VARIANTS) * len(MC_TASKS + GEN_TASKS)
    assert {m for m, _t, _l in primary} == set(VARIANTS)
    assert {lang for _m, _t, lang in primary} == {"es", "eu"}


@pytest.fixture(scope="module")
def study(sweep):
    from iberlite.report.build import load_report

    _work, db = sweep
    report = load_report(db, n_boot=300, seed=7)
    assert len(report.quantization) == 1
    return report, report.quantization[0]


@pytest.mark.slow
def test_the_study_names_the_source_as_reference_and_labels_lineage(study):
    _report, st = study
    assert st.family == SMOL and st.reference == SMOL  # Q8_0 from Q4_1 is no more precise than Q4_1
    by_model = {v.model: v for v in st.variants}
    assert by_model[f"{SMOL}@Q8_0"].label == f"{SMOL}@Q8_0 (from Q4_1)"
    assert by_model[f"{SMOL}@Q8_0"].bits_per_weight > by_model[SMOL].bits_per_weight
    assert all(v.items_per_s and v.mc_items_per_s and v.gen_items_per_s for v in st.variants)
    assert all(s.diff is None for s in by_model[SMOL].scores)
    assert all(s.diff is not None for s in by_model[f"{SMOL}@Q4_0"].scores)
    assert st.front and set(st.front) <= set(by_model)
    assert st.advice.startswith("Ship ") and "on this device" in st.advice
    assert {(t.model, t.lang) for t in st.loss_tests} == {(m, "eu") for m in VARIANTS[1:]}


def _items(db: Path, model: str, task: str):
    from iberlite.store import Store

    with Store.open_readonly(db) as store:
        ev = store.evals_with_most_items(model)[(model, task)]
        return sorted(store.items(ev.eval_key), key=lambda it: it.doc_id)


@pytest.mark.slow
def test_the_paired_difference_matches_a_brute_force_bootstrap(sweep, study):
    """Recompute the difference to the reference from the stored items with explicit loops:
    the same resampled indices (numpy's generator, the study's seed), accuracy by counting and
    chrF by calling sacrebleu on every resampled corpus."""
    import sacrebleu

    _work, db = sweep
    _report, st = study
    variant = f"{SMOL}@Q4_0"
    scores = {s.task: s for v in st.variants if v.model == variant for s in v.scores}
    for task in ("xstorycloze_eu", "flores_en-es"):
        ref, var = _items(db, SMOL, task), _items(db, variant, task)
        assert [it.doc_id for it in ref] == [it.doc_id for it in var]
        n, n_boot = len(ref), 300
        idx = np.random.default_rng(7).integers(0, n, size=(n_boot, n))
        if task.startswith("xstory"):
            def score(its, ix):
                return sum(bool(its[i].correct) for i in ix) / len(ix)
        else:
            def score(its, ix):
                return sacrebleu.corpus_chrf([its[i].generated or "" for i in ix],
                                             [[its[i].gold for i in ix]]).score
        whole = list(range(n))
        boot = np.array([score(var, ix) - score(ref, ix) for ix in idx])
        lo, hi = np.percentile(boot, [2.5, 97.5])
        d = scores[task].diff
        assert d is not None and d.n_pairs == n
        assert d.gap == pytest.approx(score(var, whole) - score(ref, whole), abs=1e-9)
        assert (d.ci_low, d.ci_high) == pytest.approx((lo, hi), abs=1e-9)
        p = min(1.0, max(2 * min((boot <= 0).sum(), (boot >= 0).sum()), 1) / n_boot)
        assert d.p_value == pytest.approx(p)


@pytest.mark.slow
def test_the_language_loss_test_matches_a_brute_force_bootstrap(sweep, study):
    """Basque's loss minus Spanish's, from the items: XStoryCloze is parallel, so one draw of
    story ids scores all four (variant, language) cells."""
    _work, db = sweep
    _report, st = study
    variant = f"{SMOL}@Q4_0"
    test = next(t for t in st.loss_tests if t.model == variant and t.template == "xstorycloze_{lang}")
    cells = {(m, task): {it.doc_id: float(bool(it.correct)) for it in _items(db, m, task)}
             for m in (SMOL, variant) for task in MC_TASKS}
    ids = sorted(cells[(SMOL, "xstorycloze_es")])
    assert ids == sorted(cells[(SMOL, "xstorycloze_eu")])  # story ids are shared across languages
    n, n_boot = len(ids), 300
    idx = np.random.default_rng(7).integers(0, n, size=(n_boot, n))

    def acc(m, task, ix):
        return 100 * sum(cells[(m, task)][ids[i]] for i in ix) / len(ix)

    def did(ix):
        return ((acc(variant, "xstorycloze_eu", ix) - acc(SMOL, "xstorycloze_eu", ix))
                - (acc(variant, "xstorycloze_es", ix) - acc(SMOL, "xstorycloze_es", ix)))

    boot = np.array([did(ix) for ix in idx])
    assert test.test.paired
    assert test.test.gap == pytest.approx(did(range(n)), abs=1e-9)
    assert (test.test.ci_low, test.test.ci_high) == pytest.approx(tuple(np.percentile(boot, [2.5, 97.5])), abs=1e-9)
    assert test.loss_base == pytest.approx(acc(SMOL, "xstorycloze_es", range(n)) - acc(variant, "xstorycloze_es", range(n)))


@pytest.mark.slow
def test_the_report_shows_the_quantization_study(sweep, study):
    from iberlite.report.html import render_html
    from iberlite.report.markdown import render_markdown

    report, st = study
    page = render_html(report)
    assert 'id="quantization"' in page and f"{SMOL}@Q8_0 (from Q4_1)" in page
    assert "Does a language lose more than Spanish?" in page and st.advice.split(":")[0] in page
    md = render_markdown(report)
    assert "## Quantization" in md and st.advice in md
