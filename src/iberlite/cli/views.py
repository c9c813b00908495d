"""Library records as :class:`~iberlite.cli.tables.TableData`: what `models`, `tasks` and `results`
print. Field keys are the stable names csv and json carry; headers are for people."""

from __future__ import annotations

from pathlib import Path

from iberlite.cli.tables import Cell, Column, Est, TableData
from iberlite.models.gguf_facts import gguf_facts
from iberlite.models.model_file import ModelFile
from iberlite.scoring.metric import REGISTRY

LANG_OK_NOTE = ("lang_ok: share of outputs that langid.py (restricted to es/ca/eu/gl/pt/en) puts in "
                "the target language; it misreads about 1 Galician sentence in 10 and short outputs "
                "more often (docs/language_id.md).")
ENERGY_NOTE = ("energy 'estimate' = CPU time x assumed watts per core (no RAPL here); set "
               "IBERLITE_CPU_WATTS for your device. It is not a measurement.")


def mib(v: float) -> str:
    """Bytes as whole MiB."""
    return f"{v / 2**20:.0f} MiB"


def variant_columns() -> tuple[Column, ...]:
    """What a variant's row shows, in `quantize` and in `models`."""
    return (
        Column("name", "name"),
        Column("file", "file", human=True, machine=False, priority=3),
        Column("folder", "folder", priority=4, machine=False),
        Column("made_from", "made from", priority=1),
        Column("architecture", "arch", priority=2),
        Column("quant", "quant"),
        Column("n_params", "params", "num", fmt=lambda v: f"{v / 1e6:.0f}M", priority=2),
        Column("bits_per_weight", "bits/w", "num", fmt=".2f"),
        Column("size_bytes", "size", "num", fmt=mib),
        Column("k_fallback", "K fallback", "num", priority=1, missing="-", machine=False),
        Column("kquant_fallback", "K fallback", "num", human=False),
        Column("n_quantized", "quantized tensors", "num", human=False),
        Column("tensor_types", "tensor types", "text", priority=2,
               fmt=lambda v: str(v).replace(",", ", ")),
    )


def variant_row(name: str, made_from: str, path: Path) -> tuple:
    """One row of :func:`variant_columns` from the file's own header."""
    f = gguf_facts(path)
    fallback = f"{f.kquant_fallback}/{f.n_quantized}" if f.kquant_fallback else None
    return (name, path.name, str(path.parent), made_from, f.architecture, f.file_type, f.n_params,
            f.bits_per_weight, f.size_bytes, fallback,
            f.kquant_fallback, f.n_quantized, f.tensor_types_label)


FALLBACK_NOTE = ("K fallback: tensors llama.cpp stored in a non-K type because their rows are not a "
                 "multiple of 256 (of all quantized tensors); the real types are in 'tensor types'.")


ADAPTER_COLUMNS = (  # filled for MODEL+ADAPTER rows only
    Column("adapter_task", "adapted to", priority=1, missing="-"),
    Column("adapter_examples", "train ex.", "num", priority=1, missing="-"),
    Column("adapter_seconds", "training", "num", priority=1, missing="-", fmt=lambda v: f"{v:.0f} s"),
)


def models_table(models_dir: Path | None = None) -> TableData:
    """The catalog models, the variants made from them (`iberlite quantize`), the GGUF models in
    the local Hugging Face cache and in the Ollama store, with what their GGUF headers say (a
    model that cannot be read shows why in `error`)."""
    from iberlite.errors import UserError
    from iberlite.models.adapters import adapters
    from iberlite.models.catalog import CATALOG
    from iberlite.models.hub import cached_hub_models
    from iberlite.models.names import resolve_model
    from iberlite.models.ollama import ollama_dir, ollama_models
    from iberlite.models.quantize import models_dir as variants_dir, variants

    cols: tuple[Column, ...] = (
        *variant_columns(),
        *ADAPTER_COLUMNS,
        Column("path", "path", human=False),
        Column("error", "error", "text"),
    )
    no_adapter = (None,) * len(ADAPTER_COLUMNS)
    rows: list[tuple] = []
    for name in CATALOG:
        try:
            mf = resolve_model(name)
            rows.append((*variant_row(name, "pip", mf.file), *no_adapter, str(mf.file), None))
        except UserError as exc:
            rows.append((name, None, None, "pip", *([None] * 9), *no_adapter, None, str(exc)))
    for v in variants(models_dir):
        rows.append((*variant_row(v.name, v.source_type, Path(v.path)), *no_adapter, v.path, None))
    for a in adapters(models_dir):  # an adapter is its base file plus the LoRA weights
        try:
            base = variant_row(a.model_name, "adapter", Path(resolve_model(a.base).file))
        except UserError:
            continue  # its base is not installed here
        rows.append((*base, a.task, a.examples, a.seconds, a.path, None))
    found = [(m.name, "hf", m.path) for m in cached_hub_models()]
    found += [(m.name, "ollama", m.path) for m in ollama_models()]
    for name, source, path in found:
        try:
            row = variant_row(name, source, path)
            if source == "hf":  # a snapshot folder is longer than a line; the name says where it is
                row = (*row[:2], None, *row[3:])
            rows.append((*row, *no_adapter, str(path), None))
        except UserError as exc:
            rows.append((name, None, None, source, *([None] * 9), *no_adapter, str(path), str(exc)))
    if all(r[-1] is None for r in rows):  # keep the key for scripts, no empty column for people
        cols = (*cols[:-1], Column("error", "error", "text", human=False))
    notes: tuple[str, ...] = (
        f"Variants (MODEL@TYPE) live in {variants_dir(models_dir)}; 'made from' is the type they "
        "were requantized from, pip for a shipped file, hf for a file in the Hugging Face cache, "
        f"ollama for one in the Ollama store ({ollama_dir()}). Any path to a .gguf file "
        "works too.", FALLBACK_NOTE)
    if any(r[3] == "adapter" for r in rows):
        notes += ("Adapters (MODEL+ADAPTER, `iberlite adapt`) show their base file's facts, the task "
                  "they were trained for, the training examples used and the training time.",)
    return TableData("Models", cols, tuple(rows), notes=notes)


def origin_table(mf: ModelFile) -> TableData:
    """Where one resolved model's file is and where it came from (`iberlite pull`)."""
    facts = gguf_facts(mf.file)
    row: dict[str, Cell] = {"name": mf.name, "path": str(mf.file), "size_bytes": facts.size_bytes,
                            "quant": facts.file_type, "architecture": facts.architecture,
                            "sha256": facts.sha256}
    if mf.hub:
        row |= {"source": "hf", "repo": mf.hub.repo, "file": mf.hub.file, "commit": mf.hub.commit,
                "parts": len(mf.hub.parts)}
    elif mf.ollama:
        row |= {"source": "ollama", "ollama_name": f"{mf.ollama.name}:{mf.ollama.tag}",
                "digest": mf.ollama.digest,
                "template": "yes" if mf.ollama.template is not None else "no",
                "params": mf.ollama.params}
    cols = tuple(Column(k, k.replace("_", " ") if k != "size_bytes" else "size",
                        "num" if k in ("size_bytes", "parts") else "text" if k == "params" else "id",
                        fmt=mib if k == "size_bytes" else "")
                 for k in row)
    return TableData(f"Model {mf.name}", cols, (tuple(row.values()),))


def tasks_table(data_dir: Path, tasks_dirs: tuple[Path, ...] = ()) -> TableData:
    """Every task with its group, language, family, output kind and the items `data_dir` holds
    (rows that can be evaluated; `tasks_check_table` says why others cannot).

    Rows come family by family (the built-in families first, a user's own after them), each
    family's tasks in the order they were found: built-in, sample suite, `--tasks-dir`."""
    from iberlite.tasks.data import count_docs
    from iberlite.tasks.families import family_key
    from iberlite.tasks.registry import load_task_specs

    cols = (
        Column("task", "task"),
        Column("group", "group", priority=3),
        Column("lang", "lang"),
        Column("family", "family", priority=1),
        Column("output", "output", priority=2),
        Column("items", "items", "num", missing="no data"),
        Column("prompt_from", "prompt from", "text", priority=4),
        Column("shots_from", "shots from", "text", priority=3),
    )
    rows = tuple((s.name, s.group or "", s.lang, s.family, s.output, count_docs(s, data_dir), s.reference,
                  s.fewshot.pool_label)
                 for s in sorted(load_task_specs(tasks_dirs).values(), key=lambda s: family_key(s.family)))
    return TableData(f"Tasks (data dir: {data_dir})", cols, rows)


def tasks_check_table(data_dir: Path, tasks_dirs: tuple[Path, ...] = (), strict: bool = False) -> TableData:
    """Per data file: rows, rows skipped and why, and the tasks that read it (`tasks --check`).

    A file read by several tasks counts a row once, as skipped if any of them skips it.
    `strict` makes the first row that cannot be evaluated an error (exit code 2).
    """
    from iberlite.errors import RowError, TaskSpecError, UserError
    from iberlite.tasks.data import FAULT_KINDS
    from iberlite.tasks.items import load_items
    from iberlite.tasks.registry import load_task_specs

    files: dict[str, tuple[int, list[str], dict[int, str]]] = {}
    first: dict[str, str] = {}
    missing: list[str] = []
    for spec in load_task_specs(tasks_dirs).values():
        try:
            items = load_items(spec, data_dir, strict=strict, allow_empty=True)
        except (TaskSpecError, RowError):
            raise
        except UserError:  # no data files here for this task
            missing.append(spec.name)
            continue
        for f in items.files:
            files.setdefault(f.file, (f.rows, [], {}))[1].append(spec.name)
        for fault in sorted(items.faults, key=lambda f: f.line):
            files[fault.file][2].setdefault(fault.line, fault.kind)
            first.setdefault(fault.file, f"line {fault.line} {fault.detail}")
    kinds = tuple(Column(k, k.replace("_", " "), "num", human=False) for k in FAULT_KINDS)
    cols = (
        Column("file", "file", machine=False),  # the shortest unique tail of the path
        Column("path", "path", human=False),
        Column("rows", "rows", "num"),
        Column("skipped", "skipped", "num"),
        Column("problems", "problems", "text"),
        *kinds,
        Column("tasks", "tasks", "text", human=False),
    )
    rows: list[tuple[str | int, ...]] = []
    names = _short_names(sorted(files))
    checked = skipped = 0
    for path, (n_rows, tasks, faults) in sorted(files.items()):
        counts = {k: sum(1 for v in faults.values() if v == k) for k in FAULT_KINDS}
        problems = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items() if n)
        rows.append((names[path], path, n_rows, len(faults), problems,
                     *(counts[k] for k in FAULT_KINDS), " ".join(tasks)))
        checked, skipped = checked + n_rows, skipped + len(faults)
    notes = [f"{checked} rows checked in {len(rows)} files; {skipped} cannot be evaluated and are "
             "skipped by `iberlite run` (--strict makes the first one an error)."]
    notes += [f"{names[path]}: first at {text}." for path, text in sorted(first.items())]
    if missing:
        notes.append(f"No data here for {len(missing)} tasks: {', '.join(missing)}.")
    return TableData(f"Data check (data dir: {data_dir})", cols, tuple(rows), tuple(notes))


def _short_names(paths: list[str]) -> dict[str, str]:
    """Each path's shortest tail of folders that no other path in the list shares."""
    parts = {p: Path(p).parts for p in paths}
    out = {}
    for p, ps in parts.items():
        for k in range(1, len(ps) + 1):
            tail = ps[-k:]
            if all(q == p or qs[-k:] != tail for q, qs in parts.items()):
                break
        out[p] = "/".join(tail)
    return out


def _est(a) -> Est | None:
    if a is None:
        return None
    digits = REGISTRY[a.metric].digits if a.metric in REGISTRY else 2
    return Est(a.value, a.ci_low, a.ci_high, digits=digits)


def results_view(db: Path, run_id: int | None = None, signatures: bool = False) -> TableData:
    """The results grid, one column per model, with each task's family; csv and json get one
    record per model, with value, ci_low, ci_high and the signature."""
    from iberlite.analysis.results import results_grid

    grid = results_grid(db, run_id)
    keys = (Column("task", "task"), Column("family", "family", priority=1), Column("lang", "lang"),
            Column("metric", "metric"), Column("n", "n", "num"))
    cols = keys + tuple(Column(m, m, "num", ci=True) for m in grid.models)
    rows = tuple((r.task, r.family, r.lang, r.metric, r.n, *(_est(r.by_model.get(m)) for m in grid.models))
                 for r in grid.rows)
    flat_cols = keys + (Column("model", "model"), Column("value", "value", "num", ci=True),
                        Column("signature", "signature", "text"))
    cells = [(r, m, r.by_model[m]) for r in grid.rows for m in grid.models if m in r.by_model]
    flat = tuple((r.task, r.family, r.lang, r.metric, r.n, m, _est(a), a.signature) for r, m, a in cells)
    notes = []
    if any(r.metric == "lang_ok" for r in grid.rows):
        notes.append(LANG_OK_NOTE)
    notes += [f"{model} on {task}: {n} item{'s' if n != 1 else ''} failed and left out of n; rerunning the run's "
              "command retries them." for (model, task), n in sorted(grid.failed.items())]
    if signatures:
        notes += [f"{r.task} {r.metric} {m}: {a.signature}" for r, m, a in cells]
    title = f"Results ({db}): score (95% bootstrap CI)"
    return TableData(title, cols, rows, tuple(notes), records=TableData(title, flat_cols, flat, tuple(notes)))


def costs_view(db: Path) -> TableData:
    """Device cost per model, task and language (`iberlite results --device`)."""
    from iberlite.analysis.device_cost import device_costs

    cols: tuple[Column, ...] = (
        Column("model", "model"), Column("task", "task"), Column("lang", "lang"),
        Column("output", "output", priority=9, human=False),
        Column("n", "n", "num"),
        Column("latency_p50_ms", "p50 ms", "num", fmt=".0f"),
        Column("latency_p95_ms", "p95 ms", "num", priority=3, fmt=".0f"),
        Column("ttft_p50_ms", "TTFT p50 ms", "num", priority=2, fmt=".0f"),
        Column("ttft_p95_ms", "TTFT p95 ms", "num", priority=5, fmt=".0f"),
        Column("prefill_share", "prefill share", "num", priority=2, fmt=".0%"),
        Column("prompt_tokens_p50", "prompt tok p50", "num", priority=6, fmt=".0f"),
        Column("gen_tokens_p50", "gen tok p50", "num", priority=6, fmt=".0f"),
        Column("prefill_tokens_per_s", "prefill tok/s", "num", priority=1, fmt=".0f"),
        Column("decode_tokens_per_s", "decode tok/s", "num", priority=1, fmt=".0f"),
        Column("peak_rss_mb", "peak RSS MiB", "num", priority=4, fmt=".0f"),
        Column("energy_per_item_j", "J/item", "num", priority=2, fmt=".2f"),
        Column("energy_per_1k_tokens_j", "J/1k tok", "num", priority=6, fmt=".1f"),
        Column("energy_method", "energy", priority=3),
        Column("ceiling_share", "of ceiling", "num", priority=7, fmt=".0%"),
    )
    costs = device_costs(db)
    if any(r.device_class for r in costs):  # a pinned sweep: one row per class
        cols = (*cols[:3], Column("device_class", "class", missing="-"), *cols[3:])
    cols = (*cols, Column("devices", "devices", human=False))
    rows = tuple(tuple(getattr(r, c.key) for c in cols) for r in costs)
    notes = (ENERGY_NOTE,) if any(r.energy_method == "estimate" for r in costs) else ()
    return TableData(f"Device cost ({db}); latency per item, energy per item and per 1k tokens",
                     cols, rows, notes)


def failure_lines(result) -> list[str]:  # result: runner.RunResult (imported lazily by the CLI)
    """One sentence per model that failed, per task with failed items and per Ray shard that kept
    failing: what, how many, why, and that rerunning the same command retries them."""
    from collections import Counter

    lines = [f"Failed: {f.model}: {f.reason}" for f in result.model_failures]
    for o in result.outcomes:
        if not o.failures:
            continue
        why = ", ".join(f"{n} {reason}" for reason, n in Counter(f.reason for f in o.failures).most_common())
        lines.append(f"Failed: {o.model} on {o.task}: {len(o.failures)} of "
                     f"{len(o.failures) + o.n_items} items ({why}); they are left out of the "
                     "scores and retried when the same command is run again.")
    lines += [f"Failed: shard {shard.describe()} (after its retries)" for shard in result.failed]
    if result.model_failures or result.failed:
        rest = "models" if result.model_failures else "shards"
        lines.append(f"The other {rest} finished; rerun the same command once the cause is fixed "
                     "(stored items are kept, only what is missing is evaluated).")
    return lines


def shots_view(db: Path) -> TableData:
    """Score at each number of shots with its CI, the paired gain over zero-shot on the same
    items, and what an item cost (`iberlite results --shots`)."""
    from iberlite.analysis.fewshot import sentence, shot_scores_in

    scores = shot_scores_in(db)
    cols = (
        Column("model", "model"), Column("task", "task"), Column("lang", "lang", priority=3),
        Column("k", "k", "num"), Column("mode", "mode"), Column("n", "n", "num", priority=2),
        Column("acc", "acc", "num", ci=True),
        Column("gain", "vs k=0", "num", ci=True, missing="-"),
        Column("prefill_tokens", "tok/item", "num", priority=1, fmt=".0f"),
        Column("p50_ms", "p50 ms", "num", priority=1, fmt=".0f"),
        Column("items_per_s", "items/s", "num", priority=2, fmt=".1f"),
    )
    rows = tuple((s.model, s.task, s.lang, s.k, s.mode, s.n, Est(s.acc, s.acc_low, s.acc_high),
                  Est(s.gain, s.gain_low, s.gain_high) if s.gain is not None and s.gain_low is not None
                  and s.gain_high is not None else None,
                  s.prefill_tokens, s.p50_ms, s.items_per_s) for s in scores)
    zeros = {(s.model, s.task): s for s in scores if s.k == 0}
    notes = tuple(sentence(s, zeros.get((s.model, s.task))) for s in scores if s.k)
    return TableData(f"Few-shot ({db}): accuracy with 95% CI, paired gain over zero-shot, cost per item",
                     cols, rows, notes)


def adaptation_view(db: Path, target: float, models_dir: Path | None = None,
                    metric: str | None = None) -> TableData:
    """Score against adapter training examples per base model and task: the primary metric with
    its CI, the paired difference to the base, the training time and the run-time overhead;
    one sentence per curve says how many examples reach `target` (benchmarks/adapt_curve.py)."""
    from iberlite.analysis.adaptation import adaptation_curves_in, curve_sentence

    curves = adaptation_curves_in(db, models_dir=models_dir, metric=metric)
    cols = (
        Column("base", "base"), Column("task", "task"), Column("lang", "lang", priority=3),
        Column("examples", "ex.", "num"), Column("metric", "metric", priority=2),
        Column("n", "n", "num", priority=2),
        Column("score", "score", "num", ci=True),
        Column("diff_points", "Δ base pts", "num", ci=True, missing="-"),
        Column("significant", "sig.", priority=2, fmt=lambda v: "yes" if v else "no", missing=""),
        Column("train_s", "training", "num", missing="-", fmt=lambda v: f"{v:.0f} s"),
        Column("train_cpu_s", "CPU s", "num", priority=3, missing="-", fmt=".0f"),
        Column("train_rss", "train RSS", "num", priority=3, missing="-", fmt=mib),
        Column("overhead", "+p50", "num", missing="", fmt=lambda v: f"{v * 100:+.0f}%"),
        Column("items_per_s", "it/s", "num", priority=2, missing="", fmt=".1f"),
        Column("base_items_per_s", "it/s base", "num", priority=3, missing="", fmt=".1f"),
        Column("model", "model", human=False), Column("examples_from", "examples from", human=False),
        Column("p_value", "p", human=False),
    )
    rows = []
    for c in curves:
        for p in c.points:
            k = 1 if p.percent_scale else 100
            d = (Est(p.diff * k, (p.diff_low or 0) * k, (p.diff_high or 0) * k, digits=1)
                 if p.diff is not None else None)
            t = p.training
            rows.append((p.base, p.task, p.lang, p.examples, p.metric, p.n,
                         Est(p.score, p.ci_low, p.ci_high, digits=1 if p.percent_scale else 2), d,
                         p.significant if p.adapter else None,
                         t.seconds if t else None, t.cpu_seconds if t else None, t.peak_rss_bytes if t else None,
                         p.latency_overhead, p.items_per_s, p.base_items_per_s, p.model, p.examples_from,
                         p.p_value))
    notes = tuple(curve_sentence(c, target) for c in curves)
    return TableData(f"How much local data is enough ({db}): score with 95% CI, paired Δ to the base "
                     "in points, training time, p50 latency overhead", cols, tuple(rows), notes)
