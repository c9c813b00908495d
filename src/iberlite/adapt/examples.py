"""Training examples from a task's own train split, rendered exactly as the task evaluates.

An example is a (context, continuation) pair, the context from `doc_to_text`. For multiple
choice the continuation is the one the task scores for the gold choice, `target_delimiter + gold
choice`; for generation it is the reference as the task renders it, `target_delimiter +
reference`, followed by the task's first stop string (`generation.until`), so that the model also
learns where to stop. Training on that pair with the loss on the continuation only teaches the
model the very thing an evaluation asks of it.

Or, with `--labels`, the task's pool rows that people labelled (`load_labelled_set`).

The train split is the task's `source.train_files` (same format as its evaluated files, labels
or references inline; for a `lines` source, one file per field, as in its `files`). Training and
evaluated items must never meet: every example's content hash (its whitespace-normalized context)
is checked against the evaluated split, and an overlap is refused unless the user asks to drop
the overlapping rows.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, replace
from pathlib import Path

from iberlite.errors import UserError
from iberlite.store import Store
from iberlite.store.labels import LabelBook
from iberlite.tasks.items import load_items
from iberlite.tasks.render import Instance, content_hash, render_fields
from iberlite.tasks.spec import TaskSpec


@dataclass(frozen=True)
class TrainExample:
    """One training pair: what the model reads and the answer it should give."""

    doc_id: str
    context: str
    continuation: str  # target_delimiter + gold choice, or + reference + stop string
    content_hash: str


@dataclass(frozen=True)
class TrainingSet:
    """The examples one adapter is trained on, and where they came from."""

    task: str
    examples: tuple[TrainExample, ...]
    pool: int  # examples the train split holds (after dropping overlaps)
    dropped_overlap: int  # train rows dropped because the evaluated split holds them too
    train_files: tuple[str, ...]

    @property
    def data_hash(self) -> str:
        """sha256 (16 hex) of the chosen examples in training order: the adapter's data key."""
        h = hashlib.sha256()
        for e in self.examples:
            h.update(json.dumps([e.context, e.continuation], ensure_ascii=False).encode())
        return h.hexdigest()[:16]


def train_spec(spec: TaskSpec) -> TaskSpec:
    """The task reading its train split instead of its evaluated one."""
    src = spec.source
    if not src.train_paths():
        raise UserError(f"Task {spec.name} declares no train split (source.train_files), so it "
                        "cannot be adapted to.", 2)
    source = replace(src, files=src.train_files, line_fields=src.train_line_fields, join=None, hf=None)
    return replace(spec, source=source)


def reference_continuation(inst: Instance) -> str:
    """What the model should say after the context: the gold choice as the task scores it, or
    the reference as the task renders it followed by its first stop string (a generation that
    does not stop runs on to `max_tokens`, and what follows the reference is scored too)."""
    if isinstance(inst.gold, int):
        return inst.target_delimiter + inst.choices[inst.gold]
    return inst.target_delimiter + inst.gold + next((u for u in inst.until if u), "")


def _example(inst: Instance) -> TrainExample:
    return TrainExample(inst.doc_id, inst.context, reference_continuation(inst), content_hash(inst.context))


def load_training_set(spec: TaskSpec, data_dir: Path, limit: int | None, seed: int,
                      drop_overlap: bool = False) -> TrainingSet:
    """The first `limit` examples of the train split in a seeded shuffle (so a smaller set is
    a prefix of a larger one with the same seed: a learning curve adds data, it does not swap
    it); an example whose content is in the evaluated split is refused, or dropped on request."""
    train = load_items(train_spec(spec), data_dir)
    evaluated = {content_hash(i.context) for i in load_items(spec, data_dir).instances}
    examples = [_example(i) for i in train.instances]
    overlap = [e for e in examples if e.content_hash in evaluated]
    if overlap and not drop_overlap:
        raise UserError(
            f"{len(overlap)} of the {len(examples)} training rows of {spec.name} also appear in its "
            f"evaluated split (same text by content hash, e.g. train row {overlap[0].doc_id}); "
            "pass --drop-overlap to train without them.", 2)
    pool = [e for e in examples if e.content_hash not in evaluated]
    random.Random(seed).shuffle(pool)
    chosen = pool if limit is None else pool[:limit]
    if not chosen:
        raise UserError(f"Task {spec.name} has no training examples left to train on.", 2)
    return TrainingSet(spec.name, tuple(chosen), len(pool), len(overlap), spec.source.train_paths())


@dataclass(frozen=True)
class LabelSource:
    """Where an adapter's labels came from: how many, their hash, and who gave them."""

    db: str
    count: int
    labels_hash: str
    labellers: tuple[str, ...]


def load_labelled_set(spec: TaskSpec, db: Path, limit: int | None) -> tuple[TrainingSet, LabelSource]:
    """The task's pool rows that hold a label now, in the order they were labelled (the first
    `limit`), rendered as the task evaluates; rows whose text is an evaluated item are dropped."""
    if spec.output != "multiple_choice":
        raise UserError(f"Task {spec.name} is a generation task; labels train multiple-choice tasks only.", 2)
    with Store.open_readonly(db) as store:
        book = LabelBook(store)
        pool = {r.row_hash: r for r in book.pool(spec.name)}
        given = [e for e in book.labels(spec.name).values() if e.row_hash in pool]
    usable = [e for e in given if not pool[e.row_hash].evaluated]
    chosen = usable if limit is None else usable[:limit]
    if not chosen:
        raise UserError(f"No labels for {spec.name} in {db}; label rows with `iberlite label --task "
                        f"{spec.name}` or `iberlite labels import` first.", 2)
    examples = []
    h = hashlib.sha256()
    for e in chosen:
        inst = render_fields(spec, pool[e.row_hash].fields, e.row_hash)
        if e.label not in inst.choices:
            raise UserError(f"The label {e.label!r} of pool row {e.row_hash} is not one of {spec.name}'s "
                            f"choices ({', '.join(inst.choices)}).", 2)
        examples.append(TrainExample(e.row_hash, inst.context, inst.target_delimiter + str(e.label),
                                     content_hash(inst.context)))
        h.update(json.dumps([e.row_hash, e.label, e.labeller]).encode())
    training = TrainingSet(spec.name, tuple(examples), len(usable), len(given) - len(usable),
                           (f"labels:{Path(db).name}",))
    return training, LabelSource(str(db), len(chosen), h.hexdigest()[:16],
                                 tuple(sorted({e.labeller for e in chosen})))
