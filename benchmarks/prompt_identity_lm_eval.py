"""Do the built-in tasks render what lm-eval 0.4.13 renders, on every document of the data dir?

lm-eval builds each task from a local copy of its own config pointed at the data dir
(`iberlite.fidelity.lm_eval_tasks`), through its TaskManager (`iberlite.tasks.lm_eval_source`);
iberlite renders the same files with its built-in YAML. Per task: documents on each side and how
many differ in context, choices, gold, target delimiter or stop sequences. No model is run.

    python benchmarks/prompt_identity_lm_eval.py --data-dir ../shared/data \
        --tasks xquad_es,xquad_en,xquad_ca,catalanqa,teca,assin_entailment,assin_paraphrase

Needs the reference extra. Prints a table and writes benchmarks/out/prompt_identity_lm_eval.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ[_var] = "1"

from iberlite.fidelity.lm_eval_tasks import write_task_dir  # noqa: E402
from iberlite.tasks.items import load_items  # noqa: E402
from iberlite.tasks.lm_eval_source import load_lm_eval_tasks  # noqa: E402
from iberlite.tasks.registry import load_task_specs  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
NEW = "xquad_es,xquad_en,xquad_ca,catalanqa,teca,assin_entailment,assin_paraphrase"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default=NEW)
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("IBERLITE_DATA_DIR", "../shared/data")))
    p.add_argument("--out", type=Path, default=OUT / "prompt_identity_lm_eval.json")
    args = p.parse_args(argv)
    tasks = [t for t in args.tasks.split(",") if t]
    specs = load_task_specs()
    rows = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        names = write_task_dir(tasks, args.data_dir, Path(tmp))
        loaded = {lt.spec.name: lt for lt in load_lm_eval_tasks(list(names.values()), [Path(tmp)])}
        for task in tasks:
            theirs = loaded[f"lm_eval:{names[task]}"].instances
            ours = load_items(specs[task], args.data_dir).instances
            fields = ("context", "choices", "gold", "target_delimiter", "until", "max_tokens")
            differ = sum(any(getattr(a, f) != getattr(b, f) for f in fields) for a, b in zip(ours, theirs))
            rows.append({"task": task, "iberlite": len(ours), "lm_eval": len(theirs), "differ": differ})
    wall = time.perf_counter() - t0
    print(f"{'task':<18} {'iberlite':>8} {'lm-eval':>8} {'differ':>6}")
    for r in rows:
        print(f"{r['task']:<18} {r['iberlite']:>8} {r['lm_eval']:>8} {r['differ']:>6}")
    print(f"({wall:.0f} s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "wall_s": wall}, indent=2) + "\n")
    return 0 if all(r["differ"] == 0 and r["iberlite"] == r["lm_eval"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
