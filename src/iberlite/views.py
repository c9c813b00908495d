"""Library records as :class:`~iberlite.tables.TableData`: what `models`, `tasks` and `results`
print. Field keys are the stable names csv and json carry; headers are for people."""

from __future__ import annotations

from pathlib import Path

from .tables import Column, Est, TableData

LANG_OK_NOTE = ("lang_ok: share of outputs that langid.py (restricted to es/ca/eu/gl/pt/en) puts in "
                "the target language; it misreads about 1 Galician sentence in 10 and short outputs "
                "more often (docs/language_id.md).")
ENERGY_NOTE = ("energy 'estimate' = CPU time x assumed watts per core (no RAPL here); set "
               "IBERLITE_CPU_WATTS for your device. It is not a measurement.")


def _mib(v: float) -> str:
    return f"{v / 2**20:.0f} MiB"


def _millions(v: float) -> str:
    return f"{v / 1e6:.0f}M"


def models_table() -> TableData:
    """The catalog models with what their GGUF headers say (a model that cannot be read
    shows why in `error`)."""
    from .catalog import CATALOG, gguf_facts, resolve_model
    from .errors import UserError

    cols: tuple[Column, ...] = (
        Column("name", "name"),
        Column("file", "file", human=True, machine=False),
        Column("size_bytes", "size", "num", fmt=_mib),
        Column("architecture", "arch"),
        Column("quant", "quant"),
        Column("n_params", "params", "num", fmt=_millions),
        Column("tensor_types", "tensor types", "text", priority=2, fmt=lambda v: str(v).replace(",", ", ")),
        Column("folder", "folder", priority=1, machine=False),
        Column("path", "path", human=False),
        Column("sha256", "sha256", human=False),
        Column("error", "error", "text"),
    )
    rows: list[tuple] = []
    for name in CATALOG:
        try:
            mf = resolve_model(name)
            assert mf.path is not None  # catalog models are local files
            f = gguf_facts(mf.path)
            rows.append((name, mf.path.name, f.size_bytes, f.architecture, f.file_type, f.n_params,
                         f.tensor_types_label, str(mf.path.parent), str(mf.path), f.sha256, None))
        except UserError as exc:
            rows.append((name, None, None, None, None, None, None, None, None, None, str(exc)))
    if all(r[-1] is None for r in rows):  # keep the key for scripts, no empty column for people
        cols = (*cols[:-1], Column("error", "error", "text", human=False))
    return TableData("Models (any path to a .gguf file works too)", cols, tuple(rows))


def tasks_table(data_dir: Path, tasks_dirs: tuple[Path, ...] = ()) -> TableData:
    """Every task with its group, language, family, output kind and the items `data_dir` holds."""
    from .data import count_docs
    from .tasks.registry import load_task_specs

    cols = (
        Column("task", "task"),
        Column("group", "group", priority=3),
        Column("lang", "lang"),
        Column("family", "family", priority=1),
        Column("output", "output", priority=2),
        Column("items", "items", "num", missing="no data"),
        Column("prompt_from", "prompt from", "text", priority=4),
    )
    rows = tuple((s.name, s.group or "", s.lang, s.family, s.output, count_docs(s, data_dir), s.reference)
                 for s in load_task_specs(tasks_dirs).values())
    return TableData(f"Tasks (data dir: {data_dir})", cols, rows)


def _est(a) -> Est | None:
    from .metrics import CORPUS_METRICS

    if a is None:
        return None
    return Est(a.value, a.ci_low, a.ci_high, digits=1 if a.metric in CORPUS_METRICS else 2)


def results_view(db: Path, run_id: int | None = None, signatures: bool = False) -> TableData:
    """The results grid, one column per model; csv and json get one record per model, with
    value, ci_low, ci_high and the signature."""
    from .results import results_grid

    grid = results_grid(db, run_id)
    keys = (Column("task", "task"), Column("lang", "lang"), Column("metric", "metric"), Column("n", "n", "num"))
    cols = keys + tuple(Column(m, m, "num", ci=True) for m in grid.models)
    rows = tuple((r.task, r.lang, r.metric, r.n, *(_est(r.by_model.get(m)) for m in grid.models))
                 for r in grid.rows)
    flat_cols = keys + (Column("model", "model"), Column("value", "value", "num", ci=True),
                        Column("signature", "signature", "text"))
    flat = tuple((r.task, r.lang, r.metric, r.n, m, _est(a), a.signature)
                 for r in grid.rows for m, a in sorted(r.by_model.items()))
    notes = []
    if any(r.metric == "lang_ok" for r in grid.rows):
        notes.append(LANG_OK_NOTE)
    if signatures:
        notes += [f"{r.task} {r.metric} {m}: {a.signature}" for r in grid.rows for m, a in sorted(r.by_model.items())]
    title = f"Results ({db}): score (95% bootstrap CI)"
    return TableData(title, cols, rows, tuple(notes), records=TableData(title, flat_cols, flat, tuple(notes)))


def costs_view(db: Path) -> TableData:
    """Device cost per model, task and language (`iberlite results --device`)."""
    from .cost import device_costs

    cols: tuple[Column, ...] = (
        Column("model", "model"), Column("task", "task"), Column("lang", "lang"),
        Column("output", "output", priority=9, human=False),
        Column("n", "n", "num"),
        Column("latency_p50_ms", "p50 ms", "num", fmt=".0f"),
        Column("latency_p95_ms", "p95 ms", "num", priority=3, fmt=".0f"),
        Column("ttft_p50_ms", "TTFT p50 ms", "num", priority=2, fmt=".0f"),
        Column("ttft_p95_ms", "TTFT p95 ms", "num", priority=5, fmt=".0f"),
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
