"""What shots buy and cost, per model and task: score at each k with its CI, the paired
difference to zero-shot over the same items, and the per-item device cost.

An evaluation's shots are read from its stored task info (`fewshot`: k, mode, ...); one
without is zero-shot. The difference to zero-shot is a paired bootstrap over the documents
both evaluations answered, so it is not confounded by which items each one covered.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iberlite.analysis.language_gap import paired_bootstrap
from iberlite.scoring.metrics import mean_with_ci
from iberlite.store import Store


@dataclass(frozen=True)
class ShotScore:
    """One (model, task, k, mode): accuracy with its CI, the paired gain over zero-shot, and
    what an item cost (prefill tokens it computed, p50 wall time, items per second)."""

    model: str
    task: str
    lang: str
    k: int
    mode: str  # "-" for zero-shot, else "per-item" | "fixed"
    n: int
    acc: float
    acc_low: float
    acc_high: float
    gain: float | None  # acc - zero-shot acc on the shared items
    gain_low: float | None
    gain_high: float | None
    p_value: float | None
    n_pairs: int
    paired_from: float | None  # zero-shot accuracy on the shared items
    paired_to: float | None  # this evaluation's accuracy on them
    prefill_tokens: float  # mean tokens computed per item (a kept prefix counted once)
    p50_ms: float
    items_per_s: float

    @property
    def significant(self) -> bool:
        """The gain's 95% interval excludes zero."""
        return self.gain_low is not None and self.gain_high is not None and \
            (self.gain_low > 0 or self.gain_high < 0)


def shots_of(task_info: dict) -> tuple[int, str]:
    """(k, mode) of a stored evaluation's task info; (0, "-") for zero-shot."""
    fs = task_info.get("fewshot") or {}
    return (int(fs["k"]), str(fs["mode"])) if fs.get("k") else (0, "-")


def shot_scores(store: Store, seed: int = 1234) -> list[ShotScore]:
    """Every evaluation of a multiple-choice or exact-match task, with its gain over the
    zero-shot evaluation of the same model, task and engine setup (if there is one)."""
    by_setup: dict[tuple[str, str, int, str], tuple[str, list]] = {}
    langs: dict[str, str] = {}
    for ev in store.evals():
        items = [it for it in store.items(ev.eval_key) if it.correct is not None]
        if not items:
            continue
        k, mode = shots_of(ev.task_info)
        key = (ev.model, ev.task, k, mode)
        if key not in by_setup or len(items) > len(by_setup[key][1]):  # the one with most items
            by_setup[key] = (ev.eval_key, items)
        langs[ev.task] = ev.lang
    out = []
    for (model, task, k, mode), (_, items) in sorted(by_setup.items()):
        acc, low, high = mean_with_ci([float(bool(it.correct)) for it in items], seed=seed)
        gain = gain_low = gain_high = p = paired_from = paired_to = None
        n_pairs = 0
        zero = by_setup.get((model, task, 0, "-"))
        if k and zero:
            base = {it.doc_id: float(bool(it.correct)) for it in zero[1]}
            pairs = [(base[it.doc_id], float(bool(it.correct))) for it in items if it.doc_id in base]
            n_pairs = len(pairs)
            if n_pairs > 1:
                test = paired_bootstrap(np.array([a for a, _ in pairs]), np.array([b for _, b in pairs]),
                                        seed=seed)
                gain, gain_low, gain_high, p = test.gap, test.ci_low, test.ci_high, test.p_value
                paired_from, paired_to = test.base, test.other
        wall = [it.wall_ms or 0.0 for it in items]
        out.append(ShotScore(
            model=model, task=task, lang=langs[task], k=k, mode=mode, n=len(items),
            acc=acc, acc_low=low, acc_high=high, gain=gain, gain_low=gain_low,
            gain_high=gain_high, p_value=p, n_pairs=n_pairs, paired_from=paired_from, paired_to=paired_to,
            prefill_tokens=statistics.fmean(it.eval_tokens or 0.0 for it in items),
            p50_ms=statistics.median(wall),
            items_per_s=len(items) / (sum(wall) / 1000) if sum(wall) > 0 else 0.0,
        ))
    return out


def shot_scores_in(db: Path, seed: int = 1234) -> list[ShotScore]:
    """`shot_scores` of the database at `db`, opened read-only."""
    store = Store.open_readonly(db)
    try:
        return shot_scores(store, seed)
    finally:
        store.close()


def sentence(row: ShotScore, zero: ShotScore | None) -> str:
    """One plain sentence: '5 fixed shots lift xstorycloze_eu from 0.52 to 0.58 (+6 points,
    significant) for +4% latency per item'."""
    mode = "fixed" if row.mode == "fixed" else "per-item"
    if zero is None or row.gain is None or row.paired_from is None or row.paired_to is None:
        return f"{row.k} {mode} shots score {row.acc:.2f} on {row.task} ({row.model}); no zero-shot run to compare."
    verb = "lift" if row.gain > 0 else "lower" if row.gain < 0 else "leave"
    sig = "significant" if row.significant else "not significant"
    lat = (row.p50_ms / zero.p50_ms - 1) * 100 if zero.p50_ms else float("nan")
    same = "" if row.n_pairs == zero.n == row.n else f" on the {row.n_pairs} items both answered"
    return (f"{row.k} {mode} shots {verb} {row.task} ({row.model}) from {row.paired_from:.2f} to "
            f"{row.paired_to:.2f}{same} ({row.gain * 100:+.0f} points, {sig}) for {lat:+.0f}% p50 "
            "latency per item.")
