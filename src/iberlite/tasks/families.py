"""Task families: the word a task file gives for the kind of task it is (`family: nli`).

A family is free text, so a user's TruthfulQA-style task can say `family: qa` without asking
anyone: it is selected with `--tasks qa` and shown as `qa` by `iberlite tasks`, `iberlite
results` and the report. The built-in families keep their meaning and come first where tasks are
listed by family, in the order below; any other family comes after them, alphabetically.
"""

from __future__ import annotations

from typing import Any

# The built-in families, in display order, with what each means (docs/tasks.md says the same).
BUILTIN_FAMILIES: dict[str, str] = {
    "reading": "reading comprehension: answer a question about a passage",
    "nli": "natural language inference: does one sentence follow from another",
    "commonsense": "commonsense reasoning: choose the plausible ending of a story",
    "translation": "translation of a sentence from one language into another",
    "math": "math word problems answered with a number",
    "irony": "irony detection",
    "sentiment": "sentiment classification",
    "topic": "topic classification",
    "stance": "stance detection",
    "lm_eval": "a task of lm-evaluation-harness run by name (lm_eval:NAME)",
}

MAX_FAMILY_LENGTH = 40
FAMILY_RULE = (f"one lowercase word of at most {MAX_FAMILY_LENGTH} characters: letters (accented ones "
               "too), digits, `_` or `-`, starting with a letter")


def _allowed(ch: str) -> bool:
    return (ch.isalpha() and ch.islower()) or ch in "0123456789_-"


def family_problem(value: Any) -> str | None:
    """Why `value` cannot be a family (a clause for an error sentence), or None when it can.

    The rule keeps a family usable where it goes: a `--tasks` word on the command line, a
    table cell and a csv/json field, with no spaces or capitals to guess.
    """
    if (isinstance(value, str) and 0 < len(value) <= MAX_FAMILY_LENGTH
            and value[0].isalpha() and all(_allowed(ch) for ch in value)):
        return None
    return f"a family is {FAMILY_RULE}"


def family_key(family: str) -> tuple[int, str]:
    """Sort key: the built-in families in their order, then any other family alphabetically."""
    order = list(BUILTIN_FAMILIES)
    return (order.index(family) if family in BUILTIN_FAMILIES else len(order), family)
