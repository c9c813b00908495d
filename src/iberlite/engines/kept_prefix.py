"""Loglikelihood after a kept prefix: the fixed few-shot shots' KV, computed once per engine.

Fixed few-shot (`--fewshot-mode fixed`) puts the same shots before every item of a task. The
llama.cpp engine computes their KV once, keeps it in its last sequence id across calls, and
scores each item's own tokens after it, laid out so that every score is bit-identical to the
same full prompt scored from scratch (docs/engine.md, "A kept prefix").

Why a module of its own: this is token bookkeeping (what is kept, which cells a group may
reuse, where its tokens start), not llama.cpp plumbing. It reaches the model only through the
primitives `PrefixHost` names, which the engine offers, so it never imports the engine; its
results are built as engines/llama_score.py builds those of a plain call.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

from iberlite.engines.base import LoglikelihoodRequest, LoglikelihoodResult
from iberlite.engines.layout import Entry, Layout, Segment, Seq, shared_len
from iberlite.engines.llama_score import ScoringHost, ordered_results


class PrefixHost(ScoringHost, Protocol):
    """What scoring after a kept prefix needs of an engine beyond plain scoring: cells that
    outlive a call (`LlamaCppEngine` is one)."""

    n_batch: int

    def drop_from(self, seq: int, pos: int) -> None: ...

    def share_cells(self, src: int, dst: int, p0: int, p1: int) -> None: ...


def common_len(tokens: list[int], kept: list[int], limit: int) -> int:
    """How many leading tokens `tokens` shares with `kept`, at most `limit`."""
    n = 0
    limit = min(limit, len(kept), len(tokens))
    while n < limit and tokens[n] == kept[n]:
        n += 1
    return n


def reused_len(group: list[Seq], kept: list[int], align: int) -> int:
    """How many of the kept prefix's tokens a group reuses. All of them when every sequence
    continues the whole prefix and, with several sequences, they still agree up to the block
    boundary after it: the group then fills the prefix's last block itself. Otherwise the whole
    blocks they share with it, and the rest is computed again."""
    reuse = min(common_len(s.tokens, kept, s.start - 1) for s in group)
    if reuse == len(kept) and (len(group) == 1 or shared_len(group) >= reuse + (-reuse) % align):
        return reuse
    return reuse - reuse % align


class KeptPrefix:
    """The prefix whose KV sits in the engine's last sequence id, and how it was used.

    The engine holds one and calls `forget` whenever its cache is emptied (another scoring
    pass, generation, `clear_cache`), so `held` never claims cells that are gone. `builds`
    counts the prefixes computed, `misses` the requests that could not reuse one (tests and
    benchmarks read both).
    """

    def __init__(self) -> None:
        self.text: str | None = None
        self.tokens: list[int] = []
        self.builds = 0
        self.misses = 0

    @property
    def held(self) -> bool:
        """Whether a prefix's KV is in the cache now."""
        return self.text is not None

    def forget(self) -> None:
        """The cache was emptied: nothing is kept any more."""
        self.text, self.tokens = None, []

    def _keep(self, host: PrefixHost, text: str) -> tuple[list[int], int, float]:
        """The prefix's tokens with their KV in the last sequence id: (tokens, tokens
        computed now, ms). Its trailing whitespace is left out, since a context's trailing
        whitespace is scored with the continuation (`encode_pair`), and so is its last token:
        an item whose question is empty (XNLI's) scores its first answer token from that
        token's logits, so it computes that token itself. Token p sits in cell p; an item
        that continues the kept tokens takes the cells right after them, so its tokens and
        the blocks they attend are laid out as they would be alone and the scores are the
        from-scratch scores (engines/layout.py)."""
        if self.text == text:
            return self.tokens, 0, 0.0
        tokens = host.tokenize(text.rstrip())[: host.n_ctx // 2][:-1]
        pid = host.n_seq_max - 1
        layout = Layout(host.pack_layout.align, host.n_batch, host.n_seq_max - 1, host.bos)
        host.clear_cache()
        entries = [Entry(token=t, pos=p, seq_ids=(pid,), group=0) for p, t in enumerate(tokens)]
        t0 = time.perf_counter()
        host.decode_entries(layout, layout.lay_out([Segment(entries)]), [], [])
        ms = (time.perf_counter() - t0) * 1000
        host.drop_from(layout.n_seq_max - 1, -1)  # the padding
        self.text, self.tokens = text, tokens
        self.builds += 1
        return tokens, len(tokens), ms

    def score(self, host: PrefixHost, requests: Sequence[LoglikelihoodRequest],
              prefix: str) -> list[LoglikelihoodResult]:
        """Score `requests`, which all name `prefix`, after its kept KV (computed first
        unless it is the one kept). Its one-off cost is charged to the first group, so
        per-item costs sum to the truth."""
        kept, built_tokens, built_ms = self._keep(host, prefix)
        pid = host.n_seq_max - 1
        layout = Layout(host.pack_layout.align, host.n_batch, host.n_seq_max - 1, host.bos)
        groups: list[list[Seq]] = []
        last_group: str | None = None
        for i, req in enumerate(requests):
            tokens, start = host.encode_pair(req.context, req.continuation)
            if common_len(tokens, kept, start - 1) < min(len(kept), start - 1) - layout.align:
                self.misses += 1  # its tokens part from the prefix's: computed anew
            seq = Seq(req=i, tokens=tokens, start=start)
            same = host.scoring == "fast" and req.group and req.group == last_group
            if same and len(groups[-1]) < layout.n_seq_max - 1:
                groups[-1].append(seq)
            else:
                groups.append([seq])
            last_group = req.group
        for g in groups:
            reuse = reused_len(g, kept, layout.align)
            for s in g:
                s.tokens, s.start, s.offset = s.tokens[reuse:], s.start - reuse, reuse
        n = len(requests)
        logprob, greedy = [0.0] * n, [True] * n
        cost_tokens, cost_ms = [0.0] * n, [0.0] * n
        base = len(kept)  # the first free cell: items are laid out from there
        for pack, segments in layout.packs(groups, base):
            for sid in range(pid):  # every sequence but the prefix's
                host.drop_from(sid, -1)
            first = 0
            for _, g in pack:
                for j, s in enumerate(g):
                    if s.offset:
                        host.share_cells(pid, first + j, 0, s.offset)
                first += len(g)
            entries = layout.lay_out(segments, base)
            group_ms = host.decode_entries(layout, entries, logprob, greedy)
            n_unique = Counter(e.group for e in entries)
            for gi, g in pack:
                for s in g:
                    cost_tokens[s.req] = n_unique[gi] / len(g)
                    cost_ms[s.req] = group_ms.get(gi, 0.0) / len(g)
        for sid in range(pid):
            host.drop_from(sid, -1)
        if built_tokens and groups:  # the prefix's one computation, charged once
            for s in groups[0]:
                cost_tokens[s.req] += built_tokens / len(groups[0])
                cost_ms[s.req] += built_ms / len(groups[0])
        return ordered_results(groups, logprob, greedy, cost_tokens, cost_ms)
