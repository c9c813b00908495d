"""Scores for multiple-choice and generation tasks, with seeded bootstrap confidence intervals.

Every per-item scorer reproduces the semantics of lm-evaluation-harness 0.4.13, so that a
number printed by iberlite means what the same number means in an lm-eval results table:

* `acc` / `acc_norm`: argmax of the summed log-probability per choice, raw or divided by the
  choice's length in characters (lm-eval's `api/task.py`, multiple_choice branch).
* `exact_match`: the `remove_whitespace` filter (`str.strip`) and then lm-eval's
  `exact_match_hf_evaluate` with `ignore_case` and `ignore_punctuation` (ASCII
  `string.punctuation` only), as MGSM's `direct` configs use it.
* `exact_match_flex`: MGSM's `flexible-extract` filter (last match of
  `(-?[$0-9.,]{2,})|(-?[0-9]+)`, fallback `"[invalid]"`) and then the same comparison.
* `squad_em` / `squad_f1`: SQuAD v1.1 exact match and token F1 of the generation against the
  first reference answer, after SQuAD's normalisation (lowercase, ASCII punctuation removed,
  English articles removed, whitespace collapsed), as lm-eval's `process_results_qa` computes
  them with transformers' `squad_metrics.compute_exact` / `compute_f1` (XQuAD, CatalanQA);
  lm-eval calls them `exact_match` and `f1`.
* `bleu` / `chrf` / `ter`: sacrebleu's corpus scores with default settings, as lm-eval's
  aggregations compute them (scale 0-100).

Confidence intervals are 95% percentile bootstraps over items (sentences for the corpus
metrics), drawn from one seeded `numpy.random.default_rng(seed)` index matrix, so the same
seed always gives the same interval. That matrix holds `n_boot * n` int64 indices (80 MB for
1000 resamples of 10,000 items), which is fine for benchmark-sized tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from sacrebleu.metrics.base import Metric
from sacrebleu.metrics.bleu import BLEU
from sacrebleu.metrics.chrf import CHRF
from sacrebleu.metrics.ter import TER

from iberlite.scoring.matching import exact_match, exact_match_flex, squad_exact, squad_f1
from iberlite.scoring.metric import CORPUS_METRICS, METRICS

__all__ = [
    "ItemOutcome",
    "MetricScore",
    "aggregate",
    "corpus_score_with_ci",
    "f1_macro",
    "f1_macro_with_ci",
    "mc_prediction",
    "mc_prediction_norm",
    "per_item_scores",
    "choice_margin",
    "sentence_chrf",
    "mean_with_ci",
    "metric_signature",
]


_SACRE_METRICS: dict[str, Callable[[], Metric]] = {"bleu": BLEU, "chrf": CHRF, "ter": TER}


@dataclass(frozen=True)
class MetricScore:
    """An aggregate score with its 95% bootstrap interval.

    `value` is on the metric's natural scale: a fraction in [0, 1] for acc, acc_norm,
    f1_macro and the exact matches; 0-100 for bleu, chrf and ter (as sacrebleu prints them).
    `n` is the number of items the score was computed over.
    """

    metric: str
    value: float
    ci_low: float
    ci_high: float
    n: int


@dataclass(frozen=True)
class ItemOutcome:
    """What one evaluated item produced, in the shape `aggregate` needs.

    Multiple-choice items fill `logprobs` (summed log-probability of each choice's
    continuation), `choices` (the choice strings) and an `int` `gold` index. Generation items
    fill `output` (the model's text) and a `str` `gold` (the target or reference translation).
    """

    logprobs: tuple[float, ...] | None
    choices: tuple[str, ...] | None
    gold: int | str
    output: str | None


# --- multiple choice ---------------------------------------------------------------------


def mc_prediction(logprobs: Sequence[float]) -> int:
    """Index of the most likely choice (lm-eval `acc`); the first maximum wins on ties.

    Uses `numpy.argmax` exactly as lm-eval does, so ties and NaNs resolve identically.
    """
    if len(logprobs) == 0:
        raise ValueError("mc_prediction needs at least one choice log-probability")
    arr = np.asarray(logprobs, dtype=float)
    if np.all(arr == -np.inf):  # answered by generation and nothing parsable: no choice
        return -1
    return int(np.argmax(arr))


def choice_margin(logprobs: Sequence[float]) -> float:
    """Confidence of a multiple-choice answer: top-1 minus top-2 probability after a softmax
    over the choice logprobs (the cascade's routing signal)."""
    arr = np.asarray(logprobs, dtype=float)
    if np.all(arr == -np.inf):
        return 0.0
    probs = np.sort(np.exp(arr - arr.max()))[::-1]
    return float((probs[0] - (probs[1] if len(probs) > 1 else 0.0)) / probs.sum())


def mc_prediction_norm(logprobs: Sequence[float], choices: Sequence[str]) -> int:
    """Index of the best choice per character (lm-eval `acc_norm`).

    lm-eval divides each summed log-probability by `len(choice)` of the choice string from
    `doc_to_choice` (characters, without the target delimiter that was scored in front of
    it), so long choices are not penalised for having more tokens. An empty choice divides
    by zero exactly as numpy does in lm-eval (no error, -inf or NaN).
    """
    if len(logprobs) != len(choices):
        raise ValueError(
            f"mc_prediction_norm got {len(logprobs)} log-probabilities for {len(choices)} choices"
        )
    if len(choices) == 0:
        raise ValueError("mc_prediction_norm needs at least one choice")
    if np.all(np.asarray(logprobs, dtype=float) == -np.inf):  # no parsable generated answer
        return -1
    lengths = np.array([float(len(c)) for c in choices])
    with np.errstate(divide="ignore", invalid="ignore"):
        return int(np.argmax(np.asarray(logprobs, dtype=float) / lengths))


# --- bootstrap ----------------------------------------------------------------------------


def _check_sizes(n: int, n_boot: int) -> None:
    """Refuse inputs a bootstrap cannot summarise, with a message that says why."""
    if n == 0:
        raise ValueError("cannot score zero items: the evaluation produced no outcomes")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")


def _boot_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """One `(n_boot, n)` matrix of item indices drawn with replacement, seeded."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _percentile_ci(samples: np.ndarray) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of the bootstrap distribution."""
    low, high = np.percentile(samples, [2.5, 97.5])
    return float(low), float(high)


def sentence_chrf(hypothesis: str, reference: str) -> float:
    """chrF of one output against its reference (0-100), sacrebleu's sentence score: the
    per-item view of a translation, where the corpus chrF is the task's score."""
    return float(CHRF().sentence_score(hypothesis, [reference]).score)


def mean_with_ci(
    values: Sequence[float], *, seed: int = 1234, n_boot: int = 1000
) -> tuple[float, float, float]:
    """Mean of per-item values and its 95% percentile-bootstrap interval: (mean, low, high).

    Used for every per-item metric (acc, exact match, and `lang_ok` computed elsewhere) so
    that all intervals in a report are comparable. One item gives a zero-width interval.
    """
    x = np.asarray(values, dtype=float)
    _check_sizes(len(x), n_boot)
    mean = float(x.mean())
    if len(x) == 1:
        return mean, mean, mean
    boot = x[_boot_indices(len(x), n_boot, seed)].mean(axis=1)
    return (mean, *_percentile_ci(boot))


# --- macro F1 -----------------------------------------------------------------------------


def _encode_labels(
    preds: Sequence[Hashable], golds: Sequence[Hashable]
) -> tuple[np.ndarray, np.ndarray, int]:
    """Integer codes for predictions and golds over the union of their labels."""
    codes = {label: i for i, label in enumerate(dict.fromkeys([*golds, *preds]))}
    p = np.array([codes[x] for x in preds], dtype=np.int64)
    g = np.array([codes[x] for x in golds], dtype=np.int64)
    return p, g, len(codes)


def _macro_f1_rows(p: np.ndarray, g: np.ndarray, k: int) -> np.ndarray:
    """Macro F1 of each row of code matrices `p`, `g` (shape `(rows, n)`).

    Per label F1 = 2·tp / (predicted + gold count); the mean runs over labels that occur in
    that row's golds or predictions, as sklearn's `f1_score(average="macro")` does.
    """
    rows = p.shape[0]
    flat_g = g + (np.arange(rows) * k)[:, None]
    flat_p = p + (np.arange(rows) * k)[:, None]
    size = rows * k
    tp = np.bincount(flat_g[p == g], minlength=size).reshape(rows, k)
    support = (
        np.bincount(flat_g.ravel(), minlength=size) + np.bincount(flat_p.ravel(), minlength=size)
    ).reshape(rows, k)
    present = support > 0
    f1 = np.divide(2.0 * tp, support, out=np.zeros((rows, k)), where=present)
    macro: np.ndarray = f1.sum(axis=1) / present.sum(axis=1)
    return macro


def _check_pairs(preds: Sequence[object], golds: Sequence[object]) -> None:
    """Predictions and golds must pair up one to one."""
    if len(preds) != len(golds):
        raise ValueError(f"got {len(preds)} predictions for {len(golds)} gold labels")


def f1_macro(preds: Sequence[Hashable], golds: Sequence[Hashable]) -> float:
    """Unweighted mean of per-label F1 over every label seen in golds or predictions.

    Matches sklearn's `f1_score(golds, preds, average="macro", zero_division=0)`: a label
    that is only ever predicted (or only ever gold) counts with F1 = 0, which is what makes
    a model that always answers one label score badly on balanced classification.
    """
    _check_pairs(preds, golds)
    _check_sizes(len(golds), 1)
    p, g, k = _encode_labels(preds, golds)
    return float(_macro_f1_rows(p[None, :], g[None, :], k)[0])


def f1_macro_with_ci(
    preds: Sequence[Hashable], golds: Sequence[Hashable], *, seed: int = 1234, n_boot: int = 1000
) -> tuple[float, float, float]:
    """`f1_macro` and its 95% bootstrap interval over items: (value, low, high).

    Each resample recomputes macro F1 over the labels present in that resample; all
    resamples are scored at once with `bincount`, so 1000 x 2000 items takes milliseconds.
    """
    _check_pairs(preds, golds)
    _check_sizes(len(golds), n_boot)
    p, g, k = _encode_labels(preds, golds)
    value = float(_macro_f1_rows(p[None, :], g[None, :], k)[0])
    if len(golds) == 1:
        return value, value, value
    idx = _boot_indices(len(golds), n_boot, seed)
    return (value, *_percentile_ci(_macro_f1_rows(p[idx], g[idx], k)))


# --- corpus metrics (sacrebleu) -----------------------------------------------------------


def _sacre_metric(metric: str) -> Metric:
    """A fresh sacrebleu metric object with default settings, as lm-eval uses."""
    if metric not in _SACRE_METRICS:
        raise ValueError(f"unknown corpus metric {metric!r}; valid: {', '.join(CORPUS_METRICS)}")
    return _SACRE_METRICS[metric]()


def _sentence_stats(scorer: Metric, hyps: Sequence[str], refs: Sequence[str]) -> np.ndarray:
    """Per-sentence sufficient statistics, one row per sentence (float64, exact for counts)."""
    rows = scorer._extract_corpus_statistics(list(hyps), [list(refs)])
    return np.asarray(rows, dtype=np.float64)


def _score_from_sums(scorer: Metric, summed: np.ndarray) -> float:
    """sacrebleu's own score computation from statistics summed over sentences."""
    return float(scorer._compute_score_from_stats(summed.tolist()).score)


def _resample_counts(idx: np.ndarray, n: int) -> np.ndarray:
    """How often each sentence appears in each resample: shape `(n_boot, n)`."""
    n_boot = idx.shape[0]
    flat = (idx + (np.arange(n_boot) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def _check_corpus(hyps: Sequence[str], refs: Sequence[str]) -> None:
    """Hypotheses and references must be strings that pair up one to one."""
    _check_pairs(hyps, refs)
    if not all(isinstance(s, str) for s in [*hyps, *refs]):
        raise ValueError("corpus metrics need every hypothesis and reference to be a str")


def corpus_score_with_ci(
    metric: str,
    hyps: Sequence[str],
    refs: Sequence[str],
    *,
    seed: int = 1234,
    n_boot: int = 1000,
) -> tuple[float, float, float]:
    """sacrebleu corpus BLEU/chrF/TER with a 95% bootstrap interval over sentences.

    The value equals `sacrebleu.corpus_<metric>(hyps, [refs]).score`. Sentence statistics
    are extracted once; each resample only sums them (one matrix product) and lets sacrebleu
    turn the sums into a score, so the interval costs milliseconds instead of re-running
    tokenisation and n-gram matching `n_boot` times.
    """
    _check_corpus(hyps, refs)
    _check_sizes(len(hyps), n_boot)
    scorer = _sacre_metric(metric)
    stats = _sentence_stats(scorer, hyps, refs)
    value = _score_from_sums(scorer, stats.sum(axis=0))
    if len(hyps) == 1:
        return value, value, value
    summed = _resample_counts(_boot_indices(len(hyps), n_boot, seed), len(hyps)) @ stats
    boot = np.array([_score_from_sums(scorer, row) for row in summed])
    return (value, *_percentile_ci(boot))


# --- aggregate entry point ----------------------------------------------------------------


def _mc_gold(item: ItemOutcome, i: int) -> int:
    """The gold index of a multiple-choice item, or a ValueError naming the item."""
    if isinstance(item.gold, bool) or not isinstance(item.gold, int):
        raise ValueError(f"item {i}: multiple-choice gold must be an int index, got {item.gold!r}")
    return item.gold


def _mc_logprobs(item: ItemOutcome, i: int) -> tuple[float, ...]:
    """The per-choice log-probabilities of an item, or a ValueError naming the item."""
    if not item.logprobs:
        raise ValueError(f"item {i}: multiple-choice metrics need logprobs")
    return item.logprobs


def _mc_choices(item: ItemOutcome, i: int) -> tuple[str, ...]:
    """The choice strings of an item, or a ValueError naming the item."""
    if item.choices is None:
        raise ValueError(f"item {i}: acc_norm needs the choice strings")
    return item.choices


def _gen_pair(item: ItemOutcome, i: int) -> tuple[str, str]:
    """(output, target) of a generation item; an int gold is cast to str as lm-eval does."""
    if item.output is None:
        raise ValueError(f"item {i}: generation metrics need the model output")
    return item.output, str(item.gold)


def _item_acc(item: ItemOutcome, i: int) -> float:
    """1.0 if the raw argmax choice is the gold one."""
    return float(mc_prediction(_mc_logprobs(item, i)) == _mc_gold(item, i))


def _item_acc_norm(item: ItemOutcome, i: int) -> float:
    """1.0 if the per-character argmax choice is the gold one."""
    pred = mc_prediction_norm(_mc_logprobs(item, i), _mc_choices(item, i))
    return float(pred == _mc_gold(item, i))


def _item_em(item: ItemOutcome, i: int) -> float:
    """Strict exact match of one generation item."""
    return exact_match(*_gen_pair(item, i))


def _item_em_flex(item: ItemOutcome, i: int) -> float:
    """Flexible-extract exact match of one generation item."""
    return exact_match_flex(*_gen_pair(item, i))


_PER_ITEM: dict[str, Callable[[ItemOutcome, int], float]] = {
    "acc": _item_acc,
    "acc_norm": _item_acc_norm,
    "exact_match": _item_em,
    "exact_match_flex": _item_em_flex,
    "squad_em": lambda item, i: squad_exact(*_gen_pair(item, i)),
    "squad_f1": lambda item, i: squad_f1(*_gen_pair(item, i)),
}


def per_item_scores(metric: str, items: Sequence[ItemOutcome]) -> list[float] | None:
    """Each item's score under a mean metric (acc, exact match, ...), the values `aggregate`
    averages, so a paired test between two evaluations compares what their scores are made of;
    None for f1_macro and corpus metrics, which exist only over a set of items."""
    if metric not in _PER_ITEM:
        return None
    return [_PER_ITEM[metric](item, i) for i, item in enumerate(items)]


def _check_metric(metric: str) -> None:
    """Reject a metric name that is not one of `METRICS`, listing the valid ones."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid metrics are: {', '.join(METRICS)}")


def aggregate(
    metric: str, items: Sequence[ItemOutcome], *, seed: int = 1234, n_boot: int = 1000
) -> MetricScore:
    """Score a task's items with one metric and a 95% bootstrap interval.

    The single entry point the runner and reports use, so every metric gets the same
    seeding and interval method. Per-item metrics (acc, acc_norm, exact_match,
    exact_match_flex, squad_em, squad_f1) are means; f1_macro compares `mc_prediction` with the gold index;
    bleu/chrf/ter score `output` against the reference in `gold` at corpus level.
    """
    _check_metric(metric)
    items = list(items)
    _check_sizes(len(items), n_boot)
    if metric in _PER_ITEM:
        scores = [_PER_ITEM[metric](item, i) for i, item in enumerate(items)]
        value, low, high = mean_with_ci(scores, seed=seed, n_boot=n_boot)
    elif metric == "f1_macro":
        preds = [mc_prediction(_mc_logprobs(it, i)) for i, it in enumerate(items)]
        golds = [_mc_gold(it, i) for i, it in enumerate(items)]
        value, low, high = f1_macro_with_ci(preds, golds, seed=seed, n_boot=n_boot)
    else:
        hyps, refs = zip(*(_gen_pair(it, i) for i, it in enumerate(items)), strict=True)
        value, low, high = corpus_score_with_ci(metric, hyps, refs, seed=seed, n_boot=n_boot)
    return MetricScore(metric, value, low, high, len(items))


def metric_signature(metric: str, *, seed: int = 1234, n_boot: int = 1000) -> str:
    """A short string that says exactly how a score was computed, for reports.

    bleu/chrf/ter get sacrebleu's own signature (one reference, default settings, with
    sacrebleu's `bs`/`seed` fields holding our bootstrap size and seed); the others get
    `"<metric>|boot:<n_boot>|seed:<seed>"`. The interval itself is always our percentile
    bootstrap, not sacrebleu's.
    """
    _check_metric(metric)
    if metric not in CORPUS_METRICS:
        return f"{metric}|boot:{n_boot}|seed:{seed}"
    scorer = _sacre_metric(metric)
    scorer.num_refs = 1
    scorer.n_bootstrap = n_boot
    scorer.seed = seed
    return scorer.get_signature().format()
