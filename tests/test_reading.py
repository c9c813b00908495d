"""Reading comprehension end to end on the real engine: XQuAD es/ca items, their cost, the gap.

SmolLM2-135M answers the first 4 questions of XQuAD-es and XQuAD-ca and translates 4 FLORES
sentences. What a user should see: SQuAD exact match and F1 per task, a device view where the
reading-comprehension items are mostly prefill (a long context, a short answer) unlike
translation, and a Catalan-minus-Spanish gap on XQuAD paired by question id, as on FLORES.
Needs the data dir (IBERLITE_DATA_DIR). About a minute on an idle 2-core machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from iberlite.analysis.device_cost import device_costs
from iberlite.report.build import load_report
from iberlite.run.runner import run
from iberlite.run.spec import RunSpec
from iberlite.store import Store

pytestmark = pytest.mark.slow
N = 4


@pytest.fixture(scope="module")
def db(tmp_path_factory, data_dir) -> Path:
    path = tmp_path_factory.mktemp("reading") / "reading.db"
    run(RunSpec(models=("smollm2-135m",), tasks=("xquad_es", "xquad_ca", "flores_en-es"), limit=N,
                data_dir=data_dir, db=path, n_threads=1))
    return path


def test_squad_scores_are_stored_per_task(db):
    with Store(db) as store:
        aggs = {(a.task, a.metric): a for a in store.latest_aggregates()}
    for task in ("xquad_es", "xquad_ca"):
        em, f1 = aggs[(task, "squad_em")], aggs[(task, "squad_f1")]
        assert em.n == f1.n == N
        assert 0.0 <= em.value <= f1.value <= 1.0  # F1 credits every exact match in full


def test_reading_comprehension_is_mostly_prefill(db):
    rows = {r.task: r for r in device_costs(db)}
    xquad, flores = rows["xquad_es"], rows["flores_en-es"]
    assert xquad.prompt_tokens_p50 > 300  # a paragraph and a question
    assert xquad.ttft_p50_ms > 0 and xquad.prefill_share is not None
    assert xquad.prefill_share > flores.prefill_share
    assert xquad.prompt_tokens_p50 > 5 * flores.prompt_tokens_p50


def test_report_shows_item_time_and_the_xquad_language_gap(db):
    report = load_report(db)
    shown = {r.task for r in report.item_time}
    assert {"xquad_es", "xquad_ca", "flores_en-es"} <= shown
    [gap] = [g for g in report.gaps if g.template == "xquad_{lang}"]
    assert (gap.lang, gap.metric, gap.base_task, gap.other_task) == ("ca", "squad_em", "xquad_es", "xquad_ca")
    assert gap.test.paired and gap.test.n_pairs == N  # the same question ids in both languages
