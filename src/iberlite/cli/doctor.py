"""`iberlite doctor`: a plain function cli.py registers with typer; the checks live in
:mod:`iberlite.bench.doctor`."""

from __future__ import annotations

from rich.console import Console

from iberlite.bench.doctor import ModelCheck, check_model
from iberlite.cli.tables import Column, TableData, emit
from iberlite.engines.kernels import detect, plan_kernels

_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "asimd", "sve")


def doctor_command(models: tuple[str, ...], threads: int | None, fmt: str = "table",
                   wide: bool = False, err: Console | None = None) -> int:
    """Check every model in a child process; print the device and one row per model.
    Returns the exit code: 0 when every check passed, 1 otherwise."""
    from iberlite.device.fingerprint import fingerprint, usable_cpus

    err = err or Console(stderr=True)
    features = detect()
    plan = plan_kernels(features)
    fp = fingerprint(threads or usable_cpus())
    checks: list[ModelCheck] = []
    with err.status("doctor") as status:
        for m in models:
            status.update(f"doctor: {m} (load, decode, exactness probe)")
            checks.append(check_model(m, threads))
    cpu_flags = " ".join(f for f in _FLAGS if f in features.cpu_flags) or "none seen"
    notes = (f"device {fp.fingerprint_id}: {fp.cpu_model}, {fp.n_threads} threads",
             f"CPU flags: {cpu_flags}",
             f"llama.cpp build: {' '.join(sorted(features.llama_features))}",
             f"plan: weight buffers {plan.buffers}; {plan.reason}",
             *(f"{c.model}: {c.error} (stage: {c.stage})." for c in checks if c.error))
    emit(checks_table(checks, notes), fmt, wide=wide)
    return 0 if all(c.ok for c in checks) else 1


def checks_table(checks: list[ModelCheck], notes: tuple[str, ...] = ()) -> TableData:
    """One row per model: result, load time, buffers, block size, worst |fast - naive|."""
    cols = (
        Column("model", "model"),
        Column("result", "result"),
        Column("stage", "stage", priority=3),
        Column("load_ms", "load ms", "num", 1, ".0f", "-"),
        Column("buffers", "buffers", "text", 1),
        Column("align", "align", "num", 0, "d", "-"),
        Column("exact", "exact", "id", 2, "", "-"),
        Column("max_delta", "max |Δ| nats", "num", 1, ".2g", "-"),
        Column("decode_tok_s", "decode tok/s", "num", 2, ".0f", "-"),
        Column("seconds", "s", "num", 2, ".1f"),
        Column("error", "error", "text", 3, human=False),
    )
    rows = tuple(
        (c.model, "pass" if c.ok else ("approx" if c.stage == "done" else "FAIL"), c.stage,
         c.load_ms, c.buffers or None, c.align, c.exact, c.max_delta, c.decode_tok_s, c.seconds,
         c.error)
        for c in checks
    )
    return TableData("Doctor: each model checked in its own process", cols, rows, notes)
