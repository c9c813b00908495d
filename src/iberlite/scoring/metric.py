"""One record per metric, read by every stage: a new metric is one entry here plus its scoring
function in :mod:`iberlite.scoring.metrics` (or :mod:`iberlite.scoring.language_id`).

What each field decides:

* `output`: the task kind it scores (task YAML validation);
* `aggregation`: `mean` of a per-item score, `f1` over predictions, `corpus` (sacreBLEU over
  all outputs) or `language` (share of outputs in the target language);
* `scale`: 1 (a fraction) or 100 (sacreBLEU's 0-100), which is how the report and tables
  format it and how language-gap points are counted;
* `higher_is_better`: TER is the one where lower wins;
* `chance`: a uniform guess over the choices scores 1/n (the chance line of the report);
* `digits`: decimals shown in tables;
* `rank`: which of a task's metrics is its primary one (lowest rank first);
* `per_item`: the item's stored right/wrong flag is this metric's per-item value (accuracy,
  exact match), so paired tests such as the language gap can work item by item.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """The facts of one metric that every stage needs."""

    name: str
    output: str  # "multiple_choice" or "generate"
    aggregation: str  # "mean", "f1", "corpus" or "language"
    scale: int = 1
    higher_is_better: bool = True
    chance: bool = False
    digits: int = 2
    rank: int = 99
    per_item: bool = False

    @property
    def percent_scale(self) -> bool:
        """True for metrics reported on 0-100 (BLEU, chrF, TER)."""
        return self.scale == 100


_ALL = (
    Metric("acc", "multiple_choice", "mean", chance=True, rank=0, per_item=True),
    Metric("acc_norm", "multiple_choice", "mean", chance=True, rank=6),
    Metric("f1_macro", "multiple_choice", "f1", rank=3),
    Metric("exact_match", "generate", "mean", rank=2, per_item=True),
    Metric("exact_match_flex", "generate", "mean", rank=1, per_item=True),
    Metric("squad_f1", "generate", "mean", rank=2),  # reading comprehension (SQuAD v1.1)
    Metric("squad_em", "generate", "mean", rank=2, per_item=True),
    Metric("bleu", "generate", "corpus", scale=100, digits=1, rank=5),
    Metric("chrf", "generate", "corpus", scale=100, digits=1, rank=4),
    Metric("ter", "generate", "corpus", scale=100, digits=1, higher_is_better=False, rank=7),
    Metric("lang_ok", "generate", "language", rank=8),
)
REGISTRY: dict[str, Metric] = {m.name: m for m in _ALL}
"""Every metric iberlite computes, by name."""

METRICS: tuple[str, ...] = tuple(m.name for m in _ALL if m.aggregation != "language")
"""The metrics :func:`iberlite.scoring.metrics.aggregate` computes (lang_ok is language_id's)."""

MC_METRICS: tuple[str, ...] = tuple(m.name for m in _ALL if m.output == "multiple_choice")
GEN_METRICS: tuple[str, ...] = tuple(m.name for m in _ALL if m.output == "generate")
CORPUS_METRICS: tuple[str, ...] = tuple(m.name for m in _ALL if m.aggregation == "corpus")
PERCENT_SCALE_METRICS: frozenset[str] = frozenset(m.name for m in _ALL if m.percent_scale)
LOWER_IS_BETTER: frozenset[str] = frozenset(m.name for m in _ALL if not m.higher_is_better)
PRIMARY_ORDER: tuple[str, ...] = tuple(m.name for m in sorted(_ALL, key=lambda m: m.rank))
"""A task's metrics in the order its primary one is picked."""


def metric(name: str) -> Metric:
    """The record of a metric; an unknown name is a programming error listing the valid ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; valid metrics are: {', '.join(REGISTRY)}") from None


def percent_scale(name: str) -> bool:
    """True for the metrics reported on 0-100 (BLEU, chrF, TER)."""
    return name in PERCENT_SCALE_METRICS


def primary_metric(names: list[str] | tuple[str, ...]) -> str | None:
    """The primary one of a task's metrics: the lowest rank (the first name if none is known)."""
    known = [n for n in PRIMARY_ORDER if n in names]
    return known[0] if known else (names[0] if names else None)


def gap_metric_of(output: str, names: set[str] | frozenset[str], per_item: bool) -> str:
    """The metric a paired comparison of one evaluation is measured in: with per-item right/wrong
    flags, the best-ranked `per_item` metric of the task's kind that it has scores for; else the
    best-ranked higher-is-better corpus metric (chrF before BLEU). Without scores to choose
    from, the best-ranked candidate."""
    if per_item:
        candidates = [n for n in PRIMARY_ORDER if REGISTRY[n].per_item and REGISTRY[n].output == output]
    else:
        candidates = [n for n in PRIMARY_ORDER if REGISTRY[n].aggregation == "corpus"
                      and REGISTRY[n].higher_is_better]
    present = [n for n in candidates if n in names]
    return (present or candidates)[0]


def metric_rank(name: str) -> int:
    """Where a metric sorts among a task's metrics (unknown names last)."""
    return REGISTRY[name].rank if name in REGISTRY else 99
