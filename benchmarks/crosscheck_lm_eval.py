"""Crosscheck iberlite against lm-evaluation-harness 0.4.13, item by item.

For each model: lm-eval's own `hf` path on the GGUF file (its task YAMLs, pointed at the
data dir), iberlite's transformers engine on the same documents, and iberlite's llama.cpp
engine on the same file; then per-item and aggregate agreement, printed as a table and
written as JSON to benchmarks/out/.

    python benchmarks/crosscheck_lm_eval.py --models smollm2-135m \
        --tasks xstorycloze_es,xnli_eu --limit 100 --data-dir ../shared/data

Needs the reference extra (pip install -e .[reference]). Nothing is fetched from the hub.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_var] = "1"  # before transformers is imported anywhere

from iberlite.errors import UserError  # noqa: E402
from iberlite.fidelity.compare import Agreement, compare  # noqa: E402
from iberlite.fidelity.iberlite_run import run_iberlite  # noqa: E402
from iberlite.fidelity.lm_eval_run import read_samples, run_lm_eval  # noqa: E402
from iberlite.fidelity.lm_eval_tasks import ADAPTERS, adapter, write_task_dir  # noqa: E402
from iberlite.fidelity.scored_docs import SystemRun  # noqa: E402
from iberlite.models.names import resolve_model  # noqa: E402
from iberlite.tasks.registry import load_task_specs, select_tasks  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"


def _groups(tasks: list[str], kinds: dict[str, str], limit: int, gen_limit: int | None):
    """(tasks, limit) groups: one for all, or MC and generation apart with their own limits."""
    if gen_limit is None or gen_limit == limit:
        return [(tasks, limit)]
    mc = [t for t in tasks if kinds[t] == "multiple_choice"]
    gen = [t for t in tasks if kinds[t] != "multiple_choice"]
    return [(g, n) for g, n in ((mc, limit), (gen, gen_limit)) if g]


def crosscheck_model(model_name: str, tasks: list[str], limit: int, gen_limit: int | None,
                     data_dir: Path, threads: int, work: Path, skip_llamacpp: bool,
                     num_fewshot: int = 0) -> dict:
    """Every system on every task for one model; returns the agreements and timings."""
    model = resolve_model(model_name)
    specs = {t.name: t for t in select_tasks(load_task_specs(()), tasks, None)}
    kinds = {t: specs[t].output for t in tasks}
    delimiters = {t: specs[t].target_delimiter for t in tasks}
    local = write_task_dir(tasks, data_dir, work / "lm_eval_tasks")
    runs: dict[str, dict[str, SystemRun]] = {"lm-eval": {}, "transformers": {}, "llamacpp": {}}
    timing: dict[str, float] = {}
    for group, n in _groups(tasks, kinds, limit, gen_limit):
        t0 = time.perf_counter()
        out = work / f"lm_eval_out_{n}"
        run_lm_eval(model, [local[t] for t in group], work / "lm_eval_tasks", n, out, threads,
                    log=work / "lm_eval.log", num_fewshot=num_fewshot)
        runs["lm-eval"].update({t: read_samples(out, t) for t in group})
        timing[f"lm-eval/{n}"] = time.perf_counter() - t0
        engines = ["transformers"] + ([] if skip_llamacpp else ["llamacpp"])
        for engine in engines:
            t0 = time.perf_counter()
            runs[engine].update(run_iberlite(engine, model_name, group, n, data_dir, work,
                                          threads, delimiters, num_fewshot=num_fewshot))
            timing[f"{engine}/{n}"] = time.perf_counter() - t0
    agreements = []
    for t in tasks:
        agreements.append(compare(runs["lm-eval"][t], runs["transformers"][t], kinds[t]))
        if not skip_llamacpp:
            agreements.append(compare(runs["transformers"][t], runs["llamacpp"][t], kinds[t]))
    return {"model": model_name, "model_path": str(model.path), "agreements": agreements,
            "timing_s": timing}


def _fmt(x: float | None, spec: str = ".4f") -> str:
    return "—" if x is None else format(x, spec)


def _metric_pair(ag: Agreement) -> str:
    keys = ["acc"] if ag.kind == "multiple_choice" else list(ag.metrics_a)  # every generation metric
    return "; ".join(f"{k} {_fmt(ag.metrics_a.get(k))} vs {_fmt(ag.metrics_b.get(k))}"
                     for k in keys)


def table(model: str, agreements: list[Agreement]) -> str:
    """The agreement table as Markdown."""
    rows = [f"### {model}", "",
            "| task | a vs b | n (a/b/matched) | same prompt | same prediction | ties | "
            "max abs Δ logprob | items Δ>1e-3 | metrics a vs b | Δacc (b−a) [95% CI] |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for ag in agreements:
        ci = f"{_fmt(ag.acc_diff, '+.3f')} [{ag.acc_diff_ci[0]:+.3f}, {ag.acc_diff_ci[1]:+.3f}]" \
            if ag.acc_diff_ci else "—"
        rows.append(
            f"| {ag.task} | {ag.a} vs {ag.b} | {ag.n_a}/{ag.n_b}/{ag.n_matched} | "
            f"{ag.n_same_prompt} | {ag.n_same_prediction} ({100 * ag.prediction_agreement:.1f}%) | "
            f"{ag.n_exact_ties} | {_fmt(ag.max_abs_dlogprob, '.2e')} | "
            f"{_fmt(ag.n_items_dlogprob_over_tol, 'd')} | {_metric_pair(ag)} | {ci} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="smollm2-135m")
    p.add_argument("--tasks", default="xstorycloze_es,xnli_eu",
                   help=f"comma-separated; supported: {','.join(ADAPTERS)}")
    p.add_argument("--limit", type=int, default=100, help="first N documents of every task")
    p.add_argument("--gen-limit", type=int, default=None,
                   help="first N documents of generation tasks (default: --limit)")
    p.add_argument("--data-dir", type=Path,
                   default=Path(os.environ.get("IBERLITE_DATA_DIR", "../shared/data")))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-llamacpp", action="store_true")
    p.add_argument("--num-fewshot", type=int, default=0,
                   help="k-shot contexts on both sides (lm-eval's own, iberlite's --num-fewshot)")
    p.add_argument("--work-dir", type=Path, default=None, help="keep intermediate files here")
    p.add_argument("--out", type=Path, default=None, help="JSON file (default: benchmarks/out/)")
    args = p.parse_args(argv)
    tasks = [t for t in args.tasks.split(",") if t]
    try:
        for t in tasks:
            adapter(t)
        data_dir = args.data_dir.resolve()
        reports = []
        for m in [m for m in args.models.split(",") if m]:
            work = args.work_dir or Path(tempfile.mkdtemp(prefix="crosscheck_"))
            work = work / m
            work.mkdir(parents=True, exist_ok=True)
            print(f"[{m}] working in {work}", file=sys.stderr, flush=True)
            rep = crosscheck_model(m, tasks, args.limit, args.gen_limit, data_dir, args.threads,
                                   work, args.skip_llamacpp, args.num_fewshot)
            print(table(m, rep["agreements"]), flush=True)
            print(f"\ntimes (s): {json.dumps({k: round(v) for k, v in rep['timing_s'].items()})}\n",
                  flush=True)
            reports.append(rep)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    out = args.out or OUT / f"crosscheck_{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"command": " ".join(sys.argv), "limit": args.limit, "gen_limit": args.gen_limit,
               "tasks": tasks, "threads": args.threads,
               "reports": [{**r, "agreements": [asdict(a) for a in r["agreements"]]}
                           for r in reports]}
    out.write_text(json.dumps(payload, indent=1, ensure_ascii=False))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
