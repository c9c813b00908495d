"""`iberlite report`: the statistics behind it (pure functions) and the page itself.

The page test builds a database with real runs of both pip-shipped models on the sample suite
(three languages, a multiple-choice and a generation task), writes the HTML report and opens it
in a real headless Chromium (Debian's `chromium`, driven by Playwright's Python package): every
chart must have rendered data marks, the console must stay free of errors and the page must
not make a single network request. A screenshot is saved next to the test's files. It is
skipped, with the reason, when chromium or playwright is missing.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import sacrebleu

from iberlite.analysis import language_gap as lg
from iberlite.analysis.pareto import dominates, front_steps, pareto_front
from iberlite.errors import UserError

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


# --- Pareto -------------------------------------------------------------------------------


def test_pareto_front_known_points():
    costs = [1.0, 2.0, 3.0, 4.0, 2.0]
    accs = [0.5, 0.4, 0.7, 0.7, 0.6]
    # (2, .4) is beaten by (2, .6); (4, .7) by (3, .7) which is cheaper at equal accuracy
    assert pareto_front(costs, accs) == (0, 4, 2)


def test_pareto_front_edge_cases():
    assert pareto_front([], []) == ()
    assert pareto_front([5.0], [0.1]) == (0,)
    # missing or non-finite costs never enter the front, nor push others out
    assert pareto_front([None, 2.0, float("nan"), 3.0], [0.9, 0.5, 0.99, 0.4]) == (1,)
    # exact duplicates do not dominate each other
    assert pareto_front([1.0, 1.0, 2.0], [0.5, 0.5, 0.4]) == (0, 1)
    # a dominated chain keeps only its best
    assert pareto_front([1.0, 2.0, 3.0], [0.9, 0.8, 0.7]) == (0,)
    with pytest.raises(ValueError):
        pareto_front([1.0], [0.1, 0.2])


def test_dominates_and_steps():
    assert dominates((1.0, 0.5), (2.0, 0.5))
    assert not dominates((1.0, 0.5), (1.0, 0.5))
    assert not dominates((1.0, 0.4), (2.0, 0.5))
    xs, ys = front_steps([1.0, 3.0, 2.0], [0.2, 0.9, 0.5], [0, 2, 1])
    assert xs == [1.0, 2.0, 2.0, 3.0, 3.0]
    assert ys == [0.2, 0.2, 0.5, 0.5, 0.9]


# --- language gap -------------------------------------------------------------------------


def test_paired_bootstrap_known_output():
    t = lg.paired_bootstrap([1, 1, 1, 1], [0, 0, 0, 0], n_boot=200, seed=7)
    assert (t.base, t.other, t.gap) == (1.0, 0.0, -1.0)
    assert (t.ci_low, t.ci_high) == (-1.0, -1.0)
    assert t.p_value == pytest.approx(1 / 200)
    assert t.significant and t.paired and t.n_pairs == 4


def test_paired_bootstrap_detects_a_real_gap():
    base = np.array([1] * 40 + [0] * 10)
    other = base.copy()
    other[:20] = 0  # 20 of the 40 items right in Spanish are wrong in the other language
    t = lg.paired_bootstrap(base, other)
    assert t.gap == pytest.approx(-0.4)
    assert t.ci_high < 0
    assert t.significant
    assert t.p_value < 0.01


def test_identical_vectors_are_not_flagged():
    x = np.array([1, 0, 1, 1, 0, 1, 0, 0, 1, 1] * 3)
    t = lg.paired_bootstrap(x, x)
    assert t.gap == 0.0
    assert (t.ci_low, t.ci_high) == (0.0, 0.0)
    assert not t.significant
    assert t.p_value == 1.0
    u = lg.unpaired_bootstrap(x, x)
    assert u.gap == 0.0 and not u.significant and u.ci_low < 0 < u.ci_high


def test_pairing_is_what_makes_a_small_consistent_gap_visible():
    rng = np.random.default_rng(0)
    base = (rng.random(200) < 0.5).astype(float)
    other = base.copy()
    other[np.flatnonzero(base)[:12]] = 0  # the other language loses 12 of the same items
    paired = lg.paired_bootstrap(base, other)
    unpaired = lg.unpaired_bootstrap(base, other)
    assert paired.gap == unpaired.gap == pytest.approx(-0.06)
    assert paired.significant
    assert not unpaired.significant
    assert (paired.ci_high - paired.ci_low) < (unpaired.ci_high - unpaired.ci_low) / 2


def test_bootstrap_is_seeded():
    a, b = [1, 0, 1, 1, 0, 1], [0, 0, 1, 0, 1, 1]
    assert lg.paired_bootstrap(a, b, seed=3) == lg.paired_bootstrap(a, b, seed=3)
    assert lg.unpaired_bootstrap(a, b, seed=3) == lg.unpaired_bootstrap(a, b, seed=3)
    assert lg.paired_bootstrap(a, b, seed=3) != lg.paired_bootstrap(a, b, seed=4)


def test_neutral_id():
    assert lg.neutral_id("commonsense_es_01", "es") == "commonsense_{lang}_01"
    assert lg.neutral_id("commonsense_eu_01", "eu") == "commonsense_{lang}_01"
    assert lg.neutral_id("translation_es_01", "eu") == "translation_es_01"  # other code: untouched
    assert lg.neutral_id("0194c791-ed9d-480e-8369-5b5975bf2bbb", "eu") == "0194c791-ed9d-480e-8369-5b5975bf2bbb"
    assert lg.neutral_id("xnli_en", "en") == "xnli_{lang}"
    assert lg.neutral_id("sample_translation_en-es", "es") == "sample_translation_en-{lang}"
    assert lg.neutral_id("ensemble_3", "en") == "ensemble_3"  # only whole tokens


def test_gap_test_pairs_documents_by_id_in_any_order():
    es_ids = [lg.neutral_id(f"doc_es_{i:02d}", "es") for i in range(10)]
    eu_ids = [lg.neutral_id(f"doc_eu_{i:02d}", "eu") for i in reversed(range(10))]
    es = np.array([1, 1, 1, 1, 1, 0, 0, 1, 1, 1], dtype=float)
    eu_aligned = np.array([0, 1, 0, 1, 0, 0, 0, 1, 0, 1], dtype=float)
    t = lg.gap_test(es_ids, es, eu_ids, eu_aligned[::-1])
    assert t.paired and t.n_pairs == 10
    assert t == lg.paired_bootstrap(es, eu_aligned)


def test_gap_test_falls_back_to_unpaired_when_documents_differ():
    a_ids = [str(i) for i in range(20)]
    b_ids = [f"{i}_xnli.test" for i in range(20)]
    a = np.array([1, 0] * 10, dtype=float)
    b = np.array([1, 1, 0, 0] * 5, dtype=float)
    t = lg.gap_test(a_ids, a, b_ids, b)
    assert not t.paired and t.n_pairs == 0 and "unpaired" in t.method
    assert t == lg.unpaired_bootstrap(a, b)
    # an accidental overlap of a couple of ids is not parallel data either
    assert lg.pair_items(a_ids, ["0", "1"] + b_ids[2:]) is None


def test_corpus_chrf_gap_equals_difference_of_corpus_scores():
    refs = ["El gato está en la alfombra.", "Mañana hará sol.", "Los niños juegan fuera."]
    hyp_a = ["El gato está sobre la alfombra.", "Mañana hace sol.", "Los niños juegan afuera."]
    hyp_b = ["The cat is on the mat.", "Mañana sol.", "Niños fuera."]
    sa, score = lg.corpus_stats("chrf", hyp_a, refs)
    sb, _ = lg.corpus_stats("chrf", hyp_b, refs)
    t = lg.paired_bootstrap(sa, sb, score=score, n_boot=200)
    assert t.base == pytest.approx(sacrebleu.corpus_chrf(hyp_a, [refs]).score)
    assert t.other == pytest.approx(sacrebleu.corpus_chrf(hyp_b, [refs]).score)
    assert t.gap == pytest.approx(t.other - t.base)
    assert t.ci_low <= t.gap <= t.ci_high


# --- the report on a database with real runs ----------------------------------------------


@pytest.fixture(scope="module")
def real_db(tmp_path_factory):
    from iberlite.run.runner import run
    from iberlite.run.spec import RunSpec

    db = tmp_path_factory.mktemp("report") / "t.db"
    try:
        run(RunSpec(models=("smollm2-135m", "gemma3-270m"),
                    tasks=("sample_commonsense", "sample_translation"),
                    langs=("es", "eu", "en"), limit=3, db=db))
    except UserError as exc:  # models not installed
        pytest.skip(f"cannot run the catalog models here: {exc}")
    return db


@pytest.mark.slow
def test_markdown_has_leaderboard_gaps_and_device(real_db, tmp_path):
    from iberlite.analysis.results import latest_results
    from iberlite.report.render import write_report

    out = write_report(real_db, tmp_path / "report.md", fmt="md")
    md = out.read_text(encoding="utf-8")
    aggs = latest_results(real_db)
    assert len(aggs) > 10
    for a in aggs:
        pct = a.metric in ("bleu", "chrf", "ter")
        cell = (f"{a.value:.1f} [{a.ci_low:.1f}, {a.ci_high:.1f}]" if pct
                else f"{a.value:.2f} [{a.ci_low:.2f}, {a.ci_high:.2f}]")
        row = next((line for line in md.splitlines()
                    if line.startswith(f"| {a.task} | {a.lang} | {a.metric}")), None)
        assert row is not None, f"no leaderboard row for {a.task} {a.lang} {a.metric}"
        assert f"| {a.n} |" in row and cell in row
    assert "## Language gaps" in md and "sample_commonsense_{lang}" in md and "paired (3)" in md
    assert "## Device" in md
    assert "ESTIMATE" in md or "measured (RAPL)" in md
    # how llama.cpp ran on this CPU: the buffers and the layout the kernel plan chose
    from iberlite.engines.kernels import detect, plan_kernels

    plan = plan_kernels(detect())
    for model in ("smollm2-135m", "gemma3-270m"):
        row = next(line for line in md.splitlines() if line.startswith(f"| {model} | ") and "align" in line)
        assert f"| {plan.buffers} | {plan.simd} |" in row and f"align{plan.align}," in row
        assert "approx" not in row


@pytest.mark.slow
def test_report_model_reads_the_runs(real_db):
    from iberlite.report.build import load_report

    r = load_report(real_db)
    assert set(r.models) == {"smollm2-135m", "gemma3-270m"}
    assert set(r.langs) == {"es", "eu", "en"}
    gaps = {(g.model, g.template, g.lang) for g in r.gaps}
    for model in r.models:
        assert (model, "sample_commonsense_{lang}", "eu") in gaps
        assert (model, "sample_commonsense_{lang}", "en") in gaps
        assert (model, "sample_translation_en-{lang}", "eu") in gaps
    assert all(g.test.paired and g.test.n_pairs == 3 for g in r.gaps)
    assert {a.key for a in r.cost_axes} == {"latency", "memory", "energy", "size"}
    for c in r.costs:
        assert c.accuracy is not None and c.p50_ms and c.peak_rss_bytes and c.size_bytes
        assert c.energy_method in ("rapl", "estimate")
    templates = {b.template: b for b in r.browsers}
    assert templates["sample_translation_en-{lang}"].lang_ok
    assert all(len(b.items) > 0 for b in r.browsers)


@pytest.mark.slow
def test_html_escapes_dataset_text_and_shows_benches(real_db, tmp_path):
    from iberlite.report.render import write_report

    db = tmp_path / "evil.db"
    shutil.copy(real_db, db)
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    conn = sqlite3.connect(db)
    conn.execute("UPDATE items SET prompt = ? WHERE id = (SELECT MIN(id) FROM items)", (evil,))
    conn.execute("UPDATE items SET generated = ? WHERE id = (SELECT MIN(id) FROM items "
                 "WHERE generated IS NOT NULL)", (evil,))
    conn.execute("CREATE TABLE benches (id INTEGER PRIMARY KEY, created_at REAL, model TEXT, test TEXT, "
                 "median REAL, min REAL, max REAL, n_threads INTEGER, device_json TEXT)")
    conn.execute("INSERT INTO benches (created_at, model, test, median, min, max, n_threads, device_json) "
                 "VALUES (1, 'smollm2-135m', 'tg128', 123.4, 120.0, 125.0, 2, ?)",
                 (json.dumps({"fingerprint_id": "abc"}),))
    conn.commit()
    conn.close()
    page = write_report(db, tmp_path / "evil.html").read_text(encoding="utf-8")
    assert evil not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "tg128" in page and "123.4" in page
    md = write_report(db, tmp_path / "evil.md", fmt="md").read_text(encoding="utf-8")
    assert "tg128" in md


def test_write_report_user_errors(tmp_path):
    from iberlite.report.render import write_report

    with pytest.raises(UserError, match="No results database"):
        write_report(tmp_path / "missing.db", tmp_path / "r.html")
    not_ours = tmp_path / "other.db"
    sqlite3.connect(not_ours).execute("CREATE TABLE x (a)").connection.close()
    with pytest.raises(UserError, match="not an iberlite database"):
        write_report(not_ours, tmp_path / "r.html")
    with pytest.raises(UserError, match="format"):
        write_report(not_ours, tmp_path / "r.txt", fmt="txt")


def _browser_or_skip():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright (the Python package) is not installed: pip install playwright")
    return sync_playwright


@pytest.mark.slow
def test_html_report_renders_offline_in_chromium(real_db, tmp_path):
    pytest.importorskip("plotly", reason="the HTML report needs plotly")
    sync_playwright = _browser_or_skip()
    from iberlite.report.render import write_report

    page_file = write_report(real_db, tmp_path / "report.html")
    assert page_file.stat().st_size < 8_000_000
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            def route(r):
                if r.request.url.startswith("file://"):
                    r.continue_()
                else:
                    requests.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.goto(page_file.as_uri())
            page.wait_for_function("document.querySelectorAll('div.chart').length > 0 && "
                                   "Array.from(document.querySelectorAll('div.chart'))"
                                   ".every(d => d.querySelector('svg.main-svg'))", timeout=30_000)
            charts = page.evaluate("""Array.from(document.querySelectorAll('div.chart')).map(d => ({
                id: d.id,
                svgs: d.querySelectorAll('svg.main-svg').length,
                marks: d.querySelectorAll('.scatterlayer .point, .barlayer .point path').length,
                title: (d.querySelector('.gtitle') || {}).textContent || ''}))""")
            # one score chart and one gap chart per task family (commonsense, en->xx, xx->en),
            # four accuracy-vs-cost plots
            assert len(charts) == 3 + 3 + 4, charts
            for c in charts:
                assert c["svgs"] > 0 and c["marks"] > 0, f"chart {c} rendered no data marks"
            titles = " ".join(c["title"] for c in charts)
            for what in ("latency", "memory", "Energy", "size"):
                assert what in titles
            assert "ESTIMATE" in titles or "RAPL" in titles

            # the leaderboard sorts on a click, and the browser filters hide wrong-free rows
            page.click("#lb thead th:nth-child(7)")
            scores = page.eval_on_selector_all(
                "#lb tbody tr", "rows => rows.filter(r => r.style.display !== 'none')"
                ".map(r => parseFloat(r.cells[6].dataset.v))")
            assert scores == sorted(scores) and len(scores) > 5
            section = page.locator("section.browser").first
            section.locator(".f-wrong").select_option("any")
            visible = section.evaluate("s => Array.from(s.querySelectorAll('.items tbody tr'))"
                                       ".filter(r => r.style.display !== 'none').map(r => r.dataset.wrong)")
            assert all(w for w in visible)
            section.locator(".f-wrong").select_option("")
            section.locator(".f-lang").select_option("eu")
            langs = section.evaluate("s => Array.from(s.querySelectorAll('.items tbody tr'))"
                                     ".filter(r => r.style.display !== 'none').map(r => r.dataset.lang)")
            assert langs and set(langs) == {"eu"}
            section.locator(".f-lang").select_option("")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert not errors, f"console errors: {errors}"
    assert not requests, f"network requests: {requests}"
    assert (tmp_path / "report.png").stat().st_size > 10_000
