"""`iberlite adapt`: train (or find cached) a LoRA adapter with a progress bar, then print it."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from iberlite.adapt.make import adapt, plan
from iberlite.adapt.train import StepInfo, TrainConfig, TrainingInterrupted
from iberlite.cli.tables import Column, TableData, check_format, emit
from iberlite.models.adapters import ADAPTER_SEP, Adapter, read_record


def _eta(seconds: float) -> str:
    m, s = divmod(int(seconds + 0.5), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}"


_COLUMNS = (TextColumn("{task.description}"), BarColumn(),
            TextColumn("step {task.fields[step]}"), TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[rate]} ex/s"), TextColumn("ETA {task.fields[eta]}"))
"""The training bar of `adapt` and `adapt --curve`: step, loss, examples/s, ETA."""


def _show_step(prog: Progress, bar: TaskID, s: StepInfo) -> None:
    prog.update(bar, completed=s.step, total=s.total, step=f"{s.step}/{s.total}", loss=f"{s.loss:.3f}",
                rate=f"{s.examples_per_s:.2f}", eta=_eta(s.eta_s))


def _interrupted(err: Console, stop: TrainingInterrupted) -> None:
    err.print(f"Interrupted at step {stop.step}/{stop.total}; the checkpoint is kept in "
              f"{stop.checkpoint}: rerun the same command to continue from it.",
              highlight=False, soft_wrap=True)
    sys.exit(130)


def adapter_columns() -> tuple[Column, ...]:
    """What an adapter's row shows, in `adapt` and in `models`."""
    return (
        Column("model", "model"),
        Column("base", "base", priority=2),
        Column("task", "task"),
        Column("examples", "examples", "num"),
        Column("rank", "rank", "num", priority=2),
        Column("epochs", "epochs", "num", priority=3),
        Column("lr", "lr", "num", fmt="g", priority=3),
        Column("steps", "steps", "num", priority=3),
        Column("final_loss", "loss", "num", fmt=".3f", priority=1),
        Column("seconds", "training", "num", fmt=lambda v: f"{v:.0f} s"),
        Column("cpu_seconds", "CPU s", "num", fmt=".0f", priority=3),
        Column("peak_rss_bytes", "peak RSS", "num", fmt=lambda v: f"{v / 2**30:.1f} GiB", priority=3),
        Column("examples_per_s", "ex/s", "num", fmt=".2f", priority=1),
        Column("precision", "precision", priority=2),
        Column("n_threads", "threads", "num", priority=3),
        Column("token_budget", "tokens/pass", "num", missing="batch", priority=4),
        Column("micro_batches", "passes", "num", missing="-", priority=4),
        Column("parent_name", "continues", missing="-", priority=2),
        Column("parent", "parent key", human=False),
        Column("created", "made", priority=4),
        Column("sha256", "sha256", human=False),
        Column("path", "path", human=False),
    )


def adapter_row(a: Adapter) -> tuple:
    """One row of :func:`adapter_columns`."""
    return (a.model_name, a.base, a.task, a.examples, a.rank, a.epochs, a.lr, a.steps, a.final_loss,
            a.seconds, a.cpu_seconds, a.peak_rss_bytes, a.examples_per_s, a.precision, a.n_threads,
            a.token_budget, a.micro_batches, a.parent_name, a.parent, a.created, a.sha256, a.path)


def adapt_command(model: str, task: str, config: TrainConfig, *, data_dir: Path,
                  train_limit: int | None, name: str | None, tasks_dirs: tuple[Path, ...],
                  models_dir: Path | None, threads: int | None, drop_overlap: bool,
                  fmt: str = "table", wide: bool = False, err: Console | None = None,
                  parent: str | None = None, labels_db: Path | None = None) -> None:
    """Plan, train with a progress bar (or hit the cache), print the adapter. `parent` names
    an adapter to continue (`--from`); `labels_db` holds the labels to train on (`--labels`)."""
    err = err or Console(stderr=True)
    check_format(fmt)
    p = plan(model, task, config, data_dir=data_dir, train_limit=train_limit, name=name,
             tasks_dirs=tasks_dirs, models_dir=models_dir, drop_overlap=drop_overlap, n_threads=threads,
             parent=parent, labels_db=labels_db)
    cached = read_record(p.path)
    if cached is not None:
        _print(cached, True, fmt, wide)
        return
    n, c = len(p.training.examples), p.config
    start = f"Continuing {p.parent.model_name}" if p.parent else f"Adapting {p.base.name}"
    where = (f"labels by {', '.join(p.labels.labellers)}" if p.labels else "in the train split")
    err.print(f"{start} to {task} on {n} training examples ({p.training.pool} {where}): "
              f"rank {c.rank}, {c.epochs} epoch(s), batch {c.batch_size}, seed {c.seed}; {c.precision}, "
              f"{p.n_threads} thread(s), at most {c.token_budget} tokens per pass"
              f"{', gradient checkpointing' if c.grad_checkpointing else ''}.", highlight=False, soft_wrap=True)
    with Progress(*_COLUMNS, console=err, transient=False) as prog:
        bar = prog.add_task("train", total=None, step="-", loss="-", rate="-", eta="-")

        def on_step(s: StepInfo) -> None:
            _show_step(prog, bar, s)

        def on_status(message: str) -> None:
            prog.console.print(message, highlight=False)

        try:
            adapter, hit = adapt(p, on_step=on_step, on_status=on_status)
        except TrainingInterrupted as stop:
            prog.stop()
            _interrupted(err, stop)
        prog.update(bar, description="cached" if hit else "trained")
    _print(adapter, hit, fmt, wide)


def _print(adapter: Adapter, hit: bool, fmt: str, wide: bool) -> None:
    cols = (*adapter_columns(), Column("status", "status"))
    notes = (adapter.token_check,
             f"Use it as {adapter.model_name} in run, bench, serve, doctor and decide; scale "
             f"alpha/rank = {adapter.scale:g}.")
    emit(TableData(f"Adapter {adapter.model_name}", cols,
                   ((*adapter_row(adapter), "cached" if hit else "made"),), notes=notes), fmt, wide=wide)


def curve_command(model: str, task: str, sizes: tuple[int, ...], config: TrainConfig, *,
                  data_dir: Path, tasks_dirs: tuple[Path, ...], models_dir: Path | None,
                  threads: int | None, drop_overlap: bool, eval_limit: int | None, db: Path,
                  fmt: str = "table", wide: bool = False, err: Console | None = None,
                  target_score: float = 0.6, labels: bool = False) -> None:
    """Train one adapter per size, evaluate them all (and the base at size 0) on the same test
    items as one stored run, print the scores side by side, and say in one sentence how many
    examples reach `target_score` (from the stored evaluations, paired with the base)."""
    import os
    import shlex

    from iberlite.adapt.curve import train_curve
    from iberlite.cli.views import results_view
    from iberlite.models.quantize import MODELS_DIR_ENV
    from iberlite.run.runner import run as run_grid
    from iberlite.run.spec import RunSpec

    err = err or Console(stderr=True)
    check_format(fmt)
    with Progress(*_COLUMNS, console=err, transient=False) as prog:
        bars: dict[int, TaskID] = {}

        def on_point(size: int, _n: int) -> None:
            bars[0] = prog.add_task(f"{task} n={size}", total=None, step="-", loss="-", rate="-", eta="-")

        def on_step(s: StepInfo) -> None:
            _show_step(prog, bars[0], s)

        try:
            points = train_curve(model, task, sizes, config, data_dir=data_dir, tasks_dirs=tasks_dirs,
                                 models_dir=models_dir, n_threads=threads, drop_overlap=drop_overlap,
                                 labels_db=db if labels else None, on_point=on_point, on_step=on_step,
                                 on_status=lambda m: prog.console.print(m, highlight=False))
        except TrainingInterrupted as stop:
            prog.stop()
            _interrupted(err, stop)
    spec = RunSpec(models=tuple(p.model for p in points), tasks=(task,), limit=eval_limit,
                   data_dir=data_dir, tasks_dirs=tasks_dirs, db=db, n_threads=threads)
    previous = os.environ.get(MODELS_DIR_ENV)
    if models_dir is not None:  # the run resolves MODEL+ADAPTER names in the folder they are in
        os.environ[MODELS_DIR_ENV] = str(models_dir)
    try:
        with err.status(f"evaluating {len(points)} models on {task}"):
            result = run_grid(spec, command=shlex.join(["iberlite", *sys.argv[1:]]))
    finally:
        if models_dir is not None and previous is None:
            del os.environ[MODELS_DIR_ENV]
        elif models_dir is not None and previous is not None:
            os.environ[MODELS_DIR_ENV] = previous
    table = results_view(db, result.run_id)
    trained = ", ".join(f"n={p.examples}: {p.adapter.seconds:.0f} s" for p in points if p.adapter)
    data = ("the labels in labelling order" if labels else "one seeded shuffle of the train split")
    notes = (*table.notes, f"Curve of {model} on {task}: size 0 is the base model; each adapter trains "
             f"on a prefix of {data} (training time {trained}). Run "
             f"{result.run_id} in {db}.")
    notes += _curve_sentences(db, task, {p.model.rsplit(ADAPTER_SEP, 1)[0] for p in points}, models_dir,
                              target_score)
    records = replace(table.records, notes=notes) if table.records else None  # the JSON says it too
    emit(TableData(table.title, table.columns, table.rows, notes=notes, records=records), fmt, wide=wide)


def _curve_sentences(db: Path, task: str, bases: set[str], models_dir: Path | None,
                     target: float) -> tuple[str, ...]:
    """The curve's sentence: how many examples reach the target on this task."""
    from iberlite.analysis.adaptation import adaptation_curves_in, curve_sentence

    return tuple(curve_sentence(c, target) for c in adaptation_curves_in(db, models_dir=models_dir)
                 if c.task == task and c.base in bases)
