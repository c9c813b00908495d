"""`iberlite adapt`: train (or find cached) a LoRA adapter with a progress bar, then print it."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from .adapt.make import adapt, plan
from .adapt.records import Adapter, read_record
from .adapt.train import StepInfo, TrainConfig, TrainingInterrupted
from .tables import Column, TableData, check_format, emit


def _eta(seconds: float) -> str:
    m, s = divmod(int(seconds + 0.5), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}"


def adapter_columns() -> tuple[Column, ...]:
    """What an adapter's row shows, in `adapt` and in `models`."""
    return (
        Column("model", "model"),
        Column("base", "base", priority=2),
        Column("task", "task"),
        Column("examples", "examples", "num"),
        Column("rank", "rank", "num", priority=2),
        Column("epochs", "epochs", "num", priority=3),
        Column("steps", "steps", "num", priority=3),
        Column("final_loss", "loss", "num", fmt=".3f", priority=1),
        Column("seconds", "training", "num", fmt=lambda v: f"{v:.0f} s"),
        Column("cpu_seconds", "CPU s", "num", fmt=".0f", priority=3),
        Column("peak_rss_bytes", "peak RSS", "num", fmt=lambda v: f"{v / 2**30:.1f} GiB", priority=3),
        Column("examples_per_s", "ex/s", "num", fmt=".2f", priority=1),
        Column("created", "made", priority=4),
        Column("sha256", "sha256", human=False),
        Column("path", "path", human=False),
    )


def adapter_row(a: Adapter) -> tuple:
    """One row of :func:`adapter_columns`."""
    return (a.model_name, a.base, a.task, a.examples, a.rank, a.epochs, a.steps, a.final_loss,
            a.seconds, a.cpu_seconds, a.peak_rss_bytes, a.examples_per_s, a.created, a.sha256, a.path)


def adapt_command(model: str, task: str, config: TrainConfig, *, data_dir: Path,
                  train_limit: int | None, name: str | None, tasks_dirs: tuple[Path, ...],
                  models_dir: Path | None, threads: int | None, drop_overlap: bool,
                  fmt: str = "table", wide: bool = False, err: Console | None = None) -> None:
    """Plan, train with a progress bar (or hit the cache), print the adapter."""
    err = err or Console(stderr=True)
    check_format(fmt)
    p = plan(model, task, config, data_dir=data_dir, train_limit=train_limit, name=name,
             tasks_dirs=tasks_dirs, models_dir=models_dir, drop_overlap=drop_overlap)
    cached = read_record(p.path)
    if cached is not None:
        _print(cached, True, fmt, wide)
        return
    n = len(p.training.examples)
    err.print(f"Adapting {p.base.name} to {task} on {n} training examples "
              f"({p.training.pool} in the train split): rank {config.rank}, {config.epochs} "
              f"epoch(s), batch {config.batch_size}, seed {config.seed}.", highlight=False)
    columns = (TextColumn("{task.description}"), BarColumn(),
               TextColumn("step {task.fields[step]}"),
               TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} ex/s"),
               TextColumn("ETA {task.fields[eta]}"))
    with Progress(*columns, console=err, transient=False) as prog:
        bar = prog.add_task("train", total=None, step="-", loss="-", rate="-", eta="-")

        def on_step(s: StepInfo) -> None:
            prog.update(bar, completed=s.step, total=s.total, step=f"{s.step}/{s.total}", loss=f"{s.loss:.3f}",
                        rate=f"{s.examples_per_s:.2f}", eta=_eta(s.eta_s))

        def on_status(message: str) -> None:
            prog.console.print(message, highlight=False)

        try:
            adapter, hit = adapt(p, n_threads=threads, on_step=on_step, on_status=on_status)
        except TrainingInterrupted as stop:
            prog.stop()
            err.print(f"Interrupted at step {stop.step}/{stop.total}; the checkpoint is kept in "
                      f"{stop.checkpoint}: rerun the same command to continue from it.",
                      highlight=False, soft_wrap=True)
            sys.exit(130)
        prog.update(bar, description="cached" if hit else "trained")
    _print(adapter, hit, fmt, wide)


def _print(adapter: Adapter, hit: bool, fmt: str, wide: bool) -> None:
    cols = (*adapter_columns(), Column("status", "status"))
    notes = (adapter.token_check,
             f"Use it as {adapter.model_name} in run, bench, serve, doctor and decide; scale "
             f"alpha/rank = {adapter.scale:g}.")
    emit(TableData(f"Adapter {adapter.model_name}", cols,
                   ((*adapter_row(adapter), "cached" if hit else "made"),), notes=notes), fmt, wide=wide)
