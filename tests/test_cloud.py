"""The cloud tier: the OpenAI-compatible engine against real servers on 127.0.0.1.

Servers: `iberlite serve` (Gemma-3-270M), llama-cpp-python's own `python -m llama_cpp.server`
(Gemma-3-270M, a few short items: it spends about a second per prompt token in Python), and a
plain http.server that fails on purpose to exercise retries.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from iberlite.decide.router import HybridRouter, Policy, Route
from iberlite.engines.base import GenerationRequest, LoglikelihoodRequest
from iberlite.engines.llamacpp import LlamaCppEngine
from iberlite.engines.openai_http import (
    EndpointConfig,
    EndpointError,
    OpenAIEngine,
    continuation_logprobs,
    parse_choice,
)
from iberlite.errors import UserError
from iberlite.models.names import resolve_model
from iberlite.run.plan import plan
from iberlite.run.spec import RunSpec
from iberlite.scoring.metrics import mc_prediction

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, log, timeout: float = 300.0) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(url)


def start(cmd: list[str], port: int) -> subprocess.Popen:
    # The server's log goes to a file: a pipe nobody reads fills up and blocks llama.cpp's
    # verbose loader.
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    wait_for(f"http://127.0.0.1:{port}/v1/models", proc, log)
    return proc


@pytest.fixture(scope="module")
def gemma_server():
    port = free_port()
    proc = start([str(BIN / "iberlite"), "serve", "gemma3-270m", "--port", str(port), "--threads", "1",
                  "--n-ctx", "1024"], port)
    yield f"http://127.0.0.1:{port}/v1"
    proc.terminate()
    proc.wait(timeout=30)


def mc_instances(task: str, n: int, data_dir: Path):
    _, tasks = plan(RunSpec(models=("gemma3-270m",), tasks=(task,), limit=n, data_dir=data_dir))
    return tasks[0].instances


def requests_of(instances, group: bool = True) -> list[LoglikelihoodRequest]:
    return [LoglikelihoodRequest(i.context, i.target_delimiter + c, group=f"{k}" if group else "")
            for k, i in enumerate(instances) for c in i.choices]


def by_item(instances, logprobs):
    it = iter(logprobs)
    return [[next(it) for _ in inst.choices] for inst in instances]


def test_remote_scores_agree_with_the_in_process_engine(gemma_server, data_dir):
    """50 XStoryCloze-es items scored through HTTP (echoed prompt logprobs, character offsets)
    agree with llama.cpp in process, scored one sequence at a time (as the server does) and
    packed by the default fast scorer: the engine's aligned layout makes the two the same."""
    insts = mc_instances("xstorycloze_es", 50, data_dir)
    reqs = requests_of(insts)
    remote = OpenAIEngine("gemma3-270m", EndpointConfig(gemma_server, concurrency=2))
    assert remote.scoring == "logprobs"
    rem = remote.loglikelihood(reqs)
    remote.close()
    with LlamaCppEngine(resolve_model("gemma3-270m"), n_threads=1, scoring="naive") as local:
        alone = [local.loglikelihood([r])[0] for r in reqs]
        local.scoring = "fast"
        packed = local.loglikelihood(reqs)
    assert [r.n_tokens for r in rem] == [a.n_tokens for a in alone]
    diffs = [abs(r.logprob - a.logprob) for r, a in zip(rem, alone)]
    assert max(diffs) < 1e-3, max(diffs)
    packed_diffs = [abs(r.logprob - p.logprob) for r, p in zip(rem, packed)]
    assert max(packed_diffs) < 1e-3, max(packed_diffs)
    pred = lambda res: [mc_prediction(lps) for lps in by_item(insts, [r.logprob for r in res])]
    assert pred(rem) == pred(alone) == pred(packed)


def test_empty_context_items_rank_like_the_in_process_engine(gemma_server, data_dir):
    """XNLI has no context (the premise is part of every choice): the API gives the first echoed
    token no logprob, so it is left out, which shifts every choice by the same amount."""
    insts = mc_instances("xnli_es", 8, data_dir)
    assert all(i.context == "" for i in insts)
    reqs = requests_of(insts)
    remote = OpenAIEngine("gemma3-270m", EndpointConfig(gemma_server))
    rem = [r.logprob for r in remote.loglikelihood(reqs)]
    with LlamaCppEngine(resolve_model("gemma3-270m"), n_threads=1, scoring="naive") as local:
        loc = [local.loglikelihood([r])[0].logprob for r in reqs]
    for r_item, l_item in zip(by_item(insts, rem), by_item(insts, loc)):
        shifts = [a - b for a, b in zip(r_item, l_item)]
        assert max(shifts) - min(shifts) < 1e-3  # a common shift: ranking and margins unchanged
        assert mc_prediction(r_item) == mc_prediction(l_item)


def test_remote_generation_matches_and_reports_tokens(gemma_server, data_dir):
    insts = mc_instances("flores_en-es", 3, data_dir)
    reqs = [GenerationRequest(i.context, i.until, 24) for i in insts]
    remote = OpenAIEngine("gemma3-270m", EndpointConfig(gemma_server))
    rem = remote.generate(reqs)
    with LlamaCppEngine(resolve_model("gemma3-270m"), n_threads=1) as local:
        loc = local.generate(reqs)
    assert [r.text for r in rem] == [g.text for g in loc]
    assert all(r.prompt_tokens == g.prompt_tokens and r.gen_tokens == g.gen_tokens for r, g in zip(rem, loc))
    assert all(r.wall_ms > 0 for r in rem)


def test_answer_by_generation_parses_strictly():
    assert parse_choice("B", 3) == 1
    assert parse_choice(" c) because", 3) is None  # lowercase is not a letter answer
    assert parse_choice("C. The end", 3) == 2
    assert parse_choice("D", 3) is None
    assert parse_choice("Banana", 3) is None
    assert parse_choice("", 2) is None


def test_answer_by_generation_fallback_is_labelled(gemma_server, data_dir):
    insts = mc_instances("xstorycloze_es", 4, data_dir)
    remote = OpenAIEngine("gemma3-270m", EndpointConfig(gemma_server), scoring="generation")
    res = remote.loglikelihood(requests_of(insts))
    assert remote.info().scoring == "generation"
    for item in by_item(insts, res):
        chosen = [r for r in item if r.logprob == 0.0]
        assert len(chosen) <= 1  # one answer, or none when the reply does not parse
        if not chosen:
            assert mc_prediction([r.logprob for r in item]) == -1  # never counted correct


def test_offsets_put_a_straddling_token_in_the_continuation():
    lp = {"tokens": ["Hola", " mun", "do"], "text_offset": [0, 4, 8],
          "token_logprobs": [None, -1.0, -2.0], "top_logprobs": [None, {" mun": -1.0}, {"da": -0.5, "do": -2.0}]}
    assert continuation_logprobs(lp, 6, 10) == (-3.0, 2, False)
    assert continuation_logprobs(lp, 8, 10) == (-2.0, 1, False)
    assert continuation_logprobs(lp, 4, 8) == (-1.0, 1, True)


class _Flaky(BaseHTTPRequestHandler):
    """Answers 503 to the first two completion requests, then a valid reply."""

    calls = 0

    def log_message(self, *args) -> None:
        return

    def _json(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._json(200, {"data": [{"id": "m"}]})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).calls += 1
        if type(self).calls <= 2:
            self._json(503, {"error": {"message": "busy"}})
            return
        self._json(200, {"choices": [{"text": "B", "finish_reason": "stop", "logprobs": None}],
                         "usage": {"prompt_tokens": 5, "completion_tokens": 1}})


def test_retries_on_503_then_gives_up_with_one_sentence():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        eng = OpenAIEngine("m", EndpointConfig(url, backoff_s=0.01, max_retries=4), scoring="generation")
        _Flaky.calls = 0
        out = eng.generate([GenerationRequest("x", ("\n",), 4)])[0]
        assert out.text == "B" and eng.retries == 2
        _Flaky.calls = -10  # ten failures in a row: more than the retry budget
        eng2 = OpenAIEngine("m", EndpointConfig(url, backoff_s=0.001, max_retries=2), scoring="generation")
        with pytest.raises(EndpointError, match="HTTP 503"):
            eng2.generate([GenerationRequest("x", (), 4)])
        with pytest.raises(UserError, match="does not serve model"):
            OpenAIEngine("other", EndpointConfig(url))
    finally:
        server.shutdown()


def test_api_key_is_sent_but_never_in_the_engine_info(monkeypatch):
    seen = {}

    class Echo(_Flaky):
        def do_GET(self) -> None:
            seen["auth"] = self.headers.get("Authorization")
            self._json(200, {"data": [{"id": "m"}]})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("MY_CLOUD_KEY", "sk-test-123")
    try:
        eng = OpenAIEngine("m", EndpointConfig(f"http://127.0.0.1:{server.server_address[1]}/v1",
                                               api_key_env="MY_CLOUD_KEY"), scoring="generation")
        assert seen["auth"] == "Bearer sk-test-123"
        assert "sk-test-123" not in json.dumps(eng.info().__dict__, default=str)
    finally:
        server.shutdown()


def test_hybrid_router_escalates_below_the_threshold(gemma_server, data_dir):
    """Device SmolLM2 in process, cloud Gemma over HTTP: an item is answered on the device
    exactly when the device's margin reaches the threshold, otherwise the cloud's answer."""
    from iberlite.tasks.data import load_docs
    from iberlite.tasks.registry import load_task_specs

    spec = load_task_specs(())["xstorycloze_es"]
    docs = load_docs(spec, data_dir, 6)
    device = LlamaCppEngine(resolve_model("smollm2-135m"), n_threads=1, scoring="naive")
    cloud = OpenAIEngine("gemma3-270m", EndpointConfig(gemma_server))
    try:
        margins = [HybridRouter(Policy("smollm2-135m", "openai:gemma3-270m", 0.6,
                                       (Route("xstorycloze_es", "es", "multiple_choice", "device"),)),
                                device, cloud).classify(spec, d).confidence for d in docs]
        t = sorted(margins)[len(margins) // 2]  # half the items above, half below
        policy = Policy("smollm2-135m", "openai:gemma3-270m", 0.6,
                        (Route("xstorycloze_es", "es", "multiple_choice", "cascade", t),))
        router = HybridRouter(policy, device, cloud)
        answers = [router.classify(spec, d) for d in docs]
        for a, m in zip(answers, margins):
            assert a.source == ("device" if m >= t else "cloud")
            assert (a.cloud_ms > 0) == (a.source == "cloud")
        assert {a.source for a in answers} == {"device", "cloud"}
        gen = router.generate("Traduce al inglés: Buenos días.\nInglés:", "es", task="xstorycloze_es")
        assert gen.source in ("device", "cloud") and isinstance(gen.text, str)
    finally:
        device.close()
        cloud.close()


def test_llama_cpp_server_scores_like_the_engine():
    """llama-cpp-python's own server (flash attention off, its default) on three short items."""
    pytest.importorskip("uvicorn", reason="llama-cpp-python[server] is not installed")
    port = free_port()
    gguf = resolve_model("gemma3-270m").path
    proc = start([sys.executable, "-m", "iberlite.engines.llama_server", "--model", str(gguf), "--model_alias", "gemma",
                  "--n_ctx", "256", "--n_threads", "1", "--host", "127.0.0.1", "--port", str(port)], port)
    try:
        reqs = [LoglikelihoodRequest("El cielo es", " azul", "a"), LoglikelihoodRequest("El cielo es", " verde", "a"),
                LoglikelihoodRequest("Dos y dos son", " cuatro", "b")]
        remote = OpenAIEngine("gemma", EndpointConfig(f"http://127.0.0.1:{port}/v1", concurrency=1))
        rem = remote.loglikelihood(reqs)
        with LlamaCppEngine(resolve_model("gemma3-270m"), n_threads=1, scoring="naive") as local:
            loc = [local.loglikelihood([r])[0] for r in reqs]
        # That server decodes the bare sequence; the engine pads every decode to a multiple of
        # 8 or 16 rows (engines/layout.py), and Gemma's repacked Q4_K kernel rounds the last rows of an unpadded
        # decode differently (docs/engine.md), so the numbers agree only to a few tenths.
        for r, l in zip(rem, loc):
            assert r.n_tokens == l.n_tokens
            assert abs(r.logprob - l.logprob) < 0.5, (r.logprob, l.logprob)
        assert (rem[0].logprob > rem[1].logprob) == (loc[0].logprob > loc[1].logprob)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
