"""Ask an engine for the answers to a batch of rendered instances: one `ItemRecord` each.

Both executors call this (the local loop in this process, the Ray task on a worker), so an
item is scored the same way wherever it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from iberlite.engines.base import Engine
from iberlite.engines.requests import batch_choice_requests, generation_request
from iberlite.scoring import matching, metrics
from iberlite.scoring.language_id import LanguageIdentifier
from iberlite.store import ItemRecord
from iberlite.tasks.render import Instance
from iberlite.tasks.spec import TaskSpec


def evaluate_batch(engine: Engine, spec: TaskSpec, batch: Sequence[tuple[int, Instance]]) -> list[ItemRecord]:
    """The records of a batch of (position in the task, instance); a generated output carries the
    language identified in it, so a report never runs language ID again."""
    if spec.output == "multiple_choice":
        return _score_mc(engine, batch)
    records = _generate(engine, spec, batch)
    detected = LanguageIdentifier().identify_many([r.generated for r in records])
    return [replace(r, lang_detected=d) for r, d in zip(records, detected)]


def _score_mc(engine: Engine, batch: Sequence[tuple[int, Instance]]) -> list[ItemRecord]:
    reqs = batch_choice_requests(batch)
    results = iter(engine.loglikelihood(reqs))
    out = []
    for seq, inst in batch:
        rs = [next(results) for _ in inst.choices]
        lps = tuple(r.logprob for r in rs)
        pred = metrics.mc_prediction(lps)
        out.append(ItemRecord(
            doc_id=inst.doc_id, seq=seq, prompt=inst.context, gold=str(inst.gold),
            choices=inst.choices, logprobs=lps, n_tokens=tuple(r.n_tokens for r in rs),
            greedy=tuple(r.is_greedy for r in rs), prediction=str(pred),
            correct=pred == inst.gold, eval_tokens=sum(r.eval_tokens for r in rs),
            wall_ms=sum(r.ms for r in rs), prefill_ms=sum(r.ms for r in rs),
            prompt_tokens=int(round(sum(r.eval_tokens for r in rs))),
            confidence=metrics.choice_margin(lps),
        ))
    return out


def _answer_check(names: Sequence[str]) -> Callable[[str, str], float] | None:
    """The exact-match scorer whose verdict is an item's `correct` (flexible MGSM first, then
    SQuAD's, then strict), or None when the task checks no answer (translation)."""
    if "exact_match_flex" in names:
        return matching.exact_match_flex
    if "squad_em" in names:
        return matching.squad_exact
    if "exact_match" in names:
        return matching.exact_match
    return None


def _generate(engine: Engine, spec: TaskSpec, batch: Sequence[tuple[int, Instance]]) -> list[ItemRecord]:
    reqs = [generation_request(inst) for _, inst in batch]
    results = engine.generate(reqs)
    # an lm-eval task is scored by lm-eval's functions; its metric names do not mean ours
    scorer = None if spec.source.format == "lm_eval" else _answer_check(spec.metrics)
    out = []
    for (seq, inst), r in zip(batch, results):
        correct = None if scorer is None else scorer(r.text, str(inst.gold)) > 0
        out.append(ItemRecord(
            doc_id=inst.doc_id, seq=seq, prompt=inst.context, gold=str(inst.gold),
            prediction=r.text, generated=r.text, correct=correct, stop_reason=r.stop_reason,
            eval_tokens=float(r.prompt_tokens - r.reused_tokens + r.gen_tokens),
            prompt_tokens=r.prompt_tokens, gen_tokens=r.gen_tokens, reused_tokens=r.reused_tokens,
            wall_ms=r.wall_ms, prefill_ms=r.prefill_ms, decode_ms=r.decode_ms, ttft_ms=r.ttft_ms,
            confidence=r.mean_logprob,
        ))
    return out
