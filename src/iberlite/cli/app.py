"""The `iberlite` command line: parse, call the library, print. Nothing else lives here."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from iberlite.adapt.train import TrainConfig
from iberlite.cli import label_page
from iberlite.cli.labelling import labels_app, pool_app, select_command
from iberlite.cli.options import (
    DataDirOpt,
    DbOpt,
    FormatOpt,
    ModelsDirOpt,
    TasksDirOpt,
    WideOpt,
    data_dir_or_default,
    split_csv,
)
from iberlite.cli.tables import check_format, emit
from iberlite.errors import UserError
from iberlite.run.interrupt import RunInterrupted

app = typer.Typer(
    help="Evaluate compact LLMs on Iberian-language tasks on this device, with the device cost "
    "of every answer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)
app.add_typer(pool_app, name="pool")
app.add_typer(labels_app, name="labels")
app.command("select")(select_command)



@app.command()
def models(models_dir: ModelsDirOpt = None, fmt: FormatOpt = "table", wide: WideOpt = False) -> None:
    """List the catalog models and their quantized variants: type, bits per weight, size."""
    from iberlite.cli.views import models_table

    emit(models_table(models_dir), check_format(fmt), wide=wide)


@app.command()
def pull(
    model: Annotated[str, typer.Argument(help="hf:ORG/REPO[:QUANT], hf:ORG/REPO/FILE.gguf, ollama:NAME[:TAG], a catalog name or a .gguf path.")],
    fmt: FormatOpt = "table",
    wide: WideOpt = False,
) -> None:
    """Resolve MODEL now and show where its file came from; later commands need no network.

    A Hub file is downloaded into the Hugging Face cache and its commit pinned."""
    from iberlite.cli.views import origin_table
    from iberlite.models.names import resolve_model

    mf = resolve_model(model)
    if mf.remote:
        raise UserError(f"{model} is served by an endpoint: there is no file to pull.", 2)
    emit(origin_table(mf), check_format(fmt), wide=wide)


@app.command()
def quantize(
    model: Annotated[str, typer.Argument(help="Catalog name or path to a .gguf file.")],
    to: Annotated[str, typer.Option("--to", help="Comma-separated llama.cpp types, e.g. Q8_0,Q6_K,Q5_K_M,Q4_K_M,Q4_0,Q3_K_M,Q2_K.")] = "Q8_0,Q6_K,Q5_K_M,Q4_K_M,Q4_0,Q3_K_M,Q2_K",
    models_dir: ModelsDirOpt = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads \\[default: the usable cores].")] = None,
    fmt: FormatOpt = "table",
    wide: WideOpt = False,
) -> None:
    """Requantize MODEL to each type once; every command then knows MODEL@TYPE.

    Each file is cached by the source's sha256 and the type."""
    from iberlite.cli.quantize import quantize_command

    quantize_command(model, split_csv(to), models_dir, threads, fmt, wide, err=err)


@app.command()
def adapt(
    model: Annotated[str, typer.Argument(help="Catalog name or path to a .gguf file (the base).")],
    task: Annotated[str, typer.Option("--task", help="Task whose train split to learn: multiple choice (e.g. bec_eu) or generation (e.g. flores_en-eu).")],
    train_limit: Annotated[Optional[int], typer.Option("--train-limit", min=1, help="Train on the first N examples of a seeded shuffle \\[default: all].")] = None,
    rank: Annotated[int, typer.Option("--rank", min=1, help="LoRA rank.")] = 8,
    alpha: Annotated[Optional[float], typer.Option("--alpha", help="LoRA alpha \\[default: 2 x rank].")] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Passes over the examples (the default is the measured one: docs/adapting.md).")] = TrainConfig.epochs,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate, decayed linearly to 0 (the default is the measured one).")] = TrainConfig.lr,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Examples per step.")] = 8,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the example order and LoRA init.")] = 0,
    name: Annotated[Optional[str], typer.Option("--name", help="Adapter name in MODEL+NAME \\[default: the task].")] = None,
    drop_overlap: Annotated[bool, typer.Option("--drop-overlap", help="Drop train rows whose text is also in the evaluated split (else refused).")] = False,
    data_dir: DataDirOpt = None,
    tasks_dir: TasksDirOpt = None,
    models_dir: ModelsDirOpt = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads \\[default: torch's].")] = None,
    token_budget: Annotated[int, typer.Option("--token-budget", min=1, help="Padded tokens per forward pass: a step's batch runs in micro-batches within it (less memory, same step).")] = TrainConfig.token_budget,
    grad_checkpointing: Annotated[bool, typer.Option("--grad-checkpointing", help="Recompute activations in the backward pass: less memory, slower.")] = False,
    precision: Annotated[str, typer.Option("--precision", help="auto, bf16 or fp32: the forward pass's matmuls (auto: bf16 where the CPU has avx512_bf16 or amx_bf16).")] = "auto",
    parent: Annotated[Optional[str], typer.Option("--from", help="Continue this adapter (BASE+NAME or its .gguf path) on the new examples.")] = None,
    labels: Annotated[bool, typer.Option("--labels", help="Train on the task's labels in --db (from `iberlite label` or `labels import`), in labelling order, instead of its train split.")] = False,
    curve: Annotated[Optional[str], typer.Option("--curve", help="Comma-separated training sizes, e.g. 0,100,300,1000: one adapter per size (0 = the base), all evaluated on the same test items.")] = None,
    eval_limit: Annotated[Optional[int], typer.Option("--eval-limit", min=1, help="--curve: test items to evaluate each point on \\[default: all].")] = None,
    target_score: Annotated[float, typer.Option("--target-score", min=0.0, max=1.0, help="--curve: the score to reach, 0-1 (x100 for a 0-100 metric); the notes say how many examples reach it.")] = 0.6,
    db: DbOpt = Path("iberlite.db"),
    fmt: FormatOpt = "table",
    wide: WideOpt = False,
) -> None:
    """Train a LoRA adapter for TASK on the CPU; every command then knows MODEL+TASK.

    It learns from the train split (or people's labels: --labels), cached by base, task, data and settings."""
    from iberlite.cli.adapt import adapt_command, curve_command

    config = TrainConfig(rank=rank, alpha=alpha if alpha is not None else 2.0 * rank, epochs=epochs,
                         lr=lr, batch_size=batch_size, seed=seed, token_budget=token_budget,
                         grad_checkpointing=grad_checkpointing, precision=precision)
    if curve is not None:
        from iberlite.adapt.curve import parse_sizes

        if train_limit is not None or name is not None:
            raise UserError("--curve sets the training sizes and names itself; drop --train-limit and --name.", 2)
        if parent is not None:
            raise UserError("--from continues one adapter; it does not combine with --curve.", 2)
        curve_command(model, task, parse_sizes(curve), config, data_dir=data_dir_or_default(data_dir),
                      tasks_dirs=tuple(tasks_dir or ()), models_dir=models_dir, threads=threads,
                      drop_overlap=drop_overlap, eval_limit=eval_limit, db=db, fmt=fmt, wide=wide, err=err,
                      target_score=target_score, labels=labels)
        return
    adapt_command(model, task, config, data_dir=data_dir_or_default(data_dir), train_limit=train_limit,
                  name=name, tasks_dirs=tuple(tasks_dir or ()), models_dir=models_dir,
                  threads=threads, drop_overlap=drop_overlap, fmt=fmt, wide=wide, err=err, parent=parent,
                  labels_db=db if labels else None)


StrictOpt = Annotated[bool, typer.Option("--strict", help="A data row that cannot be evaluated (missing field, empty text, label out of range, bad bytes, wrong column count) is an error, not skipped.")]


@app.command()
def advise(
    model: Annotated[str, typer.Argument(help="Catalog name or path to a .gguf file.")],
    types: Annotated[str, typer.Option("--types", help="Comma-separated formats to try besides the model's own.")] = "Q8_0,Q4_K_M,Q4_0",
    db: DbOpt = Path("iberlite.db"),
    models_dir: ModelsDirOpt = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads \\[default: the usable cores].")] = None,
    fmt: FormatOpt = "table",
    wide: WideOpt = False,
) -> None:
    """Which format of MODEL is fastest on this CPU at scoring and at generating.

    Each format's cost is measured on a small built-in check (about a minute), stored for the report."""
    from iberlite.cli.quantize import advise_command

    advise_command(model, split_csv(types), db, models_dir, threads, fmt, wide, err=err)


@app.command()
def tasks(data_dir: DataDirOpt = None, tasks_dir: TasksDirOpt = None, fmt: FormatOpt = "table",
          wide: WideOpt = False,
          check: Annotated[bool, typer.Option("--check", help="Check every data row: rows per file, and how many are skipped and why.")] = False,
          strict: StrictOpt = False) -> None:
    """List tasks: name, language, family, and how many items the data dir holds."""
    from iberlite.cli.views import tasks_check_table, tasks_table

    fmt, dirs = check_format(fmt), tuple(tasks_dir or ())
    if check or strict:
        emit(tasks_check_table(data_dir_or_default(data_dir), dirs, strict), fmt, wide=wide)
    else:
        emit(tasks_table(data_dir_or_default(data_dir), dirs), fmt, wide=wide)


@app.command()
def run(
    models: Annotated[Optional[str], typer.Option("--models", help="Comma-separated catalog names or .gguf paths \\[default: all catalog models].")] = None,
    tasks: Annotated[Optional[str], typer.Option("--tasks", help="Comma-separated task names, groups or families \\[default: the sample suite]; lm_eval:NAME[,NAME...] names lm-eval tasks (needs the reference extra), after any built-in ones.")] = None,
    langs: Annotated[Optional[str], typer.Option("--langs", help="Comma-separated languages: es,ca,eu,gl,pt,en \\[default: all].")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Evaluate only the first N items of each task.")] = None,
    data_dir: DataDirOpt = None,
    tasks_dir: TasksDirOpt = None,
    lm_eval_include: Annotated[Optional[list[Path]], typer.Option("--lm-eval-include", help="Folder of lm-eval task YAMLs for lm_eval:NAME tasks; they win over lm-eval's own (repeatable).")] = None,
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
    strict: StrictOpt = False,
    keep_going: Annotated[bool, typer.Option("--keep-going", help="A model that cannot be loaded or run is listed at the end; the other models go on (exit 1).")] = False,
    item_timeout: Annotated[Optional[float], typer.Option("--item-timeout", min=0.001, help="Wall-time limit per item in seconds: generation stops (stored with stop reason `timeout`); a remote request fails (stored as failed, retried on resume).")] = None,
    executor: Annotated[str, typer.Option("--executor", help="local (this process) or ray (shards on a Ray cluster; needs the ray extra, see docs/scale.md).")] = "local",
    address: Annotated[Optional[str], typer.Option("--address", help="Ray: the cluster to join, auto or ray://HOST:10001 \\[default: RAY_ADDRESS, a cluster started on this machine, else one started for the run].")] = None,
    device_class: Annotated[Optional[str], typer.Option("--device-class", help="Ray: comma-separated device classes; the grid runs once on nodes of each (resource device:NAME).")] = None,
    shard_size: Annotated[int, typer.Option("--shard-size", min=1, help="Ray: items per shard.")] = 64,
    retries: Annotated[int, typer.Option("--retries", min=0, help="Ray: how often a failed shard is tried again.")] = 2,
    num_fewshot: Annotated[int, typer.Option("--num-fewshot", min=0, help="Labelled examples before each item, as lm-eval 0.4.13 draws them (seeded by --seed); `iberlite tasks` shows where each task's shots come from.")] = 0,
    fewshot_mode: Annotated[str, typer.Option("--fewshot-mode", help="per-item (lm-eval's shots, drawn per item) or fixed (one seeded set for the whole task: a shared prefix whose KV is computed once).")] = "per-item",
) -> None:
    """Evaluate models x tasks x languages on this device (or a Ray cluster) and store every item."""
    from iberlite.run import supervise

    if not supervise.in_child():  # the work runs in a child, so a native crash is reported
        code, message = supervise.run_supervised(sys.argv[1:])
        if message:
            err.print(f"Error: {message}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(code)
    supervise.die_with_parent()
    from iberlite.models.catalog import DEFAULT_MODELS
    from iberlite.run.runner import run as run_grid
    from iberlite.run.spec import RunSpec

    spec = RunSpec(
        models=split_csv(models) or DEFAULT_MODELS, tasks=split_csv(tasks), langs=split_csv(langs), limit=limit,
        data_dir=data_dir_or_default(data_dir), tasks_dirs=tuple(tasks_dir or ()), db=db,
        n_threads=threads, engine=engine, base_url=base_url, api_key_env=api_key_env, api=api, scoring=scoring, prefix_cache=prefix_cache, seed=seed, online=online,
        strict=strict, keep_going=keep_going, item_timeout_s=item_timeout,
        executor=executor, address=address, device_classes=split_csv(device_class), shard_size=shard_size,
        retries=retries, lm_eval_include=tuple(lm_eval_include or ()), num_fewshot=num_fewshot,
        fewshot_mode=fewshot_mode,
    )
    from iberlite.cli.progress import run_progress

    with run_progress(err) as (on_progress, stop_progress):
        try:
            result = run_grid(spec, progress=on_progress, command=shlex.join(["iberlite", *sys.argv[1:]]))
        except RunInterrupted as exc:  # typer turns a KeyboardInterrupt into exit 130 silently
            stop_progress()
            err.print(f"Interrupted: {exc.stored} items of run {exc.run_id} are stored in {exc.db}; "
                      f"resume with: {shlex.join(['iberlite', *sys.argv[1:]])}",
                      highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(130) from None
    err.print(f"Run {result.run_id} stored in {db}.", highlight=False, markup=False, soft_wrap=True)
    if result.skipped:
        err.print(result.skipped, highlight=False, markup=False, soft_wrap=True)
    _print_results(db, "table", wide=False, run_id=result.run_id)
    if not result.complete:
        from iberlite.cli.views import failure_lines

        for line in failure_lines(result):
            err.print(line, highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(1)


@app.command()
def results(
    db: DbOpt = Path("iberlite.db"),
    signatures: Annotated[bool, typer.Option("--signatures", help="Show the signature behind each number (csv and json always carry it).")] = False,
    device: Annotated[bool, typer.Option("--device", help="Show what the answers cost on the device.")] = False,
    shots: Annotated[bool, typer.Option("--shots", help="Few-shot: accuracy at each k, gain over zero-shot on the same items, cost per item.")] = False,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write scores and device costs to this JSON file.")] = None,
    fmt: FormatOpt = "table",
    wide: WideOpt = False,
) -> None:
    """Show stored results: model x task x language, every metric with its 95% CI."""
    check_format(fmt)
    if not db.exists():
        raise UserError(f"No results database at {db}; run `iberlite run` first or pass --db.")
    if device:
        from iberlite.cli.views import costs_view

        emit(costs_view(db), fmt, wide=wide)
    elif shots:
        from iberlite.cli.views import shots_view

        emit(shots_view(db), fmt, wide=wide)
    else:
        _print_results(db, fmt, wide, show_signatures=signatures)
    if json_out is not None:
        from iberlite.analysis.results import export_json

        export_json(db, json_out)
        err.print(f"Wrote {json_out}.", highlight=False, markup=False, soft_wrap=True)


@app.command()
def report(
    db: DbOpt = Path("iberlite.db"),
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="Output file; '-' writes to stdout \\[default: report.html, or report.md with --format md].")] = None,
    fmt: Annotated[str, typer.Option("--format", help="html (one self-contained page, opens offline) or md (Markdown for terminals and CI logs).")] = "html",
    models_dir: Annotated[Optional[Path], typer.Option("--models-dir", help="Adapters' folder, read for the training cost of adapted evaluations stored before runs kept it \\[default: the database alone].")] = None,
) -> None:
    """Write the report: leaderboard with CIs, language gaps, accuracy vs cost, items, device, methodology."""
    from iberlite.report.render import render, write_report

    if out is not None and str(out) == "-":
        sys.stdout.write(render(db, fmt, models_dir))
        return
    path = write_report(db, out or Path("report.md" if fmt == "md" else "report.html"), fmt, models_dir)
    err.print(f"Report written to {path.resolve()}.", highlight=False, markup=False, soft_wrap=True)


@app.command()
def bench(
    model: Annotated[str, typer.Argument(help="Catalog name or path to a .gguf file.")],
    db: DbOpt = Path("iberlite.db"),
    reps: Annotated[int, typer.Option("--reps", min=1, help="Timed repetitions per test (after one warm-up).")] = 5,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads \\[default: all cores].")] = None,
    compare_direct: Annotated[bool, typer.Option("--compare-direct", help="Also time llama-cpp-python's own Llama class on the same file, interleaved.")] = False,
    fmt: FormatOpt = "table",
    wide: WideOpt = False,
) -> None:
    """Engine ceiling, llama-bench style: prefill pp512 and decode tg128 tokens/s, stored in the DB."""
    from iberlite.cli.bench import bench_command

    bench_command(model, db, reps, threads, compare_direct, fmt=check_format(fmt), wide=wide, err=err)


@app.command()
def doctor(
    models: Annotated[Optional[str], typer.Option("--models", help="Comma-separated catalog names or .gguf paths \\[default: all catalog models].")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads \\[default: all cores].")] = None,
    fmt: FormatOpt = "table",
    wide: WideOpt = False,
) -> None:
    """Check that each model loads, decodes and scores exactly on this device.

    Each model runs in a child process; fast scoring is checked against the naive path.

    Shows the CPU features, buffers and layout a run will use."""
    from iberlite.cli.doctor import doctor_command
    from iberlite.models.catalog import DEFAULT_MODELS

    code = doctor_command(split_csv(models) or DEFAULT_MODELS, threads, check_format(fmt), wide, err)
    raise typer.Exit(code)


@app.command("doctor-child", hidden=True)
def doctor_child(
    model: Annotated[str, typer.Argument()],
    threads: Annotated[Optional[int], typer.Option("--threads", min=1)] = None,
) -> None:
    """The child process of `iberlite doctor` for one model (JSON lines on stdout)."""
    from iberlite.bench.doctor import run_child

    run_child(model, threads)


def _print_results(db: Path, fmt: str, wide: bool, run_id: int | None = None, show_signatures: bool = False) -> None:
    from iberlite.cli.views import results_view

    emit(results_view(db, run_id, show_signatures), fmt, wide=wide)


@app.command()
def decide(
    device: Annotated[list[str], typer.Option("--device", metavar="MODEL[:Kshot-fixed]", help="Device candidate: a model as stored by `iberlite run`, optionally with its shots (MODEL:5shot-fixed); repeat to compare several.")],
    cloud: Annotated[str, typer.Option("--cloud", help="Cloud model, e.g. openai:gemma3-270m.")],
    profile: Annotated[Path, typer.Option("--profile", help="Cost profile YAML (see examples/cost_profile.yaml).")],
    min_accuracy: Annotated[float, typer.Option("--min-accuracy", help="Accuracy each (task, language) must reach.")] = 0.6,
    db: DbOpt = Path("iberlite.db"),
    policy_out: Annotated[Optional[Path], typer.Option("--policy-out", help="Write the routing policy JSON (for `iberlite route`) to this file \\[default: no policy file].")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the calibration/test split and the CIs.")] = 1234,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write every decision and curve as JSON.")] = None,
    device_class: Annotated[Optional[str], typer.Option("--device-class", help="The device class whose items stand for the device model (needed when a Ray sweep measured it on several).")] = None,
    fmt: FormatOpt = "table",
    wide: WideOpt = False,
) -> None:
    """Device, cloud or cascade per task and language, from stored results; --policy-out writes a policy."""
    from iberlite.cli.decide import decide_command

    decide_command(device=device, cloud=cloud, profile_path=profile, min_accuracy=min_accuracy,
                   db=db, policy_out=policy_out, seed=seed, json_out=json_out,
                   command=shlex.join(["iberlite", *sys.argv[1:]]), fmt=check_format(fmt), wide=wide, err=err,
                   device_class=device_class)


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
    data_dir: DataDirOpt = None,
) -> None:
    """Answer one request as the policy says: on the device, or escalated to the cloud."""
    from iberlite.cli.decide import route_command

    route_command(console, policy_path=policy, task=task, lang=lang, text=text, base_url=base_url,
                  api_key_env=api_key_env, threads=threads, tasks_dirs=tuple(tasks_dir or ()),
                  data_dir=data_dir)


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
    from iberlite.decide.serve import CompletionService, make_server
    from iberlite.engines.factory import EngineOptions, open_llamacpp
    from iberlite.models.names import resolve_model

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
    err.print(f"Serving {alias or mf.name} at http://{h!s}:{p}/v1 (Ctrl-C to stop).")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        engine.close()


app.command("label")(label_page.label)


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
    except BrokenPipeError:  # `iberlite results --format csv | head`: the reader has enough
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)


if __name__ == "__main__":  # pragma: no cover  (last: every command must be registered first)
    main()
