"""Engine ceiling: does `iberlite bench` measure what llama-cpp-python measures directly?

For each model, one child process loads the model twice — iberlite's engine and
llama-cpp-python's high-level ``Llama`` with the same thread count, context size, batch and
flash-attention setting — and measures pp512 and tg128 on both (warm-up, fresh KV cache
per repetition). By default the two paths are interleaved (pp repetitions alternate ABBA,
tg alternates token by token), so load from other processes hits both alike;
``--mode sequential`` runs ``bench_engine`` and then ``direct_reference`` one after the other.

Prints a table with the ratio engine/direct per test (ratio of medians, and the median of the
per-repetition paired ratios) and writes everything to JSON.

    python benchmarks/engine_ceiling.py --models smollm2-135m,gemma3-270m --reps 5 \
        [--threads N] [--pp 512] [--tg 128] [--mode interleaved|sequential] \
        [--out benchmarks/out/engine_ceiling.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

try:
    import iberlite  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO / "src"))

TOLERANCE = 0.15


def _one(model: str, *, reps: int, threads: int | None, pp: int, tg: int, mode: str) -> dict:
    """Measure one model in this process; returns a JSON-ready dict."""
    from iberlite.bench.speed import bench_compare, bench_engine, direct_reference
    from iberlite.device.fingerprint import fingerprint
    from iberlite.engines.factory import EngineOptions, open_llamacpp
    from iberlite.models.names import resolve_model

    def progress(msg: str) -> None:
        print(f"  [{model}] {msg}", file=sys.stderr, flush=True)

    mf = resolve_model(model)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    with open_llamacpp(mf, EngineOptions(n_threads=threads)) as engine:
        n_threads = engine.n_threads
        if mode == "interleaved":
            eng, direct = bench_compare(engine, pp=pp, tg=tg, reps=reps, progress=progress)
        else:
            eng = bench_engine(engine, pp=pp, tg=tg, reps=reps, progress=progress)
    if mode == "sequential":
        direct = direct_reference(mf.path, pp=pp, tg=tg, reps=reps, n_threads=n_threads,
                                  model_name=mf.name, progress=progress)
    return {
        "model": mf.name,
        "path": str(mf.path),
        "mode": mode,
        "seconds": time.perf_counter() - t0,
        "loadavg_before": load0,
        "loadavg_after": os.getloadavg(),
        "device": fingerprint(n_threads).to_dict(),
        "engine": [dataclasses.asdict(r) for r in eng],
        "direct": [dataclasses.asdict(r) for r in direct],
    }


def compare(run: dict) -> list[dict]:
    """Per test: medians, ratios engine/direct and each path's wall vs llama.cpp timer."""
    rows = []
    direct = {r["test"]: r for r in run["direct"]}
    for e in run["engine"]:
        d = direct[e["test"]]
        paired = [a / b for a, b in zip(e["samples"], d["samples"])]
        ratio = e["tokens_per_s_median"] / d["tokens_per_s_median"]
        llama_ratio = (e["llama_tokens_per_s_median"] / d["llama_tokens_per_s_median"]
                       if e["llama_tokens_per_s_median"] and d["llama_tokens_per_s_median"] else None)
        cpu_ratio = (e["cpu_tokens_per_s_median"] / d["cpu_tokens_per_s_median"]
                     if e["cpu_tokens_per_s_median"] and d["cpu_tokens_per_s_median"] else None)
        rows.append({
            "model": run["model"],
            "test": e["test"],
            "reps": e["reps"],
            "n_threads": e["n_threads"],
            "engine_median": e["tokens_per_s_median"],
            "engine_min": e["tokens_per_s_min"],
            "engine_max": e["tokens_per_s_max"],
            "engine_std": e["tokens_per_s_std"],
            "direct_median": d["tokens_per_s_median"],
            "direct_min": d["tokens_per_s_min"],
            "direct_max": d["tokens_per_s_max"],
            "direct_std": d["tokens_per_s_std"],
            "ratio": ratio,
            "paired_ratio_median": statistics.median(paired),
            "paired_ratios": paired,
            "llama_timer_ratio": llama_ratio,
            "cpu_time_ratio": cpu_ratio,
            # wall clock / llama.cpp's own timer, as tokens/s: 1.0 means no Python overhead
            "engine_wall_vs_llama": e["tokens_per_s_median"] / e["llama_tokens_per_s_median"]
            if e["llama_tokens_per_s_median"] else None,
            "direct_wall_vs_llama": d["tokens_per_s_median"] / d["llama_tokens_per_s_median"]
            if d["llama_tokens_per_s_median"] else None,
            "within_tolerance": abs(ratio - 1) <= TOLERANCE,
        })
    return rows


def print_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Engine ceiling: iberlite engine vs direct llama-cpp-python "
                        f"(tolerance ±{TOLERANCE:.0%})")
    cols = ("model", "test", "thr", "reps", "engine t/s median \\[min-max] ±std",
            "direct t/s median \\[min-max] ±std", "ratio", "paired", "llama timer", "cpu time", "ok")
    for c in cols:
        table.add_column(c, justify="left" if c in ("model", "test") else "right")
    for r in rows:
        table.add_row(
            r["model"], r["test"], str(r["n_threads"]), str(r["reps"]),
            f"{r['engine_median']:.1f} [{r['engine_min']:.1f}-{r['engine_max']:.1f}] ±{r['engine_std']:.1f}",
            f"{r['direct_median']:.1f} [{r['direct_min']:.1f}-{r['direct_max']:.1f}] ±{r['direct_std']:.1f}",
            f"{r['ratio']:.3f}", f"{r['paired_ratio_median']:.3f}",
            f"{r['llama_timer_ratio']:.3f}" if r["llama_timer_ratio"] else "-",
            f"{r['cpu_time_ratio']:.3f}" if r["cpu_time_ratio"] else "-",
            "yes" if r["within_tolerance"] else "[red]NO[/red]",
        )
    Console(width=max(160, Console().width)).print(table)
    print("ratio: engine median / direct median (wall clock); paired: median of per-repetition "
          "engine/direct; llama timer / cpu time: the same ratio from llama.cpp's own timer and "
          "from process CPU time.")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="smollm2-135m,gemma3-270m")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="default: the engine's (all cores)")
    ap.add_argument("--pp", type=int, default=512)
    ap.add_argument("--tg", type=int, default=128)
    ap.add_argument("--mode", choices=("interleaved", "sequential"), default="interleaved")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "engine_ceiling.json")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # child: measure this model
    ap.add_argument("--one-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.one:
        run = _one(args.one, reps=args.reps, threads=args.threads, pp=args.pp, tg=args.tg,
                   mode=args.mode)
        args.one_out.write_text(json.dumps(run))
        return 0

    runs = []
    started = time.time()
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        print(f"{model}: measuring in a fresh process ({args.mode}, reps={args.reps})",
              file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run.json"
            cmd = [sys.executable, __file__, "--one", model, "--one-out", str(out),
                   "--reps", str(args.reps), "--pp", str(args.pp), "--tg", str(args.tg),
                   "--mode", args.mode]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            rc = subprocess.run(cmd).returncode
            if rc != 0:
                print(f"{model}: child process failed with code {rc}", file=sys.stderr)
                return rc
            runs.append(json.loads(out.read_text()))
    rows = [row for run in runs for row in compare(run)]
    print_table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started_at": started,
        "host": platform.node(),
        "tolerance": TOLERANCE,
        "rows": rows,
        "runs": runs,
    }, indent=2))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0 if all(r["within_tolerance"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
