"""The remote tier when the endpoint misbehaves: a real HTTP server on 127.0.0.1 that, for chosen
documents, times out, sends malformed JSON or a truncated body, answers 429 (with and without
Retry-After) or 500, or closes the connection. Each such item is stored as failed with its
reason, the run goes on, scores leave failed items out and say so, and the resumed run asks
the endpoint for the failed items only. The API key never reaches the database, the output
or the report."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from iberlite.cli.views import failure_lines
from iberlite.engines.base import GenerationRequest
from iberlite.engines.openai_http import EndpointConfig, EndpointError, OpenAIEngine
from iberlite.report.render import write_report
from iberlite.run.plan import plan
from iberlite.run.runner import run
from iberlite.run.spec import RunSpec
from iberlite.store import Store

REPO = Path(__file__).resolve().parents[1]
KEY_ENV = "IBERLITE_FAULT_TEST_KEY"
KEY = "sk-iberlite-7Q2vXk9-do-not-store"
FAULTS = {  # fault the server plays -> the reason the item must be stored with
    "timeout": "timeout",
    "malformed": "malformed JSON",
    "truncated": "truncated body",
    "429-retry-after": "HTTP 429",
    "429": "HTTP 429",
    "500": "HTTP 500",
    "close": "connection closed",
}


def _token_lps(text: str) -> dict:
    """Echoed prompt logprobs in the OpenAI completions shape: whitespace-led words as tokens,
    a deterministic logprob each (the first has none, as the API gives)."""
    tokens = re.findall(r"\s*\S+|\s+", text)
    offsets, pos = [], 0
    for t in tokens:
        offsets.append(pos)
        pos += len(t)
    lps = [None] + [-(int(hashlib.sha256(t.encode()).hexdigest()[:6], 16) % 997) / 100 - 0.01
                    for t in tokens[1:]]
    return {"tokens": tokens, "text_offset": offsets, "token_logprobs": lps, "top_logprobs": None}


class FaultServer:
    """An OpenAI-compatible endpoint on 127.0.0.1 that fails on purpose for prompts holding one
    of `faults`' keys; it records every completion prompt and Authorization header."""

    def __init__(self) -> None:
        self.faults: dict[str, str] = {}
        self.prompts: list[str] = []
        self.auth: set[str | None] = set()
        self.once: dict[str, str] = {}  # prompt part -> fault played once, then healed
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                return

            def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None,
                      length: int | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body) if length is None else length))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()

            def do_GET(self) -> None:
                server.auth.add(self.headers.get("Authorization"))
                self._send(200, json.dumps({"data": [{"id": "m"}]}).encode())

            def do_POST(self) -> None:
                server.auth.add(self.headers.get("Authorization"))
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                prompt = body.get("prompt", "")
                server.prompts.append(prompt)
                fault = next((f for part, f in server.faults.items() if part in prompt), None)
                once = next((part for part in server.once if part in prompt), None)
                if once is not None:
                    fault = server.once.pop(once)
                if fault == "timeout":
                    time.sleep(1.5)
                elif fault == "malformed":
                    return self._send(200, b'{"choices": [{"text": "x", "logprobs": {"tokens": [')
                elif fault == "truncated":
                    self.close_connection = True
                    return self._send(200, b'{"choices": [{"text": "', length=400)
                elif fault == "429-retry-after":
                    return self._send(429, b'{"error": {"message": "slow down"}}', {"Retry-After": "1"})
                elif fault == "429":
                    return self._send(429, b'{"error": {"message": "slow down"}}')
                elif fault == "500":
                    return self._send(500, b'{"error": {"message": "boom"}}')
                elif fault == "close":
                    self.close_connection = True
                    return
                text = prompt if body.get("echo") else ""
                reply = {"choices": [{"text": text + " B", "finish_reason": "stop",
                                      "logprobs": _token_lps(prompt) if body.get("echo") else None}],
                         "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": 1}}
                self._send(200, json.dumps(reply).encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FaultServer()
    yield s
    s.close()


def _quick_engine(url: str):
    """The run's engine factory: the real OpenAI engine with a short timeout and one retry, so a
    failing item costs about a second, not the default half minute of backoff."""
    def factory(model, spec):
        return OpenAIEngine(model.remote, EndpointConfig(url, api_key_env=spec.api_key_env,
                                                         timeout_s=0.5, max_retries=1, backoff_s=0.01),
                            seed=spec.seed)
    return factory


def test_each_fault_fails_its_item_the_run_goes_on_and_resume_retries_only_those(
        server, tmp_path, data_dir, monkeypatch, capfd, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(KEY_ENV, KEY)
    spec = RunSpec(models=("openai:m",), tasks=("xstorycloze_es",), limit=10, data_dir=data_dir,
                   db=tmp_path / "remote.db", base_url=server.url, api_key_env=KEY_ENV)
    instances = plan(spec)[1][0].instances
    faulty = {inst.context[:80]: (inst.doc_id, fault)
              for inst, fault in zip(instances[1:], FAULTS)}  # docs 1-7 fail, 0, 8, 9 do not
    assert len(faulty) == len(FAULTS)
    server.faults = {part: fault for part, (_doc, fault) in faulty.items()}

    first = run(spec, engine_factory=_quick_engine(server.url))

    (outcome,) = first.outcomes
    assert outcome.n_items == 3
    assert {f.doc_id: f.reason for f in outcome.failures} == {
        doc: FAULTS[fault] for doc, fault in faulty.values()}
    assert not first.complete
    with Store(spec.db) as store:
        assert [r.status for r in store.runs()] == ["incomplete"]
        (acc,) = [a for a in store.latest_aggregates() if a.metric == "acc"]
        items = store.items(acc.eval_key)
    assert acc.n == 3 and len(items) == 3  # the score is over answered items only
    assert acc.value == pytest.approx(sum(bool(i.correct) for i in items) / 3)
    (line,) = failure_lines(first)
    assert "openai:m on xstorycloze_es: 7 of 10 items" in line and "2 HTTP 429" in line
    assert "1 timeout" in line and "1 truncated body" in line and "retried" in line

    server.faults = {}
    server.prompts.clear()
    second = run(spec, engine_factory=_quick_engine(server.url))

    asked = [p for p in server.prompts if p != "Hola"]  # "Hola" is the engine's logprobs probe
    asked_docs = {doc for p in asked for part, (doc, _f) in faulty.items() if p.startswith(part)}
    assert len(asked) == 2 * len(FAULTS)  # two choices per failed item, nothing else
    assert asked_docs == {doc for doc, _f in faulty.values()}
    (outcome,) = second.outcomes
    assert outcome.n_items == 10 and outcome.n_new == 7 and not outcome.failures
    assert second.complete
    with Store(spec.db) as store:
        assert [r.status for r in store.runs()] == ["incomplete", "done"]
        assert [a.n for a in store.latest_aggregates(second.run_id) if a.metric == "acc"] == [10]

    # the key was sent, and is nowhere a user or a reader of the results can see
    assert server.auth == {f"Bearer {KEY}"}
    report = write_report(spec.db, tmp_path / "report.html")
    md = write_report(spec.db, tmp_path / "report.md", "md")
    out, err = capfd.readouterr()
    for blob in (spec.db.read_bytes(), report.read_bytes(), md.read_bytes(), out.encode(),
                 err.encode(), caplog.text.encode()):
        assert KEY.encode() not in blob
    for extra in (tmp_path / "remote.db-wal", tmp_path / "remote.db-shm"):
        if extra.exists():
            assert KEY.encode() not in extra.read_bytes()


def test_retry_after_is_honoured_and_a_bare_429_backs_off(server):
    eng = OpenAIEngine("m", EndpointConfig(server.url, max_retries=2, backoff_s=0.05),
                       scoring="generation")
    server.once = {"first": "429-retry-after"}
    t0 = time.perf_counter()
    assert eng.generate([GenerationRequest("first", (), 2)])[0].text == " B"
    waited = time.perf_counter() - t0
    assert waited >= 1.0 and eng.retries == 1  # the server said one second
    server.once = {"second": "429"}
    t0 = time.perf_counter()
    assert eng.generate([GenerationRequest("second", (), 2)])[0].text == " B"
    assert time.perf_counter() - t0 < 0.8 and eng.retries == 2  # backoff_s, not a second
    server.faults = {"third": "500"}
    with pytest.raises(EndpointError, match="HTTP 500") as info:
        eng.generate([GenerationRequest("third", (), 2)])
    assert info.value.reason == "HTTP 500" and eng.retries == 4
    eng.close()


def test_the_cli_lists_failed_items_exits_1_and_never_prints_the_key(server, tmp_path, data_dir):
    """End to end with the default retry policy: one document always answers 500."""
    _, tasks = plan(RunSpec(models=("openai:m",), tasks=("xnli_es",), limit=4, data_dir=data_dir,
                            base_url=server.url))
    insts = tasks[0].instances
    part = (insts[2].context + insts[2].choices[0])[-60:]  # NLI contexts may be empty
    assert sum(part in i.context + i.choices[0] for i in insts) == 1
    server.faults = {part: "500"}
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    env[KEY_ENV] = KEY
    db = tmp_path / "cli.db"
    proc = subprocess.run([sys.executable, "-m", "iberlite", "run", "--models", "openai:m",
                           "--base-url", server.url, "--api-key-env", KEY_ENV, "--tasks", "xnli_es",
                           "--limit", "4", "--data-dir", str(data_dir), "--db", str(db)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert ("Failed: openai:m on xnli_es: 1 of 4 items (1 HTTP 500); they are left out of the "
            "scores and retried when the same command is run again.") in " ".join(proc.stderr.split())
    assert KEY not in proc.stdout + proc.stderr and KEY.encode() not in db.read_bytes()
    assert server.auth == {f"Bearer {KEY}"}
    with Store(db) as store:
        key = store.evals()[0].eval_key
        assert [f.reason for f in store.open_failures(key)] == ["HTTP 500"]
        assert len(store.items(key)) == 3
    shown = subprocess.run([sys.executable, "-m", "iberlite", "results", "--db", str(db)],
                           capture_output=True, text=True, env=env, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert ("openai:m on xnli_es: 1 item failed and left out of n; rerunning the run's command "
            "retries them.") in " ".join(shown.stdout.split())
