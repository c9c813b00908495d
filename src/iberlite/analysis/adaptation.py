"""How much local data is enough: per base model and task, the score of the base (0 examples)
and of each adapter trained for that task, against the number of training examples.

A point is an evaluation of ``BASE`` or of ``BASE+ADAPTER`` whose adapter was trained for the
evaluated task (the engine info's ``adapter_task``); an adapter evaluated on another task is no
point of any curve. Each point carries:

* the task's primary metric (the one the results table marks primary, e.g. ``acc`` before
  ``f1_macro``) with its 95% bootstrap CI, as :func:`iberlite.scoring.metrics.aggregate`
  computes it, so the number is the results table's;
* the paired difference to the base over the documents both evaluations answered: a bootstrap
  that draws documents once and scores both sides on them (:func:`paired_bootstrap`). A mean
  metric pairs per-item scores; macro-F1 pairs per-item label counts (true positive, predicted,
  gold per label) whose sums give macro-F1 of each resample; a corpus metric pairs sacreBLEU's
  sentence statistics;
* the adapter's run-time overhead on the same shared documents (p50 wall time per item and
  items per second, with and without it);
* its one-off training cost (wall and CPU seconds, peak RSS, examples per second).

The examples count and training cost come from the evaluation's stored engine info
(``adapter_training``, written by the run since this section exists); an evaluation stored
before that finds them in the adapter's record in a models folder, if one is given, by the
adapter file's sha256; failing both, the count is read from a curve adapter's name
(``TASK-nSIZE``) and the training cost is unknown.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iberlite.analysis.language_gap import ScoreFn, corpus_stats, mean_score, paired_bootstrap
from iberlite.langs import lang_key
from iberlite.models.adapters import ADAPTER_SEP, adapter_by_sha256, training_facts
from iberlite.scoring.metric import LOWER_IS_BETTER, percent_scale, primary_metric
from iberlite.scoring.metrics import ItemOutcome, aggregate, mc_prediction, per_item_scores
from iberlite.store import EvalRecord, ItemRecord, Store

DEFAULT_TARGET = 0.6
"""The score a curve's sentence asks for when the user names none: decide's --min-accuracy."""

_CURVE_NAME = re.compile(r"-n(\d+)$")


@dataclass(frozen=True)
class TrainingCost:
    """The one-off cost of training an adapter, from its record."""

    seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    examples_per_s: float
    epochs: int
    lr: float
    rank: int


@dataclass(frozen=True)
class AdaptPoint:
    """One point of a curve: the base (examples 0, adapter None) or one adapter for the task."""

    base: str
    task: str
    lang: str
    model: str  # the evaluated model: BASE or BASE+ADAPTER
    adapter: str | None
    examples: int
    examples_from: str  # "base" | "engine info" | "models folder" | "adapter name"
    metric: str
    n: int
    score: float
    ci_low: float
    ci_high: float
    diff: float | None  # score - base score, both on the shared documents
    diff_low: float | None
    diff_high: float | None
    p_value: float | None
    n_pairs: int
    paired_from: float | None  # the base's score on the shared documents
    paired_to: float | None  # this point's score on them
    p50_ms: float | None  # per item, on the shared documents (all items for the base)
    base_p50_ms: float | None
    items_per_s: float | None
    base_items_per_s: float | None
    training: TrainingCost | None

    @property
    def percent_scale(self) -> bool:
        """True when the metric is on 0-100 (chrF, BLEU)."""
        return percent_scale(self.metric)

    @property
    def significant(self) -> bool:
        """The difference's 95% interval excludes zero."""
        return self.diff_low is not None and self.diff_high is not None and \
            (self.diff_low > 0 or self.diff_high < 0)

    @property
    def diff_points(self) -> float | None:
        """The difference in points (x100 for a 0-1 metric)."""
        return None if self.diff is None else self.diff * (1 if self.percent_scale else 100)

    @property
    def latency_overhead(self) -> float | None:
        """p50 latency with the adapter over without, minus one (0.05 = 5% slower)."""
        if self.adapter is None or not self.p50_ms or not self.base_p50_ms:
            return None
        return self.p50_ms / self.base_p50_ms - 1


@dataclass(frozen=True)
class AdaptCurve:
    """All points of one base model on one task, by examples."""

    base: str
    task: str
    lang: str
    metric: str
    points: tuple[AdaptPoint, ...]

    @property
    def zero(self) -> AdaptPoint | None:
        """The base model's own point (0 examples), if it was evaluated."""
        return next((p for p in self.points if p.adapter is None), None)

    @property
    def adapted(self) -> tuple[AdaptPoint, ...]:
        """The adapters' points, by examples."""
        return tuple(p for p in self.points if p.adapter is not None)


def target_on_scale(target: float, metric: str) -> float:
    """The target score on the metric's own scale: a 0-1 target is x100 for a 0-100 metric."""
    return target * 100 if percent_scale(metric) and target <= 1 else target


def _reaches(p: AdaptPoint, target: float) -> bool:
    lower = p.metric in LOWER_IS_BETTER
    return p.score <= target if lower else p.score >= target


def _fmt(v: float, pct: bool) -> str:
    return f"{v:.1f}" if pct else f"{v:.2f}"


def curve_sentence(curve: AdaptCurve, target: float = DEFAULT_TARGET) -> str:
    """How many examples reach the target, in one sentence: '100 examples reach 0.60 on
    bec_eu acc (smollm2-135m): 0.64 [0.58, 0.69], from 0.41 zero-shot (+23 points,
    significant)' or '300 examples lift ... from 0.19 to 0.39 (+20 points, significant); none
    of 100, 300 reached 0.60'. The target is on a 0-1 scale (x100 for a 0-100 metric)."""
    pts = curve.adapted
    zero = curve.zero
    pct = bool(curve.points) and curve.points[0].percent_scale
    goal = target_on_scale(target, curve.metric)
    what = f"{curve.task} {curve.metric} ({curve.base})"
    if zero is not None and _reaches(zero, goal):
        return (f"{curve.base} already reaches {_fmt(goal, pct)} on {curve.task} {curve.metric} with "
                f"no local examples ({_fmt(zero.score, pct)} "
                f"[{_fmt(zero.ci_low, pct)}, {_fmt(zero.ci_high, pct)}]).")
    if not pts:
        return f"No adapter of {curve.base} was evaluated on {curve.task}."
    reached = [p for p in pts if _reaches(p, goal)]
    if reached:
        p = reached[0]
        head = (f"{p.examples} examples reach {_fmt(goal, pct)} on {what}: {_fmt(p.score, pct)} "
                f"[{_fmt(p.ci_low, pct)}, {_fmt(p.ci_high, pct)}]")
        return head + (f", from {_fmt(p.paired_from, pct)} zero-shot ({_change(p)})."
                       if p.diff is not None and p.paired_from is not None else
                       "; no zero-shot evaluation to compare.")
    best = max(pts, key=lambda q: -q.score if q.metric in LOWER_IS_BETTER else q.score)
    sizes = ", ".join(str(q.examples) for q in pts)
    tail = f"none of {sizes} reached {_fmt(goal, pct)}."
    if best.diff is None or best.paired_from is None or best.paired_to is None:
        return (f"{best.examples} examples score {_fmt(best.score, pct)} on {what} (no zero-shot "
                f"evaluation to compare); {tail}")
    verb = "lift" if best.diff > 0 else "lower" if best.diff < 0 else "leave"
    return (f"{best.examples} examples {verb} {what} from {_fmt(best.paired_from, pct)} to "
            f"{_fmt(best.paired_to, pct)} ({_change(best)}); {tail}")


def _change(p: AdaptPoint) -> str:
    sig = "significant" if p.significant else "not significant"
    return f"{p.diff_points or 0.0:+.0f} points, {sig}"


# --------------------------------------------------------------------------- building


def _outcomes(ev: EvalRecord, items: Sequence[ItemRecord]) -> list[ItemOutcome]:
    mc = ev.output == "multiple_choice"
    return [ItemOutcome(logprobs=it.logprobs, choices=it.choices, gold=int(it.gold) if mc else it.gold,
                        output=it.generated) for it in items]


def _f1_stats(outcomes: Sequence[ItemOutcome], labels: Sequence[int]) -> tuple[np.ndarray, ScoreFn]:
    """Per item: one-hot (true positive, predicted, gold) over `labels`; the score function
    turns summed counts into macro-F1 over the labels present, as `f1_macro` computes it."""
    k = len(labels)
    col = {lab: i for i, lab in enumerate(labels)}
    stats = np.zeros((len(outcomes), 3 * k))
    for i, o in enumerate(outcomes):
        pred, gold = col[mc_prediction(o.logprobs or ())], col[int(o.gold)]
        stats[i, k + pred] = 1.0
        stats[i, 2 * k + gold] = 1.0
        if pred == gold:
            stats[i, pred] = 1.0

    def score(sums: np.ndarray, n: int) -> np.ndarray:
        tp, support = sums[:, :k], sums[:, k:2 * k] + sums[:, 2 * k:]
        present = support > 0
        f1 = np.divide(2.0 * tp, support, out=np.zeros_like(tp), where=present)
        out: np.ndarray = f1.sum(axis=1) / np.maximum(present.sum(axis=1), 1)
        return out

    return stats, score


def _paired_values(metric: str, a: Sequence[ItemOutcome],
                   b: Sequence[ItemOutcome]) -> tuple[np.ndarray, np.ndarray, ScoreFn]:
    """Aligned per-item statistics of both sides and the function that scores their sums."""
    va, vb = per_item_scores(metric, a), per_item_scores(metric, b)
    if va is not None and vb is not None:
        return np.array(va), np.array(vb), mean_score
    if metric == "f1_macro":
        labels = sorted({mc_prediction(o.logprobs or ()) for o in (*a, *b)} | {int(o.gold) for o in (*a, *b)})
        (sa, score), (sb, _) = _f1_stats(a, labels), _f1_stats(b, labels)
        return sa, sb, score
    sa, score = corpus_stats(metric, [o.output or "" for o in a], [str(o.gold) for o in a])
    sb, _ = corpus_stats(metric, [o.output or "" for o in b], [str(o.gold) for o in b])
    return sa, sb, score


def _speed(items: Sequence[ItemRecord]) -> tuple[float | None, float | None]:
    wall = [it.wall_ms for it in items if it.wall_ms is not None]
    if not wall:
        return None, None
    total = sum(wall)
    return statistics.median(wall), (len(wall) / (total / 1000) if total > 0 else None)


def _training(facts: dict) -> TrainingCost | None:
    try:
        return TrainingCost(seconds=float(facts["seconds"]), cpu_seconds=float(facts["cpu_seconds"]),
                            peak_rss_bytes=int(facts["peak_rss_bytes"]),
                            examples_per_s=float(facts["examples_per_s"]), epochs=int(facts["epochs"]),
                            lr=float(facts["lr"]), rank=int(facts["rank"]))
    except (KeyError, TypeError, ValueError):
        return None


def _adapter_facts(ev: EvalRecord, adapter: str, folder: dict[str, dict]) -> tuple[int | None, str, dict]:
    """(examples, where the count came from, training facts) of an adapted evaluation."""
    stored = ev.engine.get("adapter_training") or {}
    if stored.get("examples") is not None:
        return int(stored["examples"]), "engine info", stored
    sha = (ev.engine.get("extra") or {}).get("adapter_sha256")
    if sha and sha in folder:
        return int(folder[sha]["examples"]), "models folder", folder[sha]
    m = _CURVE_NAME.search(adapter)
    return (int(m.group(1)), "adapter name", {}) if m else (None, "", {})


def _metrics(store: Store) -> dict[str, list[str]]:
    metrics: dict[str, list[str]] = {}
    for a in store.latest_aggregates():
        metrics.setdefault(a.eval_key, []).append(a.metric)
    return metrics


def adaptation_curves(store: Store, *, models_dir: Path | None = None, seed: int = 1234,
                      n_boot: int = 1000, metric: str | None = None) -> list[AdaptCurve]:
    """Every (base model, task) with at least one evaluated adapter trained for the task, with
    its points by examples (empty when the store holds no adapted evaluation).

    `models_dir`: where to look up the training record of adapters whose evaluations were
    stored before runs kept it (None: only what the store holds). `metric`: another of the
    task's metrics than its primary one (e.g. f1_macro on bec_eu), where the task has it."""
    chosen = {k: ev for k, ev in store.evals_with_most_items().items() if not ev.task_info.get("fewshot")}
    adapted: dict[tuple[str, str], list[tuple[EvalRecord, str]]] = {}
    for (model, task), ev in chosen.items():
        if ADAPTER_SEP not in model:
            continue
        base, adapter = model.rsplit(ADAPTER_SEP, 1)
        if (ev.engine.get("extra") or {}).get("adapter_task") == task:
            adapted.setdefault((base, task), []).append((ev, adapter))
    if not adapted:
        return []
    metric_asked = metric
    folder = {sha: training_facts(a) for sha, a in adapter_by_sha256(models_dir).items()} \
        if models_dir is not None else {}
    stored = _metrics(store)
    out = []
    for (base, task), evs in adapted.items():
        zero_ev = chosen.get((base, task))
        names = stored.get(zero_ev.eval_key if zero_ev else evs[0][0].eval_key, [])
        metric = metric_asked if metric_asked in names else primary_metric(names) or "acc"
        zero_items = store.items(zero_ev.eval_key) if zero_ev else []
        zero_out = _outcomes(zero_ev, zero_items) if zero_ev else []
        points = []
        if zero_ev and zero_items:
            s = aggregate(metric, zero_out, seed=seed, n_boot=n_boot)
            p50, ips = _speed(zero_items)
            points.append(AdaptPoint(
                base=base, task=task, lang=zero_ev.lang, model=base, adapter=None, examples=0,
                examples_from="base", metric=metric, n=s.n, score=s.value, ci_low=s.ci_low,
                ci_high=s.ci_high, diff=None, diff_low=None, diff_high=None, p_value=None, n_pairs=0,
                paired_from=None, paired_to=None, p50_ms=p50, base_p50_ms=p50, items_per_s=ips,
                base_items_per_s=ips, training=None))
        by_doc = {it.doc_id: i for i, it in enumerate(zero_items)}
        for ev, adapter in evs:
            examples, source, facts = _adapter_facts(ev, adapter, folder)
            items = store.items(ev.eval_key)
            if examples is None or not items:
                continue
            outs = _outcomes(ev, items)
            s = aggregate(metric, outs, seed=seed, n_boot=n_boot)
            shared = [(by_doc[it.doc_id], j) for j, it in enumerate(items) if it.doc_id in by_doc]
            diff = lo = hi = pv = frm = to = None
            p50 = base_p50 = ips = base_ips = None
            if len(shared) > 1:
                a_vals, b_vals, score = _paired_values(metric, [zero_out[i] for i, _ in shared],
                                                       [outs[j] for _, j in shared])
                test = paired_bootstrap(a_vals, b_vals, score=score, n_boot=n_boot, seed=seed)
                diff, lo, hi, pv, frm, to = test.gap, test.ci_low, test.ci_high, test.p_value, test.base, test.other
                p50, ips = _speed([items[j] for _, j in shared])
                base_p50, base_ips = _speed([zero_items[i] for i, _ in shared])
            else:
                p50, ips = _speed(items)
            points.append(AdaptPoint(
                base=base, task=task, lang=ev.lang, model=ev.model, adapter=adapter, examples=examples,
                examples_from=source, metric=metric, n=s.n, score=s.value, ci_low=s.ci_low,
                ci_high=s.ci_high, diff=diff, diff_low=lo, diff_high=hi, p_value=pv, n_pairs=len(shared),
                paired_from=frm, paired_to=to, p50_ms=p50, base_p50_ms=base_p50, items_per_s=ips,
                base_items_per_s=base_ips, training=_training(facts)))
        points.sort(key=lambda p: (p.examples, p.adapter or ""))
        if any(p.adapter for p in points):
            out.append(AdaptCurve(base, task, points[0].lang, metric, tuple(points)))
    out.sort(key=lambda c: (lang_key(c.lang), c.task, c.base))
    return out


def adaptation_curves_in(db: Path, *, models_dir: Path | None = None, seed: int = 1234,
                         metric: str | None = None) -> list[AdaptCurve]:
    """`adaptation_curves` of the database at `db`, opened read-only."""
    with Store.open_readonly(Path(db)) as store:
        return adaptation_curves(store, models_dir=models_dir, seed=seed, metric=metric)
