"""SQuAD exact match and F1 equal lm-eval 0.4.13's `process_results_qa` on real answers.

lm-eval scores XQuAD and CatalanQA with transformers' `squad_metrics.compute_exact` and
`compute_f1` against the first reference answer (`xquad/utils.py`, `catalan_bench/utils.py`).
iberlite's own `squad_exact` / `squad_f1` are compared with those functions, called through
lm-eval's `process_results_qa`, on every answer of the real XQuAD-es / CatalanQA files against
predictions a model could plausibly produce (the answer itself, shifted spans, case and
punctuation changes, articles, empty output). Needs the reference extra and the data dir.
"""

from __future__ import annotations

import json
import random

import pytest

from iberlite.scoring.matching import squad_exact, squad_f1, squad_normalise
from iberlite.scoring.metrics import ItemOutcome, aggregate

pytest.importorskip("lm_eval")
squad_metrics = pytest.importorskip("transformers.data.metrics.squad_metrics")


def _questions(path):
    data = json.loads(path.read_text(encoding="utf-8"))
    for article in data["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                yield para["context"], qa["answers"][0]["text"]


def _predictions(context: str, answer: str, rng: random.Random) -> list[str]:
    """Outputs to score: the answer and near misses, as a greedy model writes them."""
    words = context.split()
    i = rng.randrange(len(words))
    return [
        answer, " " + answer, answer.upper(), answer + ".", f"The {answer}", f"el {answer}",
        " ".join(words[i:i + rng.randint(1, 8)]), answer[: len(answer) // 2], "", "  ",
        f"«{answer}»", answer.replace(" ", "  "), f"a {answer} an",
    ]


@pytest.mark.parametrize("rel", ["xquad/xquad.es.json",
                                 "catalan_club_test/engine/test_data/catalanqa/test.json"])
def test_squad_metrics_equal_lm_evals_process_results_qa(data_dir, rel):
    from lm_eval.tasks.catalan_bench.utils import process_results_qa as catalan_qa
    from lm_eval.tasks.xquad.utils import process_results_qa as xquad_qa

    rng = random.Random(0)
    n = 0
    for context, answer in _questions(data_dir / rel):
        for pred in _predictions(context, answer, rng):
            if "xquad" in rel:
                ref = xquad_qa({"answers": {"text": [answer]}}, [pred])
            else:
                ref = catalan_qa({"answers": [{"text": answer}]}, [pred])
            assert squad_exact(pred, answer) == ref["exact_match"], (pred, answer)
            assert squad_f1(pred, answer) == pytest.approx(ref["f1"], abs=1e-12), (pred, answer)
            n += 1
    assert n > 10_000


def test_normalisation_is_squads_english_rules_in_every_language():
    assert squad_normalise("  The  Panthers, (308)!  ") == "panthers 308"
    assert squad_normalise("el ¿Dónde?") == "el ¿dónde"  # Spanish article and ¿ kept
    assert squad_normalise("a casa") == "casa"  # Portuguese/Catalan "a" goes, as in SQuAD
    assert squad_f1("tres finestrals", "tres") == pytest.approx(2 / 3)
    assert squad_f1("", "") == 1.0 and squad_f1("x", "") == 0.0


def test_aggregate_squad_metrics_are_means_on_a_fraction_scale():
    items = [ItemOutcome(None, None, "308", " 308"), ItemOutcome(None, None, "tres", "tres finestrals")]
    assert aggregate("squad_em", items, n_boot=50).value == pytest.approx(0.5)
    assert aggregate("squad_f1", items, n_boot=50).value == pytest.approx((1 + 2 / 3) / 2)
