"""Evaluate a chunk so that one failing request costs one item, not the run.

A remote endpoint can time out, answer 5xx or send a broken body for one request while
answering the others. The chunk is evaluated as usual; when a request fails (after the
engine's own retries), its items are evaluated one at a time, and those that still fail come
back as `ItemFailure`s with their reason, to be stored as such and retried by a resumed run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from iberlite.engines.base import RequestFailed
from iberlite.store import ItemFailure, ItemRecord
from iberlite.tasks.render import Instance

Batch = Sequence[tuple[int, Instance]]


def evaluate_isolating(evaluate: Callable[[Batch], list[ItemRecord]],
                       batch: Batch) -> tuple[list[ItemRecord], list[ItemFailure]]:
    """`evaluate(batch)`; if a request fails, each item alone: (records, failed items)."""
    try:
        return evaluate(batch), []
    except RequestFailed as exc:
        if len(batch) == 1:
            seq, inst = batch[0]
            return [], [ItemFailure(inst.doc_id, seq, exc.reason)]
    records: list[ItemRecord] = []
    failures: list[ItemFailure] = []
    for seq, inst in batch:
        try:
            records.extend(evaluate([(seq, inst)]))
        except RequestFailed as exc:
            failures.append(ItemFailure(inst.doc_id, seq, exc.reason))
    return records, failures
