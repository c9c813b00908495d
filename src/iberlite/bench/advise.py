"""`iberlite advise MODEL`: which file format is fastest on this CPU, and what it costs.

Which llama.cpp format runs fastest depends on the CPU's kernels (Q4_1 is the slowest format on
the AVX2 and AVX-512 machines measured so far, Q8_0 often the fastest at prefill), so it is
measured here, not looked up. For the model and a few variants (made once and cached, see
:mod:`iberlite.models.quantize`) this opens the engine the way a run does and measures, in well under
a minute for the pip-shipped models:

* scoring speed: prefill tokens/s (``pp``, one batch of 128 tokens), which is what scoring
  multiple-choice items costs;
* generation speed: decode tokens/s (``tg``, 32 tokens);
* a small built-in accuracy check: the project's own sample items (story endings, es and eu), scored by every variant; reported as correct answers and as agreement with the
  reference variant's predictions (with the mean |difference| of the log-likelihood per token).
  Twenty items cannot rank models: this check catches a broken format, the study
  (`iberlite run` + `iberlite report`) measures the accuracy.

The reference is the variant with the most bits per weight, counting a variant requantized
from a quantized file at no more than its source (see :mod:`iberlite.analysis.quantization`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from iberlite.device.fingerprint import fingerprint, usable_cpus
from iberlite.errors import UserError
from iberlite.models.gguf_facts import gguf_facts
from iberlite.models.model_file import ModelFile
from iberlite.models.names import resolve_source
from iberlite.models.quantize import check_type, quantize

ADVISE_TYPES = ("Q8_0", "Q4_K_M", "Q4_0")
CHECK_TASKS = ("sample_commonsense_es", "sample_commonsense_eu")
PP, TG, REPS = 128, 32, 2


@dataclass(frozen=True)
class Candidate:
    """One format of the model as measured here."""

    model: str
    label: str
    qtype: str
    bits_per_weight: float
    size_bytes: int
    pp_tokens_per_s: float
    tg_tokens_per_s: float
    check_items: int
    check_correct: int
    check_agree: int  # predictions equal to the reference's
    check_mean_abs_delta: float  # mean |log-likelihood - reference's| per scored token, nats
    seconds: float  # load + measurements


@dataclass(frozen=True)
class Advice:
    """Which format is fastest at scoring and at generating on this device, and at what cost."""

    family: str
    device_id: str
    cpu: str
    n_threads: int
    reference: str
    candidates: tuple[Candidate, ...]
    fastest_scoring: str
    fastest_generation: str
    sentence: str
    seconds: float


def advice_from_json(d: dict[str, Any]) -> Advice:
    """An :class:`Advice` read back from the store."""
    cands = tuple(Candidate(**c) for c in d.get("candidates", ()))
    return Advice(**{**d, "candidates": cands})


def _check_instances():
    from iberlite.tasks.items import sample_instances

    return sample_instances(CHECK_TASKS)


def _score(engine, instances) -> tuple[list[int], list[float]]:
    from iberlite.engines.requests import batch_choice_requests
    from iberlite.scoring.metrics import mc_prediction

    reqs = batch_choice_requests(list(enumerate(instances)))
    res = engine.loglikelihood(reqs)
    lps = [r.logprob / max(r.n_tokens, 1) for r in res]  # per token: choices differ in length
    preds, k = [], 0
    for inst in instances:
        preds.append(mc_prediction(tuple(lps[k:k + len(inst.choices)])))
        k += len(inst.choices)
    return preds, lps


def _effective_bits(mf: ModelFile, source_bits: float) -> float:
    bits = gguf_facts(mf.file).bits_per_weight
    return min(bits, source_bits) if mf.quantized_from else bits


def advise(model: str, types: Sequence[str] = ADVISE_TYPES, *, n_threads: int | None = None,
           models_dir: Path | None = None, progress: Callable[[str], None] | None = None) -> Advice:
    """Measure the model and its variants at `types` on this device (see the module docstring)."""
    from iberlite.bench.speed import bench_engine
    from iberlite.engines.factory import EngineOptions, open_llamacpp

    start = time.perf_counter()
    src = resolve_source(model, "Advise on", "on")
    qtypes = [check_type(t) for t in types]
    if src.remote:
        raise UserError("iberlite advise measures a local GGUF model, not a remote openai:NAME one.", 2)
    threads = n_threads or usable_cpus()
    src_facts = gguf_facts(src.file)
    files = [src] + [quantize(src, t, directory=models_dir, n_threads=threads)[0].model_file()
                     for t in qtypes if t != src_facts.file_type]
    instances = _check_instances()
    measured: list[tuple[ModelFile, float, float, list[int], list[float], float]] = []
    for mf in files:
        if progress:
            progress(f"{mf.label}: load, pp{PP}, tg{TG}, {len(instances)} check items")
        t0 = time.perf_counter()
        with open_llamacpp(mf, EngineOptions(n_threads=threads)) as engine:
            pp, tg = bench_engine(engine, pp=PP, tg=TG, reps=REPS, warmup=1)
            preds, lps = _score(engine, instances)
        measured.append((mf, pp.tokens_per_s_median, tg.tokens_per_s_median, preds, lps,
                         time.perf_counter() - t0))

    ref_mf = max(files, key=lambda mf: (_effective_bits(mf, src_facts.bits_per_weight), not mf.quantized_from))
    ref = next(m for m in measured if m[0] is ref_mf)
    golds = [int(inst.gold) for inst in instances]
    cands = []
    for mf, pp_s, tg_s, preds, lps, secs in measured:
        f = gguf_facts(mf.file)
        cands.append(Candidate(
            model=mf.name, label=mf.label, qtype=f.file_type, bits_per_weight=f.bits_per_weight,
            size_bytes=f.size_bytes, pp_tokens_per_s=pp_s, tg_tokens_per_s=tg_s,
            check_items=len(instances), check_correct=sum(p == g for p, g in zip(preds, golds)),
            check_agree=sum(p == r for p, r in zip(preds, ref[3])),
            check_mean_abs_delta=sum(abs(a - b) for a, b in zip(lps, ref[4])) / max(len(lps), 1),
            seconds=round(secs, 2)))
    device = fingerprint(threads)
    fast_pp = max(cands, key=lambda c: c.pp_tokens_per_s)
    fast_tg = max(cands, key=lambda c: c.tg_tokens_per_s)
    reference = next(c for c in cands if c.model == ref_mf.name)
    return Advice(
        family=src.name, device_id=device.fingerprint_id, cpu=device.short(), n_threads=threads,
        reference=reference.model, candidates=tuple(cands), fastest_scoring=fast_pp.model,
        fastest_generation=fast_tg.model, sentence=_sentence(cands, fast_pp, fast_tg, reference, device),
        seconds=round(time.perf_counter() - start, 1))


def _sentence(cands: Sequence[Candidate], fast_pp: Candidate, fast_tg: Candidate, ref: Candidate,
              device: Any) -> str:
    src = next(c for c in cands if "@" not in c.model)

    def speed(c: Candidate, attr: str) -> str:
        ratio = getattr(c, attr) / getattr(src, attr) if c is not src else 1.0
        return f"{getattr(c, attr):.0f} tok/s" + (f", {ratio:.2f}x {src.qtype}" if c is not src else "")

    def check(c: Candidate) -> str:
        if c is ref:
            return f"it is the reference ({c.check_correct}/{c.check_items} right on the check)"
        return (f"it agrees with {ref.qtype} on {c.check_agree}/{c.check_items} check items "
                f"(mean |delta| {c.check_mean_abs_delta:.3f} nats per token)")

    same = fast_pp is fast_tg
    text = (f"On device {device.fingerprint_id} ({device.short()}), {fast_pp.qtype} is the fastest format at scoring ({speed(fast_pp, 'pp_tokens_per_s')})")
    if same:
        text += f" and at generating ({speed(fast_tg, 'tg_tokens_per_s')}); {check(fast_pp)}."
    else:
        text += (f" and {fast_tg.qtype} at generating ({speed(fast_tg, 'tg_tokens_per_s')}); "
                 f"{fast_pp.qtype}: {check(fast_pp)}; {fast_tg.qtype}: {check(fast_tg)}.")
    return text


def advice_dict(a: Advice) -> dict[str, Any]:
    """What the store keeps of an :class:`Advice`."""
    return asdict(a)


def advise_and_store(model: str, types: Sequence[str], db: Path, *, n_threads: int | None = None,
                     models_dir: Path | None = None,
                     progress: Callable[[str], None] | None = None) -> Advice:
    """:func:`advise`, then keep the advice in the database at `db` for the report."""
    from iberlite.store import Store

    result = advise(model, types, n_threads=n_threads, models_dir=models_dir, progress=progress)
    with Store(db) as store:
        store.add_advice(result.family, result.device_id, fingerprint(result.n_threads).to_dict(),
                         advice_dict(result))
    return result
