"""Ctrl-C inside a run, in process and fast (the deterministic fake engine): the first signal
lets the chunk in flight finish and be stored, a second one stops at once, and the run is
marked interrupted. The same through the real CLI and model is in test_interruptions.py."""

from __future__ import annotations

import os
import signal

import pytest

from iberlite.run import interrupt
from iberlite.run.runner import run
from iberlite.run.spec import RunSpec
from iberlite.store import Store


def test_the_first_signal_asks_the_second_stops_and_outside_a_run_nothing_changes():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with interrupt.stop_between_chunks():
        os.kill(os.getpid(), signal.SIGINT)  # delivered to this (main) thread right away
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            interrupt.check()  # not reached: the second signal raised already
    interrupt.check()  # the flag went with the run
    assert {s: signal.getsignal(s) for s in before} == before  # the handlers are given back


def test_ctrl_c_stops_at_the_next_chunk_boundary_and_marks_the_run(tmp_path, fake_engine_factory):
    no_data = tmp_path / "no_data"
    no_data.mkdir()
    spec = RunSpec(models=("smollm2-135m",), tasks=("sample_commonsense",), langs=("es", "eu"),
                   limit=10, db=tmp_path / "stop.db", data_dir=no_data, chunk_size=4)
    sent = []

    def progress(model: str, task: str, done: int, total: int) -> None:
        if done and not sent:  # the first chunk is stored: Ctrl-C now
            sent.append(done)
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(interrupt.RunInterrupted) as info:
        run(spec, progress=progress, engine_factory=fake_engine_factory)
    assert info.value.stored == 4 and info.value.db == spec.db  # the chunk was finished
    with Store(spec.db) as store:
        assert [r.status for r in store.runs()] == ["interrupted"]
        assert sum(store.item_counts().values()) == 4
    resumed = run(spec, engine_factory=fake_engine_factory)
    assert sum(o.n_items for o in resumed.outcomes) == 20 and resumed.complete
    assert sum(o.n_new for o in resumed.outcomes) == 16
