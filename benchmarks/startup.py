"""Fixed start-up cost of the CLI: `iberlite models`, and `iberlite run --limit 1` against the
model's own load time (what the run would cost if iberlite added nothing).

Each command runs as a user runs it (a new process), `--reps` times after one warm-up that
fills the caches a second run finds (GGUF facts, file hashes, the layout verdict). Prints a
table and writes JSON.

    python benchmarks/startup.py --data-dir ../shared/data [--models smollm2-135m,gemma3-270m] \
        [--reps 5] [--out benchmarks/out/startup.json]
"""

from __future__ import annotations

import argparse
import json
import os
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

from iberlite.device.fingerprint import fingerprint  # noqa: E402
from iberlite.store import Store  # noqa: E402


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-300:]}")
    return wall


def run_once(model: str, data_dir: Path, threads: int, task: str) -> tuple[float, float, float]:
    """(wall s of `iberlite run --limit 1`, the model's load s as the run recorded it, the
    item's own engine time in s)."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "run.db"
        wall = timed([sys.executable, "-m", "iberlite", "run", "--models", model, "--tasks", task,
                      "--limit", "1", "--threads", str(threads), "--data-dir", str(data_dir),
                      "--db", str(db)])
        store = Store(db)
        try:
            cost = store.runs()[0].costs
            item_ms = sum(it.wall_ms or 0.0 for ev in store.evals() for it in store.items(ev.eval_key))
        finally:
            store.close()
    return wall, (cost[model].load_ms or 0.0) / 1000, item_ms / 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="smollm2-135m,gemma3-270m")
    ap.add_argument("--task", default="xstorycloze_es")
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("IBERLITE_DATA_DIR", "data")))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "startup.json")
    args = ap.parse_args()
    data_dir = args.data_dir.resolve()
    rows = []
    models_cmd = [sys.executable, "-m", "iberlite", "models"]
    timed(models_cmd)  # warm-up: first sight of each file fills the facts cache
    t = [timed(models_cmd) for _ in range(args.reps)]
    rows.append({"what": "iberlite models", "median_s": statistics.median(t), "min_s": min(t),
                 "max_s": max(t), "target": "< 2 s", "met": statistics.median(t) < 2})
    for m in [x.strip() for x in args.models.split(",") if x.strip()]:
        run_once(m, data_dir, args.threads, args.task)  # warm-up: layout verdict, page cache
        samples = [run_once(m, data_dir, args.threads, args.task) for _ in range(args.reps)]

        def row(what: str, values: list[float], **extra) -> dict:
            return {"what": f"run --limit 1 {m}: {what}", "median_s": statistics.median(values),
                    "min_s": min(values), "max_s": max(values), **extra}

        over = [w - load for w, load, _ in samples]
        rows.append(row("wall", [w for w, _, _ in samples]))
        rows.append(row("load", [x for _, x, _ in samples]))
        rows.append(row("the item (engine)", [x for _, _, x in samples]))
        rows.append(row("wall - load", over, target="<= 1.5 s", met=statistics.median(over) <= 1.5))
        rows.append(row("wall - load - item", [w - load - x for w, load, x in samples]))
    device = fingerprint(args.threads)
    print(f"device {device.fingerprint_id}: {device.short()}; {args.reps} reps after a warm-up")
    print(f"{'what':<40} {'median s':>9} {'min':>7} {'max':>7}  target")
    for r in rows:
        met = "" if "met" not in r else (" yes" if r["met"] else " NO")
        print(f"{r['what']:<40} {r['median_s']:>9.2f} {r['min_s']:>7.2f} {r['max_s']:>7.2f}  "
              f"{r.get('target', '')}{met}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": device.to_dict(), "reps": args.reps, "rows": rows},
                                   indent=1))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
