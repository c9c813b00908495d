"""`iberlite bench MODEL`: raw engine throughput (pp512, tg128), stored and printed.

A plain function so cli.py can register it with typer; everything it measures lives in
:mod:`iberlite.bench.speed`.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from iberlite.bench.speed import BenchResult
from iberlite.cli.tables import Column, TableData, check_format, emit


def bench_table(results: list[BenchResult], direct: list[BenchResult] | None = None,
                note: str = "") -> TableData:
    """One row per test and path (the engine; llama-cpp-python's Llama when compared), with
    the ratio engine/direct on the direct rows."""
    # model, quant and threads are the same on every row: the title says them to a person
    cols: tuple[Column, ...] = (
        Column("model", "model", human=False), Column("file_type", "quant", human=False),
        Column("test", "test"), Column("path", "path", human=direct is not None),
        Column("tokens_per_s_median", "tok/s median", "num", fmt=",.1f"),
        Column("tokens_per_s_min", "min", "num", priority=1, fmt=",.1f"),
        Column("tokens_per_s_max", "max", "num", priority=1, fmt=",.1f"),
        Column("tokens_per_s_std", "std", "num", priority=3, fmt=",.1f"),
        Column("reps", "reps", "num"), Column("n_threads", "threads", "num", human=False),
    )
    by_test = {r.test: r for r in results}
    if direct is not None:
        cols += (Column("engine_over_direct", "engine/direct", "num", fmt=".3f"),)

    def row(r: BenchResult, path: str) -> tuple:
        cells = (r.model, r.file_type, r.test, path, r.tokens_per_s_median, r.tokens_per_s_min,
                 r.tokens_per_s_max, r.tokens_per_s_std, r.reps, r.n_threads)
        if direct is None:
            return cells
        other = by_test.get(r.test) if path == "direct" else None
        ratio = (other.tokens_per_s_median / r.tokens_per_s_median
                 if other and r.tokens_per_s_median > 0 else None)
        return (*cells, ratio)

    rows = [row(r, "engine") for r in results] + [row(r, "direct") for r in direct or []]
    r0 = results[0]
    threads = f"{r0.n_threads} thread" + ("s" if r0.n_threads != 1 else "")
    title = f"{r0.model} ({r0.file_type}) on iberlite's engine, {threads}"
    if direct is not None:
        title += "; direct = llama-cpp-python's Llama.eval, interleaved"
    return TableData(title, cols, tuple(rows), (note,) if note else ())


def bench_command(model: str, db: Path, reps: int, threads: int | None, compare_direct: bool,
                  fmt: str = "table", wide: bool = False, err: Console | None = None) -> None:
    """Measure pp512/tg128 of MODEL on the engine, store it in ``benches``, print the table.

    With ``compare_direct`` the same measurement also runs through llama-cpp-python's
    high-level ``Llama`` (repetitions interleaved with the engine's) and its rows carry the
    ratio engine/direct. Only the engine's results are stored. Progress goes to stderr (`err`)
    and only on a terminal; stdout carries the table alone.
    """
    from iberlite.bench.speed import bench_model

    err = err or Console(stderr=True)
    check_format(fmt)
    what = "engine and direct llama-cpp-python, interleaved" if compare_direct else "engine"
    with err.status(f"bench {model}: {what}") as status:
        measured = bench_model(model, db, reps=reps, threads=threads, compare_direct=compare_direct,
                               progress=lambda msg: status.update(f"bench {model} ({what}): {msg}"))
    device = measured.device
    emit(bench_table(list(measured.results), list(measured.direct) if measured.direct is not None else None,
                     f"device {device.fingerprint_id}: {device.short()}"), fmt, wide=wide)
    err.print(f"Stored in {db} (table benches).", highlight=False, markup=False, soft_wrap=True)
