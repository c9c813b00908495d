"""Loglikelihood on the llama.cpp engine: requests grouped by their shared token prefix, packed
into aligned decodes, each pack on a fresh cache; and a prompt's per-token logprobs (the HTTP
server's `echo`) in the same layout.

Why a module of its own: which requests share a prefix, how packs are formed and how their cost
is split is decided here, apart from llama.cpp's plumbing; where each token goes is
engines/layout.py's. It reaches the model only through the primitives `ScoringHost` names,
which the engine offers, so it never imports the engine. Scoring after a kept few-shot prefix,
which reuses the cache across calls, is engines/kept_prefix.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from iberlite.engines.base import LoglikelihoodRequest, LoglikelihoodResult
from iberlite.engines.layout import Entry, Layout, Segment, Seq
from iberlite.errors import UserError


class ScoringHost(Protocol):
    """What scoring needs of an engine (`LlamaCppEngine` is one)."""

    n_ctx: int
    n_seq_max: int
    bos: int
    add_bos: bool
    scoring: str
    pack_layout: Layout

    def tokenize(self, text: str, add_special: bool = True) -> list[int]: ...

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], int]: ...

    def detokenize_piece(self, token: int) -> bytes: ...

    def clear_cache(self) -> None: ...

    def decode_entries(self, layout: Layout, entries: list[Entry], logprob: list[float],
                       greedy: list[bool], tops: dict[int, tuple[int, float]] | None = None
                       ) -> dict[int, float]: ...


@dataclass(frozen=True)
class TokenLogprob:
    """One prompt token: id, bytes, logprob given what precedes it, and the top token there."""

    token: int
    piece: bytes
    logprob: float | None
    top_piece: bytes
    top_logprob: float | None


def loglikelihood(host: ScoringHost, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
    """Score every request from a cleared cache; consecutive requests of one group (in `fast`
    scoring) share their common token prefix, computed once. A request's `eval_tokens` and `ms`
    are its share of what its group decoded, so per-item costs sum to the truth."""
    groups: list[list[Seq]] = []
    last_group: str | None = None
    for i, req in enumerate(requests):
        tokens, start = host.encode_pair(req.context, req.continuation)
        seq = Seq(req=i, tokens=tokens, start=start)
        same = host.scoring == "fast" and req.group and req.group == last_group
        if same and len(groups[-1]) < host.n_seq_max - 1:  # the last id pads
            groups[-1].append(seq)
        else:
            groups.append([seq])
        last_group = req.group
    logprob = [0.0] * len(requests)
    greedy = [True] * len(requests)
    cost_tokens = [0.0] * len(requests)
    cost_ms = [0.0] * len(requests)
    for pack, segments in host.pack_layout.packs(groups):
        entries = host.pack_layout.lay_out(segments)
        group_ms = _run_entries(host, entries, logprob, greedy)
        n_unique = Counter(e.group for e in entries)  # padding (group -1) is not counted
        for gi, g in pack:
            for s in g:
                cost_tokens[s.req] = n_unique[gi] / len(g)
                cost_ms[s.req] = group_ms.get(gi, 0.0) / len(g)
    return ordered_results(groups, logprob, greedy, cost_tokens, cost_ms)


def ordered_results(groups: list[list[Seq]], logprob: list[float], greedy: list[bool],
                    cost_tokens: list[float], cost_ms: list[float]) -> list[LoglikelihoodResult]:
    """One result per request, in request order, from sums indexed by request (both scoring
    paths end here, so a result means the same whichever computed it)."""
    seqs = [s for g in groups for s in g]  # groups were built in request order
    return [
        LoglikelihoodResult(
            logprob=logprob[s.req],
            n_tokens=len(s.tokens) - s.start,
            is_greedy=greedy[s.req],
            eval_tokens=cost_tokens[s.req],
            ms=cost_ms[s.req],
        )
        for s in seqs
    ]


def _run_entries(host: ScoringHost, entries: list[Entry], logprob: list[float], greedy: list[bool],
                 tops: dict[int, tuple[int, float]] | None = None) -> dict[int, float]:
    """Decode a laid-out pack on a cleared cache (generation or a kept prefix may have left
    cells behind) and clear it after; accumulate scores; return wall ms per group. With
    `tops`, also note each target's most likely token and its logprob there."""
    host.clear_cache()
    group_ms = host.decode_entries(host.pack_layout, entries, logprob, greedy, tops)
    host.clear_cache()
    return group_ms


def prompt_logprobs(host: ScoringHost, text: str) -> list[TokenLogprob]:
    """Every token of `text` (BOS excluded) with its logprob given the tokens before it and
    the most likely token at its position; the first token has no logprob without BOS.

    One sequence in the scorers' aligned layout, logits at every position: the same
    numbers the fast and naive scorers give a continuation that starts at that token.
    """
    tokens = host.tokenize(text)
    if len(tokens) > host.n_ctx:
        raise UserError(f"The prompt has {len(tokens)} tokens; this context holds {host.n_ctx}.")
    entries = [Entry(token=t, pos=p, seq_ids=(0,)) for p, t in enumerate(tokens)]
    for p in range(len(tokens) - 1):
        entries[p].targets.append((p + 1, tokens[p + 1]))
    tops: dict[int, tuple[int, float]] = {}
    logprob = [0.0] * len(tokens)
    _run_entries(host, host.pack_layout.lay_out([Segment(entries)]), logprob, [True] * len(tokens), tops)
    skip = 1 if host.add_bos and tokens and tokens[0] == host.bos else 0
    piece = host.detokenize_piece
    return [
        TokenLogprob(tokens[p], piece(tokens[p]), logprob[p] if p > 0 else None,
                     piece(tops[p][0]) if p > 0 else b"", tops[p][1] if p > 0 else None)
        for p in range(skip, len(tokens))
    ]
