"""Is a language's score really different from Spanish? Seeded bootstrap tests, pure functions.

The *gap* of a language is its score minus the reference language's score (Spanish in the
report), for one model on one task that exists in both languages.

* **Paired** (the default whenever it applies): when the two tasks are parallel, i.e. the
  same documents translated (XStoryCloze shares `InputStoryid` across languages, XNLI's
  original files share their row order, the sample suite shares ids up to the language code),
  each document is scored in both languages. One bootstrap resample draws documents, and both
  languages are scored on the *same* drawn documents, so item difficulty cancels out and the
  interval on the gap is much narrower than two independent intervals suggest.
* **Unpaired** (fallback): when the documents differ, each language is resampled on its own.

Per-item inputs are score vectors: 0/1 correctness for accuracy, or one row of sufficient
statistics per sentence for a corpus metric such as chrF (then `score` turns summed statistics
into the corpus score, so the gap equals the difference of the corpus scores exactly).

The interval is the 2.5-97.5 percentile of the bootstrap gaps; the gap is called significant
when that interval excludes 0. The p-value is the two-sided percentile p of the same bootstrap
distribution, ``2 * min(P(gap* <= 0), P(gap* >= 0))`` (at least ``1 / n_boot``: a bootstrap
cannot resolve smaller p-values), so ``p <= 0.05`` and "interval excludes 0" agree up to the
interpolation of the percentiles. No correction for multiple comparisons is
applied: with many languages and tasks, expect about one false "significant" in twenty.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

__all__ = [
    "GapTest",
    "ScoreFn",
    "mean_score",
    "paired_bootstrap",
    "unpaired_bootstrap",
    "pair_items",
    "gap_test",
    "neutral_id",
    "corpus_stats",
]

ScoreFn = Callable[[np.ndarray, int], np.ndarray]
"""Maps summed per-item statistics of shape (rows, k) and the item count n to (rows,) scores."""

DEFAULT_N_BOOT = 1000
DEFAULT_SEED = 1234


def mean_score(sums: np.ndarray, n: int) -> np.ndarray:
    """The mean of a per-item score: summed first column divided by the item count."""
    return sums[:, 0] / n


@dataclass(frozen=True)
class GapTest:
    """One comparison: `other` minus `base`, with its bootstrap interval and p-value."""

    base: float
    other: float
    gap: float
    ci_low: float
    ci_high: float
    p_value: float
    paired: bool
    n_base: int
    n_other: int
    n_pairs: int
    n_boot: int
    seed: int

    @property
    def significant(self) -> bool:
        """True when the 95% interval of the gap excludes zero."""
        return self.ci_low > 0 or self.ci_high < 0

    @property
    def method(self) -> str:
        """How the interval was obtained, for a table cell or a tooltip."""
        if self.paired:
            return f"paired bootstrap over {self.n_pairs} shared items ({self.n_boot} resamples, seed {self.seed})"
        return (f"unpaired bootstrap, documents differ ({self.n_base} vs {self.n_other} items; "
                f"{self.n_boot} resamples, seed {self.seed})")


def _as_stats(values: Sequence[float] | np.ndarray) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"per-item values must be a vector or an (items, k) matrix, got shape {x.shape}")
    if len(x) == 0:
        raise ValueError("cannot compare zero items")
    return x


def _resample_counts(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """How often each item is drawn in each resample: shape (n_boot, n)."""
    idx = rng.integers(0, n, size=(n_boot, n))
    flat = (idx + (np.arange(n_boot) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def _result(base: float, other: float, boot_gaps: np.ndarray, *, paired: bool, n_base: int,
            n_other: int, n_pairs: int, n_boot: int, seed: int) -> GapTest:
    low, high = np.percentile(boot_gaps, [2.5, 97.5])
    le = int(np.sum(boot_gaps <= 0))
    ge = int(np.sum(boot_gaps >= 0))
    p = min(1.0, max(2.0 * min(le, ge), 1.0) / n_boot)
    return GapTest(base=float(base), other=float(other), gap=float(other - base),
                   ci_low=float(low), ci_high=float(high), p_value=float(p), paired=paired,
                   n_base=n_base, n_other=n_other, n_pairs=n_pairs, n_boot=n_boot, seed=seed)


def _check_boot(n_boot: int) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")


def paired_bootstrap(base: Sequence[float] | np.ndarray, other: Sequence[float] | np.ndarray, *,
                     score: ScoreFn = mean_score, n_boot: int = DEFAULT_N_BOOT,
                     seed: int = DEFAULT_SEED) -> GapTest:
    """Gap `other - base` over aligned items (row i of both is the same document).

    Each resample draws item indices once and scores both languages on them.
    """
    a, b = _as_stats(base), _as_stats(other)
    if len(a) != len(b):
        raise ValueError(f"paired comparison needs aligned items, got {len(a)} and {len(b)}")
    _check_boot(n_boot)
    n = len(a)
    counts = _resample_counts(np.random.default_rng(seed), n, n_boot)
    boot = score(counts @ b, n) - score(counts @ a, n)
    va = float(score(a.sum(axis=0)[None, :], n)[0])
    vb = float(score(b.sum(axis=0)[None, :], n)[0])
    return _result(va, vb, boot, paired=True, n_base=n, n_other=n, n_pairs=n,
                   n_boot=n_boot, seed=seed)


def unpaired_bootstrap(base: Sequence[float] | np.ndarray, other: Sequence[float] | np.ndarray, *,
                       score: ScoreFn = mean_score, n_boot: int = DEFAULT_N_BOOT,
                       seed: int = DEFAULT_SEED) -> GapTest:
    """Gap `other - base` when the items are different documents: each side resampled alone."""
    a, b = _as_stats(base), _as_stats(other)
    _check_boot(n_boot)
    rng = np.random.default_rng(seed)
    ca = _resample_counts(rng, len(a), n_boot)
    cb = _resample_counts(rng, len(b), n_boot)
    boot = score(cb @ b, len(b)) - score(ca @ a, len(a))
    va = float(score(a.sum(axis=0)[None, :], len(a))[0])
    vb = float(score(b.sum(axis=0)[None, :], len(b))[0])
    return _result(va, vb, boot, paired=False, n_base=len(a), n_other=len(b), n_pairs=0,
                   n_boot=n_boot, seed=seed)


def neutral_id(doc_id: str, lang: str) -> str:
    """A document id with its language code taken out, so parallel ids compare equal.

    ``commonsense_eu_01`` in Basque and ``commonsense_es_01`` in Spanish both become
    ``commonsense_{lang}_01``; ids without a language code (XStoryCloze story UUIDs, row
    numbers) are returned unchanged. Only a whole token (between ``_``, ``-``, ``.``, ``/`` or
    the ends) that equals the code is replaced.
    """
    return re.sub(rf"(?<![A-Za-z0-9]){re.escape(lang)}(?![A-Za-z0-9])", "{lang}", doc_id)


def pair_items(base_ids: Sequence[str], other_ids: Sequence[str], *,
               min_pairs: int = 2, min_share: float = 0.5) -> list[tuple[int, int]] | None:
    """Index pairs (i in base, j in other) of documents with the same id, or None if unpaired.

    The tasks count as parallel when at least `min_pairs` ids are shared and the shared ids
    cover at least `min_share` of the smaller task; otherwise an accidental overlap (say two
    tasks that both number their rows) is not taken for parallel data. Pairs follow `base`
    order; duplicate ids keep their first occurrence.
    """
    first_other: dict[str, int] = {}
    for j, d in enumerate(other_ids):
        first_other.setdefault(d, j)
    seen: set[str] = set()
    pairs = []
    for i, d in enumerate(base_ids):
        if d in first_other and d not in seen:
            pairs.append((i, first_other[d]))
            seen.add(d)
    smaller = min(len(set(base_ids)), len(set(other_ids)))
    if len(pairs) < min_pairs or smaller == 0 or len(pairs) < min_share * smaller:
        return None
    return pairs


def gap_test(base_ids: Sequence[str], base_values: Sequence[float] | np.ndarray,
             other_ids: Sequence[str], other_values: Sequence[float] | np.ndarray, *,
             score: ScoreFn = mean_score, n_boot: int = DEFAULT_N_BOOT,
             seed: int = DEFAULT_SEED) -> GapTest:
    """Paired bootstrap on the shared documents when the tasks are parallel, else unpaired.

    Ids should already be language-neutral (see `neutral_id`). Values are per item, in the
    same order as the ids: a vector of scores or an (items, k) matrix of statistics.
    """
    a, b = _as_stats(base_values), _as_stats(other_values)
    if len(a) != len(base_ids) or len(b) != len(other_ids):
        raise ValueError("each id needs exactly one row of values")
    pairs = pair_items(base_ids, other_ids)
    if pairs is None:
        return unpaired_bootstrap(a, b, score=score, n_boot=n_boot, seed=seed)
    ia, ib = (np.array(ix) for ix in zip(*pairs))
    res = paired_bootstrap(a[ia], b[ib], score=score, n_boot=n_boot, seed=seed)
    return replace(res, n_base=len(a), n_other=len(b))


def corpus_stats(metric: str, hyps: Sequence[str], refs: Sequence[str]) -> tuple[np.ndarray, ScoreFn]:
    """Per-sentence sacreBLEU statistics and the score function that turns their sums into
    the corpus score (bleu, chrf or ter, default settings, as `iberlite.scoring.metrics` scores them).

    ``score(stats.sum(axis=0)[None], n)`` equals ``sacrebleu.corpus_<metric>(hyps, [refs])``.
    """
    from iberlite.scoring import metrics

    scorer = metrics._sacre_metric(metric)
    stats = metrics._sentence_stats(scorer, hyps, refs)

    def score(sums: np.ndarray, n: int) -> np.ndarray:
        return np.array([metrics._score_from_sums(scorer, row) for row in sums])

    return stats, score
