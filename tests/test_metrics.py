"""Behaviour of iberlite.scoring.metrics that a user reading a results table would notice."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import sacrebleu

from iberlite.scoring.matching import exact_match, exact_match_flex, flexible_extract
from iberlite.scoring.metric import GEN_METRICS, MC_METRICS, METRICS, REGISTRY, primary_metric
from iberlite.scoring.metrics import (
    ItemOutcome,
    MetricScore,
    aggregate,
    corpus_score_with_ci,
    f1_macro,
    f1_macro_with_ci,
    mc_prediction,
    mc_prediction_norm,
    mean_with_ci,
    metric_signature,
)

SACRE_CORPUS = {
    "bleu": sacrebleu.corpus_bleu,
    "chrf": sacrebleu.corpus_chrf,
    "ter": sacrebleu.corpus_ter,
}


@pytest.fixture(scope="module")
def flores(data_dir: Path) -> dict[str, list[str]]:
    """Aligned FLORES-200 devtest sentences; Portuguese stands in for a model's Spanish output."""
    flores_dir = data_dir / "flores200"
    if not flores_dir.is_dir():
        pytest.skip(f"FLORES-200 devtest not found at {flores_dir}; corpus-metric tests need it")
    read = lambda lang: (flores_dir / f"{lang}_Latn.devtest").read_text("utf-8").splitlines()  # noqa: E731
    return {"spa": read("spa"), "por": read("por"), "eng": read("eng")}


# --- multiple choice ----------------------------------------------------------------------


def test_mc_prediction_is_argmax_and_first_max_wins_ties() -> None:
    assert mc_prediction([-3.0, -1.0, -2.0]) == 1
    assert mc_prediction([-1.0, -0.5, -0.5]) == 1


def test_acc_norm_divides_by_characters_and_can_flip_the_answer() -> None:
    # The short choice wins on the summed log-probability (-3 > -10) but loses per
    # character (-1.5 < -0.5). (The brief's mirror case, a long choice winning on the sum
    # but losing per character, cannot happen with negative log-probabilities.)
    choices = ["sí", "no lo sé en absoluto"]
    logprobs = [-3.0, -10.0]
    assert mc_prediction(logprobs) == 0
    assert mc_prediction_norm(logprobs, choices) == 1
    items = [ItemOutcome(tuple(logprobs), tuple(choices), 1, None)]
    assert aggregate("acc", items).value == 0.0
    assert aggregate("acc_norm", items).value == 1.0


def test_acc_norm_counts_characters_not_bytes() -> None:
    # "ñññ" is 3 characters but 6 UTF-8 bytes; by characters -3/3 = -1 loses to -2.5/3.
    assert mc_prediction_norm([-3.0, -2.5], ["ñññ", "abc"]) == 1
    assert mc_prediction_norm([-2.9, -2.5], ["ñññ", "abcd"]) == 1


def test_mc_prediction_norm_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="2 log-probabilities for 3 choices"):
        mc_prediction_norm([-1.0, -2.0], ["a", "b", "c"])


# --- generation ---------------------------------------------------------------------------


def test_exact_match_strips_whitespace_case_and_ascii_punctuation() -> None:
    assert exact_match("  18", "18") == 1.0
    assert exact_match("18\n", "18") == 1.0  # lm-eval 0.4.13 strips both ends
    assert exact_match("Madrid.", "madrid") == 1.0
    assert exact_match("1,000", "1000") == 1.0
    assert exact_match("La respuesta es 18", "18") == 0.0


def test_exact_match_keeps_spanish_inverted_punctuation() -> None:
    # lm-eval removes only string.punctuation (ASCII): "¿" and "¡" survive and break the match.
    assert exact_match("¿18?", "18") == 0.0
    assert exact_match("¡Madrid!", "Madrid") == 0.0


def test_flexible_extract_takes_the_last_number() -> None:
    output = "La respuesta es 1,000 dólares... 18"
    assert flexible_extract(output) == "18"
    assert exact_match_flex(output, "18") == 1.0
    assert exact_match(output, "18") == 0.0


def test_flexible_extract_edge_cases_follow_lm_eval() -> None:
    assert flexible_extract("Cuesta $18.") == "$18."
    assert exact_match_flex("Cuesta $18.", "18") == 1.0
    assert exact_match_flex("Son 1,000 euros", "1000") == 1.0
    # "-" is ASCII punctuation, so the sign is ignored in the comparison.
    assert exact_match_flex("El resultado es -5", "5") == 1.0
    # A trailing "..." after a space is itself the last match and empties to "".
    assert flexible_extract("Son 18 manzanas...") == "..."
    assert exact_match_flex("Son 18 manzanas...", "18") == 0.0


def test_flexible_extract_falls_back_to_invalid() -> None:
    assert flexible_extract("No lo sé") == "[invalid]"
    assert exact_match_flex("No lo sé", "18") == 0.0


# --- mean and bootstrap -------------------------------------------------------------------


def test_mean_with_ci_contains_mean_and_is_reproducible() -> None:
    values = [1.0, 0.0, 1.0, 1.0] * 25
    mean, low, high = mean_with_ci(values)
    assert mean == 0.75
    assert low < mean < high
    scores = np.random.default_rng(0).random(100).tolist()  # continuous, so seeds can differ
    assert mean_with_ci(scores, seed=7) == mean_with_ci(scores, seed=7)
    assert mean_with_ci(scores, seed=7) != mean_with_ci(scores, seed=8)


def test_mean_with_ci_narrows_as_n_grows() -> None:
    rng = np.random.default_rng(0)
    small = (rng.random(50) < 0.6).astype(float)
    large = (rng.random(2000) < 0.6).astype(float)
    _, lo_s, hi_s = mean_with_ci(small)
    _, lo_l, hi_l = mean_with_ci(large)
    assert (hi_l - lo_l) < (hi_s - lo_s) / 3


def test_mean_with_ci_edge_sizes() -> None:
    assert mean_with_ci([0.4]) == (0.4, 0.4, 0.4)
    with pytest.raises(ValueError, match="zero items"):
        mean_with_ci([])


# --- macro F1 -----------------------------------------------------------------------------


def test_f1_macro_hand_computed() -> None:
    # label 0: tp=1, predicted 1, gold 2 -> F1 2/3; label 1: tp=2, predicted 3, gold 2 -> 4/5
    assert f1_macro([0, 1, 1, 1], [0, 0, 1, 1]) == pytest.approx((2 / 3 + 4 / 5) / 2)


def test_f1_macro_uses_union_of_predicted_and_gold_labels() -> None:
    # Label 2 is only predicted: it still counts, with F1 0 (sklearn's behaviour).
    assert f1_macro([0, 2], [0, 0]) == pytest.approx((2 / 3 + 0.0) / 2)
    # A model that always answers "sí" on a balanced set gets 1/3, not its 0.5 accuracy.
    assert f1_macro(["sí"] * 4, ["sí", "no", "sí", "no"]) == pytest.approx(1 / 3)


def test_f1_macro_ci_is_fast_reproducible_and_contains_value() -> None:
    rng = np.random.default_rng(3)
    golds = rng.integers(0, 3, 2000)
    preds = np.where(rng.random(2000) < 0.7, golds, rng.integers(0, 3, 2000))
    start = time.perf_counter()
    value, low, high = f1_macro_with_ci(preds.tolist(), golds.tolist(), n_boot=1000)
    assert time.perf_counter() - start < 1.0
    assert value == pytest.approx(f1_macro(preds.tolist(), golds.tolist()))
    assert low < value < high
    assert (value, low, high) == f1_macro_with_ci(preds.tolist(), golds.tolist())


# --- corpus metrics -----------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["bleu", "chrf", "ter"])
def test_corpus_point_estimate_equals_sacrebleu(metric: str, flores: dict[str, list[str]]) -> None:
    hyps, refs = flores["por"][:60], flores["spa"][:60]
    value, low, high = corpus_score_with_ci(metric, hyps, refs)
    assert value == pytest.approx(SACRE_CORPUS[metric](hyps, [refs]).score, abs=1e-9)
    assert low <= value <= high


def test_bleu_of_a_perfect_output_is_100(flores: dict[str, list[str]]) -> None:
    refs = flores["spa"][:20]
    value, low, high = corpus_score_with_ci("bleu", refs, refs)
    assert value == pytest.approx(100.0) and low == value == high  # sacrebleu: 100.00000000000004


def test_bleu_bootstrap_is_fast_on_1000_sentences(flores: dict[str, list[str]]) -> None:
    hyps, refs = flores["por"][:1000], flores["spa"][:1000]
    start = time.perf_counter()
    sacrebleu.corpus_bleu(hyps, [refs])
    one_pass = time.perf_counter() - start
    start = time.perf_counter()
    corpus_score_with_ci("bleu", hyps, refs, n_boot=1000)
    # One statistics pass plus 1000 cheap resamples; re-running sacrebleu would take ~1000x.
    assert time.perf_counter() - start < 3 * one_pass + 2.0


def test_bleu_ci_narrows_with_more_sentences_and_is_seeded(flores: dict[str, list[str]]) -> None:
    hyps, refs = flores["por"], flores["spa"]
    _, lo_s, hi_s = corpus_score_with_ci("bleu", hyps[:100], refs[:100])
    _, lo_l, hi_l = corpus_score_with_ci("bleu", hyps, refs)
    assert (hi_l - lo_l) < (hi_s - lo_s)
    assert corpus_score_with_ci("bleu", hyps[:100], refs[:100], seed=5) == corpus_score_with_ci(
        "bleu", hyps[:100], refs[:100], seed=5
    )


def test_corpus_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="2 predictions for 1 gold"):
        corpus_score_with_ci("chrf", ["a", "b"], ["a"])


# --- aggregate ----------------------------------------------------------------------------


def _mc_items() -> list[ItemOutcome]:
    rows = [((-1.0, -2.0, -3.0), 0), ((-2.0, -1.0, -3.0), 1), ((-1.0, -2.0, -3.0), 2)] * 10
    return [ItemOutcome(lp, ("a", "bb", "ccc"), gold, None) for lp, gold in rows]


def test_aggregate_acc_returns_score_with_ci() -> None:
    score = aggregate("acc", _mc_items())
    assert isinstance(score, MetricScore)
    assert (score.metric, score.n) == ("acc", 30)
    assert score.value == pytest.approx(2 / 3)
    assert score.ci_low < score.value < score.ci_high


def test_aggregate_f1_macro_scores_argmax_predictions() -> None:
    items = _mc_items()
    preds = [mc_prediction(it.logprobs) for it in items]
    assert aggregate("f1_macro", items).value == pytest.approx(
        f1_macro(preds, [it.gold for it in items])
    )


def test_aggregate_exact_match_flex_casts_int_gold() -> None:
    items = [
        ItemOutcome(None, None, 18, "La respuesta es 1,000 dólares... 18"),
        ItemOutcome(None, None, "7", "No lo sé"),
    ]
    assert aggregate("exact_match_flex", items).value == 0.5
    assert aggregate("exact_match", items).value == 0.0


def test_aggregate_bleu_matches_sacrebleu(flores: dict[str, list[str]]) -> None:
    hyps, refs = flores["por"][:100], flores["spa"][:100]
    items = [ItemOutcome(None, None, r, h) for h, r in zip(hyps, refs, strict=True)]
    score = aggregate("bleu", items)
    assert score.value == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-9)
    assert score.n == 100


@pytest.mark.parametrize("metric", METRICS)
def test_every_listed_metric_aggregates(metric: str) -> None:
    if metric in MC_METRICS:
        items = _mc_items()
    else:
        items = [ItemOutcome(None, None, "el gato negro", "el gato negro")] * 3
    score = aggregate(metric, items, n_boot=50)
    assert score.ci_low <= score.value <= score.ci_high


def test_metric_groups_partition_metrics() -> None:
    # every metric but lang_ok (scored by the language identifier) is aggregated by `aggregate`
    assert set(METRICS) | {"lang_ok"} == set(MC_METRICS) | set(GEN_METRICS) == set(REGISTRY)
    assert not set(MC_METRICS) & set(GEN_METRICS)


def test_the_primary_metric_follows_the_registry_rank() -> None:
    assert primary_metric(["acc_norm", "acc"]) == "acc"
    assert primary_metric(["bleu", "chrf", "ter", "lang_ok"]) == "chrf"
    assert primary_metric(["exact_match", "exact_match_flex"]) == "exact_match_flex"
    assert REGISTRY["ter"].higher_is_better is False and REGISTRY["chrf"].percent_scale


def test_aggregate_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="valid metrics are: acc, acc_norm"):
        aggregate("accuracy", _mc_items())
    with pytest.raises(ValueError, match="zero items"):
        aggregate("acc", [])
    with pytest.raises(ValueError, match="item 1: generation metrics need the model output"):
        items = [ItemOutcome(None, None, "1", "1"), ItemOutcome(None, None, "1", None)]
        aggregate("exact_match", items)
    with pytest.raises(ValueError, match="item 0: multiple-choice metrics need logprobs"):
        aggregate("acc", [ItemOutcome(None, None, 0, "x")])


# --- signatures ---------------------------------------------------------------------------


def test_signature_for_sacrebleu_metrics_is_sacrebleus_own(flores: dict[str, list[str]]) -> None:
    bleu = sacrebleu.BLEU()
    bleu.corpus_score(flores["por"][:5], [flores["spa"][:5]])
    own = bleu.get_signature().format()  # nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:…
    ours = metric_signature("bleu", n_boot=1000, seed=1234)
    assert ours == own.replace("nrefs:1|", "nrefs:1|bs:1000|seed:1234|")
    assert "nc:6" in metric_signature("chrf") and "tok:tercom" in metric_signature("ter")


def test_signature_for_other_metrics_is_short() -> None:
    assert metric_signature("acc") == "acc|boot:1000|seed:1234"
    assert metric_signature("exact_match_flex", n_boot=200, seed=1) == (
        "exact_match_flex|boot:200|seed:1"
    )
