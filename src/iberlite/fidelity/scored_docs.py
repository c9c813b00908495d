"""What every system under comparison hands over: one record per scored document."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from iberlite.store import Store


@dataclass(frozen=True)
class ScoredDoc:
    """One document as one system scored it.

    `key` identifies the document (its id field, else its row index in the data file);
    `context` and `continuations` are the exact strings the model scored or was prompted
    with, so two systems' prompts can be checked for identity, not assumed identical.
    Multiple choice: `logprobs` per choice and `prediction` the argmax index as text.
    Generation: `prediction` is the generated text.
    """

    key: str
    context: str
    continuations: tuple[str, ...]
    logprobs: tuple[float, ...]
    prediction: str
    correct: bool | None


@dataclass(frozen=True)
class SystemRun:
    """One system's documents and aggregate metrics for one task."""

    system: str
    task: str
    docs: tuple[ScoredDoc, ...]
    metrics: dict[str, float]


def from_store(db: Path, system: str, model: str, delimiters: dict[str, str],
               metrics: dict[str, dict[str, float]]) -> dict[str, SystemRun]:
    """iberlite's stored items for `model`, per task, as ScoredDocs.

    `delimiters` gives each task's target delimiter (the store keeps bare choices);
    `metrics` the aggregates the run reported, per task.
    """
    store = Store(db)
    try:
        out = {}
        for ev in store.evals():
            if ev.model != model or ev.task not in delimiters:
                continue
            task = ev.task
            delim = delimiters[task]
            docs = tuple(
                ScoredDoc(
                    key=it.doc_id,
                    context=it.prompt,
                    continuations=tuple(delim + c for c in (it.choices or ())),
                    logprobs=tuple(it.logprobs or ()),
                    prediction=(it.prediction or "") if it.logprobs else (it.generated or ""),
                    correct=it.correct,
                )
                for it in sorted(store.items(ev.eval_key), key=lambda i: i.seq)
            )
            out[task] = SystemRun(system, task, docs, metrics.get(task, {}))
        return out
    finally:
        store.close()


def by_key(docs: Sequence[ScoredDoc]) -> dict[str, ScoredDoc]:
    """Documents by key; a duplicate key is an error, never a silent overwrite."""
    out: dict[str, ScoredDoc] = {}
    for d in docs:
        if d.key in out:
            raise ValueError(f"document key {d.key!r} appears twice")
        out[d.key] = d
    return out
