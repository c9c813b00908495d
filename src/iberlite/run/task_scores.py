"""A task's scores from its stored items: every metric the task names, each with a seeded
bootstrap 95% CI. The writer calls it when a task is finished; `lang_ok` is the language
identifier's, every other metric is :func:`iberlite.scoring.metrics.aggregate`'s."""

from __future__ import annotations

from collections.abc import Sequence

from iberlite.scoring import metrics
from iberlite.scoring.language_id import lang_ok
from iberlite.scoring.metric import metric
from iberlite.store import ItemRecord
from iberlite.tasks.spec import TaskSpec


def score_items(spec: TaskSpec, items: Sequence[ItemRecord], seed: int) -> list[metrics.MetricScore]:
    """Every metric of the task over the stored items, each with a bootstrap 95% CI."""
    from iberlite.tasks import lm_eval_source

    if lm_eval_source.lm_eval_spec(spec):  # lm-eval's own process_results and aggregations
        return lm_eval_source.score(spec, items, seed)
    outcomes = [
        metrics.ItemOutcome(
            logprobs=it.logprobs, choices=it.choices,
            gold=int(it.gold) if spec.output == "multiple_choice" else it.gold,
            output=it.generated,
        )
        for it in items
    ]
    scores = []
    for m in spec.metrics:
        if metric(m).aggregation == "language":
            flags = lang_ok([it.generated or "" for it in items], spec.output_lang)
            value, lo, hi = metrics.mean_with_ci([float(f) for f in flags], seed=seed)
            scores.append(metrics.MetricScore("lang_ok", value, lo, hi, len(items)))
        else:
            scores.append(metrics.aggregate(m, outcomes, seed=seed))
    return scores
