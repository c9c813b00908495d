"""Read stored aggregates back as the results grid: (task, lang, metric) x model."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from iberlite.run.signature import shots_tag
from iberlite.store import AggregateRecord, Store


@dataclass(frozen=True)
class ResultRow:
    """One (task, language, metric, n) row with each model's aggregate, and the task's family."""

    task: str
    lang: str
    metric: str
    n: int
    by_model: dict[str, AggregateRecord] = field(default_factory=dict)
    family: str = ""


@dataclass(frozen=True)
class ResultGrid:
    """Rows of results and the models that appear as columns."""

    models: tuple[str, ...]
    rows: tuple[ResultRow, ...]
    failed: dict[tuple[str, str], int] = field(default_factory=dict)  # (model, task) -> items


def latest_results(db: Path, run_id: int | None = None) -> list[AggregateRecord]:
    """Latest aggregate per (signature, metric), sorted by task, language, model, metric.

    With `run_id`, only what that run computed.
    """
    store = Store(db)
    try:
        rows = store.latest_aggregates(run_id)
    finally:
        store.close()
    return sorted(rows, key=lambda r: (r.task, r.lang, r.model, r.metric, r.n))


def model_order(name: str) -> tuple[str | int, ...]:
    """Sort key for model names wherever they are listed (results, report), numbers read as
    numbers: a curve's adapters come as T-n100, T-n300, T-n1000, T-n3000, not in digit order."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(x) if i % 2 else x for i, x in enumerate(parts))


def results_grid(db: Path, run_id: int | None = None) -> ResultGrid:
    """The results as a grid: one row per (task, lang, metric, n), one column per model.

    Rows are split by item count so that numbers over different items never share a row;
    when one model has several signatures for the same row, the newest is shown. Each row
    carries its task's family as the task declared it.
    """
    aggs = latest_results(db, run_id)
    failed: dict[tuple[str, str], int] = {}
    with Store(db) as store:  # items that failed are not in n: say how many
        family = {ev.eval_key: ev.family for ev in store.evals()}
        for eval_key, model, task in sorted({(a.eval_key, a.model, a.task) for a in aggs}):
            n = len(store.open_failures(eval_key))
            if n:
                failed[(model, task)] = failed.get((model, task), 0) + n
    models = tuple(sorted({a.model for a in aggs}, key=model_order))
    rows: dict[tuple[str, str, str, int], ResultRow] = {}
    for a in aggs:
        task = a.task + shots_tag(a.signature)  # k-shot numbers get rows of their own
        key = (task, a.lang, a.metric, a.n)
        row = rows.setdefault(key, ResultRow(task, a.lang, a.metric, a.n, {}, family.get(a.eval_key, "")))
        row.by_model[a.model] = a
    return ResultGrid(models, tuple(rows[k] for k in sorted(rows)), failed)


def export_json(db: Path, out: Path) -> None:
    """Write every latest aggregate (with its signature) and the device costs as JSON."""
    import json
    from dataclasses import asdict

    from iberlite.analysis.device_cost import device_costs

    payload = {
        "scores": [asdict(a) for a in latest_results(db)],
        "device": [r.to_dict() for r in device_costs(db)],
    }
    out.write_text(json.dumps(payload, indent=2, ensure_ascii=False), encoding="utf-8")
