"""Generation is bounded: by the task's `max_tokens` (stop reason `length`) and by a per-item
wall-time limit (`--item-timeout`, stop reason `timeout`). An item that hits a bound is stored
with its reason and what it generated, never dropped. Real model (SmolLM2-135M), real FLORES."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from iberlite.engines.base import GenerationRequest
from iberlite.engines.llamacpp import LlamaCppEngine
from iberlite.models.names import resolve_model

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BUILTIN = REPO / "src" / "iberlite" / "tasks" / "builtin"
PROMPT = "English sentence: The cat sleeps on the warm roof of the old house.\nSpanish sentence:"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "iberlite", "run", "--models", "smollm2-135m",
                           "--threads", "1", *args], capture_output=True, text=True, env=env,
                          timeout=900)


def _items(db: Path) -> list[tuple[str, int, str]]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT stop_reason, gen_tokens, generated FROM items ORDER BY seq").fetchall()
    finally:
        con.close()


def test_the_engine_stops_at_max_tokens_and_at_the_time_limit():
    with LlamaCppEngine(resolve_model("smollm2-135m"), n_threads=1, n_ctx=512) as free:
        capped = free.generate([GenerationRequest(PROMPT, (), 5)])[0]
        assert capped.stop_reason == "length" and capped.gen_tokens == 5 and capped.text
    with LlamaCppEngine(resolve_model("smollm2-135m"), n_threads=1, n_ctx=512,
                        item_timeout_s=0.001) as bounded:
        timed = bounded.generate([GenerationRequest(PROMPT, (), 64)])[0]
        assert bounded.info().extra["item_timeout_s"] == "0.001"  # part of the eval key
    # the clock is read between tokens: the first token comes, then the limit stops it
    assert timed.stop_reason == "timeout" and timed.gen_tokens == 1
    assert timed.text and capped.text.startswith(timed.text)


def test_items_that_hit_a_bound_are_stored_with_their_stop_reason(tmp_path, data_dir):
    db = tmp_path / "bounds.db"
    timed = _run("--tasks", "flores_en-es", "--limit", "3", "--item-timeout", "0.001",
                 "--data-dir", str(data_dir), "--db", str(db))
    assert timed.returncode == 0, timed.stderr
    rows = _items(db)
    assert [(r, n) for r, n, _ in rows] == [("timeout", 1)] * 3 and all(text for *_, text in rows)

    short = tmp_path / "tasks"
    short.mkdir()
    yaml = (BUILTIN / "flores_en-es.yaml").read_text()
    yaml = yaml.replace("name: flores_en-es", "name: flores_en-es_3tok")
    yaml = yaml.replace('until: ["\\n"]', "until: []").replace("max_tokens: 256", "max_tokens: 3")
    assert "max_tokens: 3" in yaml and "until: []" in yaml
    (short / "flores_en-es_3tok.yaml").write_text(yaml)
    db2 = tmp_path / "length.db"
    capped = _run("--tasks", "flores_en-es_3tok", "--tasks-dir", str(short), "--limit", "3",
                  "--data-dir", str(data_dir), "--db", str(db2))
    assert capped.returncode == 0, capped.stderr
    assert [(r, n) for r, n, _ in _items(db2)] == [("length", 3)] * 3
