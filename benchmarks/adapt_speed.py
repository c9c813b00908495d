"""LoRA training speed per model on a task's prompts (the one-off cost of `iberlite adapt`).

Trains one adapter per model on the same examples (fresh models folder, so nothing is a cache
hit) and reports training examples/s, wall and CPU seconds and peak RSS, as `adapt` records
them; then, with --agreement N, llama.cpp with the adapter against PEFT in transformers on N
test items, next to the base model's own llama.cpp-vs-transformers deviation.

    nice -n 10 python benchmarks/adapt_speed.py --models smollm2-135m,gemma3-270m \
        --task bec_eu --train-limit 64 --threads 1 --data-dir ../shared/data

Prints a table and writes JSON to benchmarks/out/adapt_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from dataclasses import asdict
from pathlib import Path

for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_var] = "1"

from iberlite.adapt.agreement import measure  # noqa: E402
from iberlite.adapt.make import adapt, plan  # noqa: E402
from iberlite.adapt.train import TrainConfig  # noqa: E402
from iberlite.models.adapters import resolve_adapted  # noqa: E402
from iberlite.models.names import resolve_model  # noqa: E402
from iberlite.tasks.items import load_items  # noqa: E402
from iberlite.tasks.registry import load_task_specs  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="smollm2-135m,gemma3-270m")
    ap.add_argument("--task", default="bec_eu")
    ap.add_argument("--train-limit", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--agreement", type=int, default=0, help="test items for the agreement check")
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            config = TrainConfig(batch_size=args.batch_size, lr=args.lr)
            p = plan(model, args.task, config, data_dir=args.data_dir, train_limit=args.train_limit,
                     models_dir=Path(tmp))
            adapter, _ = adapt(p, n_threads=args.threads)
            row = {"model": model, "task": args.task, "examples": adapter.examples,
                   "batch_size": args.batch_size, "threads": adapter.n_threads,
                   "examples_per_s": adapter.examples_per_s, "seconds": adapter.seconds,
                   "cpu_seconds": adapter.cpu_seconds, "peak_rss_gib": round(adapter.peak_rss_bytes / 2**30, 2),
                   "n_trainable": adapter.n_trainable, "first_loss": adapter.first_loss,
                   "final_loss": adapter.final_loss, "token_check": adapter.token_check}
            if args.agreement:
                items = load_items(load_task_specs()[args.task], args.data_dir, limit=args.agreement).instances
                base = resolve_model(model)
                a = measure(base, resolve_adapted(base, args.task, Path(tmp)), items, args.threads)
                row["agreement"] = asdict(a)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{'model':<14} {'ex':>4} {'ex/s':>6} {'wall s':>7} {'CPU s':>7} {'RSS GiB':>8} {'trainable':>10}")
    for r in rows:
        print(f"{r['model']:<14} {r['examples']:>4} {r['examples_per_s']:>6.2f} {r['seconds']:>7.0f} "
              f"{r['cpu_seconds']:>7.0f} {r['peak_rss_gib']:>8.2f} {r['n_trainable']:>10,}")
        if "agreement" in r:
            a = r["agreement"]
            print(f"  llama.cpp vs transformers, max |d| nats: base {a['base']['max']:.3f}, adapted "
                  f"{a['adapted']['max']:.3f}; adapter shift median {a['shift']['median']:.3f}")
    OUT.mkdir(exist_ok=True)
    (OUT / "adapt_speed.json").write_text(json.dumps({"cpu": platform.processor() or platform.machine(),
                                                      "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
