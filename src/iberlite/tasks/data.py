"""Read a task's documents from the data dir (tsv, csv, jsonl, json, lines, SQuAD JSON, ASSIN
XML) or the hub.

The data dir is never copied: files are read where they are, hashed for the signature, and
turned into `Doc` records. Local files win; the Hugging Face Hub is used only when the user
asks for it (`--online`), so tests and offline runs never touch the network.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iberlite.errors import RowError, TaskSpecError, UserError
from iberlite.tasks.spec import SourceSpec, TaskSpec

DATA_DIR_ENV = "IBERLITE_DATA_DIR"


@dataclass(frozen=True)
class Doc:
    """One evaluation document: an id and its raw fields (after preprocessing), and where its
    row is (file and line), so that a problem found later can name it."""

    id: str
    fields: dict[str, Any]
    file: str = ""
    line: int = 0


FAULT_KINDS = ("missing_field", "empty_text", "label_out_of_range", "undecodable_bytes",
               "wrong_column_count", "invalid_json")
"""What can be wrong with one data row; such rows are counted per file and skipped."""


@dataclass(frozen=True)
class RowFault:
    """One data row that cannot be evaluated: where it is, what kind of problem, and detail."""

    file: str
    line: int
    kind: str  # one of FAULT_KINDS
    detail: str

    def error(self, task: str) -> RowError:
        """The --strict error for this row: one sentence naming file, line and problem."""
        return RowError(f"Task {task}: line {self.line} of {self.file} {self.detail}; fix the row "
                        "or run without --strict to skip it.")


@dataclass(frozen=True)
class RowsRead:
    """The good rows of a task's data with their location, the faults found, and how many
    rows each file had."""

    rows: tuple[tuple[str, int, dict[str, Any]], ...]  # (file, line, fields)
    faults: tuple[RowFault, ...]
    rows_per_file: tuple[tuple[str, int], ...]


_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)


def default_data_dir() -> Path:
    """`IBERLITE_DATA_DIR` if set, else `./data`."""
    return Path(os.environ.get(DATA_DIR_ENV, "data"))


def resolve_path(spec: TaskSpec, rel: str, data_dir: Path) -> Path:
    """A source path: `./x` is beside the task YAML, anything else is under the data dir."""
    # normalised, so `./sub/../x` works without `sub` (the spec refuses paths that climb out)
    if rel.startswith("./"):
        return spec.base_dir / os.path.normpath(rel[2:])
    return data_dir / os.path.normpath(rel)


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


def _undecodable(value: Any) -> bool:
    if isinstance(value, str):
        return bool(_UNDECODABLE.search(value))
    if isinstance(value, dict):
        return any(_undecodable(k) or _undecodable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_undecodable(v) for v in value)
    return False


_BAD_BYTES = "has bytes that are not UTF-8"
_Read = tuple[int, "dict[str, Any] | RowFault"]


def read_table(fmt: str, path: Path, columns: tuple[str, ...] | None) -> Iterator[_Read]:
    """(line, row) for each row of the file, or (line, fault) for a row that cannot be read.

    Bytes that are not UTF-8 are kept as surrogates (`surrogateescape`) so that one bad row
    does not make the whole file unreadable; the row that holds them is a fault.
    """
    name = str(path)
    with path.open(encoding="utf-8", errors="surrogateescape", newline="") as f:
        if fmt == "jsonl":
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                if _undecodable(line):
                    yield n, RowFault(name, n, "undecodable_bytes", _BAD_BYTES)
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield n, RowFault(name, n, "invalid_json", f"is not valid JSON ({exc.msg})")
                    continue
                if not isinstance(row, dict):
                    yield n, RowFault(name, n, "invalid_json", "is not a JSON object")
                    continue
                yield n, row
            return
        if fmt == "json":
            try:
                payload = json.loads(f.read())
            except json.JSONDecodeError as exc:
                raise UserError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}).") from exc
            if isinstance(payload, dict):  # {"records": [...]}, or {"version", "data": [...]} (TECA)
                rows = payload.get("records", payload.get("data"))
            else:
                rows = payload
            if not isinstance(rows, list):
                raise UserError(f"{path} holds neither a list of records nor a `records` or `data` list.")
            for n, row in enumerate(rows, 1):  # a record's number stands in for its line
                if not isinstance(row, dict):
                    yield n, RowFault(name, n, "invalid_json", "(a record) is not a JSON object")
                elif _undecodable(row):
                    yield n, RowFault(name, n, "undecodable_bytes", _BAD_BYTES)
                else:
                    yield n, row
            return
        if fmt == "squad":
            yield from read_squad(path, f.read())
            return
        if fmt == "assin_xml":
            yield from read_assin_xml(path, f.read())
            return
        text = f.read()
        bad_bytes = bool(_UNDECODABLE.search(text))  # rows are searched only when the file has some
        lines = io.StringIO(text, newline="")
        if fmt == "tsv":
            reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
        else:
            reader = csv.reader(lines)
        header = list(columns) if columns else next(reader, None)
        if header is None:
            return
        for row in reader:
            n = reader.line_num
            if not row:
                continue
            if bad_bytes and any(_undecodable(cell) for cell in row):
                yield n, RowFault(name, n, "undecodable_bytes", _BAD_BYTES)
            elif len(row) != len(header):
                yield n, RowFault(name, n, "wrong_column_count",
                                  f"has {len(row)} fields, expected {len(header)} ({', '.join(header)})")
            else:
                yield n, dict(zip(header, row))


def read_squad(path: Path, text: str) -> Iterator[_Read]:
    """(number, row) per question of a SQuAD v1.1 JSON file, read as it is.

    Each row is one question with its paragraph's `context` and article's `title`, and the
    `answers` list as the file has it (`text`, `answer_start`). Scoring reads the answer text
    only: a few files have wrong `answer_start` offsets (CatalanQA 2, FaQuAD 33). The number is
    the question's position in the file (1-based), which stands in for a line.
    """
    name = str(path)
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}).") from exc
    articles = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(articles, list):
        raise UserError(f"{path} is not SQuAD JSON: it has no `data` list of articles.")
    n = 0
    for article in articles:
        paragraphs = article.get("paragraphs", []) if isinstance(article, dict) else []
        for para in paragraphs:
            qas = para.get("qas", []) if isinstance(para, dict) else []
            for qa in qas:
                n += 1
                if not isinstance(qa, dict):
                    yield n, RowFault(name, n, "invalid_json", "(a question) is not a JSON object")
                    continue
                row = {"id": qa.get("id"), "title": article.get("title"), "context": para.get("context"),
                       "question": qa.get("question"), "answers": qa.get("answers")}
                if _undecodable(row):
                    yield n, RowFault(name, n, "undecodable_bytes", _BAD_BYTES)
                elif not row["answers"]:  # an unanswerable (SQuAD 2) question has no target
                    yield n, RowFault(name, n, "missing_field", f"(question {qa.get('id')}) has no answer")
                else:
                    yield n, row


def read_assin_xml(path: Path, text: str) -> Iterator[_Read]:
    """(number, row) per `<pair>` of an ASSIN XML file, read as it is.

    Fields keep the file's names: the attributes `id`, `entailment` (None, Entailment,
    Paraphrase) and `similarity`, and the texts `t` and `h` (ElementTree's `.text`, unstripped,
    as the Hugging Face loader reads them). The number is the pair's position in the file.
    """
    import xml.etree.ElementTree as ET

    name = str(path)
    try:
        root = ET.fromstring(text.encode("utf-8", errors="surrogateescape"))
    except ET.ParseError as exc:
        raise UserError(f"{path} is not valid XML ({exc}).") from exc
    for n, pair in enumerate(root.iter("pair"), 1):
        t, h = pair.find("t"), pair.find("h")
        row = {**pair.attrib, "t": None if t is None else t.text, "h": None if h is None else h.text}
        if _undecodable(row):
            yield n, RowFault(name, n, "undecodable_bytes", _BAD_BYTES)
        else:
            yield n, row


def _read_lines(spec: TaskSpec, data_dir: Path) -> Iterator[tuple[str, int, dict[str, Any] | RowFault]]:
    columns: dict[str, tuple[str, list[str]]] = {}
    for field_name, rel in spec.source.line_fields:
        path = resolve_path(spec, rel, data_dir)
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        columns[field_name] = (str(path), text.rstrip("\n").split("\n"))
    lengths = {len(lines) for _, lines in columns.values()}
    if len(lengths) > 1:
        detail = ", ".join(f"{k}: {len(v)}" for k, (_, v) in columns.items())
        raise UserError(f"Task {spec.name} pairs files of different lengths ({detail}).")
    names = list(columns)
    first = columns[names[0]][0]
    for i, values in enumerate(zip(*(lines for _, lines in columns.values()))):
        bad = next((columns[k][0] for k, v in zip(names, values) if _undecodable(v)), None)
        if bad is not None:
            yield bad, i + 1, RowFault(bad, i + 1, "undecodable_bytes", _BAD_BYTES)
            continue
        row = dict(zip(names, values))
        row["__files__"] = {k: columns[k][0] for k in names}  # which file each field came from
        yield first, i + 1, row


def read_rows(spec: TaskSpec, data_dir: Path, *, online: bool = False) -> RowsRead:
    """Every row of the task's data, filtered and joined, with the rows that cannot be used.

    Faults found here: undecodable bytes, a wrong column count, invalid JSON, and (checked on
    the fields the templates read) a missing field or an empty text. A label out of range is
    found when the row is rendered (tasks/items.py).
    """
    src = spec.source
    read: list[tuple[str, int, dict[str, Any] | RowFault]] = []
    if online:
        read = [(src.hf.path if src.hf else "hub", n, row) for n, row in enumerate(_read_hub(spec), 1)]
    else:
        source_files(spec, data_dir)  # fail early, naming the first missing file
        if src.format == "lines":
            read = list(_read_lines(spec, data_dir))
        else:
            for rel in src.files:
                path = resolve_path(spec, rel, data_dir)
                read += [(str(path), n, row) for n, row in read_table(src.format, path, src.columns)]
    counts: dict[str, int] = {}
    for file, _, _ in read:
        counts[file] = counts.get(file, 0) + 1
    if src.format == "lines" and not online:
        files = [str(resolve_path(spec, rel, data_dir)) for _, rel in src.line_fields]
        n_rows = len(read)
        counts = {f: n_rows for f in files}
    faults = [row for _, _, row in read if isinstance(row, RowFault)]
    rows = [(file, n, row) for file, n, row in read if not isinstance(row, RowFault)]
    for key, value in src.where:
        rows = [r for r in rows if str(r[2].get(key)) == value]
    if src.join and not online:
        rows, join_faults, join_counts = _join(spec, rows, data_dir)
        faults += join_faults
        counts.update(join_counts)
    good = []
    known = {k for _, _, row in rows for k in row}
    needed = spec.fields
    unknown = sorted(needed - known)
    if rows and unknown:
        key = spec.template_key(unknown[0])
        raise TaskSpecError(
            f"Task file {spec.where(key)} (task {spec.name}): `{key}` reads the field {unknown[0]!r}, "
            f"which no row of the data has (fields: {', '.join(sorted(k for k in known if not k.startswith('__')))})."
        )
    ordered = sorted(needed)
    for file, n, row in rows:
        fault = _field_fault(file, n, row, ordered)
        if fault is not None:
            faults.append(fault)
        else:
            good.append((file, n, {k: v for k, v in row.items() if k not in ("__files__", "__join_miss__")}))
    return RowsRead(tuple(good), tuple(faults), tuple(counts.items()))


def _field_fault(file: str, n: int, row: dict[str, Any], needed: list[str]) -> RowFault | None:
    origin = row.get("__files__", {})
    if "__join_miss__" in row:
        return RowFault(file, n, "missing_field", row["__join_miss__"])
    for name in needed:
        value = row.get(name)
        if value is None:
            return RowFault(origin.get(name, file), n, "missing_field", f"has no value for the field {name!r}")
        if isinstance(value, str) and not value.strip():
            return RowFault(origin.get(name, file), n, "empty_text", f"has an empty {name!r}")
    return None


def _join(spec: TaskSpec, rows: list[tuple[str, int, dict[str, Any]]], data_dir: Path):
    """Rows with the joined table's fields added; a row without a match keeps a note of it, and
    the field check then counts it as a missing field."""
    join = spec.source.join
    assert join is not None
    other: dict[str, dict[str, Any]] = {}
    faults: list[RowFault] = []
    counts: dict[str, int] = {}
    for rel in join.files:
        path = resolve_path(spec, rel, data_dir)
        for _, row in read_table(join.format, path, None):
            counts[str(path)] = counts.get(str(path), 0) + 1
            if isinstance(row, RowFault):
                faults.append(row)
            else:
                other[str(row.get(join.on))] = row
    joined = []
    for file, n, row in rows:
        key = str(row.get(join.on))
        if key in other:
            joined.append((file, n, {**row, **other[key]}))
        else:
            miss = f"has {join.on} {key!r}, which is not in {', '.join(join.files)}"
            joined.append((file, n, {**row, "__join_miss__": miss}))
    return joined, faults, counts


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
    spec: TaskSpec, data_dir: Path, limit: int | None = None, *, online: bool = False,
    strict: bool = False,
) -> list[Doc]:
    """The task's usable documents in file order, filtered, joined and preprocessed, first `limit`.

    Rows that cannot be used are skipped (see `read_rows`); `strict=True` makes the first one
    an error instead. `online=True` reads the task's hub dataset instead of local files.
    """
    read = read_rows(spec, data_dir, online=online)
    if strict and read.faults:
        raise read.faults[0].error(spec.name)
    return docs_from_rows(spec, read, limit)


def docs_from_rows(spec: TaskSpec, read: RowsRead, limit: int | None = None) -> list[Doc]:
    """The documents of rows already read: preprocessed, with their id and location."""
    from iberlite.tasks.preprocess import apply_preprocess

    src: SourceSpec = spec.source
    docs = []
    for n, (file, line, row) in enumerate(read.rows):
        doc_id = str(row[src.id]) if src.id is not None else str(n)
        docs.append(Doc(id=doc_id, fields=apply_preprocess(spec.preprocess, dict(row)),
                        file=file, line=line))
        if limit is not None and len(docs) >= limit:
            break
    return docs


def doc_from_fields(spec: TaskSpec, fields: dict[str, Any], doc_id: str = "request") -> Doc:
    """A document given as raw fields (a request at run time), preprocessed like the task's data."""
    from iberlite.tasks.preprocess import apply_preprocess

    try:
        return Doc(id=doc_id, fields=apply_preprocess(spec.preprocess, dict(fields)))
    except KeyError as exc:
        raise UserError(f"Task {spec.name} needs the field {exc.args[0]!r} in the document.", 2) from None


def count_docs(spec: TaskSpec, data_dir: Path) -> int | None:
    """How many usable rows the task has here, or None when its data files are missing.

    A label out of range is only found by rendering (`tasks.items.count_items`)."""
    try:
        return len(read_rows(spec, data_dir).rows)
    except TaskSpecError:
        raise  # the task file is wrong, whatever the data: say so
    except UserError:
        return None
