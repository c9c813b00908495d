"""Which hyper-parameters `iberlite adapt` should use when none are given (issue 33).

Trains one adapter per setting (the old default, lr 2e-4 for one epoch, against the setting every
measured curve used, lr 1e-3 for two epochs) on the same examples with the same seed, evaluates
the base and both adapters on the same first --eval-limit test items through the ordinary
runner, and compares the two settings item by item (paired bootstrap, 95% CI). Adapters are
cached in --models-dir and items in --db, so a second run retrains and re-evaluates nothing.

    python benchmarks/adapt_defaults.py --models smollm2-135m --tasks bec_eu,qnlieu \
        --examples 300 --eval-limit 300 --threads 1 --db defaults.db --models-dir models \
        --data-dir ../shared/data

Prints one row per model and task and writes benchmarks/out/adapt_defaults.json with the device
fingerprint.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

from iberlite.adapt.make import adapt, plan
from iberlite.adapt.train import TrainConfig
from iberlite.analysis.language_gap import paired_bootstrap
from iberlite.device.fingerprint import fingerprint
from iberlite.models.adapters import ADAPTER_SEP
from iberlite.models.quantize import MODELS_DIR_ENV
from iberlite.run.runner import run
from iberlite.run.spec import RunSpec
from iberlite.store import Store

OUT = Path(__file__).resolve().parent / "out"
SETTINGS = {"old": TrainConfig(lr=2e-4, epochs=1), "new": TrainConfig(lr=1e-3, epochs=2)}


def _correct(db: Path, model: str, task: str) -> dict[str, float]:
    """doc_id -> 1.0 when the model's stored answer is right, from its fullest evaluation."""
    store = Store(db)
    try:
        ev = store.evals_with_most_items(model=model)[(model, task)]
        return {it.doc_id: float(bool(it.correct)) for it in store.items(ev.eval_key)}
    finally:
        store.close()


def one(model: str, task: str, args) -> dict:
    """Train (or find) both settings' adapters, evaluate, compare: one result row."""
    names, train_s = {}, {}
    for label, config in SETTINGS.items():
        p = plan(model, task, config, data_dir=args.data_dir, train_limit=args.examples,
                 name=f"{task}-n{args.examples}-{label}", models_dir=args.models_dir, drop_overlap=True)
        adapter, cached = adapt(p, n_threads=args.threads, on_status=lambda m: print(f"  {m}", flush=True))
        names[label] = f"{p.base.name}{ADAPTER_SEP}{p.name}"
        train_s[label] = adapter.seconds
        print(f"{names[label]}: {'cached' if cached else 'trained'} in {adapter.seconds:.0f} s "
              f"(loss {adapter.first_loss:.3f} -> {adapter.final_loss:.3f})", flush=True)
    spec = RunSpec(models=(model, names["old"], names["new"]), tasks=(task,), limit=args.eval_limit,
                   data_dir=args.data_dir, db=args.db, n_threads=args.threads)
    run(spec, command=f"benchmarks/adapt_defaults.py {model} {task}")
    scores = {k: _correct(args.db, n, task) for k, n in {"base": model, **names}.items()}
    docs = sorted(set.intersection(*(set(s) for s in scores.values())))
    old = [scores["old"][d] for d in docs]
    new = [scores["new"][d] for d in docs]
    base = [scores["base"][d] for d in docs]
    gap = paired_bootstrap(old, new)
    return {"model": model, "task": task, "items": len(docs), "examples": args.examples,
            "base": sum(base) / len(docs), "old": gap.base, "new": gap.other, "new_minus_old": gap.gap,
            "ci_low": gap.ci_low, "ci_high": gap.ci_high, "significant": gap.significant,
            "old_vs_base": paired_bootstrap(base, old).gap, "new_vs_base": paired_bootstrap(base, new).gap,
            "train_s_old": train_s["old"], "train_s_new": train_s["new"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="smollm2-135m,gemma3-270m")
    ap.add_argument("--tasks", default="bec_eu,qnlieu")
    ap.add_argument("--examples", type=int, default=300)
    ap.add_argument("--eval-limit", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--db", type=Path, default=Path("adapt_defaults.db"))
    ap.add_argument("--models-dir", type=Path, default=None,
                    help="where adapters are cached [default: IBERLITE_MODELS_DIR, else the cache]")
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("IBERLITE_DATA_DIR", "../shared/data")))
    ap.add_argument("--out", type=Path, default=OUT / "adapt_defaults.json")
    args = ap.parse_args()
    if args.models_dir is not None:  # the runner resolves MODEL+ADAPTER names from here
        os.environ[MODELS_DIR_ENV] = str(args.models_dir)
    t0 = time.perf_counter()
    rows = [one(m, t, args) for m in args.models.split(",") for t in args.tasks.split(",")]
    head = f"{'model':<13} {'task':<7} {'n':>4} {'base':>5} {'old':>5} {'new':>5} {'new-old, points [95% CI]':>26}"
    print(head)
    for r in rows:
        ci = f"{100 * r['new_minus_old']:+.1f} [{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}]"
        print(f"{r['model']:<13} {r['task']:<7} {r['items']:>4} {r['base']:>5.2f} {r['old']:>5.2f} "
              f"{r['new']:>5.2f} {ci + (' *' if r['significant'] else '  '):>26}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": asdict(fingerprint(args.threads)),
                                    "settings": {k: {"lr": c.lr, "epochs": c.epochs} for k, c in SETTINGS.items()},
                                    "rows": rows, "seconds": round(time.perf_counter() - t0, 1)}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
