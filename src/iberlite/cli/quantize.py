"""`iberlite quantize`: make variants with a progress bar and print what each really holds."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from iberlite.cli.tables import Column, TableData, check_format, emit
from iberlite.cli.views import FALLBACK_NOTE, mib, variant_columns, variant_row
from iberlite.models.names import resolve_source
from iberlite.models.quantize import Variant, check_type, quantize


def quantize_command(model: str, to: tuple[str, ...], models_dir: Path | None, threads: int | None,
                     fmt: str = "table", wide: bool = False, err: Console | None = None) -> None:
    """Write (or find cached) every requested variant of MODEL, then print them."""
    err = err or Console(stderr=True)
    check_format(fmt)
    types = [check_type(t) for t in to]  # every type is checked before any work
    src = resolve_source(model, "Quantize from", "from")
    made: list[tuple[Variant, bool]] = []
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TimeElapsedColumn())
    with Progress(*columns, console=err, transient=False) as prog:
        for qtype in types:
            bar = prog.add_task(f"{model} -> {qtype}", total=1.0)

            def on_progress(frac: float, bar=bar) -> None:
                prog.update(bar, completed=frac)

            variant, hit = quantize(src, qtype, directory=models_dir, n_threads=threads,
                                    progress=on_progress)
            prog.update(bar, completed=1.0,
                        description=f"{model} -> {qtype} ({'cached' if hit else f'{variant.seconds:.1f} s'})")
            made.append((variant, hit))
    rows = tuple((*variant_row(v.name, v.source_type, Path(v.path)), "cached" if hit else "made", v.path)
                 for v, hit in made)
    cols = (*variant_columns(), Column("status", "status"), Column("path", "path", human=False))
    folder = Path(made[0][0].path).parent if made else models_dir
    emit(TableData(f"Variants of {model} (in {folder})", cols, rows, notes=(FALLBACK_NOTE,)), fmt,
         wide=wide)


def advise_command(model: str, types: tuple[str, ...], db: Path, models_dir: Path | None,
                   threads: int | None, fmt: str = "table", wide: bool = False,
                   err: Console | None = None) -> None:
    """Measure the formats of MODEL on this device, store the advice in `db`, print it."""
    from iberlite.bench.advise import advise_and_store

    err = err or Console(stderr=True)
    check_format(fmt)
    with err.status(f"advise {model}") as status:
        result = advise_and_store(model, types, db, n_threads=threads, models_dir=models_dir,
                                  progress=lambda msg: status.update(f"advise {msg}"))
    cols = (
        Column("model", "format"),
        Column("bits_per_weight", "bits/w", "num", fmt=".2f"),
        Column("size_bytes", "size", "num", fmt=mib, priority=2),
        Column("pp_tokens_per_s", "scoring tok/s", "num", fmt=".0f"),
        Column("tg_tokens_per_s", "gen tok/s", "num", fmt=".1f"),
        Column("check", "check right", "num", machine=False),
        Column("agree", "agrees with ref", "num", machine=False),
        Column("check_items", "check_items", "num", human=False),
        Column("check_correct", "check_correct", "num", human=False),
        Column("check_agree", "check_agree", "num", human=False),
        Column("check_mean_abs_delta", "mean |delta| nats/token", "num", fmt=".3f", priority=1),
    )
    rows = tuple((c.label, c.bits_per_weight, c.size_bytes, c.pp_tokens_per_s, c.tg_tokens_per_s,
                  f"{c.check_correct}/{c.check_items}", f"{c.check_agree}/{c.check_items}",
                  c.check_items, c.check_correct, c.check_agree, c.check_mean_abs_delta)
                 for c in result.candidates)
    notes = (result.sentence,
             f"Reference: {result.reference}. Scoring = prefill of 128 tokens, generation = 32 decoded "
             f"tokens, median of 2 after a warm-up; check = the {result.candidates[0].check_items} "
             "built-in sample items (story endings, es and eu): it catches a broken format, it does "
             f"not rank models. Measured in {result.seconds:.0f} s; stored in {db}.")
    emit(TableData(f"Formats of {result.family} on device {result.device_id}", cols, rows, notes=notes),
         fmt, wide=wide)
