"""Labels in the formats teams already use: Label Studio's task JSON, JSONL and CSV.

`export` writes the newest selected batch: each row's text, its choices, the model's guess and
the strategy's score (in Label Studio as `predictions`), and its label when it holds one (as an
annotation). `import` reads labels back from any of the three. Every label is checked against
its row's choices and every row against the task's pool before anything is stored, so a bad
file is refused whole, in one sentence, and leaves the store as it was.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iberlite.errors import UserError
from iberlite.store import Store
from iberlite.store.labels import LabelBook, LabelEvent, PoolRow
from iberlite.tasks.render import render_fields
from iberlite.tasks.spec import TaskSpec

FORMATS = ("label-studio", "jsonl", "csv")
_CSV_COLUMNS = ("row", "text", "choices", "prediction", "score", "label", "labeller")


@dataclass(frozen=True)
class Exported:
    """What `labels export` wrote."""

    path: Path
    rows: int
    labelled: int


@dataclass(frozen=True)
class Imported:
    """What `labels import` stored."""

    read: int  # records in the file
    stored: int  # labels appended (a label the row already holds is not repeated)
    unchanged: int
    unlabelled: int  # records with no label (an exported batch not yet labelled)


def _choices(spec: TaskSpec, row: PoolRow) -> tuple[str, ...]:
    return render_fields(spec, row.fields, row.row_hash).choices


def pool_choices(db: Path, spec: TaskSpec) -> dict[str, tuple[str, ...]]:
    """Each pool row's choices, by row hash."""
    with Store.open_readonly(db) as store:
        return {r.row_hash: _choices(spec, r) for r in LabelBook(store).pool(spec.name)}


def _ls_result(choice: str) -> list[dict[str, Any]]:
    return [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [choice]}}]


def export_labels(db: Path, spec: TaskSpec, fmt: str, out: Path) -> Exported:
    """Write the task's newest selected batch in `fmt`."""
    if fmt not in FORMATS:
        raise UserError(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}.", 2)
    with Store.open_readonly(db) as store:
        book = LabelBook(store)
        batches = book.selections(spec.name)
        if not batches:
            raise UserError(f"No batch selected for {spec.name}; run `iberlite select MODEL --task "
                            f"{spec.name} --n N` first.", 2)
        batch = batches[-1]
        pool = {r.row_hash: r for r in book.pool(spec.name)}
        labels = book.labels(spec.name)
    records = []
    for p in batch.picks:
        row = pool[p.row_hash]
        choices = _choices(spec, row)
        guess = choices[p.prediction] if p.prediction is not None and 0 <= p.prediction < len(choices) else None
        given = labels.get(p.row_hash)
        records.append({"row": p.row_hash, "text": row.text, "fields": row.fields, "choices": list(choices),
                        "prediction": guess, "score": p.score, "model": batch.model,
                        "label": given.label if given else None, "labeller": given.labeller if given else None})
    try:
        out.write_text(_render(fmt, spec.name, records), encoding="utf-8")
    except OSError as exc:
        raise UserError(f"Cannot write {out} ({exc.strerror}).", 2) from None
    return Exported(out, len(records), sum(r["label"] is not None for r in records))


def _render(fmt: str, task: str, records: list[dict[str, Any]]) -> str:
    if fmt == "jsonl":
        return "".join(json.dumps({"task": task, **r}, ensure_ascii=False) + "\n" for r in records)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(_CSV_COLUMNS)
        for r in records:
            w.writerow([r["row"], r["text"], "|".join(r["choices"]), r["prediction"] or "",
                        "" if r["score"] is None else f"{r['score']:.6g}", r["label"] or "", r["labeller"] or ""])
        return buf.getvalue()
    tasks = []
    for n, r in enumerate(records, 1):
        item: dict[str, Any] = {"id": n, "data": {"text": r["text"], "iberlite_row": r["row"], "iberlite_task": task,
                                                   "choices": r["choices"], **r["fields"]}}
        if r["prediction"] is not None:
            item["predictions"] = [{"model_version": r["model"], "score": r["score"],
                                    "result": _ls_result(r["prediction"])}]
        item["annotations"] = ([{"completed_by": r["labeller"], "result": _ls_result(r["label"])}]
                               if r["label"] is not None else [])
        tasks.append(item)
    return json.dumps(tasks, ensure_ascii=False, indent=1) + "\n"


def _detect(path: Path, text: str) -> str:
    if path.suffix.lower() == ".csv":
        return "csv"
    if path.suffix.lower() == ".jsonl":
        return "jsonl"
    return "label-studio" if text.lstrip().startswith("[") else "jsonl"


def _parse(fmt: str, text: str, name: str) -> list[tuple[str, str | None, str | None]]:
    """(row hash, label or None, labeller or None) per record."""
    out: list[tuple[str, str | None, str | None]] = []
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if not reader.fieldnames or "row" not in reader.fieldnames or "label" not in reader.fieldnames:
            raise UserError(f"{name} is not a labels CSV: it needs the columns row and label.", 2)
        for r in reader:
            out.append((r.get("row") or "", (r.get("label") or "").strip() or None, r.get("labeller") or None))
        return out
    if fmt == "jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"Line {n} of {name} is not valid JSON ({exc.msg}).", 2) from None
            if not isinstance(r, dict) or not isinstance(r.get("row"), str):
                raise UserError(f"Line {n} of {name} is not a labels record (an object with a row).", 2)
            out.append((r["row"], r.get("label"), r.get("labeller")))
        return out
    try:
        tasks = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{name} is not valid JSON ({exc.msg} at line {exc.lineno}).", 2) from None
    if not isinstance(tasks, list):
        raise UserError(f"{name} is not a Label Studio task list (a JSON array of tasks).", 2)
    for n, t in enumerate(tasks, 1):
        data = t.get("data") if isinstance(t, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("iberlite_row"), str):
            raise UserError(f"Task {n} of {name} has no data.iberlite_row: it was not exported by iberlite.", 2)
        out.append((data["iberlite_row"], *_ls_annotation(t, n, name)))
    return out


def _ls_annotation(task: dict[str, Any], n: int, name: str) -> tuple[str | None, str | None]:
    """The newest annotation's choice and who made it, or (None, None)."""
    anns = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
    if not anns:
        return None, None
    ann = anns[-1]
    try:
        choices = [c for res in ann["result"] if res.get("type") == "choices" for c in res["value"]["choices"]]
    except (KeyError, TypeError, AttributeError):
        raise UserError(f"Task {n} of {name} has an annotation without a choices result.", 2) from None
    if len(choices) != 1:
        raise UserError(f"Task {n} of {name} has {len(choices)} choices in its annotation; a label is one.", 2)
    who = ann.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    return str(choices[0]), None if who is None else str(who)


def import_labels(db: Path, spec: TaskSpec, path: Path, labeller: str) -> Imported:
    """Check every record of the file, then store its labels in one transaction."""
    if not path.is_file():
        raise UserError(f"No labels file at {path}.", 2)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path.name} is not UTF-8 text.", 2) from None
    records = _parse(_detect(path, text), text, path.name)
    if not records:
        raise UserError(f"{path.name} holds no records.", 2)
    with Store(db) as store:
        book = LabelBook(store)
        pool = {r.row_hash: r for r in book.pool(spec.name)}
        current = book.labels(spec.name)
        events = []
        unchanged = unlabelled = 0
        for n, (row_hash, label, who) in enumerate(records, 1):
            row = pool.get(row_hash)
            if row is None:
                raise UserError(f"Record {n} of {path.name} names row {row_hash!r}, which is not in the "
                                f"{spec.name} pool; nothing was imported.", 2)
            if label is None:
                unlabelled += 1
                continue
            choices = _choices(spec, row)
            if label not in choices:
                raise UserError(f"Record {n} of {path.name} has the label {label!r}, which is not one of "
                                f"{spec.name}'s choices ({', '.join(choices)}); nothing was imported.", 2)
            if row_hash in current and current[row_hash].label == label:
                unchanged += 1
                continue
            events.append(LabelEvent(row_hash, "label", label, who or labeller, f"import:{path.name}"))
        if events:
            book.add_events(spec.name, events)
    return Imported(len(records), len(events), unchanged, unlabelled)
