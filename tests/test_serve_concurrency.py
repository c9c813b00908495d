"""Two clients of one `iberlite serve` at once: each gets exactly the answers it gets alone, and
two `iberlite run` clients storing into one database through it both finish with every item
once. Real server (SmolLM2-135M) on 127.0.0.1, real data."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from iberlite.run.plan import plan
from iberlite.run.spec import RunSpec

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="module")
def server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "iberlite", "serve", "smollm2-135m", "--port",
                             str(port), "--threads", "1", "--n-ctx", "1024"], stdout=log,
                            stderr=subprocess.STDOUT, env=_env())
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 300
    while time.time() < deadline:
        assert proc.poll() is None, log.seek(0) or log.read().decode()[-2000:]
        try:
            urllib.request.urlopen(f"{url}/models", timeout=2).close()
            break
        except OSError:
            time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(f"{url}/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as resp:
        reply = json.loads(resp.read())
    reply.pop("id"), reply.pop("created")
    return reply


def test_two_clients_at_once_get_what_each_gets_alone(server, data_dir):
    _, tasks = plan(RunSpec(models=("smollm2-135m",), tasks=("xstorycloze_es",), limit=3,
                            data_dir=data_dir))
    bodies = []
    for inst in tasks[0].instances:
        for c in inst.choices:  # scoring: echoed prompt logprobs
            bodies.append({"prompt": inst.context + inst.target_delimiter + c, "max_tokens": 1,
                           "echo": True, "logprobs": 1, "temperature": 0})
        bodies.append({"prompt": inst.context, "max_tokens": 12, "temperature": 0})  # generation
    alone = [_post(server, b) for b in bodies]
    together: dict[int, dict] = {}

    def client(order: list[int]) -> None:
        for i in order:
            together[i] = _post(server, bodies[i])

    a = threading.Thread(target=client, args=(list(range(len(bodies))),))
    b = threading.Thread(target=client, args=(list(range(len(bodies)))[::-1],))
    first: dict[int, dict] = {}
    a.start()
    b.start()
    for i in range(len(bodies)):  # and a third client, for good measure, in between
        first[i] = _post(server, bodies[i])
    a.join()
    b.join()
    assert [together[i] for i in range(len(bodies))] == alone
    assert [first[i] for i in range(len(bodies))] == alone


def test_two_run_clients_store_into_one_database_through_one_server(server, data_dir, tmp_path):
    db = tmp_path / "clients.db"

    def start(task: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "iberlite", "run", "--models", "openai:smollm2-135m",
                                 "--base-url", server, "--tasks", task, "--limit", "6",
                                 "--data-dir", str(data_dir), "--db", str(db)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())

    procs = [start("xstorycloze_es"), start("xnli_es")]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in outs]
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = con.execute("SELECT e.task, COUNT(*), COUNT(DISTINCT doc_id) FROM items i JOIN evals e "
                           "USING (eval_key) GROUP BY eval_key ORDER BY e.task").fetchall()
        failures = con.execute("SELECT COUNT(*) FROM failures").fetchone()[0]
    finally:
        con.close()
    assert rows == [("xnli_es", 6, 6), ("xstorycloze_es", 6, 6)] and failures == 0
