"""A task's pool of unlabelled texts, read from a team's own file (`iberlite pool add`).

The file is CSV, TSV, JSONL or one text per line. Its columns map to the fields the task's
templates read (by name, or `--column FIELD=COLUMN`); a one-text-per-line file fills the task's
only text field. Each row is rendered as the task renders an item, so a row that the task
could not ask about is found now, not on the labelling page. A row is stored by the hash of
the fields it gives, so adding a file twice adds nothing; a row whose text is also an evaluated
item is flagged and never trained on.

A file with broken rows is refused whole, naming the first and the count, unless the user
asks to skip them; either way nothing stored before is touched.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iberlite.errors import RowError, TaskSpecError, UserError
from iberlite.store import Store
from iberlite.store.labels import LabelBook, PoolRow
from iberlite.tasks.data import RowFault, read_table
from iberlite.tasks.items import load_items
from iberlite.tasks.render import content_hash, render_fields
from iberlite.tasks.sandbox import template_fields
from iberlite.tasks.spec import TaskSpec

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "json", ".txt": "lines"}


@dataclass(frozen=True)
class PoolRead:
    """What a pool file gave: the rows that render, and one sentence per broken row."""

    rows: tuple[PoolRow, ...]
    broken: tuple[str, ...]


@dataclass(frozen=True)
class PoolAdded:
    """The outcome of `pool add`: rows read, new, already there, flagged, skipped, and the pool size."""

    task: str
    read: int
    added: int
    flagged: int  # rows whose text is an evaluated item: kept, never trained on
    skipped: tuple[str, ...]
    pool_size: int


def input_fields(spec: TaskSpec) -> tuple[str, ...]:
    """The fields a pool row must give: what the question and its choices read (not the label)."""
    if spec.output != "multiple_choice":
        raise UserError(f"Task {spec.name} is a generation task; a pool can be labelled for "
                        "multiple-choice tasks only.", 2)
    names: set[str] = set()
    for source in (spec.doc_to_text, spec.doc_to_choice):
        if isinstance(source, str):
            names |= template_fields(source)
    return tuple(sorted(names))


def parse_columns(pairs: Sequence[str]) -> dict[str, str]:
    """`FIELD=COLUMN` options as {field: column}."""
    out = {}
    for pair in pairs:
        fld, sep, column = pair.partition("=")
        if not sep or not fld.strip() or not column.strip():
            raise UserError(f"--column takes FIELD=COLUMN (for example text=message), not {pair!r}.", 2)
        out[fld.strip()] = column.strip()
    return out


def _raw_rows(path: Path, fmt: str, fields: tuple[str, ...]) -> list[tuple[int, dict[str, Any] | RowFault]]:
    if fmt != "lines":
        return list(read_table(fmt, path, None))
    if len(fields) != 1:
        raise UserError(f"{path.name} has one text per line, but the task reads {len(fields)} fields "
                        f"({', '.join(fields)}); give a CSV or JSONL file with those columns.", 2)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8.", 2) from None
    return [(n, {fields[0]: line.rstrip("\r")}) for n, line in enumerate(text.split("\n"), 1) if line.strip()]


def row_hash(fields: dict[str, Any]) -> str:
    """The row's identity: its fields with whitespace normalized (16 hex)."""
    norm = {k: " ".join(str(v).split()) for k, v in sorted(fields.items())}
    return hashlib.sha256(json.dumps(norm, ensure_ascii=False).encode()).hexdigest()[:16]


def read_pool_file(spec: TaskSpec, path: Path, columns: dict[str, str], evaluated: set[str]) -> PoolRead:
    """Read and render every row of a pool file; a row that cannot be used is one sentence."""
    if not path.is_file():
        raise UserError(f"No pool file at {path}.", 2)
    fmt = FORMATS.get(path.suffix.lower(), "lines")
    fields = input_fields(spec)
    unknown = sorted(set(columns) - set(fields))
    if unknown:
        raise UserError(f"Task {spec.name} reads no field {unknown[0]!r}; its fields are {', '.join(fields)}.", 2)
    rows: list[PoolRow] = []
    broken: list[str] = []
    seen: set[str] = set()
    for line, raw in _raw_rows(path, fmt, fields):
        where = f"line {line} of {path.name}"
        if isinstance(raw, RowFault):
            broken.append(f"{where} {raw.detail}.")
            continue
        picked: dict[str, Any] = {}
        for fld in fields:
            column = columns.get(fld, fld)
            value = raw.get(column)
            if value is None or not str(value).strip():
                broken.append(f"{where} has no {column!r} ({'empty' if column in raw else 'missing'}).")
                break
            picked[fld] = value
        else:
            try:
                inst = render_fields(spec, picked, f"line {line}")
            except (RowError, TaskSpecError, UserError) as exc:
                broken.append(f"{where} cannot be rendered by the task ({str(exc).rstrip('.')}).")
                continue
            h = row_hash(picked)
            if h in seen:
                continue
            seen.add(h)
            rows.append(PoolRow(spec.name, h, picked, inst.context, str(path.name),
                                content_hash(inst.context) in evaluated))
    return PoolRead(tuple(rows), tuple(broken))


def evaluated_hashes(spec: TaskSpec, data_dir: Path) -> set[str]:
    """Content hashes of the task's evaluated items, which a pool row must not be trained as."""
    try:
        return {content_hash(i.context) for i in load_items(spec, data_dir).instances}
    except UserError as exc:
        raise UserError(f"Cannot check the pool against {spec.name}'s evaluated items ({str(exc).rstrip('.')}); "
                        "pass --data-dir where its data is.", 2) from None


def add_pool(db: Path, spec: TaskSpec, path: Path, data_dir: Path, columns: dict[str, str],
             skip_broken: bool = False) -> PoolAdded:
    """Add a file's rows to the task's pool, all in one transaction."""
    read = read_pool_file(spec, path, columns, evaluated_hashes(spec, data_dir))
    if read.broken and not skip_broken:
        more = f" (and {len(read.broken) - 1} more)" if len(read.broken) > 1 else ""
        raise UserError(f"Nothing was added: {read.broken[0].rstrip('.')}{more}; fix the file or pass "
                        "--skip-broken to add the other rows.", 2)
    if not read.rows:
        raise UserError(f"{path.name} holds no row the task {spec.name} can use.", 2)
    with Store(db) as store:
        book = LabelBook(store)
        added = book.add_pool(read.rows)
        size = book.pool_sizes().get(spec.name, 0)
    return PoolAdded(spec.name, len(read.rows), added, sum(r.evaluated for r in read.rows), read.broken, size)
