"""In-process llama.cpp engine (llama-cpp-python's low-level API).

Why the low-level API: the high-level `Llama` class keeps one sequence per context and asks
for logits at every position when scoring. Here a context holds many sequences in one
unified KV cache, so a multiple-choice item evaluates the token prefix its choices share once
and scores each choice's remaining tokens as its own sequence; several items are packed into
one `llama_decode` call, and logits are requested only at the positions that are scored
(on Gemma's 262k vocabulary the output layer dominates otherwise).
"""

from __future__ import annotations

import ctypes
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version

import numpy as np

from iberlite.device.fingerprint import usable_cpus
from iberlite.engines.base import (
    EngineInfo,
    GenerationRequest,
    GenerationResult,
    LoglikelihoodRequest,
    LoglikelihoodResult,
)
from iberlite.engines.kernels import KernelPlan, detect, plan_kernels
from iberlite.engines.layout import Entry, Layout, Segment, Seq, shared_len
from iberlite.engines.llama_lib import log_softmax_at, quiet_llama_cpp
from iberlite.errors import UserError
from iberlite.models.gguf_facts import gguf_facts
from iberlite.models.model_file import ModelFile

SCORING_MODES = ("fast", "naive")


@dataclass(frozen=True)
class TokenLogprob:
    """One prompt token: id, bytes, logprob given what precedes it, and the top token there."""

    token: int
    piece: bytes
    logprob: float | None
    top_piece: bytes
    top_logprob: float | None


def _common(tokens: list[int], kept: list[int], limit: int) -> int:
    """How many leading tokens `tokens` shares with `kept`, at most `limit`."""
    n = 0
    limit = min(limit, len(kept), len(tokens))
    while n < limit and tokens[n] == kept[n]:
        n += 1
    return n


class LlamaCppEngine:
    """llama.cpp in-process: loglikelihood with shared-prefix packing, greedy generation."""

    def __init__(
        self,
        model: ModelFile,
        *,
        n_ctx: int = 4096,
        n_batch: int = 512,
        n_threads: int | None = None,
        n_seq_max: int = 64,
        seed: int = 1234,
        scoring: str = "fast",
        prefix_cache: bool = False,
        context_overrides: dict[str, object] | None = None,
        kernels: KernelPlan | None = None,
        item_timeout_s: float | None = None,
    ) -> None:
        kernels = kernels or plan_kernels(detect())
        if n_batch % kernels.align:
            raise UserError(f"n_batch must be a multiple of {kernels.align}; got {n_batch}.", 2)
        if scoring not in SCORING_MODES:
            raise UserError(f"Unknown scoring {scoring!r}; valid: {', '.join(SCORING_MODES)}.", 2)
        ll = quiet_llama_cpp()
        self._ll = ll
        self.model_file = model
        self.facts = gguf_facts(model.file)  # also rejects a corrupt file before llama.cpp sees it
        self.n_threads = n_threads or usable_cpus()
        self.n_ctx, self.n_batch, self.n_seq_max = n_ctx, n_batch, n_seq_max
        self.seed, self.scoring = seed, scoring
        self.prefix_cache = prefix_cache
        self.item_timeout_s = item_timeout_s
        self._cached: list[int] = []  # tokens whose KV sits in sequence 0 (generation only)
        self.decoded_rows = 0  # rows the scorers decoded, padding included (benchmarks read it)
        # scoring with a shared prefix (fixed few-shot): its text and tokens, whose KV sits in
        # the last sequence id; how often it was computed; requests that could not use it
        self._kept: tuple[str, list[int]] | None = None
        self.prefix_builds = 0
        self.prefix_misses = 0
        t0 = time.perf_counter()
        ll.llama_backend_init()
        self.kernels = kernels
        self.exact: bool | None = None  # set by the doctor's probe: fast == naive here?
        mparams = ll.llama_model_default_params()
        mparams.use_extra_bufts = kernels.use_extra_bufts  # AMX buffers crash (engines/kernels.py)
        self._model = ll.llama_model_load_from_file(str(model.path).encode(), mparams)
        if not self._model:
            raise UserError(f"llama.cpp could not load {model.path}; is it a complete GGUF file?")
        self._vocab = ll.llama_model_get_vocab(self._model)
        self.n_vocab = ll.llama_vocab_n_tokens(self._vocab)
        cparams = ll.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = n_batch
        cparams.n_ubatch = n_batch
        cparams.n_seq_max = n_seq_max
        cparams.n_threads = self.n_threads
        cparams.n_threads_batch = self.n_threads
        cparams.kv_unified = True  # sequences share one cache, so a shared prefix is stored once
        cparams.swa_full = True  # sliding-window models (Gemma 3) keep every position for all seqs
        # Flash attention groups queries by decode, so a token's logprob would depend on what
        # else its decode holds; without it the aligned layout makes scores batch-invariant.
        cparams.flash_attn_type = ll.LLAMA_FLASH_ATTN_TYPE_DISABLED
        cparams.no_perf = False
        for key, value in (context_overrides or {}).items():  # experiments and benchmarks
            setattr(cparams, key, value)
        self._flash_attn = int(cparams.flash_attn_type)
        self._ctx = ll.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            ll.llama_model_free(self._model)
            raise UserError(f"llama.cpp could not create a context for {model.path} (n_ctx={n_ctx}).")
        self._mem = ll.llama_get_memory(self._ctx)
        self._batch = ll.llama_batch_init(n_batch, 0, n_seq_max)
        if model.adapter is not None:
            self._apply_adapter(model)
        self.load_ms = (time.perf_counter() - t0) * 1000
        bos = ll.llama_vocab_bos(self._vocab)
        self.bos = bos if bos >= 0 else ll.llama_vocab_eos(self._vocab)
        self.add_bos = bool(ll.llama_vocab_get_add_bos(self._vocab))
        self.pack_layout = Layout(kernels.align, n_batch, n_seq_max, self.bos)

    def _apply_adapter(self, model: ModelFile) -> None:
        """Load the model's LoRA adapter and set it on the context (llama.cpp scales it by
        alpha / rank times `adapter_scale`); the model frees it with itself."""
        ll = self._ll
        adapter = ll.llama_adapter_lora_init(self._model, str(model.adapter).encode())
        if not adapter:
            self.close()
            raise UserError(f"llama.cpp could not load the adapter {model.adapter} on {model.path}; "
                            "was it made for this model?")
        adapters = (ll.llama_adapter_lora_p_ctypes * 1)(adapter)
        scales = (ctypes.c_float * 1)(model.adapter_scale)
        if ll.llama_set_adapters_lora(self._ctx, adapters, 1, scales) != 0:
            self.close()
            raise UserError(f"llama.cpp could not apply the adapter {model.adapter}.")

    def _adapter_facts(self) -> dict[str, str]:
        """The adapter's identity for the evaluation key (empty without one, so keys of plain
        models do not change)."""
        m = self.model_file
        if m.adapter is None:
            return {}
        return {"adapter_sha256": str(m.adapter_sha256), "adapter_scale": str(m.adapter_scale),
                "adapter_task": str(m.adapter_task)}

    @property
    def vocab(self):
        """llama.cpp's vocabulary handle (for tools that pick tokens, like the bench)."""
        return self._vocab

    @property
    def layout(self) -> str:
        """The scoring layout's label, part of every eval key: results laid out differently
        are never merged. `approx` marks a layout the probe found not exact on this CPU."""
        label = f"align{self.pack_layout.align},flash_attn={self._flash_attn}"
        if not self.kernels.use_extra_bufts:
            label += ",extra_bufts=off"
        return label + (",approx" if self.exact is False else "")

    def set_align(self, align: int) -> None:
        """Lay scoring out in blocks of `align` (the doctor picks the one exact here)."""
        if self.n_batch % align:
            raise UserError(f"n_batch ({self.n_batch}) must be a multiple of align ({align}).", 2)
        self.pack_layout = Layout(align, self.n_batch, self.n_seq_max, self.bos)

    # -- cache and raw decode (what `iberlite bench` times) ----------------------------------

    def clear_cache(self) -> None:
        """Empty the KV cache and forget the generation prefix it held."""
        self._ll.llama_memory_clear(self._mem, True)
        self._cached = []
        self._kept = None

    def cached_positions(self, seq: int = 0) -> int:
        """Highest KV position sequence `seq` holds (-1: none)."""
        return int(self._ll.llama_memory_seq_pos_max(self._mem, seq))

    def drop_from(self, seq: int, pos: int) -> None:
        """Forget sequence `seq`'s KV cells from position `pos` on."""
        self._ll.llama_memory_seq_rm(self._mem, seq, pos, -1)

    def decode_rows(self, rows: Sequence[tuple[int, int, int]], logits: Sequence[bool]) -> list[np.ndarray | None]:
        """Decode (token, position, sequence id) rows in one `llama_decode`, outside any
        layout (numerics probes use it); a copy of the logits of every row flagged in `logits`."""
        b = self._batch
        for i, (tok, pos, seq) in enumerate(rows):
            b.token[i], b.pos[i], b.n_seq_id[i] = tok, pos, 1
            b.seq_id[i][0] = seq
            b.logits[i] = bool(logits[i])
        b.n_tokens = len(rows)
        if self._ll.llama_decode(self._ctx, b) != 0:
            raise RuntimeError("llama_decode failed")
        return [np.ctypeslib.as_array(self._ll.llama_get_logits_ith(self._ctx, i), shape=(self.n_vocab,)).copy()
                if logits[i] else None for i in range(len(rows))]

    def synchronize(self) -> None:
        """Wait for llama.cpp's queued work, so a timer stops when the work is done."""
        self._ll.llama_synchronize(self._ctx)

    def perf_ms(self) -> tuple[float, float]:
        """llama.cpp's own (prompt eval ms, eval ms) since the last `perf_reset`."""
        d = self._ll.llama_perf_context(self._ctx)
        return float(d.t_p_eval_ms), float(d.t_eval_ms)

    def perf_reset(self) -> None:
        """Reset llama.cpp's own timers."""
        self._ll.llama_perf_context_reset(self._ctx)

    # -- tokens -----------------------------------------------------------------------------

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        """llama.cpp's own tokenization (special-token text is not parsed as control tokens)."""
        raw = text.encode("utf-8")
        cap = len(raw) + 8
        buf = (self._ll.llama_token * cap)()
        n = self._ll.llama_tokenize(self._vocab, raw, len(raw), buf, cap, add_special, False)
        if n < 0:
            cap = -n
            buf = (self._ll.llama_token * cap)()
            n = self._ll.llama_tokenize(self._vocab, raw, len(raw), buf, cap, add_special, False)
        return list(buf[:n])

    def _piece(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = self._ll.llama_token_to_piece(self._vocab, token, buf, 64, 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self._ll.llama_token_to_piece(self._vocab, token, buf, -n, 0, False)
        return buf.raw[:n]

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], int]:
        """Token sequence for (context, continuation) and the index of the first scored token.

        As lm-evaluation-harness does: trailing whitespace of the context moves to the
        continuation, boundaries come from tokenizing context and context+continuation, and
        an empty context is scored right after BOS.
        """
        n_space = len(context) - len(context.rstrip())
        if n_space:
            continuation = context[-n_space:] + continuation
            context = context[:-n_space]
        if not context:
            tokens = [self.bos] + self.tokenize(continuation, add_special=False)
            return tokens, 1
        whole = self.tokenize(context + continuation)
        ctx_len = len(self.tokenize(context))
        if ctx_len >= len(whole):
            raise UserError(f"The continuation {continuation!r} tokenizes to nothing after its context.")
        if len(whole) > self.n_ctx:  # keep the continuation, drop the oldest context tokens
            cut = len(whole) - self.n_ctx
            whole, ctx_len = whole[cut:], max(1, ctx_len - cut)
        return whole, ctx_len

    # -- loglikelihood ----------------------------------------------------------------------

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        """Score every request; requests of one group share their common token prefix.

        Requests that name a `shared_prefix` (fixed few-shot) score after that prefix's KV,
        computed once and kept in the last sequence id across calls; its one-off cost is
        charged to the first group of the call that computed it.
        """
        prefixes = {r.shared_prefix for r in requests}
        if len(prefixes) == 1 and "" not in prefixes:
            return self._loglikelihood_after_prefix(requests, prefixes.pop())
        groups: list[list[Seq]] = []
        last_group: str | None = None
        for i, req in enumerate(requests):
            tokens, start = self.encode_pair(req.context, req.continuation)
            seq = Seq(req=i, tokens=tokens, start=start)
            same = self.scoring == "fast" and req.group and req.group == last_group
            if same and len(groups[-1]) < self.n_seq_max - 1:  # the last id pads
                groups[-1].append(seq)
            else:
                groups.append([seq])
            last_group = req.group
        logprob = [0.0] * len(requests)
        greedy = [True] * len(requests)
        cost_tokens = [0.0] * len(requests)
        cost_ms = [0.0] * len(requests)
        for pack, segments in self.pack_layout.packs(groups):
            entries = self.pack_layout.lay_out(segments)
            group_ms = self._run_entries(entries, logprob, greedy)
            n_unique = Counter(e.group for e in entries)  # padding (group -1) is not counted
            for gi, g in pack:
                for s in g:
                    cost_tokens[s.req] = n_unique[gi] / len(g)
                    cost_ms[s.req] = group_ms.get(gi, 0.0) / len(g)
        return self._ordered(groups, logprob, greedy, cost_tokens, cost_ms)

    @staticmethod
    def _ordered(groups, logprob, greedy, cost_tokens, cost_ms) -> list[LoglikelihoodResult]:
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

    def _run_entries(self, entries: list[Entry], logprob: list[float], greedy: list[bool],
                     tops: dict[int, tuple[int, float]] | None = None) -> dict[int, float]:
        """Decode a laid-out pack in aligned chunks (engines/layout.py); accumulate scores;
        return wall ms per group. With `tops`, also note each target's most likely token and
        its logprob there."""
        ll = self._ll
        ll.llama_memory_clear(self._mem, True)  # generation may have left a prefix behind
        self._kept = None
        group_ms = self._decode_entries(self.pack_layout, entries, logprob, greedy, tops)
        ll.llama_memory_clear(self._mem, True)
        self._cached = []
        return group_ms

    def _decode_entries(self, layout: Layout, entries: list[Entry], logprob: list[float],
                        greedy: list[bool], tops: dict[int, tuple[int, float]] | None = None) -> dict[int, float]:
        """Decode laid-out entries in `layout`'s aligned chunks on the cache as it is."""
        ll = self._ll
        group_ms: dict[int, float] = {}
        b = self._batch
        for chunk in layout.chunks(entries):
            rows = chunk.entries
            for i, e in enumerate(rows):
                b.token[i] = e.token
                b.pos[i] = e.pos
                b.n_seq_id[i] = len(e.seq_ids)
                for k, sid in enumerate(e.seq_ids):
                    b.seq_id[i][k] = sid
                b.logits[i] = chunk.logits[i]
            b.n_tokens = len(rows)
            self.decoded_rows += len(rows)
            t0 = time.perf_counter()
            rc = ll.llama_decode(self._ctx, b)
            if rc != 0:
                raise RuntimeError(f"llama_decode failed with code {rc}")
            for i, e in enumerate(rows):
                if not e.targets:
                    continue
                ptr = ll.llama_get_logits_ith(self._ctx, i)
                row = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))
                lps, top = log_softmax_at(row, [t for _, t in e.targets])
                for (req, tok), lp in zip(e.targets, lps):
                    logprob[req] += lp
                    if top != tok:
                        greedy[req] = False
                if tops is not None:
                    top_lp = log_softmax_at(row, [top])[0][0]
                    tops.update((req, (top, top_lp)) for req, _ in e.targets)
            elapsed = (time.perf_counter() - t0) * 1000
            counts = Counter(e.group for e in rows if e.group >= 0)
            real = sum(counts.values())  # padding's time is shared by the groups it serves
            for g, c in counts.items():
                group_ms[g] = group_ms.get(g, 0.0) + elapsed * c / real
        return group_ms

    # -- loglikelihood after a kept prefix (fixed few-shot) ---------------------------------

    def _keep_prefix(self, text: str) -> tuple[list[int], int, float]:
        """The prefix's tokens with their KV in the last sequence id: (tokens, tokens
        computed now, ms). Its trailing whitespace is left out, since a context's trailing
        whitespace is scored with the continuation (`encode_pair`), and so is its last token:
        an item whose question is empty (XNLI's) scores its first answer token from that
        token's logits, so it computes that token itself. Token p sits in cell p; an item
        that continues the kept tokens takes the cells right after them, so its tokens and
        the blocks they attend are laid out as they would be alone and the scores are the
        from-scratch scores (engines/layout.py)."""
        if self._kept is not None and self._kept[0] == text:
            return self._kept[1], 0, 0.0
        ll = self._ll
        tokens = self.tokenize(text.rstrip())[: self.n_ctx // 2][:-1]
        pid = self.n_seq_max - 1
        layout = Layout(self.pack_layout.align, self.n_batch, self.n_seq_max - 1, self.bos)
        ll.llama_memory_clear(self._mem, True)
        self._cached = []
        entries = [Entry(token=t, pos=p, seq_ids=(pid,), group=0) for p, t in enumerate(tokens)]
        t0 = time.perf_counter()
        self._decode_entries(layout, layout.lay_out([Segment(entries)]), [], [])
        ms = (time.perf_counter() - t0) * 1000
        ll.llama_memory_seq_rm(self._mem, layout.n_seq_max - 1, -1, -1)  # the padding
        self._kept = (text, tokens)
        self.prefix_builds += 1
        return tokens, len(tokens), ms

    def _loglikelihood_after_prefix(self, requests: Sequence[LoglikelihoodRequest],
                                    prefix: str) -> list[LoglikelihoodResult]:
        ll = self._ll
        kept, built_tokens, built_ms = self._keep_prefix(prefix)
        pid = self.n_seq_max - 1
        layout = Layout(self.pack_layout.align, self.n_batch, self.n_seq_max - 1, self.bos)
        groups: list[list[Seq]] = []
        last_group: str | None = None
        for i, req in enumerate(requests):
            tokens, start = self.encode_pair(req.context, req.continuation)
            if _common(tokens, kept, start - 1) < min(len(kept), start - 1) - layout.align:
                self.prefix_misses += 1  # its tokens part from the prefix's: computed anew
            seq = Seq(req=i, tokens=tokens, start=start)
            same = self.scoring == "fast" and req.group and req.group == last_group
            if same and len(groups[-1]) < layout.n_seq_max - 1:
                groups[-1].append(seq)
            else:
                groups.append([seq])
            last_group = req.group
        for g in groups:
            reuse = self._reuse(g, kept, layout.align)
            for s in g:
                s.tokens, s.start, s.offset = s.tokens[reuse:], s.start - reuse, reuse
        n = len(requests)
        logprob, greedy = [0.0] * n, [True] * n
        cost_tokens, cost_ms = [0.0] * n, [0.0] * n
        base = len(kept)  # the first free cell: items are laid out from there
        for pack, segments in layout.packs(groups, base):
            for sid in range(pid):  # every sequence but the prefix's
                ll.llama_memory_seq_rm(self._mem, sid, -1, -1)
            first = 0
            for _, g in pack:
                for j, s in enumerate(g):
                    if s.offset:
                        ll.llama_memory_seq_cp(self._mem, pid, first + j, 0, s.offset)
                first += len(g)
            entries = layout.lay_out(segments, base)
            group_ms = self._decode_entries(layout, entries, logprob, greedy)
            n_unique = Counter(e.group for e in entries)
            for gi, g in pack:
                for s in g:
                    cost_tokens[s.req] = n_unique[gi] / len(g)
                    cost_ms[s.req] = group_ms.get(gi, 0.0) / len(g)
        for sid in range(pid):
            ll.llama_memory_seq_rm(self._mem, sid, -1, -1)
        if built_tokens and groups:  # the prefix's one computation, charged once
            for s in groups[0]:
                cost_tokens[s.req] += built_tokens / len(groups[0])
                cost_ms[s.req] += built_ms / len(groups[0])
        return self._ordered(groups, logprob, greedy, cost_tokens, cost_ms)

    @staticmethod
    def _reuse(group: list[Seq], kept: list[int], align: int) -> int:
        """How many of the kept prefix's tokens a group reuses. All of them when every
        sequence continues the whole prefix and, with several sequences, they still agree up
        to the block boundary after it: the group then fills the prefix's last block itself.
        Otherwise the whole blocks they share with it, and the rest is computed again."""
        reuse = min(_common(s.tokens, kept, s.start - 1) for s in group)
        if reuse == len(kept) and (len(group) == 1 or shared_len(group) >= reuse + (-reuse) % align):
            return reuse
        return reuse - reuse % align

    # -- generation -------------------------------------------------------------------------

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Greedy generation, one request at a time.

        Each prompt is prefilled from a cleared cache unless `prefix_cache` is on; then the
        tokens it shares with what the cache already holds are reused (not recomputed), and
        `reused_tokens` says how many, so a reused prefix is never timed as a fresh prefill.
        Off by default: llama.cpp's CPU kernels round differently when a prefix is computed
        in another batch, so reuse can change a generation by a token (docs/engine.md).
        Stops at `max_tokens` (`length`) or past `item_timeout_s` of wall time (`timeout`).
        """
        return [self._generate_one(r) for r in requests]

    def _reuse_prefix(self, prompt: list[int]) -> int:
        """Keep the cached tokens the prompt starts with; drop the rest; return how many."""
        keep = 0
        if self.prefix_cache:
            limit = min(len(self._cached), len(prompt) - 1)  # at least one token to decode
            while keep < limit and self._cached[keep] == prompt[keep]:
                keep += 1
        if self._kept is not None:  # a scoring prefix holds cells: start from an empty cache
            self._ll.llama_memory_clear(self._mem, True)
            self._cached, self._kept = [], None
        if keep == 0:
            self._ll.llama_memory_clear(self._mem, True)
        else:
            self._ll.llama_memory_seq_rm(self._mem, 0, keep, -1)
        self._cached = prompt[:keep]
        return keep

    def decode(self, tokens: list[int], start_pos: int) -> None:
        """Decode tokens for sequence 0 in n_batch chunks, logits only for the last one."""
        b = self._batch
        for s in range(0, len(tokens), self.n_batch):
            chunk = tokens[s:s + self.n_batch]
            for i, t in enumerate(chunk):
                b.token[i] = t
                b.pos[i] = start_pos + s + i
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = 0
                b.logits[i] = 0
            b.logits[len(chunk) - 1] = 1 if s + len(chunk) == len(tokens) else 0
            b.n_tokens = len(chunk)
            rc = self._ll.llama_decode(self._ctx, b)
            if rc != 0:
                raise RuntimeError(f"llama_decode failed with code {rc}")
            self._cached.extend(chunk)

    def _last_row(self) -> np.ndarray:
        ptr = self._ll.llama_get_logits_ith(self._ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def _generate_one(self, req: GenerationRequest) -> GenerationResult:
        ll = self._ll
        prompt = self.tokenize(req.prompt)
        budget = max(1, min(req.max_tokens, self.n_ctx - 1))
        if len(prompt) + budget > self.n_ctx:
            prompt = prompt[len(prompt) + budget - self.n_ctx:]
        t0 = time.perf_counter()
        deadline = t0 + self.item_timeout_s if self.item_timeout_s else None
        reused = self._reuse_prefix(prompt)
        self.decode(prompt[reused:], reused)
        t_prefill = time.perf_counter()
        out: list[int] = []
        text = b""
        lp_sum = 0.0
        stop_reason = "length"
        ttft = None
        cut_text: str | None = None
        while len(out) < budget:
            row = self._last_row()
            tok = int(row.argmax())
            lp_sum += log_softmax_at(row, [tok])[0][0]
            if ttft is None:
                ttft = (time.perf_counter() - t0) * 1000
            if ll.llama_vocab_is_eog(self._vocab, tok):
                stop_reason = "eos"
                break
            out.append(tok)
            text += self._piece(tok)
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
            self.decode([tok], len(prompt) + len(out) - 1)
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

    # -- per-token prompt logprobs (the HTTP server's `echo`) ---------------------------------

    def prompt_logprobs(self, text: str) -> list[TokenLogprob]:
        """Every token of `text` (BOS excluded) with its logprob given the tokens before it and
        the most likely token at its position; the first token has no logprob without BOS.

        One sequence in the scorers' aligned layout, logits at every position: the same
        numbers the fast and naive scorers give a continuation that starts at that token.
        """
        tokens = self.tokenize(text)
        if len(tokens) > self.n_ctx:
            raise UserError(f"The prompt has {len(tokens)} tokens; this context holds {self.n_ctx}.")
        entries = [Entry(token=t, pos=p, seq_ids=(0,)) for p, t in enumerate(tokens)]
        for p in range(len(tokens) - 1):
            entries[p].targets.append((p + 1, tokens[p + 1]))
        tops: dict[int, tuple[int, float]] = {}
        logprob = [0.0] * len(tokens)
        self._run_entries(self.pack_layout.lay_out([Segment(entries)]), logprob, [True] * len(tokens), tops)
        skip = 1 if self.add_bos and tokens and tokens[0] == self.bos else 0
        return [
            TokenLogprob(tokens[p], self._piece(tokens[p]), logprob[p] if p > 0 else None,
                         self._piece(tops[p][0]) if p > 0 else b"", tops[p][1] if p > 0 else None)
            for p in range(skip, len(tokens))
        ]

    def detokenize_piece(self, token: int) -> bytes:
        """The bytes one token stands for."""
        return self._piece(token)

    # -- facts ------------------------------------------------------------------------------

    def info(self) -> EngineInfo:
        """Model and engine facts for the signature."""
        f = self.facts
        return EngineInfo(
            engine="llama.cpp",
            engine_version=f"llama-cpp-python {version('llama-cpp-python')}",
            model_name=self.model_file.name,
            model_path=str(self.model_file.path),
            model_sha256=f.sha256,
            architecture=f.architecture,
            file_type=f.file_type,
            tensor_types=f.tensor_types_label,
            n_params=f.n_params,
            size_bytes=f.size_bytes,
            n_threads=self.n_threads,
            n_ctx=self.n_ctx,
            n_batch=self.n_batch,
            scoring=self.scoring,
            seed=self.seed,
            load_ms=self.load_ms,
            extra={"add_bos": str(self.add_bos), "prefix_cache": str(self.prefix_cache),
                   "layout": self.layout, "buffers": self.kernels.buffers,
                   "simd": self.kernels.simd,
                   # a variant's lineage (only variants carry it, so older keys stay valid)
                   **({"quantized_from": self.model_file.quantized_from}
                      if self.model_file.quantized_from else {}),
                   **({"item_timeout_s": str(self.item_timeout_s)} if self.item_timeout_s else {}),
                   # a Hub or Ollama file's origin (repo, file, commit / name, digest, template)
                   **self.model_file.origin,
                   **self._adapter_facts()},
            bits_per_weight=f.bits_per_weight,
        )

    def close(self) -> None:
        """Free the batch, context and model (idempotent)."""
        ll = self._ll
        if getattr(self, "_ctx", None):
            ll.llama_batch_free(self._batch)
            ll.llama_free(self._ctx)
            ll.llama_model_free(self._model)
            self._ctx = None

    def __enter__(self) -> "LlamaCppEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
