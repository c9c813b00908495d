"""The `iberlite` command line: parse, call the library, print. Nothing else lives here."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from .errors import UserError

app = typer.Typer(
    help="Evaluate compact LLMs on Iberian-language tasks on this device, with the device cost "
    "of every answer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

DbOpt = Annotated[Path, typer.Option("--db", help="SQLite results database.")]
DataDirOpt = Annotated[
    Optional[Path],
    typer.Option("--data-dir", help="Folder with the evaluation data \\[env: IBERLITE_DATA_DIR; default ./data]."),
]
TasksDirOpt = Annotated[
    Optional[list[Path]],
    typer.Option("--tasks-dir", help="Extra folder of task YAML files (repeatable)."),
]


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else ()


def _data_dir(value: Path | None) -> Path:
    from .data import default_data_dir

    return value if value is not None else default_data_dir()


class _ItemsPerSecond(TextColumn):
    def __init__(self) -> None:
        super().__init__("")

    def render(self, task):  # type: ignore[override]
        speed = task.finished_speed or task.speed
        return f"{speed:5.2f} items/s" if speed else "  -- items/s"


@app.command()
def models() -> None:
    """List the catalog models: file, size, architecture, quantization, parameters."""
    from .catalog import CATALOG, gguf_facts, resolve_model

    table = Table(title="Models (any path to a .gguf file works too)")
    for col in ("name", "file", "size", "arch", "quant", "params", "tensor types"):
        table.add_column(col)
    for name in CATALOG:
        try:
            mf = resolve_model(name)
            f = gguf_facts(mf.path)
            table.add_row(name, str(mf.path), f"{f.size_bytes / 2**20:.0f} MiB", f.architecture,
                          f.file_type, f"{f.n_params / 1e6:.0f}M", f.tensor_types_label)
        except UserError as exc:
            table.add_row(name, f"[red]{exc}[/red]", "", "", "", "", "")
    console.print(table)


@app.command()
def tasks(data_dir: DataDirOpt = None, tasks_dir: TasksDirOpt = None) -> None:
    """List tasks: name, language, family, and how many items the data dir holds."""
    from .data import count_docs
    from .tasks.registry import load_task_specs

    dd = _data_dir(data_dir)
    table = Table(title=f"Tasks (data dir: {dd})")
    for col in ("task", "group", "lang", "family", "output", "items", "prompt from"):
        table.add_column(col)
    for spec in load_task_specs(tasks_dir or ()).values():
        n = count_docs(spec, dd)
        table.add_row(spec.name, spec.group or "", spec.lang, spec.family, spec.output,
                      str(n) if n is not None else "[yellow]no data[/yellow]", spec.reference)
    console.print(table)


@app.command()
def run(
    models: Annotated[Optional[str], typer.Option("--models", help="Comma-separated catalog names or .gguf paths \\[default: all catalog models].")] = None,
    tasks: Annotated[Optional[str], typer.Option("--tasks", help="Comma-separated task names, groups or families \\[default: the sample suite].")] = None,
    langs: Annotated[Optional[str], typer.Option("--langs", help="Comma-separated languages: es,ca,eu,gl,pt,en \\[default: all].")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Evaluate only the first N items of each task.")] = None,
    data_dir: DataDirOpt = None,
    tasks_dir: TasksDirOpt = None,
    db: DbOpt = Path("iberlite.db"),
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads \\[default: all cores].")] = None,
    engine: Annotated[str, typer.Option("--engine", help="llamacpp (in-process llama.cpp) or transformers (fp32 reference; needs the reference extra).")] = "llamacpp",
    base_url: Annotated[Optional[str], typer.Option("--base-url", envvar="IBERLITE_BASE_URL", help="OpenAI-compatible endpoint for openai:NAME models, e.g. http://127.0.0.1:8000/v1.")] = None,
    api_key_env: Annotated[str, typer.Option("--api-key-env", help="Environment variable holding the endpoint's API key (the key is never stored).")] = "OPENAI_API_KEY",
    api: Annotated[str, typer.Option("--api", help="Remote generation API: completions or chat.")] = "completions",
    scoring: Annotated[str, typer.Option("--scoring", help="fast (shared-prefix batches) or naive (each choice from scratch).")] = "fast",
    prefix_cache: Annotated[bool, typer.Option("--prefix-cache", help="Generation: reuse the KV of a prompt prefix shared with the previous item (reported as reused tokens).")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed for generation and bootstrap CIs.")] = 1234,
    online: Annotated[bool, typer.Option("--online", help="Read task data from the Hugging Face Hub instead of the data dir.")] = False,
) -> None:
    """Evaluate models x tasks x languages on this device and store every item."""
    from . import supervise

    if not supervise.in_child():  # the work runs in a child, so a native crash is reported
        code, message = supervise.run_supervised(sys.argv[1:])
        if message:
            err.print(f"Error: {message}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(code)
    from .catalog import DEFAULT_MODELS
    from .runner import RunSpec, run as run_grid

    spec = RunSpec(
        models=_csv(models) or DEFAULT_MODELS, tasks=_csv(tasks), langs=_csv(langs), limit=limit,
        data_dir=_data_dir(data_dir), tasks_dirs=tuple(tasks_dir or ()), db=db,
        n_threads=threads, engine=engine, base_url=base_url, api_key_env=api_key_env, api=api, scoring=scoring, prefix_cache=prefix_cache, seed=seed, online=online,
    )
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               _ItemsPerSecond(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    bars: dict[str, int] = {}
    with Progress(*columns, console=err, transient=False) as prog:
        def on_progress(model: str, task: str, done: int, total: int) -> None:
            label = f"{model} [dim]{task}[/dim]"
            if model not in bars:
                bars[model] = prog.add_task(label, total=total, completed=done)
            prog.update(bars[model], completed=done, description=label)

        result = run_grid(spec, progress=on_progress, command=shlex.join(["iberlite", *sys.argv[1:]]))
    console.print(f"Run {result.run_id} stored in {db}.")
    _print_results(db, run_id=result.run_id)


@app.command()
def results(
    db: DbOpt = Path("iberlite.db"),
    signatures: Annotated[bool, typer.Option("--signatures", help="Show the signature behind each number.")] = False,
    device: Annotated[bool, typer.Option("--device", help="Show what the answers cost on the device.")] = False,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write scores and device costs to this JSON file.")] = None,
) -> None:
    """Show stored results: model x task x language, every metric with its 95% CI."""
    if not db.exists():
        raise UserError(f"No results database at {db}; run `iberlite run` first or pass --db.")
    if device:
        _print_costs(db)
    else:
        _print_results(db, show_signatures=signatures)
    if json_out is not None:
        from .results import export_json

        export_json(db, json_out)
        console.print(f"Wrote {json_out}.")


@app.command()
def report(
    db: DbOpt = Path("iberlite.db"),
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="Output file; '-' writes to stdout \\[default: report.html, or report.md with --format md].")] = None,
    fmt: Annotated[str, typer.Option("--format", help="html (one self-contained page, opens offline) or md (Markdown for terminals and CI logs).")] = "html",
) -> None:
    """Write the report: leaderboard with CIs, language gaps, accuracy vs cost, items, device, methodology."""
    from .report.build import render, write_report

    if out is not None and str(out) == "-":
        sys.stdout.write(render(db, fmt))
        return
    path = write_report(db, out or Path("report.md" if fmt == "md" else "report.html"), fmt)
    console.print(f"Report written to {path.resolve()}.")


@app.command()
def bench(
    model: Annotated[str, typer.Argument(help="Catalog name or path to a .gguf file.")],
    db: DbOpt = Path("iberlite.db"),
    reps: Annotated[int, typer.Option("--reps", min=1, help="Timed repetitions per test (after one warm-up).")] = 5,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads \\[default: all cores].")] = None,
    compare_direct: Annotated[bool, typer.Option("--compare-direct", help="Also time llama-cpp-python's own Llama class on the same file, interleaved.")] = False,
) -> None:
    """Engine ceiling, llama-bench style: prefill pp512 and decode tg128 tokens/s, stored in the DB."""
    from .bench_cli import bench_command

    bench_command(model, db, reps, threads, compare_direct, console=console)


@app.command()
def doctor(
    models: Annotated[Optional[str], typer.Option("--models", help="Comma-separated catalog names or .gguf paths \\[default: all catalog models].")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads \\[default: all cores].")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
) -> None:
    """Check this device: load and decode each model in a child process, verify that fast
    scoring is exact here, and show the CPU features, buffers and layout a run will use."""
    from .catalog import DEFAULT_MODELS
    from .doctor_cli import doctor_command

    code = doctor_command(console, _csv(models) or DEFAULT_MODELS, threads, json_out)
    raise typer.Exit(code)


def _num(value: float | None, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def _print_costs(db: Path) -> None:
    from .cost import device_costs

    rows = device_costs(db)
    if not rows:
        console.print("No items stored yet.")
        return
    table = Table(title=f"Device cost ({db}); latency per item, energy per item and per 1k tokens")
    for col in ("model", "task", "lang", "n", "p50 ms", "p95 ms", "TTFT p50/p95 ms", "prefill tok/s",
                "decode tok/s", "peak RSS MiB", "J/item", "J/1k tok", "energy", "of ceiling"):
        table.add_column(col, overflow="fold")
    for r in rows:
        ttft = f"{r.ttft_p50_ms:.0f}/{r.ttft_p95_ms:.0f}" if r.ttft_p50_ms is not None else ""
        table.add_row(r.model, r.task, r.lang, str(r.n), f"{r.latency_p50_ms:.0f}",
                      f"{r.latency_p95_ms:.0f}", ttft, _num(r.prefill_tokens_per_s, ".0f"),
                      _num(r.decode_tokens_per_s, ".0f"), _num(r.peak_rss_mb, ".0f"),
                      _num(r.energy_per_item_j, ".2f"), _num(r.energy_per_1k_tokens_j, ".1f"),
                      r.energy_method or "", _num(r.ceiling_share, ".0%"))
    console.print(table)
    if any(r.energy_method == "estimate" for r in rows):
        console.print("energy 'estimate' = CPU time x assumed watts per core (no RAPL here); "
                      "set IBERLITE_CPU_WATTS for your device. It is not a measurement.")


def _fmt(value: float, lo: float, hi: float, percent_scale: bool) -> str:
    if percent_scale:  # BLEU, chrF, TER are on 0-100
        return f"{value:.1f} [{lo:.1f},{hi:.1f}]"
    return f"{value:.2f} [{lo:.2f},{hi:.2f}]"


def _print_results(db: Path, run_id: int | None = None, show_signatures: bool = False) -> None:
    from .results import results_grid

    grid = results_grid(db, run_id)
    if not grid.rows:
        console.print("No results stored yet.")
        return
    table = Table(title=f"Results ({db}): score (95% bootstrap CI)")
    table.add_column("task", overflow="fold")
    for col in ("lang", "metric", "n"):
        table.add_column(col, no_wrap=True)
    for m in grid.models:
        table.add_column(m, justify="right", no_wrap=True)
    for row in grid.rows:
        cells = [row.task, row.lang, row.metric, str(row.n)]
        for m in grid.models:
            a = row.by_model.get(m)
            cells.append(_fmt(a.value, a.ci_low, a.ci_high, row.metric in ("bleu", "chrf", "ter")) if a else "")
        table.add_row(*cells)
    console.print(table)
    if any(row.metric == "lang_ok" for row in grid.rows):
        console.print("lang_ok: share of outputs that langid.py (restricted to es/ca/eu/gl/pt/en) "
                      "puts in the target language; it misreads about 1 Galician sentence in 10 "
                      "and short outputs more often (docs/language_id.md).", highlight=False)
    if show_signatures:
        for row in grid.rows:
            for m, a in row.by_model.items():
                console.print(f"{row.task} {row.metric} {m}: {a.signature}", highlight=False)


@app.command()
def decide(
    device: Annotated[str, typer.Option("--device", help="Device model (as stored by `iberlite run`).")],
    cloud: Annotated[str, typer.Option("--cloud", help="Cloud model, e.g. openai:gemma3-270m.")],
    profile: Annotated[Path, typer.Option("--profile", help="Cost profile YAML (see examples/cost_profile.yaml).")],
    min_accuracy: Annotated[float, typer.Option("--min-accuracy", help="Accuracy each (task, language) must reach.")] = 0.6,
    db: DbOpt = Path("iberlite.db"),
    policy_out: Annotated[Path, typer.Option("--policy-out", help="Where to write the routing policy JSON.")] = Path("policy.json"),
    seed: Annotated[int, typer.Option("--seed", help="Seed of the calibration/test split and the CIs.")] = 1234,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write every decision and curve as JSON.")] = None,
) -> None:
    """Device, cloud or cascade per task and language, from stored results; writes a policy."""
    from .decide_cli import decide_command

    decide_command(console, device=device, cloud=cloud, profile_path=profile, min_accuracy=min_accuracy,
                   db=db, policy_out=policy_out, seed=seed, json_out=json_out,
                   command=shlex.join(["iberlite", *sys.argv[1:]]))


@app.command()
def route(
    text: Annotated[str, typer.Argument(help="Prompt text (generation) or a JSON document (multiple choice).")],
    policy: Annotated[Path, typer.Option("--policy", help="Policy JSON written by `iberlite decide`.")],
    task: Annotated[str, typer.Option("--task", help="Task whose prompt and route to use.")],
    lang: Annotated[Optional[str], typer.Option("--lang", help="Language (checked against the task's).")] = None,
    base_url: Annotated[Optional[str], typer.Option("--base-url", envvar="IBERLITE_BASE_URL", help="Endpoint of the cloud model.")] = None,
    api_key_env: Annotated[str, typer.Option("--api-key-env", help="Environment variable holding the cloud API key.")] = "OPENAI_API_KEY",
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads for the device model.")] = None,
    tasks_dir: TasksDirOpt = None,
) -> None:
    """Answer one request as the policy says: on the device, or escalated to the cloud."""
    from .decide_cli import route_command

    route_command(console, policy_path=policy, task=task, lang=lang, text=text, base_url=base_url,
                  api_key_env=api_key_env, threads=threads, tasks_dirs=tuple(tasks_dir or ()))


def main() -> None:
    """Entry point: user errors print one sentence and exit non-zero, never a traceback."""
    try:
        app()
    except UserError as exc:
        err.print(f"Error: {exc}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("Interrupted; every finished chunk is stored: rerun the same command to continue.",
                  soft_wrap=True)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()


@app.command()
def serve(
    model: Annotated[str, typer.Argument(help="Catalog name or .gguf path.")],
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0: any free one).")] = 8000,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads \\[default: all cores].")] = None,
    n_ctx: Annotated[int, typer.Option("--n-ctx", min=64, help="Context size in tokens.")] = 4096,
    alias: Annotated[Optional[str], typer.Option("--alias", help="Model id the endpoint reports \\[default: the model name].")] = None,
) -> None:
    """Serve a GGUF model as a greedy OpenAI-compatible endpoint (a cloud tier for `decide`)."""
    from .catalog import resolve_model
    from .engines.factory import EngineOptions, open_llamacpp
    from .serve import CompletionService, make_server

    mf = resolve_model(model)
    if mf.remote:
        raise UserError("iberlite serve serves a local model, not openai:NAME.", 2)
    engine = open_llamacpp(mf, EngineOptions(n_threads=threads, n_ctx=n_ctx, scoring="naive"))
    try:
        server = make_server(CompletionService(engine, alias or mf.name), host, port)
    except OSError as exc:
        engine.close()
        raise UserError(f"Cannot listen on {host}:{port} ({exc.strerror}).", 2) from None
    h, p = server.server_address[:2]
    err.print(f"Serving {alias or mf.name} at http://{h}:{p}/v1 (Ctrl-C to stop).")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        engine.close()

