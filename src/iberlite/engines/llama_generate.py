"""Greedy generation on the llama.cpp engine: one request at a time on sequence 0.

Why a module of its own: the loop (prefill, argmax, stop strings, the token budget, the wall
time limit, what is timed) is decided here, apart from llama.cpp's plumbing. It reaches the
model only through the primitives `GenerationHost` names, which the engine offers (the same
`decode` that `iberlite bench` times), so it never imports the engine.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from iberlite.engines.base import GenerationRequest, GenerationResult
from iberlite.engines.llama_lib import log_softmax_at


class GenerationHost(Protocol):
    """What greedy generation needs of an engine (`LlamaCppEngine` is one)."""

    n_ctx: int
    prefix_cache: bool
    item_timeout_s: float | None

    @property
    def cached_tokens(self) -> list[int]: ...

    @property
    def holds_kept_prefix(self) -> bool: ...

    def tokenize(self, text: str, add_special: bool = True) -> list[int]: ...

    def detokenize_piece(self, token: int) -> bytes: ...

    def clear_cache(self) -> None: ...

    def keep_cached(self, tokens: list[int]) -> None: ...

    def decode(self, tokens: list[int], start_pos: int) -> None: ...

    def last_logits(self) -> np.ndarray: ...

    def is_eog(self, token: int) -> bool: ...


def generate(host: GenerationHost, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
    """Greedy generation, one request at a time.

    Each prompt is prefilled from a cleared cache unless `prefix_cache` is on; then the
    tokens it shares with what the cache already holds are reused (not recomputed), and
    `reused_tokens` says how many, so a reused prefix is never timed as a fresh prefill.
    Off by default: llama.cpp's CPU kernels round differently when a prefix is computed
    in another batch, so reuse can change a generation by a token (docs/engine.md).
    Stops at `max_tokens` (`length`) or past `item_timeout_s` of wall time (`timeout`).
    """
    return [_generate_one(host, r) for r in requests]


def _reuse_prefix(host: GenerationHost, prompt: list[int]) -> int:
    """Keep the cached tokens the prompt starts with; drop the rest; return how many."""
    keep = 0
    if host.prefix_cache:
        cached = host.cached_tokens
        limit = min(len(cached), len(prompt) - 1)  # at least one token to decode
        while keep < limit and cached[keep] == prompt[keep]:
            keep += 1
    if host.holds_kept_prefix:  # a scoring prefix holds cells: start from an empty cache
        host.clear_cache()
    if keep == 0:
        host.clear_cache()
    else:
        host.keep_cached(prompt[:keep])
    return keep


def _generate_one(host: GenerationHost, req: GenerationRequest) -> GenerationResult:
    prompt = host.tokenize(req.prompt)
    budget = max(1, min(req.max_tokens, host.n_ctx - 1))
    if len(prompt) + budget > host.n_ctx:
        prompt = prompt[len(prompt) + budget - host.n_ctx:]
    t0 = time.perf_counter()
    deadline = t0 + host.item_timeout_s if host.item_timeout_s else None
    reused = _reuse_prefix(host, prompt)
    host.decode(prompt[reused:], reused)
    t_prefill = time.perf_counter()
    out: list[int] = []
    text = b""
    lp_sum = 0.0
    stop_reason = "length"
    ttft = None
    cut_text: str | None = None
    while len(out) < budget:
        row = host.last_logits()
        tok = int(row.argmax())
        lp_sum += log_softmax_at(row, [tok])[0][0]
        if ttft is None:
            ttft = (time.perf_counter() - t0) * 1000
        if host.is_eog(tok):
            stop_reason = "eos"
            break
        out.append(tok)
        text += host.detokenize_piece(tok)
        decoded = text.decode("utf-8", errors="ignore")
        hits = [decoded.find(u) for u in req.until if u and u in decoded]
        if hits:
            cut_text = decoded[: min(hits)]
            stop_reason = "until"
            break
        if len(out) >= budget:
            break
        if deadline is not None and time.perf_counter() >= deadline:  # text so far is kept
            stop_reason = "timeout"
            break
        host.decode([tok], len(prompt) + len(out) - 1)
    t_end = time.perf_counter()
    final = cut_text if cut_text is not None else text.decode("utf-8", errors="replace")
    prefill_ms = (t_prefill - t0) * 1000
    return GenerationResult(
        text=final,
        prompt_tokens=len(prompt),
        gen_tokens=len(out),
        prefill_ms=prefill_ms,
        decode_ms=(t_end - t_prefill) * 1000,
        ttft_ms=ttft if ttft is not None else prefill_ms,
        wall_ms=(t_end - t0) * 1000,
        stop_reason=stop_reason,
        reused_tokens=reused,
        mean_logprob=lp_sum / max(1, len(out) + (stop_reason == "eos")),
    )
