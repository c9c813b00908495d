"""Everything the report shows, built from the store's records and the analysis functions.

`load_report(db)` opens the database read-only (a report never writes, and works while a run
is still writing) and assembles the records of :mod:`iberlite.report.sections`: the
leaderboard, the language gaps with their bootstrap tests, the per-model cost summary behind
the accuracy-versus-cost plots, the item browser rows, the device and the methodology. The
renderers (`html.py`, `markdown.py`) only format these records. Nothing here reads a task
file or runs a model or language identifier: a report depends on the database alone.

Choices made here, so that every number in the report has one meaning:

* Leaderboard: the newest aggregate per (signature, metric), as `iberlite results`; of the
  aggregates of one evaluation (same eval key, metric and device) only the one over the most
  items is kept, since a smaller one is a prefix of it.
* Item-level views (gaps, cost, browser) use one evaluation per (model, task): the one with the
  most stored items, the newest on a tie (`Store.evals_with_most_items`).
* Gaps: :mod:`iberlite.analysis.gaps`; cost: :mod:`iberlite.analysis.model_summary`.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from iberlite.analysis import language_gap as lg
from iberlite.analysis.adaptation import adaptation_curves
from iberlite.analysis.device_cost import CostRow, costs_from_store
from iberlite.analysis.fewshot import shot_scores
from iberlite.analysis.gaps import language_gaps, task_template
from iberlite.analysis.model_summary import cost_axes, cost_device, model_costs
from iberlite.analysis.quantization import quantization_studies
from iberlite.analysis.results import model_order
from iberlite.bench.advise import advice_from_json
from iberlite.decide.routing import decision_from_json
from iberlite.langs import lang_key
from iberlite.report.sections import (
    Browser,
    BrowserItem,
    EngineSetup,
    ItemResult,
    LeaderboardEntry,
    Report,
    Routing,
    TaskInfo,
)
from iberlite.run.signature import shots_tag
from iberlite.scoring.metric import (
    metric_rank,
    primary_metric,
)
from iberlite.scoring.metrics import sentence_chrf
from iberlite.store import AggregateRecord, BenchRecord, EvalRecord, ItemRecord, Store

__all__ = ["MAX_BROWSER_ITEMS", "bench_details", "load_report"]

MAX_BROWSER_ITEMS = 300


def _device_of_signature(sig: str) -> str:
    m = re.search(r"(?:^|\|)device:([^|]*)", sig)
    return m.group(1) if m else ""


def leaderboard(aggregates: Sequence[AggregateRecord], evals: Mapping[str, EvalRecord]) -> list[LeaderboardEntry]:
    """The leaderboard cells of the newest aggregates: per (eval key, metric, device) the one
    over the most items, with each evaluation's primary metric marked."""
    best: dict[tuple[str, str, str], AggregateRecord] = {}
    for a in aggregates:
        key = (a.eval_key, a.metric, _device_of_signature(a.signature))
        cur = best.get(key)
        if cur is None or (a.n, a.id or 0) > (cur.n, cur.id or 0):
            best[key] = a
    by_eval: dict[tuple[str, str], list[str]] = defaultdict(list)
    for (ek, metric, dev) in best:
        by_eval[(ek, dev)].append(metric)
    out = []
    for (ek, metric, dev), a in best.items():
        ev = evals.get(ek)
        primary = metric == primary_metric(by_eval[(ek, dev)])
        out.append(LeaderboardEntry(a.model, a.task + shots_tag(a.signature), task_template(a.task, a.lang), ev.family if ev else "",
                                    a.lang, ev.output if ev else "", metric, a.value, a.ci_low, a.ci_high,
                                    a.n, a.signature, primary))
    out.sort(key=lambda s: (s.template, lang_key(s.lang), s.task, s.model, metric_rank(s.metric), s.n))
    return out


def target_lang(ev: EvalRecord) -> str:
    """The language a task's outputs should be in, as the run stored it (older databases: read
    from a translation task's name, ``..._en-es`` -> ``es``, else the task language)."""
    stored = ev.task_info.get("target_lang")
    if stored:
        return str(stored)
    m = re.search(r"[_-]([a-z]{2})-([a-z]{2})$", ev.task)
    return m.group(2) if m else ev.lang


def _item_result(model: str, ev: EvalRecord, it: ItemRecord, target: str) -> ItemResult:
    gen = ev.output != "multiple_choice"
    detected = it.lang_detected if gen else None
    lang_ok = None
    if gen and it.generated is not None:
        if not it.generated.strip():
            lang_ok = False  # an empty output is never in the target language
        elif detected is not None:
            lang_ok = detected == target
    return ItemResult(
        model=model, prediction=it.prediction, correct=it.correct, generated=it.generated,
        lang_detected=detected, lang_ok=lang_ok,
        chrf=sentence_chrf(it.generated or "", it.gold) if gen and it.correct is None else None,
        wall_ms=it.wall_ms,
    )


def browsers(chosen: Mapping[tuple[str, str], EvalRecord], items: Mapping[str, Sequence[ItemRecord]],
             scores: Sequence[LeaderboardEntry], max_items: int) -> list[Browser]:
    """One item browser per task family, at most `max_items` documents (split over its tasks)."""
    by_template: dict[str, list[EvalRecord]] = defaultdict(list)
    for ev in chosen.values():
        by_template[task_template(ev.task, ev.lang)].append(ev)
    out = []
    for template in sorted(by_template):
        evs = by_template[template]
        models = tuple(sorted({e.model for e in evs}, key=model_order))
        tasks = sorted({e.task for e in evs}, key=lambda t: lang_key(next(e.lang for e in evs if e.task == t)))
        langs = tuple(sorted({e.lang for e in evs}, key=lang_key))
        per_lang = max(1, max_items // max(1, len(tasks)))
        rows: list[BrowserItem] = []
        n_total = 0
        for task in tasks:
            task_evs = {e.model: e for e in evs if e.task == task}
            first_ev = next(iter(task_evs.values()))
            target = target_lang(first_ev)
            docs: dict[str, dict[str, ItemRecord]] = defaultdict(dict)
            order: list[str] = []
            for model, e in task_evs.items():
                for it in items[e.eval_key]:
                    if it.doc_id not in docs:
                        order.append(it.doc_id)
                    docs[it.doc_id][model] = it
            n_total += len(order)
            for doc_id in order[:per_lang]:
                per_model = docs[doc_id]
                first = next(iter(per_model.values()))
                results = tuple(_item_result(m, task_evs[m], per_model[m], target)
                                for m in models if m in per_model)
                lang = task_evs[next(iter(per_model))].lang
                rows.append(BrowserItem(task, lang, doc_id, first.prompt, first.choices, first.gold, results))
        lang_ok = tuple(s for s in scores if s.template == template and s.metric == "lang_ok")
        out.append(Browser(template, evs[0].family, evs[0].output, langs, models, tuple(rows),
                           n_total, per_lang, lang_ok))
    return out


def task_infos(chosen: Mapping[tuple[str, str], EvalRecord],
               items: Mapping[str, Sequence[ItemRecord]]) -> list[TaskInfo]:
    """Methodology facts per task, from its largest evaluation's stored task info and first item."""
    by_task: dict[str, list[EvalRecord]] = defaultdict(list)
    for ev in chosen.values():
        by_task[ev.task].append(ev)
    out = []
    for task, evs in by_task.items():
        ev = max(evs, key=lambda e: len(items[e.eval_key]))
        its = items[ev.eval_key]
        first = its[0]
        info = ev.task_info
        out.append(TaskInfo(
            task=task, template=task_template(ev.task, ev.lang), family=ev.family, lang=ev.lang,
            target_lang=target_lang(ev), output=ev.output, description=str(info.get("description", "") or ""),
            reference=str(info.get("reference", "")), prompt_hash=str(info.get("prompt_hash", "")),
            data_hash=str(info.get("data_hash", "")), example_doc=first.doc_id,
            example_prompt=first.prompt or "", example_choices=first.choices, example_gold=first.gold,
            n_items=len(its),
        ))
    out.sort(key=lambda t: (t.template, lang_key(t.lang), t.task))
    return out


def latest_benches(benches: Sequence[BenchRecord]) -> list[BenchRecord]:
    """The newest bench per (model, test, threads, device), by model and test."""
    latest: dict[tuple[object, ...], BenchRecord] = {}
    for b in benches:  # oldest first: the newest wins
        latest[(b.model, b.test, b.n_threads, b.device.get("fingerprint_id"))] = b
    return sorted(latest.values(), key=lambda b: (b.model, b.test))


def bench_details(b: BenchRecord) -> str:
    """The secondary facts of a bench row, as one short line."""
    parts = [("file_type", b.file_type or None), ("n_tokens", b.n_tokens), ("reps", b.reps), ("std", b.std),
             ("n_threads", b.n_threads), ("device", b.device.get("fingerprint_id") or None)]
    return ", ".join(f"{k}={v}" for k, v in parts if v is not None)


def _routing(store: Store) -> Routing | None:
    rec = store.latest_decision()
    if rec is None:
        return None
    prof = rec.profile
    return Routing(id=rec.id, created_at=rec.created_at, command=rec.command, device=rec.device_model,
                   cloud=rec.cloud_model, min_accuracy=rec.min_accuracy, currency=str(prof.get("currency", "")),
                   illustrative=bool(prof.get("illustrative")), profile_source=str(prof.get("source", "")),
                   decisions=tuple(decision_from_json(d) for d in rec.decisions))


def load_report(db: Path, *, n_boot: int = lg.DEFAULT_N_BOOT, seed: int = lg.DEFAULT_SEED,
                max_browser_items: int = MAX_BROWSER_ITEMS, models_dir: Path | None = None) -> Report:
    """Read a database and compute everything the report shows."""
    with Store.open_readonly(Path(db)) as store:
        return build_report(store, n_boot=n_boot, seed=seed, max_browser_items=max_browser_items,
                            models_dir=models_dir)


def build_report(store: Store, *, n_boot: int = lg.DEFAULT_N_BOOT, seed: int = lg.DEFAULT_SEED,
                 max_browser_items: int = MAX_BROWSER_ITEMS, models_dir: Path | None = None) -> Report:
    """The report of an open store (see the module docstring for what each part means).
    `models_dir` (default none: the database alone) only lends adapters' training records to
    evaluations stored before runs kept them."""
    runs = store.runs()
    evals = {ev.eval_key: ev for ev in store.evals()}
    scores = leaderboard(store.latest_aggregates(), evals)
    chosen = store.evals_with_most_items()
    items = {ev.eval_key: store.items(ev.eval_key) for ev in chosen.values()}
    models = tuple(sorted({ev.model for ev in chosen.values()} | {s.model for s in scores}, key=model_order))
    langs = tuple(sorted({ev.lang for ev in chosen.values()} | {s.lang for s in scores}, key=lang_key))

    metrics_of: dict[tuple[str, str], set[str]] = defaultdict(set)
    for s in scores:
        metrics_of[(s.model, s.task)].add(s.metric)
    gaps = language_gaps(chosen, items, metrics_of, n_boot=n_boot, seed=seed)
    device = cost_device(runs)
    costs, acc_label = model_costs(runs, chosen, items, store.new_item_counts(), device)

    benches = latest_benches(store.benches())
    primary: dict[tuple[str, str], tuple[str, float, float, float, int]] = {}
    for s in scores:
        if s.primary and s.n >= primary.get((s.model, s.task), ("", 0.0, 0.0, 0.0, -1))[4]:
            primary[(s.model, s.task)] = (s.metric, s.value, s.ci_low, s.ci_high, s.n)
    here = [b for b in benches if b.device.get("fingerprint_id") in (device, None)]
    quant = quantization_studies(chosen, items, metrics_of, primary, costs, here, n_boot=n_boot,
                                 seed=seed)

    shots = shot_scores(store, seed=seed)
    notes: list[str] = []
    n_devices = len({r.device_id for r in runs if r.device})
    if n_devices > 1:
        notes.append(f"Runs from {n_devices} devices are stored; the cost views use device {device} only.")
    running = [r.id for r in runs if r.status == "running"]
    if running:
        notes.append(f"Run(s) {', '.join(map(str, running))} had not finished when this report "
                     "was built: their items are included, their cost is not recorded yet.")
    return Report(
        db_path=str(store.path), generated_at=time.time(), runs=tuple(runs), models=models, langs=langs,
        scores=tuple(scores), gaps=tuple(gaps), costs=tuple(costs), cost_axes=tuple(cost_axes(costs)),
        accuracy_label=acc_label, cost_device=device,
        browsers=tuple(browsers(chosen, items, scores, max_browser_items)),
        tasks=tuple(task_infos(chosen, items)), benches=tuple(benches),
        has_bench_table=store.has_bench_table(), notes=tuple(notes), routing=_routing(store),
        engine_setups=engine_setups(evals.values()), quantization=tuple(quant),
        advice=tuple(advice_from_json(a.advice) for a in store.latest_advice()),
        class_costs=class_costs(store, evals.values()),
        item_time=item_time(store),
        worker_devices=tuple(store.devices().items()),
        shots=tuple(shots) if any(s.k for s in shots) else (),
        adaptation=tuple(adaptation_curves(store, seed=seed, n_boot=n_boot, models_dir=models_dir)),
    )


def item_time(store: Store) -> tuple[CostRow, ...]:
    """Per model and generation task, where an item's time goes: TTFT, the share spent reading
    the prompt (prefill) and the token counts that explain it. Reading comprehension (a context
    of a few hundred tokens, an answer of a few) is mostly prefill; translation mostly decode.
    Items pinned to a device class are left to the class table."""
    rows = [r for r in costs_from_store(store) if r.output == "generate" and not r.device_class]
    return tuple(sorted(rows, key=lambda r: (r.model, lang_key(r.lang), r.task)))


def class_costs(store: Store, evals) -> tuple[CostRow, ...]:
    """The device cost rows of items pinned to a device class, by class then model and task:
    a sweep over several kinds of device compares them here (empty when nothing was pinned)."""
    if not any(ev.device_class for ev in evals):
        return ()
    rows = [r for r in costs_from_store(store) if r.device_class]
    return tuple(sorted(rows, key=lambda r: (r.device_class or "", r.model, r.task, lang_key(r.lang))))


def engine_setups(evals) -> tuple[EngineSetup, ...]:
    """The distinct engine setups of the stored evaluations. Remote models have none, and
    evaluations stored before the kernel plan was recorded (no `buffers`) are left out."""
    seen = set()
    for ev in evals:
        e, extra = ev.engine, ev.engine.get("extra") or {}
        if e.get("engine") != "llama.cpp" or not extra.get("buffers"):
            continue
        seen.add(EngineSetup(ev.model, e.get("engine_version", ""), e.get("n_threads"),
                             e.get("scoring", ""), extra.get("buffers", ""), extra.get("simd", ""),
                             extra.get("layout", "")))
    return tuple(sorted(seen, key=lambda s: (s.model, s.engine, s.n_threads or 0, s.scoring, s.layout)))
