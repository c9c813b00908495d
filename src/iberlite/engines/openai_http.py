"""OpenAI-compatible HTTP endpoints: the cloud tier (llama-cpp-python's server, vLLM, Ollama,
hosted APIs).

Multiple choice is scored from prompt logprobs where the endpoint returns them
(`/v1/completions` with `echo` and `logprobs`): each choice is sent as context + continuation,
and the continuation's tokens are the echoed tokens whose character offset reaches past the
context (a token straddling the boundary belongs to the continuation). Known quirks handled:
the first echoed token carries no logprob, and offsets count characters of the decoded text.
An endpoint that gives no prompt logprobs falls back to answering by generation: the options
are listed, the model answers with a letter, the answer is parsed strictly, and the engine's
`scoring` ("logprobs" | "generation") goes into every signature.

Requests run with a timeout, bounded retries with exponential backoff on 429 and 5xx, and at
most `concurrency` in flight. The API key is read from the environment variable named by
`api_key_env` at call time; it is never part of the engine's info, so never stored.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import math
import os
import re
import socket
import string
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from iberlite.engines.base import (
    EngineInfo,
    GenerationRequest,
    GenerationResult,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    RequestFailed,
)
from iberlite.errors import UserError

API_MODES = ("completions", "chat")
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class EndpointError(UserError, RequestFailed):
    """The endpoint failed in a way retrying did not fix; `reason` is the short form stored
    with a failed item (`timeout`, `HTTP 503`, `malformed JSON`...)."""

    def __init__(self, message: str, reason: str = "request failed") -> None:
        super().__init__(message)
        self.reason = reason


def _failure_reason(exc: BaseException) -> str | None:
    """The short reason for a broken exchange, or None for an error that is not the
    endpoint's (a bug here should not be stored as a failed item)."""
    if isinstance(exc, (TimeoutError, socket.timeout)) or (
            isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, TimeoutError)):
        return "timeout"
    if isinstance(exc, http.client.IncompleteRead):
        return "truncated body"
    if isinstance(exc, (http.client.RemoteDisconnected, ConnectionError)):
        return "connection closed"
    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError, ValueError)):
        return "malformed JSON"
    if isinstance(exc, urllib.error.URLError):
        return f"unreachable ({exc.reason})"
    if isinstance(exc, (http.client.HTTPException, OSError)):
        return f"connection error ({type(exc).__name__})"
    return None


@dataclass(frozen=True)
class HttpReply:
    """A decoded JSON reply and how long it took, retries included."""

    body: dict
    ms: float
    attempts: int


@dataclass(frozen=True)
class EndpointConfig:
    """Where and how to reach an endpoint. `api_key_env` names a variable; the key is read
    when a request is sent and never kept on the engine."""

    base_url: str
    api_key_env: str = "OPENAI_API_KEY"
    api: str = "completions"
    timeout_s: float = 120.0
    max_retries: int = 4
    backoff_s: float = 0.5
    concurrency: int = 4


def _letters(n: int) -> str:
    return string.ascii_uppercase[:n]


def choice_prompt(context: str, choices: Sequence[str]) -> str:
    """The answer-by-generation prompt: the item, its options lettered, and the question."""
    lines = [context.rstrip(), ""]
    lines += [f"{letter}. {c.strip()}" for letter, c in zip(_letters(len(choices)), choices)]
    lines += ["", f"Answer with one letter ({', '.join(_letters(len(choices)))}).", "Answer:"]
    return "\n".join(lines)


def parse_choice(text: str, n_choices: int) -> int | None:
    """Strict parse of a lettered answer: a lone letter (optionally with `.`, `)` or `:`) at the
    start of the reply. Anything else, or a letter out of range, is no answer (None)."""
    m = re.match(r"\s*\(?([A-Z])(?:[.):]|\s|$)", text)
    if not m:
        return None
    idx = string.ascii_uppercase.index(m.group(1))
    return idx if idx < n_choices else None


def continuation_logprobs(logprobs: dict, context_chars: int, end_chars: int) -> tuple[float, int, bool]:
    """Sum the echoed logprobs of the tokens that start before `end_chars` and end after
    `context_chars` (the continuation); also their count and whether each was the top token."""
    offsets = logprobs["text_offset"]
    tokens = logprobs["tokens"]
    lps = logprobs["token_logprobs"]
    tops = logprobs.get("top_logprobs") or [None] * len(tokens)
    total, n, greedy = 0.0, 0, True
    for i, (off, tok, lp) in enumerate(zip(offsets, tokens, lps)):
        end = offsets[i + 1] if i + 1 < len(offsets) else off + len(tok)
        if off >= end_chars or end <= context_chars:
            continue
        if lp is None:
            # The API gives the first echoed token no logprob. With an empty context that token
            # is the continuation's first; it is left out of the sum. Choices that share their
            # first token (NLI: the premise) keep their ranking and margin.
            if i == 0 and context_chars == 0:
                continue
            raise EndpointError(f"The endpoint returned no logprob for continuation token {tok!r}.")
        total += lp
        n += 1
        top = tops[i]
        if top and max(top.values()) > lp + 1e-6:
            greedy = False
    if n == 0:
        raise EndpointError("The endpoint echoed no tokens for a continuation; is `echo` supported?")
    return total, n, greedy


class OpenAIEngine:
    """An OpenAI-compatible endpoint behind the Engine protocol."""

    def __init__(self, model: str, config: EndpointConfig, *, seed: int = 1234,
                 scoring: str | None = None) -> None:
        if config.api not in API_MODES:
            raise UserError(f"Unknown API mode {config.api!r}; valid: {', '.join(API_MODES)}.", 2)
        if not config.base_url:
            raise UserError("A remote model needs an endpoint: pass --base-url (for example "
                            "http://127.0.0.1:8000/v1).", 2)
        self.model, self.config, self.seed = model, config, seed
        self.base_url = config.base_url.rstrip("/")
        self._pool = ThreadPoolExecutor(max_workers=max(1, config.concurrency))
        self.retries = 0
        t0 = time.perf_counter()
        self._check_model()
        self.load_ms = (time.perf_counter() - t0) * 1000
        self.scoring = scoring or ("logprobs" if self._has_prompt_logprobs() else "generation")

    # -- HTTP ---------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.config.api_key_env, "")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _request(self, path: str, payload: dict | None = None) -> HttpReply:
        url = f"{self.base_url}{path}"
        data = json.dumps(payload).encode() if payload is not None else None
        t0 = time.perf_counter()
        for attempt in range(1, self.config.max_retries + 2):
            req = urllib.request.Request(url, data=data, headers=self._headers(),
                                         method="POST" if data is not None else "GET")
            retry_after = None
            try:
                with urllib.request.urlopen(req, timeout=self.config.timeout_s) as resp:
                    raw = resp.read()
                body = json.loads(raw.decode("utf-8"))
                if not isinstance(body, dict):
                    raise ValueError("not a JSON object")
                return HttpReply(body, (time.perf_counter() - t0) * 1000, attempt)
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode("utf-8", errors="replace")[:200].strip()
                if exc.code not in RETRY_STATUS:
                    raise EndpointError(f"{url} answered HTTP {exc.code}: {detail}",
                                        f"HTTP {exc.code}") from None
                reason, message = f"HTTP {exc.code}", f"{url} answered HTTP {exc.code}: {detail}"
                retry_after = exc.headers.get("Retry-After")
            except Exception as exc:  # noqa: BLE001  every way a reply can break is one reason
                found = _failure_reason(exc)
                if found is None:
                    raise
                reason, message = found, f"{url} failed: {found}"
            if attempt > self.config.max_retries:
                raise EndpointError(f"{message} (after {attempt} attempts).", reason)
            self.retries += 1
            time.sleep(self._backoff(attempt, retry_after))
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), 30.0)
            except ValueError:
                pass
        return self.config.backoff_s * (2 ** (attempt - 1))

    def _check_model(self) -> None:
        body = self._request("/models").body
        served = [m.get("id", "") for m in body.get("data", [])]
        if served and self.model not in served:
            raise UserError(f"The endpoint {self.base_url} does not serve model {self.model!r}; "
                            f"it serves: {', '.join(served)}.", 2)

    def _has_prompt_logprobs(self) -> bool:
        try:
            body = self._completion({"prompt": "Hola", "max_tokens": 1, "echo": True,
                                     "logprobs": 1}).body
        except EndpointError:
            return False
        lp = (body.get("choices") or [{}])[0].get("logprobs") or {}
        return bool(lp.get("token_logprobs")) and len(lp.get("text_offset") or []) >= 1

    def _completion(self, payload: dict) -> HttpReply:
        base = {"model": self.model, "temperature": 0.0, "seed": self.seed}
        return self._request("/completions", {**base, **payload})

    # -- Engine protocol ----------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        if self.scoring == "logprobs":
            return list(self._pool.map(self._score_one, requests))
        return self._answer_by_generation(requests)

    def _score_one(self, r: LoglikelihoodRequest) -> LoglikelihoodResult:
        text = r.context + r.continuation
        reply = self._completion({"prompt": text, "max_tokens": 1, "echo": True, "logprobs": 1})
        choice = _first_choice(reply, self.base_url)
        lp = choice.get("logprobs")
        if not lp:
            raise EndpointError(f"{self.base_url} returned no logprobs for an echoed prompt.")
        try:
            total, n, greedy = continuation_logprobs(lp, len(r.context), len(text))
            prompt_tokens = int((reply.body.get("usage") or {}).get("prompt_tokens", len(lp["tokens"])))
        except (KeyError, TypeError, IndexError, ValueError, AttributeError):
            raise EndpointError(f"{self.base_url} sent logprobs of another shape.",
                                "malformed reply") from None
        return LoglikelihoodResult(total, n, greedy, eval_tokens=float(prompt_tokens), ms=reply.ms)

    def _answer_by_generation(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(r.group or f"#{i}", []).append(i)
        out: list[LoglikelihoodResult | None] = [None] * len(requests)

        def answer(idx: list[int]) -> None:
            ctx = requests[idx[0]].context
            choices = [requests[i].continuation for i in idx]
            gen = self._generate_one(GenerationRequest(choice_prompt(ctx, choices), ("\n",), 4))
            picked = parse_choice(gen.text, len(choices))
            share = gen.wall_ms / len(idx)
            tokens = (gen.prompt_tokens + gen.gen_tokens) / len(idx)
            for k, i in enumerate(idx):
                lp = 0.0 if k == picked else -math.inf  # all -inf: no parsable answer
                out[i] = LoglikelihoodResult(lp, 0, k == picked, eval_tokens=tokens, ms=share)

        list(self._pool.map(answer, groups.values()))
        return [r for r in out if r is not None]

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        return list(self._pool.map(self._generate_one, requests))

    def _generate_one(self, r: GenerationRequest) -> GenerationResult:
        stop = list(r.until)[:4] or None  # OpenAI accepts at most four stop strings
        if self.config.api == "chat":
            reply = self._request("/chat/completions", {
                "model": self.model, "temperature": 0.0, "seed": self.seed,
                "messages": [{"role": "user", "content": r.prompt}],
                "max_tokens": r.max_tokens, "stop": stop, "logprobs": True,
            })
            choice = _first_choice(reply, self.base_url)
            text = (choice.get("message") or {}).get("content") or ""
            content = (choice.get("logprobs") or {}).get("content") or []
            token_lps = [c.get("logprob") for c in content]
        else:
            reply = self._completion({"prompt": r.prompt, "max_tokens": r.max_tokens,
                                      "stop": stop, "logprobs": 1})
            choice = _first_choice(reply, self.base_url)
            text = choice.get("text") or ""
            token_lps = ((choice.get("logprobs") or {}).get("token_logprobs")) or []
        text = _cut(text, r.until)
        usage = reply.body.get("usage") or {}
        lps = [x for x in token_lps if x is not None]
        finish = choice.get("finish_reason")
        stop_reason = "length" if finish == "length" else ("until" if r.until and finish == "stop" else "eos")
        return GenerationResult(
            text=text, prompt_tokens=int(usage.get("prompt_tokens", 0)),
            gen_tokens=int(usage.get("completion_tokens", len(token_lps))),
            prefill_ms=0.0, decode_ms=0.0, ttft_ms=reply.ms, wall_ms=reply.ms,
            stop_reason=stop_reason, mean_logprob=(sum(lps) / len(lps)) if lps else None,
        )

    def info(self) -> EngineInfo:
        ident = hashlib.sha256(f"openai:{self.model}".encode()).hexdigest()
        return EngineInfo(
            engine="openai", engine_version=f"openai-compatible/{self.config.api}",
            model_name=f"openai:{self.model}", model_path=self.base_url, model_sha256=ident,
            architecture="remote", file_type="remote", tensor_types="remote", n_params=0,
            size_bytes=0, n_threads=0, n_ctx=0, n_batch=0, scoring=self.scoring, seed=self.seed,
            load_ms=self.load_ms, extra={"api": self.config.api},
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _first_choice(reply: HttpReply, base_url: str) -> dict:
    """The reply's first choice; JSON of another shape is the endpoint's failure, not ours."""
    choices = reply.body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise EndpointError(f"{base_url} sent a reply without choices.", "malformed reply")
    return choices[0]


def _cut(text: str, until: Sequence[str]) -> str:
    """Cut at the first stop string, for endpoints that return it or ignore `stop`."""
    cut = len(text)
    for s in until:
        if s and (i := text.find(s)) != -1:
            cut = min(cut, i)
    return text[:cut]
