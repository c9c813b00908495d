"""Language gaps of stored evaluations: each language's score minus Spanish, per model and
task family, with the bootstrap tests of :mod:`iberlite.analysis.language_gap`.

A task family is the set of tasks whose names differ only by the language code
(``xnli_es``, ``xnli_eu`` -> ``xnli_{lang}``). The gap uses the family's primary metric:
accuracy (or exact match) from the stored per-item correctness, chrF for translation (corpus
chrF from per-sentence statistics, so the gap equals the leaderboard difference).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from iberlite.analysis import language_gap as lg
from iberlite.langs import REFERENCE_LANG, lang_key
from iberlite.scoring.metric import gap_metric_of, percent_scale
from iberlite.store import EvalRecord, ItemRecord


def task_template(task: str, lang: str) -> str:
    """The task name with its language code replaced by ``{lang}``: tasks with the same
    template are the same task in different languages (``xnli_eu`` -> ``xnli_{lang}``)."""
    return lg.neutral_id(task, lang)


@dataclass(frozen=True)
class Gap:
    """A language's score minus Spanish for one model on one task family."""

    model: str
    template: str
    family: str
    metric: str
    lang: str
    base_task: str
    other_task: str
    test: lg.GapTest

    @property
    def percent_scale(self) -> bool:
        """True when the gap is in points of a 0-100 metric (chrF)."""
        return percent_scale(self.metric)


def gap_metric(ev: EvalRecord, items: Sequence[ItemRecord], metrics: set[str]) -> str | None:
    """The metric a gap of this evaluation is measured in, given the metrics it has scores for
    (None when its items carry neither correctness nor outputs)."""
    if items and all(it.correct is not None for it in items):
        return gap_metric_of(ev.output, metrics, per_item=True)
    if items and all(it.generated is not None for it in items):
        return gap_metric_of(ev.output, metrics, per_item=False)
    return None


def item_values(metric: str, items: Sequence[ItemRecord]) -> tuple[np.ndarray, lg.ScoreFn]:
    """Per-item values of `metric` (0/1 correctness, or per-sentence corpus statistics) and the
    function that turns their sums into the score."""
    if percent_scale(metric):
        return lg.corpus_stats(metric, [it.generated or "" for it in items], [it.gold for it in items])
    return np.array([float(bool(it.correct)) for it in items]), lg.mean_score


def language_gaps(chosen: Mapping[tuple[str, str], EvalRecord], items: Mapping[str, Sequence[ItemRecord]],
                  metrics_of: Mapping[tuple[str, str], set[str]], *, n_boot: int = lg.DEFAULT_N_BOOT,
                  seed: int = lg.DEFAULT_SEED) -> list[Gap]:
    """Every gap: per (model, task family) with a Spanish task, each other language minus Spanish.

    `chosen` is one evaluation per (model, task), `items` their items by eval key and
    `metrics_of` the metrics each (model, task) has aggregates for.
    """
    by_template: dict[tuple[str, str], dict[str, EvalRecord]] = defaultdict(dict)
    for (model, _task), ev in chosen.items():
        by_template[(model, task_template(ev.task, ev.lang))][ev.lang] = ev
    out = []
    for (model, template), by_lang in sorted(by_template.items()):
        base = by_lang.get(REFERENCE_LANG)
        if base is None or "{lang}" not in template or len(by_lang) < 2:
            continue
        base_items = items[base.eval_key]
        metric = gap_metric(base, base_items, metrics_of.get((model, base.task), set()))
        if metric is None:
            continue
        a_vals, score_fn = item_values(metric, base_items)
        a_ids = [lg.neutral_id(it.doc_id, base.lang) for it in base_items]
        for lang in sorted(by_lang, key=lang_key):
            if lang == REFERENCE_LANG:
                continue
            ev = by_lang[lang]
            its = items[ev.eval_key]
            if gap_metric(ev, its, metrics_of.get((model, ev.task), set())) != metric:
                continue
            b_vals, _ = item_values(metric, its)
            b_ids = [lg.neutral_id(it.doc_id, ev.lang) for it in its]
            test = lg.gap_test(a_ids, a_vals, b_ids, b_vals, score=score_fn, n_boot=n_boot, seed=seed)
            out.append(Gap(model, template, base.family, metric, lang, base.task, ev.task, test))
    return out
