"""Render a document through its task's Jinja templates into an `Instance` the engine can run.

Templates run in the bounded sandbox of `sandbox.py` with StrictUndefined: a task file can read
fields and call safe methods, nothing else, within a step, time and size budget, and a misspelt
field name fails loudly instead of rendering "".
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import Undefined

from iberlite.errors import RowError, TaskSpecError
from iberlite.tasks.data import Doc, doc_from_fields
from iberlite.tasks.sandbox import ENV, run_bounded
from iberlite.tasks.spec import TaskSpec

_SINGLE_EXPR = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.DOTALL)


@dataclass(frozen=True)
class Instance:
    """One rendered item: what the model is asked and what counts as right."""

    task: str
    doc_id: str
    context: str
    choices: tuple[str, ...]  # empty for generation
    gold: int | str  # choice index for multiple choice, reference text for generation
    target_delimiter: str
    until: tuple[str, ...] = ()
    max_tokens: int = 256
    shared_prefix: str = ""  # fixed few-shot: the start of `context` every item of the task shares

    @property
    def prompt(self) -> str:
        """The context as the user reads it (for generation, exactly what the model sees)."""
        return self.context


def content_hash(text: str) -> str:
    """Hash of what the model reads, blind to whitespace differences between copies: how a
    training or pool row is found among the evaluated items."""
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()


@lru_cache(maxsize=512)
def _compile(source: str) -> tuple[str, Any]:
    """Compile a template once: a lone `{{ expr }}` keeps its Python type, else it is text."""
    m = _SINGLE_EXPR.match(source)
    if m and "{{" not in m.group(1) and "}}" not in m.group(1):
        return "expr", ENV.compile_expression(m.group(1).strip(), undefined_to_none=False)
    return "text", ENV.from_string(source)


def _evaluate(spec: TaskSpec, key: str, source: str, doc: Doc) -> Any:
    try:
        kind, compiled = _compile(source)
        if kind == "text":
            return run_bounded(lambda: compiled.render(**doc.fields))
        value = run_bounded(lambda: compiled(**doc.fields))
        if isinstance(value, Undefined):  # an expression does not raise on a missing field
            value._fail_with_undefined_error()
        return value
    except Exception as exc:  # TemplateError, or a Python error raised inside the template
        raise TaskSpecError(
            f"Task {spec.name}: {key} ({spec.where(key)}) failed on document {doc.id} "
            f"({str(exc).rstrip('.')}); check the template against the data."
        ) from exc


def render_text(spec: TaskSpec, key: str, source: str, doc: Doc) -> str:
    """One more template of the task (the few-shot description) rendered on a document."""
    return str(_evaluate(spec, key, source, doc)) if source else ""


def _target(spec: TaskSpec, doc: Doc) -> Any:
    """The target; a Python error on this row's value (a label `index()` cannot find, a label
    `int` cannot read) is the row's fault, counted as a label out of range, not the task's."""
    try:
        return _evaluate(spec, "doc_to_target", spec.doc_to_target, doc)
    except TaskSpecError as exc:
        cause = exc.__cause__
        if isinstance(cause, (ValueError, TypeError, LookupError, ArithmeticError)):
            raise RowError(str(exc), f"has a target that doc_to_target cannot map ({cause})") from cause
        raise


def _choices(spec: TaskSpec, doc: Doc) -> tuple[str, ...]:
    raw = spec.doc_to_choice
    if raw is None:
        return ()
    if isinstance(raw, tuple):
        return raw
    value = _evaluate(spec, "doc_to_choice", raw, doc)
    if not isinstance(value, (list, tuple)) or not all(isinstance(c, str) for c in value):
        raise TaskSpecError(
            f"Task {spec.name}: doc_to_choice must give a list of strings, got {value!r}."
        )
    return tuple(value)


def _gold_index(spec: TaskSpec, doc: Doc, target: Any, choices: tuple[str, ...]) -> int:
    if isinstance(target, str) and target in choices:
        return choices.index(target)
    try:
        index = int(target)
    except (TypeError, ValueError):
        index = -1
    if not 0 <= index < len(choices):
        detail = (f"has the target {target!r}, which is neither a choice index below "
                  f"{len(choices)} nor one of the choices")
        raise RowError(f"Task {spec.name}: document {doc.id} {detail}.", detail)
    return index


def render_fields(spec: TaskSpec, fields: dict[str, Any], doc_id: str = "request") -> Instance:
    """A document given as raw fields (a pool row, a request at run time) rendered as a question
    with no answer yet: choices for multiple choice, gold -1."""
    return render(spec, doc_from_fields(spec, fields, doc_id), with_target=False)


def render(spec: TaskSpec, doc: Doc, *, with_target: bool = True) -> Instance:
    """Render one document: context, choices and gold for multiple choice, reference otherwise.

    `with_target=False` renders a request that has no answer yet (routing at run time): the
    gold is -1 for multiple choice and "" for generation.
    """
    context = _evaluate(spec, "doc_to_text", spec.doc_to_text, doc) if spec.doc_to_text else ""
    target = _target(spec, doc) if with_target else None
    if spec.output == "multiple_choice":
        choices = _choices(spec, doc)
        gold: int | str = _gold_index(spec, doc, target, choices) if with_target else -1
    else:
        choices, gold = (), str(target) if with_target else ""
    return Instance(
        task=spec.name,
        doc_id=doc.id,
        context=str(context),
        choices=choices,
        gold=gold,
        target_delimiter=spec.target_delimiter,
        until=spec.generation.until,
        max_tokens=spec.generation.max_tokens,
    )
