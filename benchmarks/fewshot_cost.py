"""What few-shot costs on the device: per-item shots (lm-eval's) against one fixed prefix.

For each model, task and k in --ks, the same first --limit items are scored with the llama.cpp
engine (opened once per model, through the factory) at k = 0, with k per-item shots, and with
k fixed shots whose KV the engine computes once and keeps. Per run: accuracy, prefill tokens
per item, per-item prefill ms (mean and p50), items/s, and the ratio of the per-item prefill
time to zero-shot's. The fixed prefix's one-off computation is charged to the first item, so
the mean includes it and the p50 shows the steady state.

    python benchmarks/fewshot_cost.py --models smollm2-135m,gemma3-270m \
        --tasks xstorycloze_eu,xnli_es,bec_eu --ks 0,1,5 --limit 50 --data-dir ../shared/data

Prints a table and writes benchmarks/out/fewshot_cost.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from iberlite.device.fingerprint import fingerprint
from iberlite.engines.factory import EngineOptions, open_engine
from iberlite.models.names import resolve_model
from iberlite.run.evaluate import evaluate_batch
from iberlite.tasks.fewshot import FewshotSetup, apply_fewshot
from iberlite.tasks.items import load_items
from iberlite.tasks.registry import load_task_specs

OUT = Path(__file__).resolve().parent / "out"
CHUNK = 16  # items per engine call, as the runner's default chunk


def measure(engine, spec, instances) -> dict:
    """Score the instances in runner-sized chunks; accuracy and per-item cost."""
    records = []
    t0 = time.perf_counter()
    for s in range(0, len(instances), CHUNK):
        records += evaluate_batch(engine, spec, list(enumerate(instances))[s:s + CHUNK])
    wall = time.perf_counter() - t0
    prefill = [r.prefill_ms or 0.0 for r in records]
    return {
        "n": len(records),
        "acc": sum(bool(r.correct) for r in records) / len(records),
        "prefill_tokens_per_item": statistics.fmean(r.eval_tokens or 0.0 for r in records),
        "prefill_ms_mean": statistics.fmean(prefill),
        "prefill_ms_p50": statistics.median(prefill),
        "items_per_s": len(records) / wall,
        "wall_s": wall,
    }


def run(models: list[str], tasks: list[str], ks: list[int], limit: int, data_dir: Path,
        threads: int, modes: tuple[str, ...] = ("per-item", "fixed")) -> Iterator[dict]:
    """Every (model, task, k, mode) row, as it is measured."""
    specs = load_task_specs(())
    for name in models:
        engine = open_engine(resolve_model(name), EngineOptions(n_threads=threads))
        try:
            for task in tasks:
                spec = specs[task]
                base = load_items(spec, data_dir, limit).instances
                zero = None
                for k in ks:
                    for mode in modes if k else ("-",):
                        setup = FewshotSetup(k, mode if k else "per-item")
                        instances, plan = apply_fewshot(spec, base, data_dir, setup)
                        row = {"model": name, "task": task, "k": k, "mode": mode,
                               "pool": plan.pool if plan else "", **measure(engine, spec, instances)}
                        zero = zero or row
                        row["prefill_vs_k0_mean"] = row["prefill_ms_mean"] / zero["prefill_ms_mean"]
                        row["prefill_vs_k0_p50"] = row["prefill_ms_p50"] / zero["prefill_ms_p50"]
                        yield row
        finally:
            engine.close()


HEADER = f"{'model':<13} {'task':<15} {'k':>2} {'mode':<8} {'acc':>5} {'tok/it':>6} {'ms p50':>7} " \
         f"{'x k0':>5} {'ms mean':>7} {'it/s':>5}"


def _line(r: dict) -> str:
    return (f"{r['model']:<13} {r['task']:<15} {r['k']:>2} {r['mode']:<8} {r['acc']:>5.2f} "
            f"{r['prefill_tokens_per_item']:>6.0f} {r['prefill_ms_p50']:>7.1f} "
            f"{r['prefill_vs_k0_p50']:>5.2f} {r['prefill_ms_mean']:>7.1f} {r['items_per_s']:>5.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="smollm2-135m,gemma3-270m")
    ap.add_argument("--tasks", default="xstorycloze_eu,xnli_es,bec_eu")
    ap.add_argument("--ks", default="0,1,5")
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    ap.add_argument("--modes", default="per-item,fixed",
                    help="shot modes to run for k > 0 (default: %(default)s); k = 0 always runs")
    ap.add_argument("--out", type=Path, default=OUT / "fewshot_cost.json",
                    help="where to write the JSON (default: %(default)s)")
    args = ap.parse_args()
    if not set(args.modes.split(",")) <= {"per-item", "fixed"}:
        ap.error(f"--modes takes per-item and/or fixed, not {args.modes!r}")
    print(HEADER)
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    head = {"device": asdict(fingerprint(args.threads)), "limit": args.limit, "threads": args.threads}
    rows = []
    for row in run(args.models.split(","), args.tasks.split(","),
                   [int(k) for k in args.ks.split(",")], args.limit, args.data_dir, args.threads,
                   tuple(args.modes.split(","))):
        print(_line(row), flush=True)
        rows.append(row)
        out.write_text(json.dumps({**head, "rows": rows}, indent=1, default=str))  # a long run keeps what it measured
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
