"""Library entry point of `iberlite report`: read a database, write one HTML or Markdown file."""

from __future__ import annotations

from pathlib import Path

from iberlite.errors import UserError
from iberlite.report.build import load_report

FORMATS = ("html", "md")


def render(db: Path, fmt: str = "html", models_dir: Path | None = None) -> str:
    """The report of database `db` as a string, in `fmt` ("html" or "md"); `models_dir` only
    lends adapters' training records to evaluations stored before runs kept them."""
    if fmt not in FORMATS:
        raise UserError(f"Unknown report format {fmt!r}; valid formats are {', '.join(FORMATS)}.", exit_code=2)
    report = load_report(Path(db), models_dir=models_dir)
    if fmt == "md":
        from iberlite.report.markdown import render_markdown

        return render_markdown(report)
    try:
        from iberlite.report.html import render_html
        text = render_html(report)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "plotly":
            raise UserError("The HTML report needs plotly: pip install plotly "
                            "(or use --format md).") from exc
        raise
    return text


def write_report(db: Path, out: Path, fmt: str = "html", models_dir: Path | None = None) -> Path:
    """Write the report of database `db` to `out` and return `out`.

    `fmt="html"` writes one self-contained page (plotly.js and everything else inlined, no
    network access when opened); `fmt="md"` writes Markdown for terminals and CI logs.
    """
    out = Path(out)
    if out.parent and not out.parent.exists():
        raise UserError(f"Cannot write {out}: folder {out.parent} does not exist.")
    text = render(Path(db), fmt, models_dir)
    out.write_text(text, encoding="utf-8")
    return out
