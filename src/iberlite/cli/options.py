"""The options several commands share, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

DbOpt = Annotated[Path, typer.Option("--db", help="SQLite results database.")]
DataDirOpt = Annotated[
    Optional[Path],
    typer.Option("--data-dir", help="Folder with the evaluation data \\[env: IBERLITE_DATA_DIR; default ./data]."),
]
TasksDirOpt = Annotated[
    Optional[list[Path]],
    typer.Option("--tasks-dir", help="Extra folder of task YAML files (repeatable)."),
]
FormatOpt = Annotated[
    str,
    typer.Option("--format", help="table (fits the terminal; stacked when too wide; never cuts a "
                 "name or number), csv, json (raw numbers, snake_case keys) or md."),
]
WideOpt = Annotated[bool, typer.Option("--wide", help="Table: every column at full width, whatever the terminal's.")]


def split_csv(value: str | None) -> tuple[str, ...]:
    """`a, b,,c` -> ('a', 'b', 'c'); None -> ()."""
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else ()


def data_dir_or_default(value: Path | None) -> Path:
    """--data-dir, else IBERLITE_DATA_DIR, else ./data."""
    from iberlite.tasks.data import default_data_dir

    return value if value is not None else default_data_dir()


ModelsDirOpt = Annotated[
    Optional[Path],
    typer.Option("--models-dir", help="Folder of quantized variants and adapters \\[env: IBERLITE_MODELS_DIR; default: models/ in the cache folder]."),
]
