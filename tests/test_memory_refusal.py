"""A model that would not fit in memory is refused before llama.cpp loads it, in one sentence,
by every command that opens one; `iberlite run --keep-going` goes on with the other models.

The budget is set with IBERLITE_MEMORY_LIMIT so the test needs no memory pressure: between
SmolLM2-135M's need (98 MB file + 90 MiB of KV for 4096 tokens) and Gemma-3-270M's (253 MB +
72 MiB)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from iberlite.engines.factory import EngineOptions, open_llamacpp
from iberlite.engines.memory_budget import MEMORY_LIMIT_ENV, ModelTooLarge, model_need, parse_size
from iberlite.errors import UserError
from iberlite.models.gguf_facts import gguf_facts
from iberlite.models.names import resolve_model

REPO = Path(__file__).resolve().parents[1]
BUDGET = "250MB"  # SmolLM2 fits, Gemma does not


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return {**env, **extra}


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "iberlite", *args], capture_output=True, text=True,
                          env=_env(**env), timeout=900)


def test_the_need_is_the_file_plus_the_kv_cache_the_header_describes():
    smol = gguf_facts(resolve_model("smollm2-135m").file)
    gemma = gguf_facts(resolve_model("gemma3-270m").file)
    # SmolLM2-135M: 30 layers, 3 KV heads of 64 dims; Gemma-3-270M: 18 layers, 1 KV head of 256
    assert (smol.n_layers, smol.n_head_kv, smol.key_length, smol.value_length) == (30, 3, 64, 64)
    assert (gemma.n_layers, gemma.n_head_kv, gemma.key_length, gemma.value_length) == (18, 1, 256, 256)
    need = model_need(smol, 4096)
    assert need.kv_bytes == 4096 * 30 * 3 * (64 + 64) * 2 and need.file_bytes == smol.size_bytes
    assert model_need(gemma, 1024).kv_bytes == 1024 * 18 * 1 * 512 * 2
    assert parse_size(BUDGET) < model_need(gemma, 4096).total
    assert parse_size(BUDGET) > model_need(smol, 4096).total


@pytest.mark.parametrize("text,value", [("250MB", 250_000_000), ("1.5GiB", 1610612736),
                                        ("512m", 512_000_000), ("1073741824", 1073741824)])
def test_memory_limits_read_like_people_write_them(text, value):
    assert parse_size(text) == value


def test_a_bad_memory_limit_is_a_user_error(monkeypatch):
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "lots")
    with pytest.raises(UserError, match="IBERLITE_MEMORY_LIMIT='lots' is not a size"):
        open_llamacpp(resolve_model("smollm2-135m"))


def test_a_model_over_the_budget_is_refused_before_it_is_loaded(monkeypatch):
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "150MB")
    rss = psutil.Process().memory_info().rss
    with pytest.raises(ModelTooLarge) as info:
        open_llamacpp(resolve_model("smollm2-135m"), EngineOptions(n_threads=1))
    msg = str(info.value)
    assert msg.startswith("smollm2-135m needs 184 MiB (94 MiB file + 90 MiB KV cache for 4096 tokens)")
    assert "IBERLITE_MEMORY_LIMIT allows 143 MiB; it was not loaded" in msg
    assert msg.count(". ") == 0 and msg.endswith(".")  # one sentence
    assert psutil.Process().memory_info().rss - rss < 30 * 2**20  # no 94 MB of weights mapped in
    # a smaller context fits: the check follows the context asked
    assert model_need(gguf_facts(resolve_model("smollm2-135m").file), 512).total < parse_size("150MB")


def test_serve_bench_and_doctor_refuse_it_in_one_sentence():
    limit = {MEMORY_LIMIT_ENV: BUDGET}
    for args in (("serve", "gemma3-270m", "--port", "0"), ("bench", "gemma3-270m", "--reps", "1")):
        proc = _cli(*args, **limit)
        assert proc.returncode == 1, (args, proc.stderr)
        (line,) = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert line.startswith("Error: gemma3-270m needs 313 MiB") and "allows 238 MiB" in line
    doctor = _cli("doctor", "--models", "gemma3-270m", "--format", "json", **limit)
    assert doctor.returncode == 1
    (row,) = json.loads(doctor.stdout)["rows"]
    assert row["result"] == "FAIL" and row["stage"] == "loading"
    assert row["error"].startswith("Error: gemma3-270m needs 313 MiB")


def test_without_keep_going_the_run_stops_at_the_refused_model(tmp_path, data_dir):
    proc = _cli("run", "--models", "gemma3-270m,smollm2-135m", "--tasks", "xnli_es", "--limit", "2",
                "--data-dir", str(data_dir), "--db", str(tmp_path / "r.db"), **{MEMORY_LIMIT_ENV: BUDGET})
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "gemma3-270m needs 313 MiB" in lines[0]


@pytest.mark.slow
def test_keep_going_runs_the_models_that_fit_and_lists_the_one_that_did_not(tmp_path, data_dir):
    db = tmp_path / "keep.db"
    proc = _cli("run", "--models", "gemma3-270m,smollm2-135m", "--tasks", "xnli_es", "--limit", "4",
                "--threads", "1", "--keep-going", "--data-dir", str(data_dir), "--db", str(db),
                **{MEMORY_LIMIT_ENV: BUDGET})
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    err = " ".join(proc.stderr.split())
    assert "Failed: gemma3-270m: gemma3-270m needs 313 MiB" in err
    assert "The other models finished" in err
    assert "smollm2-135m" in proc.stdout  # its results are printed
    import sqlite3

    con = sqlite3.connect(db)
    rows = con.execute("SELECT e.model, COUNT(*) FROM items i JOIN evals e USING (eval_key) "
                       "GROUP BY e.model").fetchall()
    status = con.execute("SELECT status FROM runs").fetchall()
    con.close()
    assert rows == [("smollm2-135m", 4)] and status == [("incomplete",)]
