"""What measuring costs: the same scoring work with and without the RSS sampler and energy meter.

    python benchmarks/measurement_overhead.py --model smollm2-135m --task xstorycloze_es \
        --limit 60 --reps 5 --data-dir ../shared/data

Runs the same items on one engine, alternating "measured" (RssSampler at 10 ms + EnergyMeter
around the work, as `iberlite run` does) and "bare" repetitions, and prints the median items/s
of each and their ratio. Prints a table and writes JSON (benchmarks/out/measurement_overhead.json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from pathlib import Path

from iberlite.device.energy import EnergyMeter
from iberlite.device.fingerprint import fingerprint
from iberlite.device.memory import RssSampler
from iberlite.engines.base import LoglikelihoodRequest
from iberlite.engines.factory import open_llamacpp
from iberlite.models.names import resolve_model
from iberlite.tasks.data import load_docs
from iberlite.tasks.registry import load_task_specs
from iberlite.tasks.render import render


def _requests(task: str, limit: int, data_dir: Path) -> tuple[int, list[LoglikelihoodRequest]]:
    spec = load_task_specs()[task]
    instances = [render(spec, d) for d in load_docs(spec, data_dir, limit)]
    reqs = [LoglikelihoodRequest(i.context, i.target_delimiter + c, group=i.doc_id)
            for i in instances for c in i.choices]
    return len(instances), reqs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--task", default="sample_commonsense_es")
    ap.add_argument("--limit", type=int, default=60)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--data-dir", type=Path, default=Path("data"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/measurement_overhead.json"))
    args = ap.parse_args()

    n_items, reqs = _requests(args.task, args.limit, args.data_dir)
    engine = open_llamacpp(resolve_model(args.model))
    engine.loglikelihood(reqs[:8])  # warm-up
    speeds: dict[str, list[float]] = {"bare": [], "measured": []}
    for _ in range(args.reps):
        for mode in ("bare", "measured"):
            guard = (contextlib.ExitStack() if mode == "bare" else _measured())
            with guard:
                t0 = time.perf_counter()
                engine.loglikelihood(reqs)
                speeds[mode].append(n_items / (time.perf_counter() - t0))
    engine.close()
    bare, measured = (statistics.median(speeds[m]) for m in ("bare", "measured"))
    result = {
        "model": args.model, "task": args.task, "items": n_items, "reps": args.reps,
        "bare_items_per_s": bare, "measured_items_per_s": measured,
        "overhead": 1 - measured / bare, "samples": speeds,
        "device": fingerprint(engine.n_threads).short(),
    }
    print(f"{'mode':<10}{'items/s (median)':>18}{'min':>8}{'max':>8}")
    for m in ("bare", "measured"):
        print(f"{m:<10}{statistics.median(speeds[m]):>18.2f}{min(speeds[m]):>8.2f}{max(speeds[m]):>8.2f}")
    print(f"measurement overhead: {100 * result['overhead']:+.1f}% of throughput "
          f"({n_items} items x {args.reps} reps, {result['device']})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


@contextlib.contextmanager
def _measured():
    with RssSampler(), EnergyMeter():
        yield


if __name__ == "__main__":
    main()
