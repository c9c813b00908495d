"""One way to print a table: for a person (80 columns, nothing cut) or for a script.

Commands build a :class:`TableData` from library records and call :func:`emit`. The human
table never cuts an identifier or a number: free text wraps at spaces, headers wrap at
spaces, a value's CI goes under the value, and when the table is still too wide a terminal drops secondary columns (highest
``priority`` first, saying which) and anything else switches to the *stacked* layout, one
``key: value`` block per row. On a pipe nothing is dropped: the table is printed whole if it
fits, stacked otherwise. ``csv`` and ``json`` carry raw numbers under stable snake_case keys;
``md`` is a Markdown table of the human cells.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from iberlite.errors import UserError

FORMATS = ("table", "csv", "json", "md")
SEP = " │ "


@dataclass(frozen=True)
class Est:
    """A value with its 95% CI: one human cell "v [lo,hi]", three machine fields."""

    value: float
    ci_low: float
    ci_high: float
    digits: int = 2
    ci_digits: int | None = None

    def __str__(self) -> str:
        d = self.digits if self.ci_digits is None else self.ci_digits
        return f"{self.value:.{self.digits}f} [{self.ci_low:.{d}f},{self.ci_high:.{d}f}]"


Cell = str | int | float | bool | Est | None


@dataclass(frozen=True)
class Column:
    """A column: ``key`` is its machine name, ``header`` its human one.

    ``kind`` is ``id`` (a name or path: never wrapped), ``num`` (never wrapped, right-aligned)
    or ``text`` (free text: may wrap at spaces). ``priority`` 0 is essential; on a narrow
    terminal higher numbers are hidden first. ``fmt`` is a format spec or a function giving a
    number's human form; ``missing`` is shown for None. ``human``/``machine`` say which outputs
    carry the column (e.g. a composite human cell next to its raw machine fields). A ``ci``
    column holds :class:`Est` cells; its machine fields are ``KEY``, ``KEY_ci_low`` and
    ``KEY_ci_high`` (``value``, ``ci_low``, ``ci_high`` when the key is ``value``).
    """

    key: str
    header: str
    kind: str = "id"
    priority: int = 0
    fmt: str | Callable[[Any], str] = ""
    missing: str = ""
    human: bool = True
    machine: bool = True
    ci: bool = False  # cells are Est: machine fields KEY, KEY_ci_low, KEY_ci_high

    def show(self, value: Cell) -> str:
        """The human form of one cell."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return self.missing
        if callable(self.fmt):
            return self.fmt(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and self.fmt:
            return format(value, self.fmt)
        return str(value)


@dataclass(frozen=True)
class TableData:
    """A titled table of plain cells, with notes a reader needs to interpret it.

    ``records`` is the same data one record per row, for csv and json, when the human table
    pivots it (e.g. one column per model); without it csv and json use these rows.
    """

    title: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[Cell, ...], ...]
    notes: tuple[str, ...] = ()
    records: TableData | None = None


def check_format(fmt: str) -> str:
    """`fmt` if it is a known output format, else a user error (exit 2)."""
    if fmt not in FORMATS:
        raise UserError(f"Unknown output format {fmt!r}; valid formats are {', '.join(FORMATS)}.", 2)
    return fmt


def terminal_width() -> int:
    """$COLUMNS if set, the terminal's width on a terminal, else 80 (as rich does)."""
    cols = os.environ.get("COLUMNS", "")
    if cols.isdigit() and int(cols) > 0:
        return int(cols)
    if sys.stdout.isatty():
        return shutil.get_terminal_size((80, 24)).columns
    return 80


def emit(table: TableData, fmt: str = "table", width: int | None = None, wide: bool = False,
         out: TextIO | None = None, tty: bool | None = None) -> None:
    """Write `table` to stdout (or `out`) in `fmt`; notes of a csv go to stderr."""
    out = out or sys.stdout
    tty = out.isatty() if tty is None else tty
    out.write(render(table, fmt, width or terminal_width(), wide, tty))
    if fmt == "csv":
        for note in table.notes:
            sys.stderr.write(f"note: {note}\n")
    out.flush()


def render(table: TableData, fmt: str, width: int = 80, wide: bool = False, tty: bool = False) -> str:
    """The text :func:`emit` writes. On a terminal (`tty`) a too-wide table loses secondary
    columns; elsewhere it is stacked; `wide` prints every column at full width."""
    check_format(fmt)
    if fmt == "json":
        return _json(table.records or table)
    if fmt == "csv":
        return _csv(table.records or table)
    if fmt == "md":
        return _markdown(table)
    return _text(table, width, wide, tty)


# ---------------------------------------------------------------- machine formats


def _flat(col: Column, value: Cell) -> list[tuple[str, object]]:
    if col.ci:
        lo, hi = ("ci_low", "ci_high") if col.key == "value" else (f"{col.key}_ci_low", f"{col.key}_ci_high")
        if not isinstance(value, Est):
            return [(col.key, None), (lo, None), (hi, None)]
        return [(col.key, value.value), (lo, value.ci_low), (hi, value.ci_high)]
    if isinstance(value, float) and math.isnan(value):
        value = None
    return [(col.key, value)]


def records(table: TableData) -> list[dict[str, object]]:
    """The rows as dicts of machine fields (CIs split into value/ci_low/ci_high)."""
    cols = [(i, c) for i, c in enumerate(table.columns) if c.machine]
    return [dict(kv for i, c in cols for kv in _flat(c, row[i])) for row in table.rows]


def _json(table: TableData) -> str:
    payload = {"title": table.title, "rows": records(table), "notes": list(table.notes)}
    return json.dumps(payload, indent=2, ensure_ascii=False) + "\n"


def _csv(table: TableData) -> str:
    recs = records(table)
    keys = [k for c in table.columns if c.machine for k, _ in _flat(c, None)]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(keys)
    for r in recs:
        writer.writerow(["" if r.get(k) is None else r.get(k) for k in keys])
    return buf.getvalue()


def _markdown(table: TableData) -> str:
    cols = [(i, c) for i, c in enumerate(table.columns) if c.human]

    def esc(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", " ")

    lines = [f"**{esc(table.title)}**", "", "| " + " | ".join(esc(c.header) for _, c in cols) + " |",
             "|" + "|".join("---:" if c.kind == "num" else "---" for _, c in cols) + "|"]
    lines += ["| " + " | ".join(esc(c.show(row[i])) for i, c in cols) + " |" for row in table.rows]
    if table.notes:
        lines += [""] + [esc(n) for n in table.notes]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- human table


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False) or [""]


def _wrap_note(text: str, width: int) -> list[str]:
    """Wrap at spaces, and inside a long `a|b|c` signature after a `|`, so that each of its
    fields stays whole (the whole signature is in csv and json)."""
    lines: list[str] = []
    line = ""
    for piece in re.findall(r"[^\s|]*\|?\s*", text):
        if not piece:
            continue
        if line and len((line + piece).rstrip()) > width:
            lines.append(line.rstrip())
            line = piece.lstrip()
        else:
            line += piece
    return lines + [line.rstrip()] if line.strip() else lines or [""]


def _longest_word(text: str) -> int:
    return max((len(w) for w in text.split()), default=0)


def _wraps(col: Column, wrap_ci: bool) -> bool:
    """Free text wraps at spaces; so does a value with its CI when `wrap_ci` ("0.83
    [0.50,1.00]": the interval goes under the value), which cuts no number."""
    return col.kind == "text" or (wrap_ci and col.ci)


def _widths(cols: Sequence[Column], cells: Sequence[Sequence[str]], width: int | None,
            wrap_ci: bool = False) -> list[int] | None:
    """Column widths that fit `width` without cutting a word, or None if none do."""
    natural, minimum = [], []
    for j, c in enumerate(cols):
        data = [row[j] for row in cells]
        data_max = max((len(s) for s in data), default=0)
        data_min = max((_longest_word(s) for s in data), default=0) if _wraps(c, wrap_ci) else data_max
        natural.append(max(data_max, len(c.header)))
        minimum.append(max(data_min, _longest_word(c.header)))
    seps = len(SEP) * (len(cols) - 1)
    if width is None:
        return natural
    extra = width - seps - sum(minimum)
    if extra < 0:
        return None
    widths = list(minimum)
    # spare room unwraps CIs (all of them or none: one wrapped cell makes the row two lines
    # high anyway) and free text first, for fewer lines per row; then headers
    ci = [j for j, c in enumerate(cols) if c.ci and wrap_ci]
    need = sum(natural[j] - widths[j] for j in ci)
    if need <= extra:
        for j in ci:
            widths[j] = natural[j]
        extra -= need
    else:  # wrapped: room left over widens only their headers
        for j in ci:
            natural[j] = max(widths[j], len(cols[j].header))
    for group in ([j for j, c in enumerate(cols) if c.kind == "text"], range(len(cols))):
        for j in group:
            add = min(extra, natural[j] - widths[j])
            widths[j] += add
            extra -= add
    return widths


def _grid(cols: Sequence[Column], cells: Sequence[Sequence[str]], widths: Sequence[int],
          wrap_ci: bool = False) -> list[str]:
    def line(parts: Sequence[list[str]], right: Sequence[bool]) -> list[str]:
        height = max(len(p) for p in parts)
        out = []
        for k in range(height):
            segs = [(p[k] if k < len(p) else "") for p in parts]
            out.append(SEP.join(s.rjust(w) if r else s.ljust(w)
                                for s, w, r in zip(segs, widths, right)).rstrip())
        return out

    right = [c.kind == "num" for c in cols]
    lines = line([_wrap(c.header, w) for c, w in zip(cols, widths)], right)
    lines.append("─┼─".join("─" * w for w in widths))
    for row in cells:
        lines += line([_wrap(s, w) if _wraps(c, wrap_ci) else [s] for s, c, w in zip(row, cols, widths)], right)
    return lines


def _stacked(cols: Sequence[Column], cells: Sequence[Sequence[str]], width: int) -> list[str]:
    key_w = max(len(c.header) for c in cols) + 1
    lines: list[str] = []
    for row in cells:
        if lines:
            lines.append("")
        for c, s in zip(cols, row):
            if not s:
                continue
            key = f"{c.header}:".ljust(key_w) + " "
            room = width - len(key)
            if c.kind == "text" and len(s) > room >= _longest_word(s):
                body = _wrap(s, room)
                lines += [key + body[0]] + [" " * len(key) + b for b in body[1:]]
            elif len(key) + len(s) > width and len(s) + 2 <= width:
                lines += [key.rstrip(), "  " + s]
            else:
                lines.append(key + s)
    return lines


def _text(table: TableData, width: int, wide: bool, tty: bool) -> str:
    cols = [c for c in table.columns if c.human]
    idx = [i for i, c in enumerate(table.columns) if c.human]
    cells = [[c.show(row[i]) for i, c in zip(idx, cols)] for row in table.rows]
    notes = list(table.notes)
    lines = _wrap(table.title, width) if not wide else [table.title]
    if not cells:
        lines.append("(no rows)")
    else:
        # one line per row if it fits (a terminal first hides secondary columns); then each CI
        # under its value; only then one `key: value` block per row
        for wrap_ci in (False, True):
            widths = _widths(cols, cells, None if wide else width, wrap_ci)
            keep = list(range(len(cols)))
            while widths is None and tty and any(cols[j].priority > 0 for j in keep):
                drop = max(reversed(keep), key=lambda j: cols[j].priority)
                keep.remove(drop)
                widths = _widths([cols[j] for j in keep], [[r[j] for j in keep] for r in cells], width, wrap_ci)
            if widths is not None:
                break
        if widths is None:
            lines += [""] + _stacked(cols, cells, width)
        else:
            hidden = [cols[j].header for j in range(len(cols)) if j not in keep]
            if hidden:
                notes.insert(0, f"Not shown at {width} columns: {', '.join(hidden)} "
                                "(--wide shows every column, --format csv or json every field).")
            lines += _grid([cols[j] for j in keep], [[r[j] for j in keep] for r in cells], widths, wrap_ci)
    for note in notes:
        lines += [""] + (_wrap_note(note, width) if not wide else [note])
    return "\n".join(lines) + "\n"
