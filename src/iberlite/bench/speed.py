"""Raw engine throughput, llama-bench style: prefill (ppN) and decode (tgN) tokens per second.

This is the ceiling every evaluation is compared against: the same llama.cpp context the
evaluations use, with no task, prompt or scoring work around it.

* ``pp``: from a cleared KV cache, decode ``pp`` tokens in one batch (chunks of the engine's
  ``n_batch``), logits for the last token only. tokens/s = pp / time.
* ``tg``: from a cleared KV cache, decode one token (not timed), then ``tg`` single-token
  decodes, logits for each, feeding predetermined tokens back (as llama-bench does: no
  sampling, so no sampler cost is counted). tokens/s = tg / time.

Tokens are a seeded draw of *normal* vocabulary tokens (no control, byte or unused tokens),
the same for every repetition and for both measurement paths. Warm-up runs are not counted;
every repetition starts from a cleared KV cache. Time is wall clock (``perf_counter``) around
the decode calls and a ``llama_synchronize``. Two cross-checks are read over the same decodes:
llama.cpp's own perf counters (``llama_tokens_per_s_median``: equal to the wall-clock figure
when the Python around the decodes costs nothing) and process CPU time
(``cpu_tokens_per_s_median``: less sensitive to other processes taking the cores).

:func:`direct_reference` measures the same thing through llama-cpp-python's high-level
``Llama.eval`` — an independent path that validates the engine's numbers;
:func:`bench_compare` runs both on one model with their repetitions interleaved, so load from
other processes hits both alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from iberlite.device.fingerprint import DeviceFingerprint, fingerprint
from iberlite.errors import UserError
from iberlite.models.gguf_facts import gguf_facts
from iberlite.store import BenchRecord, Store

if TYPE_CHECKING:  # pragma: no cover
    from iberlite.engines.llamacpp import LlamaCppEngine

__all__ = [
    "BenchResult",
    "bench_engine",
    "direct_reference",
    "bench_compare",
    "bench_tokens",
]

TOKEN_SEED = 1234


@dataclass(frozen=True)
class BenchResult:
    """One test (``pp512`` or ``tg128``) on one model: tokens/s over ``reps`` repetitions.

    ``tokens_per_s_std`` is the sample standard deviation (0 for one repetition);
    ``samples`` are the per-repetition tokens/s in run order (wall clock). Two cross-checks
    over the same repetitions, not stored in the database: ``llama_tokens_per_s_median``
    from llama.cpp's own timer (equal to the wall-clock figure when the Python around the
    decodes costs nothing), and ``cpu_tokens_per_s_median``, tokens per second of process
    CPU time over all threads (less sensitive than wall clock to other processes taking the
    cores; with one thread it is the compute cost itself).
    """

    model: str
    model_sha256: str
    file_type: str
    test: str
    n_tokens: int
    reps: int
    tokens_per_s_median: float
    tokens_per_s_min: float
    tokens_per_s_max: float
    tokens_per_s_std: float
    n_threads: int
    samples: tuple[float, ...]
    llama_tokens_per_s_median: float | None = None
    cpu_tokens_per_s_median: float | None = None

    def record(self, device: dict[str, Any]) -> BenchRecord:
        """The row `Store.add_benches` stores for this result on `device` (a fingerprint dict);
        the two cross-checks are printed, not stored."""
        return BenchRecord(
            model=self.model, test=self.test, median=self.tokens_per_s_median, min=self.tokens_per_s_min,
            max=self.tokens_per_s_max, model_sha256=self.model_sha256, file_type=self.file_type,
            n_tokens=self.n_tokens, reps=self.reps, std=self.tokens_per_s_std, n_threads=self.n_threads,
            device=device, samples=self.samples,
        )


# -- tokens ----------------------------------------------------------------------------------


def bench_tokens(vocab, n_vocab: int, n: int, seed: int = TOKEN_SEED) -> list[int]:
    """``n`` deterministic token ids in [0, n_vocab) whose vocabulary attribute is NORMAL."""
    import llama_cpp as ll

    rng = np.random.default_rng(seed)
    out: list[int] = []
    while len(out) < n:
        for t in rng.integers(0, n_vocab, size=max(64, 2 * (n - len(out)))):
            t = int(t)
            if ll.llama_vocab_get_attr(vocab, t) & ll.LLAMA_TOKEN_ATTR_NORMAL:
                out.append(t)
                if len(out) == n:
                    break
    return out


# -- one measurement path ----------------------------------------------------------------------


class _Path:
    """What a measurement needs from a context: clear it, decode tokens, read its timers."""

    name: str
    ctx: Any  # llama_context pointer

    def clear(self) -> None:
        raise NotImplementedError

    def decode(self, tokens: list[int], pos: int) -> None:
        """Decode tokens for sequence 0 at positions pos.., logits for the last one."""
        raise NotImplementedError

    def sync(self) -> None:
        import llama_cpp as ll

        ll.llama_synchronize(self.ctx)

    def perf_reset(self) -> None:
        import llama_cpp as ll

        ll.llama_perf_context_reset(self.ctx)

    def perf_ms(self) -> tuple[float, float]:
        """llama.cpp's (prompt eval ms, eval ms) since the last reset."""
        import llama_cpp as ll

        d = ll.llama_perf_context(self.ctx)
        return float(d.t_p_eval_ms), float(d.t_eval_ms)


class _EnginePath(_Path):
    """The engine's own context and its own decode routine (the generation code path)."""

    def __init__(self, engine: "LlamaCppEngine") -> None:
        self.engine = engine
        self.name = "engine"

    def clear(self) -> None:
        self.engine.clear_cache()

    def decode(self, tokens: list[int], pos: int) -> None:
        self.engine.decode(tokens, pos)

    def sync(self) -> None:
        self.engine.synchronize()

    def perf_reset(self) -> None:
        self.engine.perf_reset()

    def perf_ms(self) -> tuple[float, float]:
        return self.engine.perf_ms()


class _DirectPath(_Path):
    """llama-cpp-python's high-level ``Llama``: ``reset()`` then ``eval()``."""

    def __init__(self, llm) -> None:
        self.llm = llm
        self.ctx = llm._ctx.ctx
        self.name = "direct"

    def clear(self) -> None:
        self.llm.reset()
        self.llm._ctx.kv_cache_clear()  # reset() alone clears only recurrent models' memory

    def decode(self, tokens: list[int], pos: int) -> None:
        assert pos == self.llm.n_tokens, (pos, self.llm.n_tokens)
        self.llm.eval(tokens)


class _Sample(NamedTuple):
    wall_s: float  # perf_counter around the decodes: the number reported
    llama_ms: float  # llama.cpp's own timer over the same decodes
    cpu_s: float  # process CPU time over the same decodes (all threads)


def _run_pp(path: _Path, tokens: list[int]) -> _Sample:
    path.clear()
    path.perf_reset()
    c0 = time.process_time()
    t0 = time.perf_counter()
    path.decode(tokens, 0)
    path.sync()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    p_ms, e_ms = path.perf_ms()
    path.clear()
    return _Sample(wall, p_ms + e_ms, cpu)  # a one-token pp counts as "eval" in llama.cpp


def _run_tg(paths: Sequence[_Path], tokens: list[int], tg: int) -> list[_Sample]:
    """tg on every path; with several paths their single-token decodes alternate, so each
    token's time on one path is paired with the neighbouring token's on the other."""
    for path in paths:
        path.clear()
        path.decode(tokens[:1], 0)  # the one-token "prompt" is not timed
        path.sync()
        path.perf_reset()
    n = len(tokens)
    wall = [0.0] * len(paths)
    cpu = [0.0] * len(paths)
    order = list(range(len(paths)))
    clock, cpu_clock = time.perf_counter, time.process_time
    for i in range(1, tg + 1):
        tok = [tokens[i % n]]
        for k in (order if i % 2 else order[::-1]):
            path = paths[k]
            c0 = cpu_clock()
            t0 = clock()
            path.decode(tok, i)
            path.sync()
            wall[k] += clock() - t0
            cpu[k] += cpu_clock() - c0
    out = []
    for k, path in enumerate(paths):
        p_ms, e_ms = path.perf_ms()
        path.clear()
        out.append(_Sample(wall[k], p_ms + e_ms, cpu[k]))
    return out


def _check_sizes(pp: int, tg: int, reps: int, warmup: int, n_ctx: int) -> None:
    if pp < 1 or tg < 1:
        raise ValueError(f"pp and tg must be >= 1 (got pp={pp}, tg={tg})")
    if reps < 1 or warmup < 0:
        raise ValueError(f"reps must be >= 1 and warmup >= 0 (got reps={reps}, warmup={warmup})")
    if max(pp, tg + 1) > n_ctx:
        raise ValueError(f"pp={pp} / tg={tg} do not fit the context (n_ctx={n_ctx})")


def _measure(paths: Sequence[_Path], tokens: list[int], *, pp: int, tg: int, reps: int,
             warmup: int, progress: Callable[[str], None] | None = None
             ) -> list[dict[str, list[_Sample]]]:
    """Warm up, then ``reps`` repetitions of pp and tg on every path, interleaved.

    With several paths, pp runs alternate their order each repetition (ABBA...) and tg runs
    alternate token by token, so load from other processes hits every path alike.
    """
    pp_tokens = tokens[:pp]
    for _ in range(warmup):
        for path in paths:
            _run_pp(path, pp_tokens)
        _run_tg(paths, tokens, tg)
    out: list[dict[str, list[_Sample]]] = [{"pp": [], "tg": []} for _ in paths]
    order = list(range(len(paths)))
    for r in range(reps):
        for k in (order if r % 2 == 0 else order[::-1]):
            out[k]["pp"].append(_run_pp(paths[k], pp_tokens))
        if progress:
            progress(f"pp{pp} rep {r + 1}/{reps}")
        for k, sample in enumerate(_run_tg(paths, tokens, tg)):
            out[k]["tg"].append(sample)
        if progress:
            progress(f"tg{tg} rep {r + 1}/{reps}")
    return out


def _results(samples: dict[str, list[_Sample]], *, model: str, sha256: str, file_type: str,
             pp: int, tg: int, n_threads: int) -> list[BenchResult]:
    results = []
    for test, n in (("pp", pp), ("tg", tg)):
        s = samples[test]
        tps = [n / x.wall_s for x in s]
        llama_tps = [n / (x.llama_ms / 1000) for x in s if x.llama_ms > 0]
        cpu_tps = [n / x.cpu_s for x in s if x.cpu_s > 0]
        results.append(BenchResult(
            model=model,
            model_sha256=sha256,
            file_type=file_type,
            test=f"{test}{n}",
            n_tokens=n,
            reps=len(tps),
            tokens_per_s_median=float(statistics.median(tps)),
            tokens_per_s_min=float(min(tps)),
            tokens_per_s_max=float(max(tps)),
            tokens_per_s_std=float(statistics.stdev(tps)) if len(tps) > 1 else 0.0,
            n_threads=n_threads,
            samples=tuple(float(x) for x in tps),
            llama_tokens_per_s_median=float(statistics.median(llama_tps)) if llama_tps else None,
            cpu_tokens_per_s_median=float(statistics.median(cpu_tps)) if cpu_tps else None,
        ))
    return results


def _engine_tokens(engine: "LlamaCppEngine", n: int) -> list[int]:
    return bench_tokens(engine.vocab, engine.n_vocab, n)


# -- public API --------------------------------------------------------------------------------


def bench_engine(engine: "LlamaCppEngine", *, pp: int = 512, tg: int = 128, reps: int = 5,
                 warmup: int = 1, progress: Callable[[str], None] | None = None
                 ) -> list[BenchResult]:
    """pp and tg tokens/s of the engine's own context: ``[ppN, tgN]`` results."""
    _check_sizes(pp, tg, reps, warmup, engine.n_ctx)
    tokens = _engine_tokens(engine, max(pp, tg + 1))
    (samples,) = _measure([_EnginePath(engine)], tokens, pp=pp, tg=tg, reps=reps,
                          warmup=warmup, progress=progress)
    f = engine.facts
    return _results(samples, model=engine.model_file.name, sha256=f.sha256,
                    file_type=f.file_type, pp=pp, tg=tg, n_threads=engine.n_threads)


def open_direct(model_path: Path, *, n_threads: int, n_ctx: int = 4096, n_batch: int = 512,
                flash_attn: bool = False):
    """llama-cpp-python's high-level ``Llama`` set up like the engine's context (flash
    attention off and weight buffers as engines/kernels.py decides, as the engine runs)."""
    import llama_cpp
    from llama_cpp import _logger

    _logger.set_verbose(False)
    from iberlite.engines.kernels import apply_to_llama_cpp_python, detect, plan_kernels

    apply_to_llama_cpp_python(plan_kernels(detect()))
    return llama_cpp.Llama(
        str(model_path), n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_batch, n_threads=n_threads,
        n_threads_batch=n_threads, logits_all=False, flash_attn=flash_attn, verbose=False,
    )


def direct_reference(model_path: Path, *, pp: int = 512, tg: int = 128, reps: int = 5,
                     n_threads: int, warmup: int = 1, n_ctx: int = 4096, flash_attn: bool = False,
                     model_name: str | None = None,
                     progress: Callable[[str], None] | None = None) -> list[BenchResult]:
    """The same measurement through llama-cpp-python's ``Llama.eval`` (independent path)."""
    model_path = Path(model_path)
    _check_sizes(pp, tg, reps, warmup, n_ctx)
    facts = gguf_facts(model_path)
    llm = open_direct(model_path, n_threads=n_threads, n_ctx=n_ctx, flash_attn=flash_attn)
    try:
        tokens = bench_tokens(llm._model.vocab, llm.n_vocab(), max(pp, tg + 1))
        (samples,) = _measure([_DirectPath(llm)], tokens, pp=pp, tg=tg, reps=reps,
                              warmup=warmup, progress=progress)
    finally:
        llm.close()
    return _results(samples, model=model_name or model_path.stem, sha256=facts.sha256,
                    file_type=facts.file_type, pp=pp, tg=tg, n_threads=n_threads)


def bench_compare(engine: "LlamaCppEngine", *, pp: int = 512, tg: int = 128, reps: int = 5,
                  warmup: int = 1, flash_attn: bool = False,
                  progress: Callable[[str], None] | None = None
                  ) -> tuple[list[BenchResult], list[BenchResult]]:
    """Engine and direct ``Llama`` on the engine's model, repetitions interleaved.

    Returns ``(engine_results, direct_results)``. Both contexts are loaded at once and get
    the same tokens, thread count and context size; their repetitions alternate, so the
    ratio engine/direct is robust to load from other processes.
    """
    _check_sizes(pp, tg, reps, warmup, engine.n_ctx)
    tokens = _engine_tokens(engine, max(pp, tg + 1))
    llm = open_direct(engine.model_file.file, n_threads=engine.n_threads, n_ctx=engine.n_ctx,
                      n_batch=engine.n_batch, flash_attn=flash_attn)
    try:
        eng, direct = _measure([_EnginePath(engine), _DirectPath(llm)], tokens, pp=pp, tg=tg,
                               reps=reps, warmup=warmup, progress=progress)
    finally:
        llm.close()
    f = engine.facts
    def results(samples):
        return _results(samples, model=engine.model_file.name, sha256=f.sha256,
                        file_type=f.file_type, pp=pp, tg=tg, n_threads=engine.n_threads)

    return results(eng), results(direct)


PP, TG, WARMUP = 512, 128, 1
"""What `iberlite bench` measures: llama-bench's pp512 and tg128, after one warm-up."""


@dataclass(frozen=True)
class BenchRun:
    """What `iberlite bench` measured: the engine's results (stored), llama-cpp-python's own
    when compared (not stored), and the device it ran on."""

    results: tuple[BenchResult, ...]
    direct: tuple[BenchResult, ...] | None
    device: DeviceFingerprint


def bench_model(model: str, db: Path, *, reps: int, threads: int | None, compare_direct: bool = False,
                progress: Callable[[str], None] | None = None) -> BenchRun:
    """Measure pp512/tg128 of MODEL on the engine and store the results in ``benches``.

    With ``compare_direct`` the same measurement also runs through llama-cpp-python's
    high-level ``Llama`` (repetitions interleaved with the engine's); only the engine's
    results are stored.
    """
    from iberlite.engines.factory import EngineOptions, open_llamacpp
    from iberlite.models.names import resolve_model

    if reps < 1:
        raise UserError(f"--reps must be at least 1 (got {reps}).", 2)
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be at least 1 (got {threads}).", 2)
    mf = resolve_model(model)
    if mf.remote:
        raise UserError("iberlite bench times a local GGUF model, not a remote openai:NAME one.", 2)
    direct = None
    with open_llamacpp(mf, EngineOptions(n_threads=threads)) as engine:
        device = fingerprint(engine.n_threads)
        if compare_direct:
            results, direct = bench_compare(engine, pp=PP, tg=TG, reps=reps, warmup=WARMUP, progress=progress)
        else:
            results = bench_engine(engine, pp=PP, tg=TG, reps=reps, warmup=WARMUP, progress=progress)
    with Store(db) as store:
        store.add_benches([r.record(device.to_dict()) for r in results])
    return BenchRun(tuple(results), tuple(direct) if direct is not None else None, device)
