"""How much local data is enough: the adaptation grid (issue 22), resumable.

For every model and task, the curve's adapters are trained, or found in the models folder
(cached by base, task, examples and hyper-parameters: a finished grid retrains nothing), then
the base and the adapters are evaluated on the same first --eval-limit test items through the
ordinary runner, which skips every item already stored under the same evaluation key (a
finished grid re-evaluates nothing). Then the curves are read back from the database: the
primary metric with its CI, the paired difference to the base, training time and run-time
overhead, and one sentence per model and task on how many examples reach --target-score.

    python benchmarks/adapt_curve.py --models smollm2-135m,gemma3-270m \
        --tasks bec_eu,qnlieu,irosva_es,bhtc_eu --curve 0,100,300 --eval-limit 300 \
        --lr 1e-3 --epochs 2 --threads 2 --db curve.db --models-dir models \
        --data-dir ../shared/data

Prints a table per combination's work (adapters cached/trained, items evaluated/reused, time)
and the curves' table, and writes benchmarks/out/adapt_curve.json with the device fingerprint.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

from iberlite.adapt.curve import parse_sizes, train_curve
from iberlite.adapt.train import TrainConfig
from iberlite.analysis.adaptation import DEFAULT_TARGET, adaptation_curves_in
from iberlite.cli.tables import emit
from iberlite.cli.views import adaptation_view
from iberlite.device.fingerprint import fingerprint
from iberlite.models.quantize import MODELS_DIR_ENV
from iberlite.run.runner import run
from iberlite.run.spec import RunSpec

OUT = Path(__file__).resolve().parent / "out"


def one(model: str, task: str, sizes: tuple[int, ...], config: TrainConfig, args) -> dict:
    """Train (or find) one curve's adapters and evaluate its points; what it took."""
    t0 = time.perf_counter()
    points = train_curve(model, task, sizes, config, data_dir=args.data_dir, models_dir=args.models_dir,
                         n_threads=args.threads, drop_overlap=args.drop_overlap,
                         on_status=lambda m: print(f"  {m}", flush=True))
    t_train = time.perf_counter() - t0
    adapters = [p for p in points if p.adapter is not None]
    spec = RunSpec(models=tuple(p.model for p in points), tasks=(task,), limit=args.eval_limit,
                   data_dir=args.data_dir, db=args.db, n_threads=args.threads)
    t1 = time.perf_counter()
    result = run(spec, command=f"benchmarks/adapt_curve.py {model} {task}")
    t_eval = time.perf_counter() - t1
    row = {
        "model": model, "task": task, "sizes": list(sizes),
        "adapters_cached": sum(p.cached for p in adapters), "adapters_trained": sum(not p.cached for p in adapters),
        "items": sum(o.n_items for o in result.outcomes), "items_new": sum(o.n_new for o in result.outcomes),
        "train_s": round(t_train, 1), "eval_s": round(t_eval, 1), "run_id": result.run_id,
    }
    print(f"{model:<13} {task:<10} adapters cached {row['adapters_cached']} trained {row['adapters_trained']}; "
          f"items new {row['items_new']}/{row['items']}; {t_train:.0f} s training, {t_eval:.0f} s evaluating",
          flush=True)
    return row


def overhead(model: str, task: str, adapters: list[str], n_items: int, args) -> list[dict]:
    """The adapters' run-time overhead measured apart from the grid's runs: the base and each
    adapter score the same first `n_items` test items in alternating chunks of 10, so machine
    load (the grid's passes ran minutes apart on a shared machine) hits both alike."""
    import statistics

    from iberlite.engines.factory import EngineOptions, open_engine
    from iberlite.models.names import resolve_model
    from iberlite.run.evaluate import evaluate_batch
    from iberlite.tasks.items import load_items
    from iberlite.tasks.registry import load_task_specs

    spec = load_task_specs(())[task]
    batch = list(enumerate(load_items(spec, args.data_dir, n_items).instances))
    names = [model, *adapters]
    engines = {n: open_engine(resolve_model(n), EngineOptions(n_threads=args.threads)) for n in names}
    wall: dict[str, list[float]] = {n: [] for n in names}
    spent: dict[str, float] = dict.fromkeys(names, 0.0)
    try:
        evaluate_batch(engines[model], spec, batch[:2])  # warm-up
        for a in adapters:
            evaluate_batch(engines[a], spec, batch[:2])
        for s in range(0, len(batch), 10):
            for n in names:
                t = time.perf_counter()
                wall[n] += [r.wall_ms or 0.0 for r in evaluate_batch(engines[n], spec, batch[s:s + 10])]
                spent[n] += time.perf_counter() - t
    finally:
        for e in engines.values():
            e.close()
    base_p50, base_ips = statistics.median(wall[model]), len(batch) / spent[model]
    rows = []
    for n in adapters:
        p50, ips = statistics.median(wall[n]), len(batch) / spent[n]
        rows.append({"model": n, "task": task, "items": len(batch), "p50_ms": round(p50, 1),
                     "base_p50_ms": round(base_p50, 1), "p50_overhead": round(p50 / base_p50 - 1, 4),
                     "items_per_s": round(ips, 3), "base_items_per_s": round(base_ips, 3)})
        print(f"overhead {n:<28} {task:<10} p50 {p50:7.1f} ms vs {base_p50:7.1f} ms "
              f"({p50 / base_p50 - 1:+.1%}); {ips:.2f} vs {base_ips:.2f} items/s", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="smollm2-135m,gemma3-270m")
    ap.add_argument("--tasks", default="bec_eu,qnlieu,irosva_es,bhtc_eu")
    ap.add_argument("--curve", default="0,100,300")
    ap.add_argument("--eval-limit", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--db", type=Path, default=Path("adapt_curve.db"))
    ap.add_argument("--models-dir", type=Path, default=None,
                    help="where adapters are cached [default: IBERLITE_MODELS_DIR, else the cache]")
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("IBERLITE_DATA_DIR", "../shared/data")))
    ap.add_argument("--target-score", type=float, default=DEFAULT_TARGET)
    ap.add_argument("--overhead-items", type=int, default=0,
                    help="also time base and adapters on these many items, interleaved (0: skip)")
    ap.add_argument("--drop-overlap", action="store_true",
                    help="train without the rows whose text is also in the evaluated split "
                         "(irosva_es, bhtc_eu); else such a task is refused")
    ap.add_argument("--metric", default=None,
                    help="another of a task's metrics than its primary one, e.g. f1_macro (where the task has it)")
    args = ap.parse_args()
    sizes = parse_sizes(args.curve)
    # the `iberlite adapt` defaults, so the cache keys are the command line's
    config = TrainConfig(rank=8, alpha=16.0, epochs=args.epochs, lr=args.lr, batch_size=8, seed=0)
    if args.models_dir is not None:  # the run resolves MODEL+ADAPTER names in this folder
        os.environ[MODELS_DIR_ENV] = str(args.models_dir)
    device = fingerprint(args.threads)
    print(f"device {device.fingerprint_id}: {device.cpu_model}, {', '.join(device.cpu_flags)}; "
          f"{device.physical_cores} cores", flush=True)
    t0 = time.perf_counter()
    work = [one(m, t, sizes, config, args) for m in args.models.split(",") for t in args.tasks.split(",")]
    total = time.perf_counter() - t0
    over = []
    if args.overhead_items:
        for m in args.models.split(","):
            for t in args.tasks.split(","):
                names = [f"{m}+{t}-n{n}" for n in sizes if n > 0]
                over += overhead(m, t, names, args.overhead_items, args)
    print(f"grid: {total:.0f} s, {sum(w['adapters_trained'] for w in work)} adapters trained, "
          f"{sum(w['items_new'] for w in work)} items evaluated\n")
    # a table that fits 80 columns, secondary columns dropped (the JSON has them all)
    emit(adaptation_view(args.db, args.target_score, args.models_dir, args.metric), "table", width=80, tty=True)
    curves = adaptation_curves_in(args.db, models_dir=args.models_dir, metric=args.metric)
    OUT.mkdir(exist_ok=True)
    out = OUT / "adapt_curve.json"
    out.write_text(json.dumps({
        "device": {**asdict(device), "fingerprint_id": device.fingerprint_id},
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "work": work, "seconds": round(total, 1), "overhead_interleaved": over,
        "curves": [asdict(c) for c in curves],
        "sentences": list(adaptation_view(args.db, args.target_score, args.models_dir, args.metric).notes),
    }, indent=1, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
