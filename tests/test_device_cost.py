"""Device cost recorded on the same run as the scores: per-item timings, per-model memory and
energy, the device fingerprint, and the `results --device` view."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from iberlite.run.runner import run
from iberlite.run.spec import RunSpec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cost") / "cost.db"
    run(RunSpec(models=("smollm2-135m",), tasks=("sample_commonsense_es", "sample_translation_en-es"),
                limit=3, db=path))
    return path


def test_run_records_memory_energy_and_fingerprint(db):
    con = sqlite3.connect(db)
    cost_json, device_json, versions_json = con.execute(
        "SELECT cost_json, device_json, versions_json FROM runs").fetchone()
    cost = json.loads(cost_json)["smollm2-135m"]
    assert cost["load_ms"] > 0
    assert cost["peak_rss_bytes"] >= cost["rss_after_load_bytes"] > 0
    assert cost["energy_method"] in ("rapl", "estimate")
    assert cost["energy_j"] > 0 and cost["cpu_s"] > 0
    if cost["energy_method"] == "estimate":
        assert cost["watts_assumed"] > 0  # an estimate always says what it assumed
    device = json.loads(device_json)
    assert device["cpu_model"] and device["n_threads"] >= 1 and device["total_ram_bytes"] > 0
    assert "llama-cpp-python" in json.loads(versions_json)


def test_item_timings_are_positive_and_consistent(db):
    con = sqlite3.connect(db)
    rows = con.execute("SELECT e.output, i.wall_ms, i.prefill_ms, i.decode_ms, i.ttft_ms, "
                       "i.prompt_tokens, i.gen_tokens, i.reused_tokens FROM items i "
                       "JOIN evals e USING (eval_key)").fetchall()
    assert len(rows) == 6
    for output, wall, prefill, decode, ttft, prompt_tokens, gen_tokens, reused in rows:
        assert wall > 0 and prefill > 0
        if output == "generate":
            assert prefill + decode <= wall * (1 + 1e-9)
            assert prefill <= ttft <= wall
            assert prompt_tokens > 0 and gen_tokens > 0 and reused == 0


def test_results_device_view_and_json(db, tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "iberlite.cli.app", "results", "--db", str(db),
                           "--device", "--json", str(out)],
                          capture_output=True, text=True, env={"COLUMNS": "250", "PATH": ""})
    assert proc.returncode == 0, proc.stderr
    assert "sample_translation_en-es" in proc.stdout and "estimate" in proc.stdout
    payload = json.loads(out.read_text())
    gen = [r for r in payload["device"] if r["task"] == "sample_translation_en-es"][0]
    assert gen["ttft_p50_ms"] > 0 and gen["decode_tokens_per_s"] > 0
    assert gen["energy_per_item_j"] > 0 and gen["energy_method"] in ("rapl", "estimate")
    assert {s["metric"] for s in payload["scores"]} >= {"acc", "bleu", "chrf", "lang_ok"}
