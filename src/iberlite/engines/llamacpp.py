"""In-process llama.cpp engine (llama-cpp-python's low-level API).

Why the low-level API: the high-level `Llama` class keeps one sequence per context and asks
for logits at every position when scoring. Here a context holds many sequences in one
unified KV cache, so a multiple-choice item evaluates the token prefix its choices share once
and scores each choice's remaining tokens as its own sequence; several items are packed into
one `llama_decode` call, and logits are requested only at the positions that are scored
(on Gemma's 262k vocabulary the output layer dominates otherwise).

This module is the llama.cpp side: loading, the context, tokens, decodes and the KV cache.
What is decoded, and in which order, is decided beside it, through the primitives the engine
offers: engines/llama_score.py (packed loglikelihood, a prompt's per-token logprobs),
engines/kept_prefix.py (scoring after a kept few-shot prefix), engines/llama_generate.py
(greedy generation).
"""

from __future__ import annotations

import ctypes
import time
from collections import Counter
from collections.abc import Sequence
from importlib.metadata import version

import numpy as np

from iberlite.device.fingerprint import usable_cpus
from iberlite.device.native import quiet_llama_cpp
from iberlite.engines import llama_generate, llama_score
from iberlite.engines.base import (
    EngineInfo,
    GenerationRequest,
    GenerationResult,
    LoglikelihoodRequest,
    LoglikelihoodResult,
)
from iberlite.engines.kept_prefix import KeptPrefix
from iberlite.engines.kernels import KernelPlan, detect, plan_kernels
from iberlite.engines.layout import Entry, Layout
from iberlite.engines.llama_lib import log_softmax_at
from iberlite.engines.llama_score import TokenLogprob
from iberlite.errors import UserError
from iberlite.models.gguf_facts import gguf_facts
from iberlite.models.model_file import ModelFile

SCORING_MODES = ("fast", "naive")


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
        self._prefix = KeptPrefix()  # fixed few-shot: its KV sits in the last sequence id
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
        """Empty the KV cache and forget what it held (generation's tokens, a kept prefix)."""
        self._ll.llama_memory_clear(self._mem, True)
        self._cached = []
        self._prefix.forget()

    def cached_positions(self, seq: int = 0) -> int:
        """Highest KV position sequence `seq` holds (-1: none)."""
        return int(self._ll.llama_memory_seq_pos_max(self._mem, seq))

    def drop_from(self, seq: int, pos: int) -> None:
        """Forget sequence `seq`'s KV cells from position `pos` on."""
        self._ll.llama_memory_seq_rm(self._mem, seq, pos, -1)

    def share_cells(self, src: int, dst: int, p0: int, p1: int) -> None:
        """Let sequence `dst` attend `src`'s cells at positions [p0, p1) (the cache is
        unified: the cells are tagged, not copied)."""
        self._ll.llama_memory_seq_cp(self._mem, src, dst, p0, p1)

    @property
    def cached_tokens(self) -> list[int]:
        """The tokens whose KV sequence 0 holds from generation (a prompt may reuse them)."""
        return self._cached

    def keep_cached(self, tokens: list[int]) -> None:
        """Sequence 0 keeps the KV of `tokens`, the first of the tokens it holds; the rest goes."""
        self.drop_from(0, len(tokens))
        self._cached = tokens

    @property
    def holds_kept_prefix(self) -> bool:
        """Whether a fixed few-shot prefix's KV is in the cache (generation clears it first)."""
        return self._prefix.held

    @property
    def prefix_builds(self) -> int:
        """How many kept prefixes were computed (engines/kept_prefix.py)."""
        return self._prefix.builds

    @property
    def prefix_misses(self) -> int:
        """Requests whose tokens parted from the kept prefix's, so scored from their own."""
        return self._prefix.misses

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
            return self._prefix.score(self, requests, prefixes.pop())
        return llama_score.loglikelihood(self, requests)

    def decode_entries(self, layout: Layout, entries: list[Entry], logprob: list[float],
                       greedy: list[bool], tops: dict[int, tuple[int, float]] | None = None) -> dict[int, float]:
        """Decode laid-out entries in `layout`'s aligned chunks on the cache as it is; add each
        target's logprob to `logprob[req]`, clear `greedy[req]` where it is not the argmax;
        return wall ms per group (padding's time shared by the groups it serves)."""
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

    # -- generation -------------------------------------------------------------------------

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Greedy generation, one request at a time (engines/llama_generate.py)."""
        return llama_generate.generate(self, requests)

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

    def last_logits(self) -> np.ndarray:
        """The logits row of the last token `decode` asked logits for (a view, not a copy)."""
        ptr = self._ll.llama_get_logits_ith(self._ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def is_eog(self, token: int) -> bool:
        """Whether `token` ends a generation (EOS, EOT and the like)."""
        return bool(self._ll.llama_vocab_is_eog(self._vocab, token))

    # -- per-token prompt logprobs (the HTTP server's `echo`) ---------------------------------

    def prompt_logprobs(self, text: str) -> list[TokenLogprob]:
        """Every token of `text` with its logprob and the top token there
        (engines/llama_score.py)."""
        return llama_score.prompt_logprobs(self, text)

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
