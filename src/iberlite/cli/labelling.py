"""`iberlite pool add`, `iberlite select` and `iberlite labels export|import`: parse, call the
label room, print. (`iberlite label`, the page, is in `label_page.py`.)"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from iberlite.cli.options import (
    DataDirOpt,
    DbOpt,
    FormatOpt,
    ModelsDirOpt,
    TasksDirOpt,
    WideOpt,
    data_dir_or_default,
)
from iberlite.cli.tables import Column, TableData, check_format, emit
from iberlite.errors import UserError
from iberlite.label.defaults import DEFAULT_STRATEGY, STRATEGIES

pool_app = typer.Typer(help="A task's pool of unlabelled texts.", no_args_is_help=True)
labels_app = typer.Typer(help="Labels in the formats teams use: Label Studio JSON, JSONL, CSV.",
                         no_args_is_help=True)
err = Console(stderr=True)

TaskOpt = Annotated[str, typer.Option("--task", help="The multiple-choice task the labels are for.")]


def _spec(task: str, tasks_dir: list[Path] | None):
    from iberlite.tasks.registry import load_task_specs

    specs = load_task_specs(tuple(tasks_dir or ()))
    if task not in specs:
        raise UserError(f"Unknown task {task!r}; see `iberlite tasks` for the task names.", 2)
    return specs[task]


@pool_app.command("add")
def pool_add(
    task: Annotated[str, typer.Argument(help="The task the texts are for (e.g. bec_eu).")],
    file: Annotated[Path, typer.Argument(help="CSV, TSV, JSONL, or one text per line (.txt or any other name).")],
    column: Annotated[Optional[list[str]], typer.Option("--column", help="FIELD=COLUMN: the file's column for a field the task reads (repeatable; default: same name).")] = None,
    skip_broken: Annotated[bool, typer.Option("--skip-broken", help="Add the good rows of a file with broken ones (else the file is refused whole).")] = False,
    db: DbOpt = Path("iberlite.db"),
    data_dir: DataDirOpt = None,
    tasks_dir: TasksDirOpt = None,
    fmt: FormatOpt = "table",
    wide: WideOpt = False,
) -> None:
    """Add unlabelled texts to TASK's pool; a row added twice is one row, a row that is also an
    evaluated item is flagged and never trained on."""
    from iberlite.label.pool import add_pool, parse_columns

    check_format(fmt)
    spec = _spec(task, tasks_dir)
    done = add_pool(db, spec, file, data_dir_or_default(data_dir), parse_columns(column or ()), skip_broken)
    for sentence in done.skipped:
        err.print(f"Skipped {sentence}", highlight=False, markup=False, soft_wrap=True)
    cols = (Column("task", "task"), Column("read", "read", "num"), Column("added", "new", "num"),
            Column("flagged", "evaluated items", "num"), Column("skipped", "skipped", "num"),
            Column("pool", "pool size", "num"))
    notes = (f"{done.read - done.added} of the rows were in the pool already." if done.read > done.added else "",
             f"{done.flagged} rows are evaluated items of {task}: kept, never selected or trained on."
             if done.flagged else "")
    emit(TableData(f"Pool of {task} in {db}", cols,
                   ((task, done.read, done.added, done.flagged, len(done.skipped), done.pool_size),),
                   notes=tuple(n for n in notes if n)), fmt, wide=wide)


def select_command(
    model: Annotated[str, typer.Argument(help="The model that scores the pool (MODEL or MODEL+ADAPTER).")],
    task: TaskOpt,
    n: Annotated[int, typer.Option("--n", min=1, help="Rows to pick.")] = 20,
    strategy: Annotated[str, typer.Option("--strategy", help=f"{', '.join(STRATEGIES)} (docs/labelling.md says which pays).")] = DEFAULT_STRATEGY,
    seed: Annotated[int, typer.Option("--seed", help="Seed of random picks and of the clusters.")] = 0,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads \\[default: the usable cores].")] = None,
    db: DbOpt = Path("iberlite.db"),
    models_dir: ModelsDirOpt = None,
    tasks_dir: TasksDirOpt = None,
    fmt: FormatOpt = "table",
    wide: WideOpt = False,
) -> None:
    """Score TASK's pool on this device and pick the N rows worth labelling next."""
    from iberlite.label.select import select_rows

    check_format(fmt)
    spec = _spec(task, tasks_dir)
    with Progress(TextColumn("scoring the pool"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err, transient=True) as prog:
        bar = prog.add_task("score", total=None)
        picked = select_rows(db, spec, model, n, strategy=strategy, seed=seed, models_dir=models_dir,
                             n_threads=threads, on_start=lambda total: prog.update(bar, total=total),
                             on_progress=lambda k: prog.advance(bar, k))
    cols = (Column("rank", "#", "num"), Column("row", "row"), Column("guess", "model's guess"),
            Column("score", "score", "num", fmt=".3f", missing="-"))
    choices = _choice_names(spec, db)
    rows = tuple((p.rank + 1, p.row_hash, choices.get(p.row_hash, ("",))[p.prediction or 0]
                  if p.prediction is not None else "", p.score) for p in picked.picks)
    notes = (f"Picked {len(picked.picks)} of the {picked.left} unlabelled rows by {strategy} with {model}; "
             f"scored {picked.scored_now} rows now, the rest from the store ({picked.seconds:.1f} s in all).",
             f"Label them with `iberlite label --task {task} --db {db}`, or export them with "
             f"`iberlite labels export --task {task} --format label-studio -o FILE`.")
    emit(TableData(f"Batch {picked.selection_id} of {task}", cols, rows, notes=notes), fmt, wide=wide)


def _choice_names(spec, db: Path) -> dict[str, tuple[str, ...]]:
    from iberlite.label.exchange import pool_choices

    return pool_choices(db, spec)


@labels_app.command("export")
def labels_export(
    task: TaskOpt,
    output: Annotated[Path, typer.Option("-o", "--output", help="The file to write.")],
    fmt_out: Annotated[str, typer.Option("--format", help="label-studio (task JSON, the model's guess as predictions), jsonl or csv.")] = "label-studio",
    db: DbOpt = Path("iberlite.db"),
    tasks_dir: TasksDirOpt = None,
) -> None:
    """Write TASK's newest selected batch, with the model's guesses and the labels given so far."""
    from iberlite.label.exchange import export_labels

    done = export_labels(db, _spec(task, tasks_dir), fmt_out, output)
    err.print(f"Wrote {done.rows} rows of {task} ({done.labelled} labelled) to {done.path}.",
              highlight=False, soft_wrap=True)


@labels_app.command("import")
def labels_import(
    file: Annotated[Path, typer.Argument(help="Label Studio JSON export, JSONL or CSV with a row and a label per record.")],
    task: TaskOpt,
    labeller: Annotated[Optional[str], typer.Option("--labeller", help="Who labelled, where the file does not say \\[default: import].")] = None,
    db: DbOpt = Path("iberlite.db"),
    tasks_dir: TasksDirOpt = None,
) -> None:
    """Read labels back; a file with one bad record is refused whole and the store is unchanged."""
    from iberlite.label.exchange import import_labels

    done = import_labels(db, _spec(task, tasks_dir), file, labeller or "import")
    err.print(f"Imported {done.stored} labels for {task} from {file.name} ({done.unchanged} unchanged, "
              f"{done.unlabelled} records without a label).", highlight=False, soft_wrap=True)
