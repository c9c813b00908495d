"""A small OpenAI-compatible HTTP server around the in-process llama.cpp engine.

Why it exists: a cloud tier for the routing analysis has to score thousands of prompts with
echoed logprobs. llama-cpp-python's own server does that correctly but spends about a second
per prompt token in Python on a 262k-token vocabulary (it sorts the whole vocabulary for
every position), which makes 200-item evaluations impractical on a CPU. This server answers
the same requests from the engine's numpy path. It is greedy only (temperature must be 0) and
serves one model; requests are handled one at a time.

Endpoints: GET /v1/models, POST /v1/completions (prompt, max_tokens, echo, logprobs, stop),
POST /v1/chat/completions (messages joined as plain text: no chat template is applied).
`logprobs` itemises the echoed prompt tokens only, not generated ones.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from iberlite.engines.base import GenerationRequest
from iberlite.engines.llamacpp import LlamaCppEngine


class RequestError(ValueError):
    """A request the server rejects with HTTP 400."""


def _char_offsets(pieces: list[bytes]) -> list[int]:
    """Character offset at which each token's text starts in the decoded prompt."""
    out, buf = [], b""
    for piece in pieces:
        out.append(len(buf.decode("utf-8", errors="ignore")))
        buf += piece
    return out


def _text(piece: bytes) -> str:
    return piece.decode("utf-8", errors="replace")


class CompletionService:
    """Turns OpenAI request bodies into engine calls and engine results into response bodies."""

    def __init__(self, engine: LlamaCppEngine, model_id: str) -> None:
        self.engine, self.model_id = engine, model_id
        self._lock = threading.Lock()

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.model_id, "object": "model", "owned_by": "iberlite"}]}

    def _check(self, body: dict) -> None:
        if body.get("model") not in (None, self.model_id):
            raise RequestError(f"This server serves {self.model_id!r}, not {body.get('model')!r}.")
        if float(body.get("temperature", 0.0) or 0.0) != 0.0:
            raise RequestError("Only greedy decoding is served: set temperature to 0.")

    def completion(self, body: dict) -> dict:
        self._check(body)
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise RequestError("`prompt` must be one string.")
        max_tokens = int(body.get("max_tokens", 16) if body.get("max_tokens") is not None else 16)
        stop = body.get("stop") or ()
        stop = (stop,) if isinstance(stop, str) else tuple(stop)
        echo, want_lp = bool(body.get("echo")), body.get("logprobs") is not None
        with self._lock:
            echoed = self.engine.prompt_logprobs(prompt) if echo and want_lp else []
            gen = (self.engine.generate([GenerationRequest(prompt, stop, max_tokens)])[0]
                   if max_tokens > 0 else None)
        text = gen.text if gen else ""
        logprobs = None
        if want_lp:
            pieces = [t.piece for t in echoed]
            lps = [t.logprob for t in echoed]
            tops = [{_text(t.top_piece): t.top_logprob, _text(t.piece): t.logprob}
                    if t.logprob is not None else None for t in echoed]
            if lps:
                lps[0], tops[0] = None, None  # the API's convention for the first echoed token
            offsets = _char_offsets(pieces)  # generated tokens are not itemised
            logprobs = {"tokens": [_text(p) for p in pieces], "text_offset": offsets,
                        "token_logprobs": lps, "top_logprobs": tops}
        prompt_tokens = gen.prompt_tokens if gen else len(self.engine.tokenize(prompt))
        finish = "length" if gen and gen.stop_reason == "length" else "stop"
        return {
            "id": f"cmpl-{uuid.uuid4().hex[:16]}", "object": "text_completion",
            "created": int(time.time()), "model": self.model_id,
            "choices": [{"index": 0, "text": (prompt if echo else "") + text,
                         "logprobs": logprobs, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": gen.gen_tokens if gen else 0,
                      "total_tokens": prompt_tokens + (gen.gen_tokens if gen else 0)},
        }

    def chat(self, body: dict) -> dict:
        self._check(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError("`messages` must be a non-empty list.")
        prompt = "\n".join(str(m.get("content", "")) for m in messages)
        reply = self.completion({"prompt": prompt, "max_tokens": body.get("max_tokens", 256),
                                 "stop": body.get("stop")})
        choice = reply["choices"][0]
        return {
            "id": reply["id"].replace("cmpl", "chatcmpl"), "object": "chat.completion",
            "created": reply["created"], "model": self.model_id,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": choice["text"]},
                         "finish_reason": choice["finish_reason"], "logprobs": None}],
            "usage": reply["usage"],
        }


def make_server(service: CompletionService, host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server bound to host:port (port 0 picks a free one) serving `service`."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt: str, *args) -> None:  # quiet: no per-request lines
            return

        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, service.models())
            else:
                self._send(404, {"error": {"message": f"No route {self.path}"}})

        def do_POST(self) -> None:
            routes = {"/v1/completions": service.completion, "/v1/chat/completions": service.chat}
            handler = routes.get(self.path.rstrip("/"))
            if handler is None:
                self._send(404, {"error": {"message": f"No route {self.path}"}})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                self._send(200, handler(body))
            except (RequestError, ValueError, TypeError) as exc:
                self._send(400, {"error": {"message": str(exc), "type": "invalid_request_error"}})
            except Exception as exc:  # the engine failed: report, keep serving
                self._send(500, {"error": {"message": f"{type(exc).__name__}: {exc}"}})

    return ThreadingHTTPServer((host, port), Handler)
