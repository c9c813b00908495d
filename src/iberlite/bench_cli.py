"""`iberlite bench MODEL`: raw engine throughput (pp512, tg128), stored and printed.

A plain function so cli.py can register it with typer; everything it measures lives in
:mod:`iberlite.bench`.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from .bench import BenchResult, bench_compare, bench_engine
from .store import Store

PP, TG, WARMUP = 512, 128, 1


def _fmt(x: float) -> str:
    return f"{x:,.1f}"


def _table(title: str, results: list[BenchResult], ref: list[BenchResult] | None = None) -> Table:
    table = Table(title=title)
    for col in ("test", "tokens/s (median)", "min - max", "std", "reps"):
        table.add_column(col, justify="left" if col == "test" else "right")
    if ref is not None:
        table.add_column("engine / direct", justify="right")
    by_test = {r.test: r for r in ref or []}
    for r in results:
        row = [r.test, _fmt(r.tokens_per_s_median),
               f"{_fmt(r.tokens_per_s_min)} - {_fmt(r.tokens_per_s_max)}",
               _fmt(r.tokens_per_s_std), str(r.reps)]
        if ref is not None:
            other = by_test.get(r.test)
            # ratio of the engine's median to this (direct) row's median
            row.append(f"{other.tokens_per_s_median / r.tokens_per_s_median:.3f}"
                       if other and r.tokens_per_s_median > 0 else "-")
        table.add_row(*row)
    return table


def bench_command(model: str, db: Path, reps: int, threads: int | None,
                  compare_direct: bool, console: Console | None = None) -> None:
    """Measure pp512/tg128 of MODEL on the engine, store it in ``benches``, print tables.

    With ``compare_direct`` the same measurement also runs through llama-cpp-python's
    high-level ``Llama`` (repetitions interleaved with the engine's) and a second table gives
    the ratio engine/direct. Only the engine's results are stored.
    """
    from .catalog import resolve_model
    from .device import fingerprint
    from .engines.factory import EngineOptions, open_llamacpp
    from .errors import UserError

    console = console or Console()
    if reps < 1:
        raise UserError(f"--reps must be at least 1 (got {reps}).", 2)
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be at least 1 (got {threads}).", 2)
    mf = resolve_model(model)
    if mf.remote:
        raise UserError("iberlite bench times a local GGUF model, not a remote openai:NAME one.", 2)
    with open_llamacpp(mf, EngineOptions(n_threads=threads)) as engine:
        device = fingerprint(engine.n_threads)
        what = "engine and direct llama-cpp-python, interleaved" if compare_direct else "engine"
        with console.status(f"bench {mf.name}: {what}") as status:
            def progress(msg: str) -> None:
                status.update(f"bench {mf.name} ({what}): {msg}")

            if compare_direct:
                results, direct = bench_compare(engine, pp=PP, tg=TG, reps=reps, warmup=WARMUP,
                                                progress=progress)
            else:
                results = bench_engine(engine, pp=PP, tg=TG, reps=reps, warmup=WARMUP,
                                       progress=progress)
                direct = None
    with Store(db) as store:
        store.add_benches([r.record(device.to_dict()) for r in results])
    r0 = results[0]
    console.print(_table(
        f"{mf.name} ({r0.file_type}) on iberlite's engine, {r0.n_threads} threads", results))
    if direct is not None:
        console.print(_table(f"{mf.name}: direct llama-cpp-python Llama.eval", direct, ref=results))
    console.print(f"[dim]device {device.fingerprint_id}: {device.short()}; stored in {db} "
                  f"(table benches)[/dim]")
