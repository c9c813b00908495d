"""Whether a generated answer matches its reference, item by item, as lm-evaluation-harness
0.4.13 decides it: exact match after MGSM's filters (plain and `flexible-extract`) and SQuAD
v1.1's exact match and token F1 (reading comprehension). See `metrics.py` for how the scores
are aggregated and given confidence intervals.
"""

from __future__ import annotations

import re
import string
from collections import Counter

FLEX_PATTERN = r"(-?[$0-9.,]{2,})|(-?[0-9]+)"
FLEX_FALLBACK = "[invalid]"
_FLEX_RE = re.compile(FLEX_PATTERN)
_ASCII_PUNCT = str.maketrans("", "", string.punctuation)


def _normalise(text: str) -> str:
    """lm-eval's `ignore_case` then `ignore_punctuation`: lowercase, drop ASCII punctuation."""
    return text.lower().translate(_ASCII_PUNCT)


def exact_match(output: str, target: str) -> float:
    """1.0 if the stripped output equals the target ignoring case and ASCII punctuation.

    Reproduces lm-eval's MGSM `remove_whitespace` filter (`output.strip()`; the target is not
    stripped) followed by `exact_match` with `ignore_case=True, ignore_punctuation=True`.
    Only `string.punctuation` is removed: Spanish `¿¡«»` and a Unicode minus survive.
    """
    return float(_normalise(output.strip()) == _normalise(target))


def flexible_extract(output: str) -> str:
    """The number lm-eval's MGSM `flexible-extract` filter pulls out of a generation.

    Takes the last `findall` match of `FLEX_PATTERN`, its first non-empty group, stripped;
    `FLEX_FALLBACK` ("[invalid]") when nothing matches. Note the first alternative also
    matches bare punctuation runs such as "..." or ",,".
    """
    matches = _FLEX_RE.findall(output)
    if not matches:
        return FLEX_FALLBACK
    groups = [g for g in matches[-1] if g]
    return groups[0].strip() if groups else FLEX_FALLBACK


def exact_match_flex(output: str, target: str) -> float:
    """1.0 if the number `flexible_extract` finds equals the target (lm-eval MGSM flexible).

    The comparison is `exact_match`'s: case and ASCII punctuation ignored, so "1,000" equals
    "1000" and, because "-" is punctuation, "-5" equals "5".
    """
    return float(_normalise(flexible_extract(output)) == _normalise(target))


_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_ASCII_PUNCT_SET = frozenset(string.punctuation)


def squad_normalise(text: str) -> str:
    """SQuAD v1.1's answer normalisation: lowercase, drop ASCII punctuation, drop the English
    articles a/an/the as whole words, collapse whitespace (in that order).

    The articles removed are English ones in every language (so Spanish "el" stays, while
    Portuguese and Catalan "a" goes, being spelt like the English article): that is the
    official script's behaviour, lm-eval keeps it for XQuAD and CatalanQA, and so does
    iberlite.
    """
    text = "".join(ch for ch in text.lower() if ch not in _ASCII_PUNCT_SET)
    return " ".join(_ARTICLES.sub(" ", text).split())


def squad_exact(output: str, answer: str) -> float:
    """1.0 if the generation equals the answer after `squad_normalise` (lm-eval's
    `process_results_qa` `exact_match`: transformers' `compute_exact(answer, output)`)."""
    return float(squad_normalise(answer) == squad_normalise(output))


def squad_f1(output: str, answer: str) -> float:
    """Token-overlap F1 between the generation and the answer after `squad_normalise`
    (transformers' `compute_f1(answer, output)`, lm-eval's `f1`): 2PR/(P+R) over the multiset
    of shared tokens; when either side has no token, 1.0 if both have none, else 0.0."""
    gold = squad_normalise(answer).split() if answer else []
    pred = squad_normalise(output).split() if output else []
    if not gold or not pred:
        return float(gold == pred)
    same = sum((Counter(gold) & Counter(pred)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)
