"""`iberlite doctor`: a plain function cli.py registers with typer; the checks live in
:mod:`iberlite.doctor`."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from .doctor import ModelCheck, check_model
from .engines.kernels import detect, plan_kernels

_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "asimd", "sve")


def doctor_command(console: Console, models: tuple[str, ...], threads: int | None,
                   as_json: bool) -> int:
    """Check every model in a child process; print the device and one row per model.
    Returns the exit code: 0 when every check passed, 1 otherwise."""
    from .device import fingerprint

    features = detect()
    plan = plan_kernels(features)
    fp = fingerprint(threads or _cores())
    checks: list[ModelCheck] = []
    with console.status("doctor") as status:
        for m in models:
            status.update(f"doctor: {m} (load, decode, exactness probe)")
            checks.append(check_model(m, threads))
    cpu_flags = [f for f in _FLAGS if f in features.cpu_flags]
    if as_json:
        print(json.dumps({
            "device": fp.fingerprint_id, "cpu": fp.cpu_model, "cpu_flags": cpu_flags,
            "llama_features": sorted(features.llama_features), "simd": plan.simd,
            "buffers": plan.buffers, "planned_align": plan.align, "reason": plan.reason,
            "models": [c.__dict__ for c in checks],
        }, indent=2))
    else:
        console.print(f"device   {fp.fingerprint_id}: {fp.cpu_model}, {fp.n_threads} threads",
                      highlight=False, soft_wrap=True)
        console.print(f"cpu      {' '.join(cpu_flags) or 'no SIMD flags seen'}", highlight=False)
        console.print(f"llama    {' '.join(sorted(features.llama_features))}", highlight=False,
                      soft_wrap=True)
        console.print(f"plan     buffers {plan.buffers}; {plan.reason}", highlight=False,
                      soft_wrap=True)
        console.print(_table(checks))
        for c in checks:
            if c.error:
                console.print(f"{c.model}: {c.error} (stage: {c.stage}).", highlight=False,
                              soft_wrap=True)
    return 0 if all(c.ok for c in checks) else 1


def _table(checks: list[ModelCheck]) -> Table:
    table = Table(title="Checks (each model in its own process)")
    for col in ("model", "result", "load ms", "buffers", "align", "max |Δ|", "s"):
        table.add_column(col, justify="left" if col in ("model", "result", "buffers") else "right",
                         no_wrap=col != "buffers")
    for c in checks:
        result = "pass" if c.ok else ("approx" if c.stage == "done" else f"FAIL ({c.stage})")
        table.add_row(c.model, result, f"{c.load_ms:.0f}" if c.load_ms is not None else "-",
                      c.buffers or "-", str(c.align or "-"),
                      f"{c.max_delta:.2g}" if c.max_delta is not None else "-", f"{c.seconds:.1f}")
    return table


def _cores() -> int:
    import os

    return os.cpu_count() or 1
