"""`iberlite quantize`: make variants with a progress bar and print what each really holds."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from .catalog import gguf_facts
from .quantize import Variant, check_type, quantize
from .tables import Column, TableData, check_format, emit


def _mib(v: float) -> str:
    return f"{v / 2**20:.0f} MiB"


def variant_columns() -> tuple[Column, ...]:
    """What a variant's row shows, in `quantize` and in `models`."""
    return (
        Column("name", "name"),
        Column("made_from", "made from", priority=1),
        Column("quant", "quant"),
        Column("bits_per_weight", "bits/w", "num", fmt=".2f"),
        Column("size_bytes", "size", "num", fmt=_mib),
        Column("kquant_fallback", "K fallback", "num", priority=1,
               fmt=lambda v: f"{v[0]}/{v[1]}", missing="-"),
        Column("tensor_types", "tensor types", "text", priority=2,
               fmt=lambda v: str(v).replace(",", ", ")),
    )


def variant_row(name: str, made_from: str, path: Path) -> tuple:
    """One row of :func:`variant_columns` from the file's own header."""
    f = gguf_facts(path)
    fallback = (f.kquant_fallback, f.n_quantized) if f.kquant_fallback else None
    return (name, made_from, f.file_type, f.bits_per_weight, f.size_bytes, fallback,
            f.tensor_types_label)


FALLBACK_NOTE = ("K fallback: tensors llama.cpp stored in a non-K type because their rows are not a "
                 "multiple of 256 (of all quantized tensors); the real types are in 'tensor types'.")


def quantize_command(model: str, to: tuple[str, ...], models_dir: Path | None, threads: int | None,
                     fmt: str = "table", wide: bool = False, err: Console | None = None) -> None:
    """Write (or find cached) every requested variant of MODEL, then print them."""
    err = err or Console(stderr=True)
    check_format(fmt)
    types = [check_type(t) for t in to]  # every type is checked before any work
    made: list[tuple[Variant, bool]] = []
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TimeElapsedColumn())
    with Progress(*columns, console=err, transient=False) as prog:
        for qtype in types:
            bar = prog.add_task(f"{model} -> {qtype}", total=1.0)

            def on_progress(frac: float, bar=bar) -> None:
                prog.update(bar, completed=frac)

            variant, hit = quantize(model, qtype, directory=models_dir, n_threads=threads,
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
