"""LoRA training speed and memory, old settings against new (the one-off cost of `iberlite adapt`).

For every model and task, trains one adapter per setting on the same examples with the same seed
and hyper-parameters (fresh models folder, so nothing is a cache hit):

* ``old``: one forward pass per batch, padded to its longest sequence, fp32 (adapting before
  issue 35);
* ``new``: micro-batches within the default token budget, dynamic padding, and the precision
  `--precision auto` picks on this CPU (bf16 where it has avx512_bf16 or amx_bf16);
* ``budget`` (the token budget alone, fp32) and ``checkpointing`` (``new`` with gradient
  checkpointing), with --settings, to tell what each change brings.

Each adapter trains in a child process of its own, so its peak RSS is its own (the whole
process: model load included, as `adapt` records it). Reports training examples/s, wall and CPU
seconds, peak RSS and losses; with --agreement N also llama.cpp with the adapter against PEFT
in transformers on N test items, next to the base model's own llama.cpp-vs-transformers
deviation.

    nice -n 10 python benchmarks/adapt_speed.py --models smollm2-135m,gemma3-270m \
        --tasks bec_eu,bhtc_eu --train-limit 32 --epochs 1 --threads 1 --data-dir ../shared/data

Prints a table and writes JSON to benchmarks/out/adapt_speed.json (with the device fingerprint)
after every adapter; --resume keeps the rows already there that were made with the same
arguments and trains only the others.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_var] = "1"

from iberlite.adapt.agreement import measure  # noqa: E402
from iberlite.adapt.make import adapt, plan  # noqa: E402
from iberlite.adapt.precision import this_cpu_precision  # noqa: E402
from iberlite.adapt.train import TrainConfig  # noqa: E402
from iberlite.device.fingerprint import all_cpu_flags, fingerprint, read_cpuinfo  # noqa: E402
from iberlite.models.adapters import resolve_adapted  # noqa: E402
from iberlite.models.names import resolve_model  # noqa: E402
from iberlite.tasks.items import load_items  # noqa: E402
from iberlite.tasks.registry import load_task_specs  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
SETTINGS = {"old": {"token_budget": 10**9, "precision": "fp32"},
            "budget": {"token_budget": TrainConfig.token_budget, "precision": "fp32"},
            "new": {"token_budget": TrainConfig.token_budget, "precision": "auto"},
            "checkpointing": {"token_budget": TrainConfig.token_budget, "precision": "auto",
                              "grad_checkpointing": True}}


def child(job: dict) -> dict:
    """Train one adapter (in this process) and describe it."""
    config = TrainConfig(batch_size=job["batch_size"], lr=job["lr"], epochs=job["epochs"], seed=job["seed"],
                         **SETTINGS[job["setting"]])
    data_dir = Path(job["data_dir"])
    with tempfile.TemporaryDirectory() as tmp:
        p = plan(job["model"], job["task"], config, data_dir=data_dir, train_limit=job["train_limit"],
                 models_dir=Path(tmp), drop_overlap=True, n_threads=job["threads"])
        a, _ = adapt(p)
        row = {**job, "examples": a.examples, "precision": a.precision, "token_budget": a.token_budget,
               "grad_checkpointing": a.grad_checkpointing,
               "passes": a.micro_batches, "steps": a.steps, "n_threads": a.n_threads,
               "examples_per_s": a.examples_per_s, "seconds": a.seconds, "cpu_seconds": a.cpu_seconds,
               "peak_rss_gib": round(a.peak_rss_bytes / 2**30, 2), "n_trainable": a.n_trainable,
               "first_loss": a.first_loss, "final_loss": a.final_loss, "token_check": a.token_check}
        if job["agreement_items"]:
            items = load_items(load_task_specs()[job["task"]], data_dir, limit=job["agreement_items"]).instances
            base = resolve_model(job["model"])
            row["agreement"] = asdict(measure(base, resolve_adapted(base, p.name, Path(tmp)), items,
                                              a.n_threads))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="smollm2-135m,gemma3-270m")
    ap.add_argument("--tasks", default="bec_eu,bhtc_eu")
    ap.add_argument("--settings", default="old,new", help=f"which of {', '.join(SETTINGS)} to train")
    ap.add_argument("--train-limit", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    ap.add_argument("--lr", type=float, default=TrainConfig.lr)
    ap.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="[default: torch's]")
    ap.add_argument("--agreement", type=int, default=0, help="test items for the agreement check")
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    ap.add_argument("--resume", action="store_true", help="keep rows of the same arguments in the JSON")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))), flush=True)
        return
    common = {"train_limit": args.train_limit, "batch_size": args.batch_size, "lr": args.lr,
              "epochs": args.epochs, "seed": args.seed, "threads": args.threads,
              "agreement_items": args.agreement, "data_dir": str(args.data_dir.resolve())}
    rows = _kept_rows(common) if args.resume else []
    done = {(r["model"], r["task"], r["setting"]) for r in rows}
    for model in args.models.split(","):
        for task in args.tasks.split(","):
            for setting in args.settings.split(","):
                if (model, task, setting) in done:
                    continue
                job = {"model": model, "task": task, "setting": setting, **common}
                proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)],
                                      capture_output=True, text=True)
                if proc.returncode != 0:
                    sys.exit(f"{model} {task} {setting} failed:\n{proc.stderr[-2000:]}")
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
                print(json.dumps(rows[-1]), flush=True)
                _write(rows, args)
    _table(rows)
    _write(rows, args)


def _kept_rows(common: dict) -> list[dict]:
    """Rows of an earlier run with the same arguments (model, task and setting aside)."""
    path = OUT / "adapt_speed.json"
    if not path.is_file():
        return []
    rows = json.loads(path.read_text()).get("rows", [])
    return [r for r in rows if all(r.get(k) == v for k, v in common.items())]


def _write(rows: list[dict], args: argparse.Namespace) -> None:
    OUT.mkdir(exist_ok=True)
    device = fingerprint(rows[0]["n_threads"] if rows else 1).to_dict()
    device["bf16_flags"] = sorted(f for f in all_cpu_flags(read_cpuinfo()) if "bf16" in f)
    device["auto_precision"] = this_cpu_precision()
    (OUT / "adapt_speed.json").write_text(json.dumps({"device": device, "args": {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "child"},
        "rows": rows}, indent=1))


def _table(rows: list[dict]) -> None:
    print(f"\n{'model':<14} {'task':<8} {'setting':<13} {'prec':<5} {'passes':>6} {'ex/s':>6} "
          f"{'wall s':>7} {'CPU s':>7} {'RSS GiB':>8} {'loss first->final':>18}")
    for r in rows:
        print(f"{r['model']:<14} {r['task']:<8} {r['setting']:<13} {r['precision']:<5} {r['passes']:>6} "
              f"{r['examples_per_s']:>6.2f} {r['seconds']:>7.0f} {r['cpu_seconds']:>7.0f} "
              f"{r['peak_rss_gib']:>8.2f} {r['first_loss']:>8.3f} -> {r['final_loss']:.3f}")
        if "agreement" in r:
            a = r["agreement"]
            print(f"  llama.cpp vs transformers, max |d| nats: base {a['base']['max']:.3f}, adapted "
                  f"{a['adapted']['max']:.3f}; adapter shift median {a['shift']['median']:.3f}; same "
                  f"choice {a['same_choice']}/{a['items']}")
    pairs = {(r["model"], r["task"], r["setting"]): r for r in rows}
    for (model, task, setting), new in pairs.items():
        old = pairs.get((model, task, "old"))
        if setting == "new" and old:
            print(f"{model} {task}: new/old examples/s x{new['examples_per_s'] / old['examples_per_s']:.2f}, "
                  f"CPU seconds x{new['cpu_seconds'] / old['cpu_seconds']:.2f}, peak RSS "
                  f"{old['peak_rss_gib']:.2f} -> {new['peak_rss_gib']:.2f} GiB")


if __name__ == "__main__":
    main()
