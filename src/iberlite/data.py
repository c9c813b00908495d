"""Read a task's documents from the data dir (tsv, csv, jsonl, json, lines) or the hub.

The data dir is never copied: files are read where they are, hashed for the signature, and
turned into `Doc` records. Local files win; the Hugging Face Hub is used only when the user
asks for it (`--online`), so tests and offline runs never touch the network.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError
from .tasks.spec import SourceSpec, TaskSpec

DATA_DIR_ENV = "IBERLITE_DATA_DIR"


@dataclass(frozen=True)
class Doc:
    """One evaluation document: an id and its raw fields (after preprocessing)."""

    id: str
    fields: dict[str, Any]


def default_data_dir() -> Path:
    """`IBERLITE_DATA_DIR` if set, else `./data`."""
    return Path(os.environ.get(DATA_DIR_ENV, "data"))


def resolve_path(spec: TaskSpec, rel: str, data_dir: Path) -> Path:
    """A source path: `./x` is beside the task YAML, anything else is under the data dir."""
    if rel.startswith("./"):
        return spec.base_dir / rel[2:]
    return data_dir / rel


def source_files(spec: TaskSpec, data_dir: Path) -> list[Path]:
    """Every file the task reads, resolved; a missing one is a user error naming it."""
    paths = [resolve_path(spec, rel, data_dir) for rel in spec.source.paths()]
    for path in paths:
        if not path.is_file():
            where = spec.base_dir if str(path).startswith(str(spec.base_dir)) else data_dir
            raise UserError(
                f"Task {spec.name} needs the data file {path.name!r}, which is not in "
                f"{where.resolve()} (looked for {path}); pass --data-dir or set {DATA_DIR_ENV}."
            )
    return paths


def data_hash(spec: TaskSpec, data_dir: Path) -> str:
    """sha256 over the task's data files, so a changed file changes the signature."""
    h = hashlib.sha256()
    for path in source_files(spec, data_dir):
        h.update(path.name.encode())
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def _read_table(fmt: str, path: Path, columns: tuple[str, ...] | None) -> Iterator[dict[str, Any]]:
    if fmt == "jsonl":
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise UserError(f"Line {n} of {path} is not valid JSON.") from exc
        return
    if fmt == "json":
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise UserError(f"{path} is not valid JSON.") from exc
        rows = payload.get("records") if isinstance(payload, dict) else payload
        if not isinstance(rows, list):
            raise UserError(f"{path} holds neither a list of records nor a `records` list.")
        yield from rows
        return
    with path.open(encoding="utf-8", newline="") as f:
        if fmt == "tsv":
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        else:
            reader = csv.reader(f)
        header = list(columns) if columns else next(reader, None)
        if header is None:
            return
        for n, row in enumerate(reader, 2 if not columns else 1):
            if not row:
                continue
            if len(row) != len(header):
                raise UserError(
                    f"Row {n} of {path} has {len(row)} fields, expected {len(header)} "
                    f"({', '.join(header)})."
                )
            yield dict(zip(header, row))


def _read_lines(spec: TaskSpec, data_dir: Path) -> list[dict[str, Any]]:
    columns: dict[str, list[str]] = {}
    for field_name, rel in spec.source.line_fields:
        path = resolve_path(spec, rel, data_dir)
        columns[field_name] = path.read_text(encoding="utf-8").rstrip("\n").split("\n")
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        detail = ", ".join(f"{k}: {len(v)}" for k, v in columns.items())
        raise UserError(f"Task {spec.name} pairs files of different lengths ({detail}).")
    names = list(columns)
    return [dict(zip(names, values)) for values in zip(*columns.values())]


def _read_rows(spec: TaskSpec, data_dir: Path) -> list[dict[str, Any]]:
    src = spec.source
    source_files(spec, data_dir)  # fail early, naming the first missing file
    if src.format == "lines":
        rows = _read_lines(spec, data_dir)
    else:
        rows = [
            row
            for rel in src.files
            for row in _read_table(src.format, resolve_path(spec, rel, data_dir), src.columns)
        ]
    if src.join:
        rows = _join(spec, rows, data_dir)
    return rows


def _join(spec: TaskSpec, rows: list[dict[str, Any]], data_dir: Path) -> list[dict[str, Any]]:
    join = spec.source.join
    assert join is not None
    other: dict[str, dict[str, Any]] = {}
    for rel in join.files:
        for row in _read_table(join.format, resolve_path(spec, rel, data_dir), None):
            other[str(row[join.on])] = row
    joined = []
    for row in rows:
        key = str(row.get(join.on))
        if key not in other:
            raise UserError(
                f"Task {spec.name}: row {key!r} has no match on {join.on!r} in {', '.join(join.files)}."
            )
        joined.append({**row, **other[key]})
    return joined


def _read_hub(spec: TaskSpec) -> list[dict[str, Any]]:
    hub = spec.source.hf
    if hub is None:
        raise UserError(f"Task {spec.name} names no Hugging Face dataset; use local files.")
    try:
        import datasets  # optional: only online users need it
    except ImportError as exc:
        raise UserError("Reading from the hub needs the `datasets` package: pip install datasets.") from exc
    rename = dict(hub.rename)
    ds = datasets.load_dataset(hub.path, hub.name, split=hub.split)
    return [{rename.get(k, k): v for k, v in row.items()} for row in ds]


def load_docs(
    spec: TaskSpec, data_dir: Path, limit: int | None = None, *, online: bool = False
) -> list[Doc]:
    """The task's documents in file order, filtered, joined and preprocessed, first `limit`.

    `online=True` reads the task's hub dataset instead of local files.
    """
    from .tasks.preprocess import apply_preprocess

    rows = _read_hub(spec) if online else _read_rows(spec, data_dir)
    src: SourceSpec = spec.source
    for key, value in src.where:
        rows = [r for r in rows if str(r.get(key)) == value]
    docs = []
    for n, row in enumerate(rows):
        if src.id is not None and src.id not in row:
            raise UserError(f"Task {spec.name}: id field {src.id!r} is not in the data.")
        doc_id = str(row[src.id]) if src.id is not None else str(n)
        docs.append(Doc(id=doc_id, fields=apply_preprocess(spec.preprocess, dict(row))))
        if limit is not None and len(docs) >= limit:
            break
    return docs


def doc_from_fields(spec: TaskSpec, fields: dict[str, Any], doc_id: str = "request") -> Doc:
    """A document given as raw fields (a request at run time), preprocessed like the task's data."""
    from .tasks.preprocess import apply_preprocess

    try:
        return Doc(id=doc_id, fields=apply_preprocess(spec.preprocess, dict(fields)))
    except KeyError as exc:
        raise UserError(f"Task {spec.name} needs the field {exc.args[0]!r} in the document.", 2) from None


def count_docs(spec: TaskSpec, data_dir: Path) -> int | None:
    """How many documents the task has here, or None when its data files are missing."""
    try:
        return len(load_docs(spec, data_dir))
    except UserError:
        return None
