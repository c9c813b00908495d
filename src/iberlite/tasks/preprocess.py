"""The fixed set of named document transforms a task YAML may ask for.

A task file cannot run code; the few datasets that need reshaping get a named transform here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

Fields = dict[str, Any]


# lm-eval 0.4.13 `general_detokenize`, reproduced rule for rule so that xnli_es prompts match.
_DETOKENIZE_RULES = ((" n't", "n't"), (" )", ")"), ("( ", "("), ('" ', '"'), (' "', '"'))


def _detokenize(text: str) -> str:
    """Undo tokenized spacing the way IberoBench does before building XNLI-es prompts.

    Note the quote rules remove the space on *both* sides of every double quote; that is the
    harness's behaviour and comparability matters more than typography here.
    """
    for old, new in _DETOKENIZE_RULES:
        text = text.replace(old, new)
    return re.sub(r" (['.,])", r"\1", text)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def xnli_es(doc: Fields) -> Fields:
    """IberoBench spanish_bench XNLI preprocessing.

    Detokenize and strip both sentences, drop the premise's final `.`, `,`, `!` or `?`,
    lowercase the hypothesis's first letter and make it end with `.`.
    """
    premise = _detokenize(str(doc["premise"])).strip()
    hypothesis = _detokenize(str(doc["hypothesis"])).strip()
    if premise.endswith((".", ",", "!", "?")):
        premise = premise[:-1]
    hypothesis = _lower_first(hypothesis)
    if not hypothesis.endswith("."):
        hypothesis += "."
    return {**doc, "premise": premise, "hypothesis": hypothesis}


def strip(doc: Fields) -> Fields:
    """Strip surrounding whitespace from every string field."""
    return {k: v.strip() if isinstance(v, str) else v for k, v in doc.items()}


TRANSFORMS: dict[str, Callable[[Fields], Fields]] = {"xnli_es": xnli_es, "strip": strip}


def apply_preprocess(names: Sequence[str], doc: Fields) -> Fields:
    """Apply the named transforms in order."""
    for name in names:
        doc = TRANSFORMS[name](doc)
    return doc
