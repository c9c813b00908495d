"""A task's data as rendered instances, with every row that cannot be evaluated counted per file.

A long sweep should not stop at row 4,000 of 5,010 because one row has an empty premise: such
rows (missing field, empty text, label out of range, undecodable bytes, wrong column count,
invalid JSON) are skipped and counted, `iberlite tasks --check` lists the counts per file, and
`--strict` turns the first one into an error naming the file, the line and the problem.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from iberlite.errors import RowError
from iberlite.tasks.data import FAULT_KINDS, RowFault, docs_from_rows, load_docs, read_rows
from iberlite.tasks.registry import SAMPLE_DIR, load_task_specs
from iberlite.tasks.render import Instance, render
from iberlite.tasks.spec import TaskSpec


@dataclass(frozen=True)
class FileCheck:
    """How many rows one file of a task has, and how many of them were skipped, by kind."""

    task: str
    file: str
    rows: int
    skipped: tuple[tuple[str, int], ...]  # (kind, count), kinds from FAULT_KINDS

    @property
    def n_skipped(self) -> int:
        """Rows of this file that cannot be evaluated."""
        return sum(n for _, n in self.skipped)


@dataclass(frozen=True)
class TaskItems:
    """A task's instances ready to run, the rows skipped on the way, and per-file counts."""

    spec: TaskSpec
    instances: tuple[Instance, ...]
    faults: tuple[RowFault, ...]
    files: tuple[FileCheck, ...]


def load_items(spec: TaskSpec, data_dir: Path, limit: int | None = None, *, online: bool = False,
               strict: bool = False, allow_empty: bool = False) -> TaskItems:
    """Read, check and render a task's rows: the first `limit` good instances.

    With `strict`, the first row that cannot be evaluated is a `RowError` (exit code 2), wherever
    it is in the data (a limit does not hide it); so is a task none of whose rows can be
    evaluated, unless `allow_empty` (a check that reports it). Without `strict`, the faults
    returned are those among the rows a limit reached, and those of other files (a join's).
    """
    read = read_rows(spec, data_dir, online=online)
    faults = list(read.faults)
    if strict and faults:
        raise faults[0].error(spec.name)
    instances: list[Instance] = []
    last = None
    for doc in docs_from_rows(spec, read):
        if limit is not None and len(instances) >= limit and not strict:
            break
        try:
            instance = render(spec, doc)
        except RowError as exc:
            fault = RowFault(doc.file, doc.line, "label_out_of_range", exc.detail or str(exc))
            if strict:
                raise fault.error(spec.name) from None
            faults.append(fault)
            continue
        if limit is None or len(instances) < limit:
            instances.append(instance)
            last = doc
    if limit is not None and len(instances) >= limit and last is not None:
        faults = _before(faults, last.file, last.line, [f for f, _ in read.rows_per_file])
    if not instances and faults and not allow_empty:
        first = faults[0]
        raise RowError(f"Task {spec.name}: none of its rows can be evaluated ({len(faults)} skipped); the "
                       f"first, line {first.line} of {first.file}, {first.detail}.", first.detail)
    by_file = Counter((f.file, f.kind) for f in faults)
    files = tuple(
        FileCheck(spec.name, file, n, tuple((k, by_file[file, k]) for k in FAULT_KINDS if by_file[file, k]))
        for file, n in read.rows_per_file
    )
    return TaskItems(spec, tuple(instances), tuple(faults), files)


def _before(faults: list[RowFault], file: str, line: int, order: list[str]) -> list[RowFault]:
    """The faults a run with a limit met: in the files read before `file`, or above `line` in it."""
    rank = {f: i for i, f in enumerate(order)}
    if file not in rank:
        return faults
    stop = (rank[file], line)
    return [f for f in faults if f.file not in rank or (rank[f.file], f.line) < stop]


def count_items(spec: TaskSpec, data_dir: Path) -> int:
    """How many instances the task has here (rows that can be evaluated)."""
    return len(load_items(spec, data_dir).instances)


def skipped_summary(faults: tuple[RowFault, ...] | list[RowFault]) -> str | None:
    """One sentence for the end of a run: how many rows were skipped, by kind, or None."""
    if not faults:
        return None
    kinds = Counter(f.kind for f in faults)
    parts = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in sorted(kinds.items()))
    files = len({f.file for f in faults})
    return (f"Skipped {len(faults)} data rows that cannot be evaluated ({parts}) in {files} "
            f"file{'s' if files != 1 else ''}; `iberlite tasks --check` lists them and --strict "
            "refuses them.")


def sample_instances(task_names: Sequence[str], per_task: int | None = None) -> list[Instance]:
    """The first `per_task` rendered instances of each named sample-suite task (no data dir
    needed): the built-in items that the doctor's probe and `advise`'s check score."""
    specs = load_task_specs()
    return [render(specs[name], d) for name in task_names
            for d in load_docs(specs[name], SAMPLE_DIR, per_task)]
