"""Item-by-item agreement between two systems' runs of one task.

Documents are matched by key (id field, else row index in the shared data file), and every
matched pair's prompt is compared: a pair whose context or continuations differ is counted,
never silently treated as the same question.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from iberlite.fidelity.scored_docs import SystemRun, by_key

LOGPROB_TOL = 1e-3


@dataclass(frozen=True)
class Agreement:
    """How system `b` agrees with reference system `a` on one task."""

    task: str
    kind: str  # "multiple_choice" | "generate"
    a: str
    b: str
    n_a: int
    n_b: int
    n_matched: int
    n_same_prompt: int
    n_same_prediction: int  # MC: argmax index; generation: identical text
    n_exact_ties: int  # MC items where either side has two equal top logprobs
    max_abs_dlogprob: float | None  # MC: over every choice of every matched item
    n_items_dlogprob_over_tol: int | None
    metrics_a: dict[str, float]
    metrics_b: dict[str, float]
    acc_diff: float | None  # b - a on matched items (MC), or exact_match (MGSM)
    acc_diff_ci: tuple[float, float] | None  # paired bootstrap 95% CI of that difference
    disagreeing: tuple[str, ...]  # keys of documents whose prediction differs (first 20)

    @property
    def prediction_agreement(self) -> float:
        """Share of matched items with the same prediction."""
        return self.n_same_prediction / self.n_matched if self.n_matched else float("nan")


def _tied(lps: tuple[float, ...]) -> bool:
    top = sorted(lps, reverse=True)
    return len(top) > 1 and top[0] == top[1]


def paired_diff_ci(a: np.ndarray, b: np.ndarray, seed: int = 1234,
                   n_boot: int = 1000) -> tuple[float, float]:
    """95% percentile CI of mean(b - a) under a paired bootstrap over items."""
    idx = np.random.default_rng(seed).integers(0, len(a), size=(n_boot, len(a)))
    diffs = (b[idx] - a[idx]).mean(axis=1)
    return float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))


def compare(a: SystemRun, b: SystemRun, kind: str) -> Agreement:
    """Agreement of `b` with `a` on the documents both scored."""
    da, db = by_key(a.docs), by_key(b.docs)
    keys = [k for k in da if k in db]
    same_prompt = same_pred = ties = over = 0
    max_d = 0.0
    disagree: list[str] = []
    ca, cb = [], []
    for k in keys:
        x, y = da[k], db[k]
        same_prompt += x.context == y.context and x.continuations == y.continuations
        if x.prediction == y.prediction:
            same_pred += 1
        elif len(disagree) < 20:
            disagree.append(k)
        if kind == "multiple_choice" and len(x.logprobs) == len(y.logprobs):
            d = max(abs(p - q) for p, q in zip(x.logprobs, y.logprobs))
            max_d = max(max_d, d)
            over += d > LOGPROB_TOL
            ties += _tied(x.logprobs) or _tied(y.logprobs)
        if x.correct is not None and y.correct is not None:
            ca.append(float(x.correct))
            cb.append(float(y.correct))
    diff = ci = None
    if ca and len(ca) == len(keys):
        arr_a, arr_b = np.array(ca), np.array(cb)
        diff = float(arr_b.mean() - arr_a.mean())
        ci = paired_diff_ci(arr_a, arr_b)
    mc = kind == "multiple_choice"
    return Agreement(
        task=a.task, kind=kind, a=a.system, b=b.system, n_a=len(da), n_b=len(db),
        n_matched=len(keys), n_same_prompt=same_prompt, n_same_prediction=same_pred,
        n_exact_ties=ties, max_abs_dlogprob=max_d if mc and keys else None,
        n_items_dlogprob_over_tol=over if mc else None,
        metrics_a=dict(a.metrics), metrics_b=dict(b.metrics),
        acc_diff=diff, acc_diff_ci=ci, disagreeing=tuple(disagree),
    )
