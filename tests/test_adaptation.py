"""How much local data is enough (analysis/adaptation.py and the report's section), on the
deterministic fake engine: adapters are records in a temporary models folder (no training),
evaluated through the real runner and store on bec_eu's first test items.

Fast: no model runs. The fake engine answers from hashes of the model name, so each adapter
scores differently from its base, and every number below is recomputed from the stored items.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fakes import FakeEngine
from iberlite.analysis.adaptation import (
    DEFAULT_TARGET,
    _paired_values,
    adaptation_curves,
    adaptation_curves_in,
    curve_sentence,
)
from iberlite.analysis.language_gap import paired_bootstrap
from iberlite.scoring.metrics import ItemOutcome, f1_macro

BASE = "smollm2-135m"
TASK = "bec_eu"
LIMIT = 80
SIZES = (50, 150)  # on these items both fake adapters score above the base: a curve that rises


class _AdaptedFake(FakeEngine):
    """The fake engine with the adapter facts the real engines put in their info."""

    def __init__(self, model, seed: int) -> None:
        super().__init__(model.name, seed=seed)
        self.model = model

    def info(self):
        info = super().info()
        m = self.model
        if m.adapter is None:
            return info
        return replace(info, extra={**info.extra, "adapter_sha256": str(m.adapter_sha256),
                                    "adapter_scale": str(m.adapter_scale), "adapter_task": str(m.adapter_task)})


def _factory(model, spec):
    return _AdaptedFake(model, spec.seed)


def _fake_adapter(models: Path, name: str, examples: int, seconds: float) -> None:
    """An adapter record and a stand-in file, as `iberlite adapt` leaves them (no weights)."""
    from iberlite.models.adapters import Adapter, adapter_path, write_record
    from iberlite.models.gguf_facts import file_sha256, gguf_facts
    from iberlite.models.names import resolve_model

    base = resolve_model(BASE)
    key = hashlib.sha256(name.encode()).hexdigest()[:12]
    path = adapter_path(models, BASE, name, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(name.encode() * 64)
    write_record(Adapter(
        name=name, base=BASE, base_sha256=gguf_facts(base.file).sha256, architecture="llama", task=TASK,
        key=key, path=str(path), sha256=file_sha256(path), rank=8, alpha=16.0, scale=2.0, epochs=2,
        lr=1e-3, batch_size=8, seed=0, max_tokens=512, targets=("q_proj",), examples=examples, pool=6078,
        dropped_overlap=0, data_hash="d" * 16, train_files=("basqueglue/bec/train.jsonl",),
        steps=examples // 4, first_loss=8.0, final_loss=0.5, seconds=seconds, cpu_seconds=2 * seconds,
        peak_rss_bytes=4 * 2**30, examples_per_s=2 * examples / seconds, n_threads=2, n_trainable=10,
        token_check="ok", token_mismatches=0, versions="test", created="2026-01-01T00:00:00"))


@pytest.fixture(scope="module")
def curve_db(tmp_path_factory, data_dir):
    """A base and two curve adapters evaluated on the same items, plus an adapter for another
    task evaluated on bec_eu (not a point of any curve)."""
    from iberlite.run.runner import run
    from iberlite.run.spec import RunSpec

    tmp = tmp_path_factory.mktemp("curve")
    models, db = tmp / "models", tmp / "curve.db"
    for size in SIZES:
        _fake_adapter(models, f"{TASK}-n{size}", size, seconds=size / 2)
    _fake_adapter(models, "other", 50, seconds=20.0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IBERLITE_MODELS_DIR", str(models))
        # the adapter "other" claims another task: rewrite its record before the run reads it
        from iberlite.models.adapters import adapters, write_record
        other = next(a for a in adapters(models) if a.name == "other")
        write_record(replace(other, task="qnlieu"))
        names = (BASE, *(f"{BASE}+{TASK}-n{s}" for s in SIZES), f"{BASE}+other")
        run(RunSpec(models=names, tasks=(TASK,), limit=LIMIT, data_dir=data_dir, db=db),
            engine_factory=_factory)
    return db, models


def _items(db: Path, model: str):
    from iberlite.store import Store

    with Store.open_readonly(db) as store:
        ev = next(e for (m, t), e in store.evals_with_most_items().items() if m == model and t == TASK)
        return store.items(ev.eval_key), ev


def test_the_point_at_zero_is_the_base_and_adapters_are_placed_by_their_examples(curve_db):
    db, _ = curve_db
    (curve,) = adaptation_curves_in(db)
    assert (curve.base, curve.task, curve.lang, curve.metric) == (BASE, TASK, "eu", "acc")
    assert [p.examples for p in curve.points] == [0, *SIZES]
    zero = curve.zero
    assert zero is not None and zero.model == BASE and zero.adapter is None and zero.diff is None
    items, _ = _items(db, BASE)
    assert zero.n == LIMIT and zero.score == pytest.approx(np.mean([bool(it.correct) for it in items]))
    # the adapter trained for another task is not a point, even though it ran on bec_eu
    assert all(p.adapter != "other" for p in curve.points)
    # examples and training cost come from the store itself (no models folder given)
    for p, size in zip(curve.adapted, SIZES):
        assert p.examples_from == "engine info" and p.training is not None
        assert p.training.seconds == size / 2 and p.training.cpu_seconds == size


def test_the_difference_to_the_base_is_paired_over_the_same_items(curve_db):
    db, _ = curve_db
    (curve,) = adaptation_curves_in(db)
    base_items, _ = _items(db, BASE)
    base = {it.doc_id: float(bool(it.correct)) for it in base_items}
    for p in curve.adapted:
        items, _ = _items(db, p.model)
        assert p.n_pairs == LIMIT
        a = np.array([base[it.doc_id] for it in items])
        b = np.array([float(bool(it.correct)) for it in items])
        test = paired_bootstrap(a, b, seed=1234)
        assert (p.diff, p.diff_low, p.diff_high) == pytest.approx((test.gap, test.ci_low, test.ci_high))
        assert p.diff == pytest.approx(p.score - curve.zero.score)  # all items are shared here
        assert p.significant == (test.ci_low > 0 or test.ci_high < 0)
        # overhead: p50 latency and items/s with and without the adapter, on the same items
        wall = [it.wall_ms for it in items]
        assert p.p50_ms == pytest.approx(float(np.median(wall)))
        assert p.base_p50_ms == pytest.approx(float(np.median([it.wall_ms for it in base_items])))
        assert p.latency_overhead == pytest.approx(p.p50_ms / p.base_p50_ms - 1)


def test_the_sentence_names_the_smallest_size_that_reaches_the_target_or_says_none_did(curve_db):
    db, _ = curve_db
    (curve,) = adaptation_curves_in(db)
    zero, small, large = curve.points
    assert zero.score < min(small.score, large.score)
    target = min(small.score, large.score)  # both reach it: the sentence names the smaller
    got = curve_sentence(curve, target)
    assert got.startswith(f"{small.examples} examples reach {target:.2f} on {TASK} acc ({BASE}): "
                          f"{small.score:.2f} [{small.ci_low:.2f}, {small.ci_high:.2f}]")
    assert f"from {zero.score:.2f} zero-shot ({small.diff_points:+.0f} points, " in got
    none = curve_sentence(curve, 0.99)
    assert none.endswith(f"none of {SIZES[0]}, {SIZES[1]} reached 0.99.")
    assert curve_sentence(curve).endswith(f"reached {DEFAULT_TARGET:.2f}.")  # the default target
    best = max((small, large), key=lambda p: p.score)
    assert none.startswith(f"{best.examples} examples lift {TASK} acc ({BASE}) from {zero.score:.2f} "
                           f"to {best.score:.2f} ({best.diff_points:+.0f} points, ")
    assert curve_sentence(curve, zero.score).startswith(f"{BASE} already reaches {zero.score:.2f} on {TASK}")


def test_counts_of_evaluations_stored_before_runs_kept_them_come_from_the_models_folder(curve_db, tmp_path):
    import shutil
    import sqlite3

    db, models = curve_db
    old = tmp_path / "old.db"
    shutil.copy(db, old)
    con = sqlite3.connect(old)
    with con:
        for key, engine in con.execute("SELECT eval_key, engine_json FROM evals").fetchall():
            con.execute("UPDATE evals SET engine_json = ? WHERE eval_key = ?",
                        (engine.replace('"adapter_training"', '"was_adapter_training"'), key))
    con.close()
    (without,) = adaptation_curves_in(old)
    assert [p.examples_from for p in without.adapted] == ["adapter name"] * 2
    assert all(p.training is None for p in without.adapted)
    (found,) = adaptation_curves_in(old, models_dir=models)
    assert [p.examples_from for p in found.adapted] == ["models folder"] * 2
    assert [p.training.seconds for p in found.adapted if p.training] == [s / 2 for s in SIZES]
    from iberlite.report.render import render

    assert f"| {SIZES[0] / 2:,.0f} s (" not in render(old, "md")  # the database alone: unknown
    assert f"| {SIZES[0] / 2:,.0f} s (" in render(old, "md", models_dir=models)


def test_macro_f1_pairs_label_counts_whose_sums_give_each_sides_f1():
    rng = np.random.default_rng(0)
    golds = rng.integers(0, 3, 50)

    def outcomes(preds):
        return [ItemOutcome(logprobs=tuple(0.0 if c == p else -5.0 for c in range(3)), choices=None,
                            gold=int(g), output=None) for p, g in zip(preds, golds)]

    pa, pb = rng.integers(0, 3, 50), np.where(rng.random(50) < 0.5, golds, rng.integers(0, 2, 50))
    a, b, score = _paired_values("f1_macro", outcomes(pa), outcomes(pb))
    assert score(a.sum(axis=0)[None], 50)[0] == pytest.approx(f1_macro(list(pa), list(golds)))
    assert score(b.sum(axis=0)[None], 50)[0] == pytest.approx(f1_macro(list(pb), list(golds)))


def test_no_adapted_evaluation_no_curve(tmp_path, fake_engine_factory, data_dir):
    from iberlite.run.runner import run
    from iberlite.run.spec import RunSpec
    from iberlite.store import Store

    db = tmp_path / "plain.db"
    run(RunSpec(models=(BASE,), tasks=(TASK,), limit=10, data_dir=data_dir, db=db),
        engine_factory=fake_engine_factory)
    with Store.open_readonly(db) as store:
        assert adaptation_curves(store) == []


def test_the_report_has_the_section_with_the_figure_table_and_sentences(curve_db):
    from iberlite.report.render import render

    db, _ = curve_db
    (curve,) = adaptation_curves_in(db)
    md = render(db, "md")
    assert "## How much local data is enough" in md
    assert f"- {curve_sentence(curve)}" in md
    zero = curve.zero
    # the base's row is the zero-shot point; an adapter's row has its Δ with the paired CI
    assert f"| {BASE} | {TASK} | 0 | acc | {zero.score:.2f} [{zero.ci_low:.2f}, {zero.ci_high:.2f}] | base |" in md
    small = curve.adapted[0]
    assert (f"| {small.diff_points:+.1f} [{small.diff_low * 100:+.1f}, {small.diff_high * 100:+.1f}]" in md)
    assert f"| {small.training.seconds:,.0f} s (" in md
    html = render(db, "html")
    assert 'id="adaptation"' in html and curve_sentence(curve).split(":")[0] in html
    assert "bec_eu (Basque) \\u00b7 acc vs training examples (95% CI)" in html  # the panel, language in its title


def test_a_report_without_adapters_has_no_such_section(tmp_path, fake_engine_factory, data_dir):
    from iberlite.report.render import render
    from iberlite.run.runner import run
    from iberlite.run.spec import RunSpec

    db = tmp_path / "plain.db"
    run(RunSpec(models=(BASE,), tasks=(TASK,), limit=10, data_dir=data_dir, db=db),
        engine_factory=fake_engine_factory)
    assert "How much local data" not in render(db, "md")
    assert 'id="adaptation"' not in render(db, "html")


def test_another_metric_of_the_task_on_request_matches_the_stored_aggregate(curve_db):
    from iberlite.store import Store

    db, _ = curve_db
    (curve,) = adaptation_curves_in(db, metric="f1_macro")
    assert curve.metric == "f1_macro"
    with Store.open_readonly(db) as store:
        stored = {(a.model, a.metric): a for a in store.latest_aggregates()}
    for p in curve.points:
        agg = stored[(p.model, "f1_macro")]
        assert (p.score, p.ci_low, p.ci_high) == pytest.approx((agg.value, agg.ci_low, agg.ci_high))
    for p in curve.adapted:  # the paired difference of macro-F1 is the difference of the two scores
        assert p.diff == pytest.approx(p.score - curve.zero.score)
    (asked_unknown,) = adaptation_curves_in(db, metric="chrf")  # not a metric of bec_eu: the primary
    assert asked_unknown.metric == "acc"


def test_adapters_without_a_base_evaluation_say_there_is_nothing_to_compare(curve_db, tmp_path):
    import shutil
    import sqlite3

    from iberlite.report.render import render

    db, _ = curve_db
    alone = tmp_path / "alone.db"
    shutil.copy(db, alone)
    con = sqlite3.connect(alone)
    with con:
        for table in ("items", "aggregates", "evals"):
            con.execute(f"DELETE FROM {table} WHERE eval_key IN (SELECT eval_key FROM evals WHERE model = ?)",
                        (BASE,))
    con.close()
    (curve,) = adaptation_curves_in(alone)
    assert curve.zero is None and all(p.diff is None for p in curve.points)
    assert "no zero-shot evaluation to compare" in curve_sentence(curve)
    assert "## How much local data is enough" in render(alone, "md") and 'id="adaptation"' in render(alone, "html")


def test_the_results_table_lists_a_curves_adapters_by_size(curve_db):
    """`iberlite results` puts T-n50 before T-n150 (numbers read as numbers, not as text)."""
    from iberlite.cli.views import results_view

    db, _ = curve_db
    table = results_view(db)
    want = [BASE, *(f"{BASE}+{TASK}-n{s}" for s in SIZES), f"{BASE}+other"]
    assert [c.header for c in table.columns[5:]] == want  # after task, family, lang, metric, n
    assert [r[5] for r in table.records.rows if r[3] == "acc"] == want
