"""`iberlite bench`: llama-bench-style pp/tg throughput on the engine, stored in `benches`.

Small sizes (pp=64, tg=16, reps=2) and no timing thresholds: this checks the mechanics, not
the machine.
"""

from __future__ import annotations

import sqlite3

import pytest

from iberlite.bench.speed import BenchResult, bench_engine
from iberlite.device.fingerprint import fingerprint
from iberlite.errors import UserError
from iberlite.models.names import resolve_model
from iberlite.store import Store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine():
    from iberlite.engines.llamacpp import LlamaCppEngine

    with LlamaCppEngine(resolve_model("smollm2-135m"), n_threads=1) as e:
        yield e


@pytest.fixture(scope="module")
def results(engine) -> list[BenchResult]:
    return bench_engine(engine, pp=64, tg=16, reps=2, warmup=1)


def test_both_tests_with_sane_statistics(results, engine):
    assert [r.test for r in results] == ["pp64", "tg16"]
    for r in results:
        assert r.model == "smollm2-135m"
        assert r.model_sha256 == engine.facts.sha256
        assert r.reps == 2 and len(r.samples) == 2
        assert r.n_threads == 1
        assert all(s > 0 for s in r.samples)
        assert 0 < r.tokens_per_s_min <= r.tokens_per_s_median <= r.tokens_per_s_max
        assert r.tokens_per_s_std >= 0
        assert r.llama_tokens_per_s_median is None or r.llama_tokens_per_s_median > 0
    assert [r.n_tokens for r in results] == [64, 16]


def test_kv_cache_is_left_clear(results, engine):
    """The bench leaves the engine's cache empty, so an evaluation can follow it."""
    from iberlite.engines.base import GenerationRequest

    ll = engine._ll
    assert ll.llama_memory_seq_pos_max(engine._mem, 0) == -1
    assert getattr(engine, "_cached", []) == []  # the generation prefix cache agrees
    (out,) = engine.generate([GenerationRequest("The capital of France is", max_tokens=4)])
    assert out.prompt_tokens > 0 and out.gen_tokens >= 1 and out.reused_tokens == 0


def test_rows_stored_in_benches(results, tmp_path):
    db = tmp_path / "bench.db"
    with pytest.raises(UserError, match="No results database"):
        Store.open_readonly(db)  # reading never creates a database
    assert not db.exists()
    device = fingerprint(1).to_dict()
    with Store(db) as store:
        assert store.benches() == [] and not store.has_bench_table()
        ids = store.add_benches([r.record(device) for r in results])
    assert len(ids) == 2
    with Store.open_readonly(db) as store:
        rows = store.benches()
    assert [r.test for r in rows] == ["pp64", "tg16"]
    for row, r in zip(rows, results):
        assert row.model == "smollm2-135m"
        assert row.median == pytest.approx(r.tokens_per_s_median)
        assert row.min <= row.median <= row.max
        assert row.reps == 2 and row.samples == r.samples
        assert row.device["fingerprint_id"] == device["fingerprint_id"]
    # a second bench appends; the table is created only once
    with Store(db) as store:
        store.add_benches([r.record(device) for r in results])
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM benches").fetchone()[0] == 4


def test_store_alongside_the_main_store(results, tmp_path):
    """The benches table lives in the same file as runs/items without disturbing them."""
    db = tmp_path / "iberlite.db"
    Store(db).close()
    with Store(db) as store:
        store.add_benches([r.record({"fingerprint_id": "x"}) for r in results])
    with sqlite3.connect(db) as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "items", "benches"} <= tables
    with Store(db) as store:  # the main store still opens it
        assert len(store.benches()) == 2
