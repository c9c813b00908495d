"""`iberlite doctor`, the layout verdict `run` uses, and what a user sees when the engine dies:
real models in real child processes, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from iberlite.bench.doctor import check_model
from iberlite.engines.exactness import cached_verdict, choose_layout
from iberlite.engines.factory import EngineOptions, open_llamacpp
from iberlite.engines.kernels import detect, plan_kernels
from iberlite.models.names import resolve_model

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
MODELS = ("smollm2-135m", "gemma3-270m")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh cache folder: every verdict is probed for real, in this test."""
    monkeypatch.setenv("IBERLITE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return {**env, **extra}


def test_doctor_passes_on_this_device_and_names_what_it_uses(cache):
    proc = subprocess.run([sys.executable, "-m", "iberlite", "doctor", "--format", "json",
                           "--threads", "2"], capture_output=True, text=True, env=_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    plan = plan_kernels(detect())
    assert f"weight buffers {plan.buffers}; {plan.reason}" in " ".join(out["notes"])
    assert [m["model"] for m in out["rows"]] == list(MODELS)
    for m in out["rows"]:
        # the rule's block size is the one the probe found exact on this CPU
        assert m["result"] == "pass" and m["exact"] is True and m["align"] == plan.align, m
        assert m["max_delta"] < 1e-3 and m["load_ms"] > 0
    table = subprocess.run([sys.executable, "-m", "iberlite", "doctor", "--threads", "2"],
                           capture_output=True, text=True, env=_env(COLUMNS="80"), timeout=600)
    assert table.returncode == 0 and all(len(ln) <= 80 for ln in table.stdout.splitlines())
    assert "smollm2-135m" in table.stdout and "gemma3-270m" in table.stdout


@pytest.mark.parametrize("model", MODELS)
def test_run_engines_use_the_cached_verdict(cache, model):
    with open_llamacpp(resolve_model(model), EngineOptions(n_threads=2)) as engine:
        verdict = cached_verdict(engine)
        assert verdict is not None and verdict.exact
        assert engine.pack_layout.align == verdict.align == plan_kernels(detect()).align
        assert f"align{verdict.align}" in engine.info().extra["layout"]
        assert "approx" not in engine.info().extra["layout"]


@pytest.mark.skipif(detect().simd != "avx512", reason="needs llama.cpp built with AVX-512")
def test_an_8_wide_layout_is_caught_on_avx512_and_the_probe_widens_it(cache, monkeypatch):
    """On AVX-512, blocks of 8 give fast scores that differ from naive ones; the probe sees
    it and moves to 16, which is exact."""
    monkeypatch.setenv("IBERLITE_ALIGN", "8")
    with open_llamacpp(resolve_model("smollm2-135m"), EngineOptions(n_threads=2, check_layout=False)) as engine:
        verdict = choose_layout(engine)
    first, second = verdict.checks
    assert first.align == 8 and not first.exact and first.max_delta_naive > 1e-3
    assert second.align == 16 and second.exact
    assert verdict.align == 16 and verdict.exact


def _kill_descendant(root: int, after: float, found: list[int], cmd_part: str) -> None:
    """SIGSEGV the first descendant of `root` whose command line holds `cmd_part`, once it has
    run for `after` seconds: to the parent it is exactly what a crash in llama.cpp looks like."""
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            kids = psutil.Process(root).children(recursive=True)
        except psutil.NoSuchProcess:
            return
        for k in kids:
            try:
                if cmd_part in " ".join(k.cmdline()) and time.time() - k.create_time() > after:
                    os.kill(k.pid, signal.SIGSEGV)
                    found.append(k.pid)
                    return
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.05)


def test_a_crash_in_the_doctor_names_the_model_and_fails(cache):
    found: list[int] = []
    t = threading.Thread(target=_kill_descendant, args=(os.getpid(), 0.5, found, "doctor-child"))
    t.start()
    check = check_model("gemma3-270m", 2)
    t.join()
    assert found, "the doctor's child was never seen"
    assert not check.ok and check.error == "llama.cpp crashed (SIGSEGV)"


def test_doctor_cli_reports_a_crash_in_one_sentence_and_exits_non_zero(cache):
    proc = subprocess.Popen([sys.executable, "-m", "iberlite", "doctor", "--models", "smollm2-135m"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    found: list[int] = []
    _kill_descendant(proc.pid, 0.5, found, "doctor-child smollm2-135m")
    out, err = proc.communicate(timeout=300)
    assert found
    assert proc.returncode == 1
    assert "smollm2-135m: llama.cpp crashed (SIGSEGV)" in " ".join(out.split())
    assert "Traceback" not in out + err


def test_a_crash_mid_run_is_reported_and_the_run_resumes(tmp_path, cache, data_dir):
    db = tmp_path / "crash.db"
    args = ["run", "--models", "smollm2-135m", "--tasks", "xstorycloze_es", "--limit", "48",
            "--threads", "2", "--data-dir", str(data_dir), "--db", str(db)]
    proc = subprocess.Popen([sys.executable, "-m", "iberlite", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path)
    deadline = time.time() + 300
    child = None
    while time.time() < deadline and child is None:  # wait until a first chunk is stored
        time.sleep(0.2)
        if db.exists() and _stored(db) > 0:
            child = next(k for k in psutil.Process(proc.pid).children() if "iberlite" in " ".join(k.cmdline()))
    assert child is not None, "no chunk was stored"
    os.kill(child.pid, signal.SIGSEGV)
    out, err = proc.communicate(timeout=120)
    kept = _stored(db)
    assert proc.returncode == 1
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in err
    msg = lines[0]
    assert "SIGSEGV" in msg and "smollm2-135m" in msg and "xstorycloze_es" in msg
    assert f"the {kept} items" in msg and "rerun the same command" in msg
    assert 0 < kept < 48
    again = subprocess.run([sys.executable, "-m", "iberlite", *args], capture_output=True, text=True,
                           env=_env(), cwd=tmp_path, timeout=600)
    assert again.returncode == 0, again.stderr
    assert _stored(db) == 48 and _stored(db, "COUNT(DISTINCT eval_key || '/' || doc_id)") == 48


def _stored(db: Path, what: str = "COUNT(*)") -> int:
    import sqlite3

    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute(f"SELECT {what} FROM items").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()
