"""A run stopped the ways a device stops it: the worker SIGKILLed (as the out-of-memory killer
does), the command's process group SIGKILLed, Ctrl-C, and two runs writing one database at
once. Real model (SmolLM2-135M), real data, real processes and signals; what is stored must
pass SQLite's integrity check and, once resumed, equal an uninterrupted run item for item.

(A SIGSEGV mid-run is in tests/test_doctor.py.)"""

from __future__ import annotations

import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TASKS = ("xstorycloze_es", "xnli_es")
LIMIT = 12  # per task: one chunk each (chunks are 16 items), so a stop between them is possible
TOTAL = LIMIT * len(TASKS)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return {**env, **extra}


def _args(db: Path, data_dir: Path, tasks: tuple[str, ...] = TASKS) -> list[str]:
    return ["run", "--models", "smollm2-135m", "--tasks", ",".join(tasks), "--limit", str(LIMIT),
            "--threads", "1", "--data-dir", str(data_dir), "--db", str(db)]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "iberlite", *args], capture_output=True, text=True,
                          env=_env(), cwd=cwd, timeout=1200)


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    """`iberlite run` in its own process group, as a shell starts a foreground job."""
    return subprocess.Popen([sys.executable, "-m", "iberlite", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(), cwd=cwd,
                            process_group=0)


def _query(db: Path, sql: str):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


def _stored(db: Path) -> int:
    rows = _query(db, "SELECT COUNT(*) FROM items")
    return rows[0][0] if rows else 0


def _integrity(db: Path) -> str:
    return _query(db, "PRAGMA integrity_check")[0][0]


def _items(db: Path) -> dict[tuple[str, str], tuple[str, str]]:
    """(task, doc) -> (logprobs, prediction), as stored."""
    rows = _query(db, "SELECT e.task, i.doc_id, i.logprobs_json, i.prediction FROM items i "
                      "JOIN evals e USING (eval_key)")
    return {(t, d): (lp, p) for t, d, lp, p in rows}


def _per_eval(db: Path) -> list[tuple[str, int, int]]:
    """(task, rows, distinct docs) per evaluation key."""
    return sorted(_query(db, "SELECT e.task, COUNT(*), COUNT(DISTINCT i.doc_id) FROM items i "
                             "JOIN evals e USING (eval_key) GROUP BY i.eval_key"))


def _worker(proc: subprocess.Popen) -> psutil.Process:
    kids = [k for k in psutil.Process(proc.pid).children() if "iberlite" in " ".join(k.cmdline())]
    assert kids, "the supervised worker was not found"
    return kids[0]


def _wait_for_first_chunk(proc: subprocess.Popen, db: Path, timeout: float = 600) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        n = _stored(db) if db.exists() else 0
        if n > 0:
            return n
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("no chunk was stored")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir) -> dict[tuple[str, str], tuple[str, str]]:
    """The items of an uninterrupted run of the same command."""
    tmp = tmp_path_factory.mktemp("reference")
    done = _run(_args(tmp / "ref.db", data_dir), tmp)
    assert done.returncode == 0, done.stderr
    items = _items(tmp / "ref.db")
    assert len(items) == TOTAL
    return items


def test_sigkill_of_the_worker_keeps_what_is_stored_and_the_resumed_run_equals_an_uninterrupted_one(
        tmp_path, data_dir, reference):
    db = tmp_path / "killed.db"
    proc = _start(_args(db, data_dir), tmp_path)
    _wait_for_first_chunk(proc, db)
    _worker(proc).kill()  # SIGKILL the process doing the work, as the OOM killer picks it
    out, err = proc.communicate(timeout=120)
    kept = _stored(db)
    assert proc.returncode == 1
    assert 0 < kept < TOTAL
    assert _integrity(db) == "ok"
    lines = [ln for ln in err.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    msg = lines[0]
    assert "killed (SIGKILL" in msg and "out-of-memory" in msg and "smollm2-135m" in msg
    assert f"the {kept} items" in msg and "rerun the same command" in msg
    assert _query(db, "SELECT status FROM runs") == [("killed",)]

    again = _run(_args(db, data_dir), tmp_path)
    assert again.returncode == 0, again.stderr
    assert _integrity(db) == "ok"
    assert _per_eval(db) == [("xnli_es", LIMIT, LIMIT), ("xstorycloze_es", LIMIT, LIMIT)]
    assert _items(db) == reference  # logprobs and predictions, item for item
    assert _query(db, "SELECT status FROM runs ORDER BY id") == [("killed",), ("done",)]


def test_killing_the_command_s_process_group_stops_the_worker_after_its_chunk(tmp_path, data_dir,
                                                                               reference):
    """`kill -9 -PGID` (or a closed terminal) ends the command; the worker, in a group of its
    own, must not run on unseen: it stops after its chunk and marks the run interrupted."""
    db = tmp_path / "group.db"
    proc = _start(_args(db, data_dir), tmp_path)
    _wait_for_first_chunk(proc, db)
    worker = _worker(proc)
    os.killpg(proc.pid, signal.SIGKILL)
    worker.wait(timeout=600)  # psutil raises TimeoutExpired if it ran on
    proc.communicate(timeout=60)  # the worker held the pipes: closed now
    assert _query(db, "SELECT status FROM runs") == [("interrupted",)]
    assert _integrity(db) == "ok"
    kept = _stored(db)
    assert kept in (LIMIT, TOTAL)  # chunk boundaries only
    again = _run(_args(db, data_dir), tmp_path)
    assert again.returncode == 0, again.stderr
    assert _items(db) == reference


def test_ctrl_c_stops_after_the_chunk_and_prints_how_to_resume(tmp_path, data_dir, reference):
    """Three tasks, one chunk each: Ctrl-C lands during the first or second chunk."""
    db = tmp_path / "ctrl-c.db"
    proc = _start(_args(db, data_dir, (*TASKS, "xnli_eu")), tmp_path)
    _wait_for_first_chunk(proc, db)
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal sends on Ctrl-C
    out, err = proc.communicate(timeout=600)
    kept = _stored(db)
    assert proc.returncode == 130, err
    assert kept in (LIMIT, 2 * LIMIT)  # the chunk in flight was finished and stored, no more
    assert _query(db, "SELECT status FROM runs") == [("interrupted",)]
    assert _integrity(db) == "ok"
    lines = [ln for ln in err.splitlines() if ln.startswith("Interrupted")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"Interrupted: {kept} items of run 1 are stored in {db}; resume with: iberlite run " in lines[0]
    resume = shlex.split(lines[0].split("resume with: ", 1)[1])
    assert resume[0] == "iberlite"
    again = _run(resume[1:], tmp_path)
    assert again.returncode == 0, again.stderr
    items = _items(db)
    assert {k: v for k, v in items.items() if k[0] != "xnli_eu"} == reference
    assert ("xnli_eu", LIMIT, LIMIT) in _per_eval(db)


def test_two_runs_into_one_database_at_once_both_finish_and_nothing_is_lost_or_doubled(
        tmp_path, data_dir, reference):
    """Started together on a new file (both create the schema), overlapping slices in opposite
    orders: each evaluation key ends with exactly its documents, once each."""
    db = tmp_path / "shared.db"
    a = _start(_args(db, data_dir, TASKS), tmp_path)
    b = _start(_args(db, data_dir, TASKS[::-1]), tmp_path)
    out_a, err_a = a.communicate(timeout=1200)
    out_b, err_b = b.communicate(timeout=1200)
    assert a.returncode == 0, err_a
    assert b.returncode == 0, err_b
    assert _integrity(db) == "ok"
    assert _per_eval(db) == [("xnli_es", LIMIT, LIMIT), ("xstorycloze_es", LIMIT, LIMIT)]
    assert _items(db) == reference
    assert _query(db, "SELECT status FROM runs ORDER BY id") == [("done",), ("done",)]
