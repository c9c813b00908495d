"""Multiple-choice throughput: iberlite fast vs naive scoring vs lm-evaluation-harness.

Same machine, same GGUF file, same items. For each model and task it measures

* iberlite ``fast`` and ``naive`` scoring on one engine in this process, alternating per chunk
  of items (the runner's chunk size) so load from other processes hits both alike; the engine
  limit (pp512 tokens/s, iberlite's bench code) is measured on the same engine between chunks;
* lm-evaluation-harness 0.4.13, ``--model hf`` with ``gguf_file`` (fp32), at its default batch
  size (1) and at 8, in a child process per (model, batch size) so its peak RSS is its own.
  The child times lm-eval's evaluation only (task objects built and model loaded beforehand);
  model load time is reported apart.

and prints items/s, tokens/s, peak RSS, accuracy and the issue's ratios, plus fast-vs-naive
agreement (predictions, per-choice logprob differences). Everything goes to JSON.

    python benchmarks/mc_throughput.py --data-dir ../shared/data --threads 1 \
        [--models smollm2-135m,smollm2-135m@Q8_0,gemma3-270m] \
        [--tasks xstorycloze_es,xnli_es,xnli_eu] [--limit 300] [--skip-lm-eval] \
        [--out benchmarks/out/mc_throughput.json]
    python benchmarks/mc_throughput.py --show FILE [FILE ...]   # table from earlier runs

``NAME@TYPE`` is a catalog model requantized to a llama.cpp file type (e.g. Q8_0) into
``~/.cache/iberlite/``; the table shows the tensor types the file really holds.
"""

from __future__ import annotations

import argparse
import ctypes
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

from iberlite.device.fingerprint import fingerprint  # noqa: E402
from iberlite.device.memory import RssSampler  # noqa: E402
from iberlite.engines.kernels import detect, plan_kernels  # noqa: E402
from iberlite.models.gguf_facts import gguf_facts  # noqa: E402
from iberlite.models.model_file import ModelFile  # noqa: E402
from iberlite.models.names import resolve_model  # noqa: E402

CACHE = Path.home() / ".cache" / "iberlite"
LM_EVAL_BATCHES = ("8", "1")  # 1 is lm-eval's default batch size
TARGETS = {  # from issue 5; the whole-run targets from issue 12 (per SIMD kind)
    "engine_limit": 0.8,
    "vs_naive": {"xstorycloze_es": 1.6, "xnli_es": 1.7},
    "vs_lm_eval": {"gemma3-270m": 3.0, "smollm2-135m@Q8_0": 1.5},
    "rss_vs_lm_eval": 1 / 3,
    "whole_run_vs_lm_eval": {"avx2": {"gemma3-270m": 3.0}, "avx512": {"gemma3-270m": 2.0},
                             "default": 1.0},
}

# lm-eval 0.4.13's task configs, pointed at the local TSVs (column names as in the files).
# xnli_es is spanish_bench's variant (its preprocessing), as iberlite's built-in xnli_es is.
LM_EVAL_TASKS = {
    "xstorycloze_es": ("xstorycloze/spring2016.val.es.tsv.split_20_80_eval.tsv", {
        "doc_to_text": "{{[InputSentence1, InputSentence2, InputSentence3, InputSentence4]|join(' ')}}",
        "doc_to_target": "{{AnswerRightEnding-1}}",
        "doc_to_choice": "{{[RandomFifthSentenceQuiz1, RandomFifthSentenceQuiz2]}}",
    }),
    "xnli_es": ("xnlivar/data/es/xnli-es-original.tsv", {
        "doc_to_text": "",
        "doc_to_target": "label",
        "doc_to_choice": '{{[premise+", ¿correcto? Sí, "+hypothesis,premise+", ¿correcto? Así '
                         'que, "+hypothesis,premise+", ¿correcto? No, "+hypothesis]}}',
        "target_delimiter": "",
        "process_docs": "!function utils.process_doc_nli",
    }),
    "xnli_eu": ("xnlivar/data/eu/xnli-eu-original.tsv", {
        "doc_to_text": "",
        "doc_to_target": "label",
        "doc_to_choice": '{{[premise+", ezta? Bai, "+hypothesis,premise+", ezta? Gainera, "'
                         '+hypothesis,premise+", ezta? Ez, "+hypothesis]}}',
    }),
}


# -- models ---------------------------------------------------------------------------------


def requantize(model: ModelFile, ftype: str, threads: int) -> ModelFile:
    """The model requantized to a llama.cpp file type, cached under ~/.cache/iberlite/."""
    import llama_cpp as ll

    dst = CACHE / f"{model.path.stem.rsplit('.', 1)[0]}.{ftype}.gguf"
    if not dst.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        params = ll.llama_model_quantize_default_params()
        params.ftype = getattr(ll, f"LLAMA_FTYPE_MOSTLY_{ftype}")
        params.allow_requantize = True
        params.nthread = threads
        tmp = dst.with_suffix(".part")
        rc = ll.llama_model_quantize(str(model.path).encode(), str(tmp).encode(), ctypes.byref(params))
        if rc != 0:
            raise SystemExit(f"requantizing {model.path} to {ftype} failed (code {rc})")
        tmp.rename(dst)
    return ModelFile(name=f"{model.name}@{ftype}", path=dst)


def model_file(name: str, threads: int) -> ModelFile:
    base, _, ftype = name.partition("@")
    mf = resolve_model(base)
    return requantize(mf, ftype, threads) if ftype else mf


# -- iberlite -------------------------------------------------------------------------------


def load_instances(task: str, data_dir: Path, limit: int):
    from iberlite.tasks.data import load_docs
    from iberlite.tasks.registry import load_task_specs
    from iberlite.tasks.render import render

    spec = load_task_specs()[task]
    return [render(spec, d) for d in load_docs(spec, data_dir, limit)]


def _requests(chunk):
    from iberlite.engines.base import LoglikelihoodRequest

    return [LoglikelihoodRequest(inst.context, inst.target_delimiter + c, group=inst.doc_id)
            for inst in chunk for c in inst.choices]


def _pp512(engine) -> tuple[float, float]:
    """One pp512 repetition on the engine's own context: tokens/s by wall clock and by CPU time."""
    from iberlite.bench.speed import bench_engine

    pp, _ = bench_engine(engine, pp=512, tg=1, reps=1, warmup=0)
    return pp.tokens_per_s_median, pp.cpu_tokens_per_s_median


def run_iberlite(engine, instances, chunk_size: int) -> dict:
    """Score every item fast and naive, alternating per chunk; pp512 between chunks."""
    from iberlite.scoring.metrics import mc_prediction

    modes = ("fast", "naive")
    seconds = dict.fromkeys(modes, 0.0)
    cpu = dict.fromkeys(modes, 0.0)  # process CPU time: less sensitive to other processes
    tokens = dict.fromkeys(modes, 0.0)
    rows = dict.fromkeys(modes, 0)  # decoded rows, the alignment padding included
    lps: dict[str, list[tuple[float, ...]]] = {m: [] for m in modes}
    pp: list[float] = []
    warm = instances[:chunk_size]
    for mode in modes:  # warm-up, not counted
        engine.scoring = mode
        engine.loglikelihood(_requests(warm))
    _pp512(engine)
    chunks = [instances[s:s + chunk_size] for s in range(0, len(instances), chunk_size)]
    for k, chunk in enumerate(chunks):
        reqs = _requests(chunk)
        for mode in (modes if k % 2 == 0 else modes[::-1]):
            engine.scoring = mode
            t0, c0, r0 = time.perf_counter(), time.process_time(), engine.decoded_rows
            results = engine.loglikelihood(reqs)
            seconds[mode] += time.perf_counter() - t0
            cpu[mode] += time.process_time() - c0
            rows[mode] += engine.decoded_rows - r0
            tokens[mode] += sum(r.eval_tokens for r in results)
            it = iter(results)
            lps[mode].extend(tuple(next(it).logprob for _ in inst.choices) for inst in chunk)
        if k % 2 == 1 or k == len(chunks) - 1:
            pp.append(_pp512(engine))
    engine.scoring = "fast"
    n = len(instances)
    out = {"n_items": n, "pp512_samples": pp, "pp512": statistics.median(w for w, _ in pp),
           "pp512_cpu": statistics.median(c for _, c in pp)}
    for mode in modes:
        preds = [mc_prediction(x) for x in lps[mode]]
        out[mode] = {
            "seconds": seconds[mode],
            "items_per_s": n / seconds[mode],
            "cpu_seconds": cpu[mode],
            "items_per_cpu_s": n / cpu[mode],
            "tokens_per_s": tokens[mode] / seconds[mode],
            "tokens_per_item": tokens[mode] / n,
            "rows_per_item": rows[mode] / n,
            "acc": sum(p == inst.gold for p, inst in zip(preds, instances)) / n,
            "predictions": preds,
            "logprobs": lps[mode],
        }
    diffs = [abs(a - b) for fa, na in zip(lps["fast"], lps["naive"]) for a, b in zip(fa, na)]
    same = sum(a == b for a, b in zip(out["fast"]["predictions"], out["naive"]["predictions"]))
    out["agreement"] = {
        "same_predictions": same,
        "n_items": n,
        "max_abs_diff": max(diffs),
        "median_abs_diff": statistics.median(diffs),
        "share_choices_below_1e-3": sum(d < 1e-3 for d in diffs) / len(diffs),
    }
    out["engine_limit_items_per_s"] = out["pp512"] / out["fast"]["tokens_per_item"]
    out["engine_limit_items_per_cpu_s"] = out["pp512_cpu"] / out["fast"]["tokens_per_item"]
    return out


def iberlite_model(mf: ModelFile, tasks: list[str], data_dir: Path, limit: int, threads: int,
                   chunk_size: int) -> dict:
    from iberlite.engines.factory import EngineOptions, open_llamacpp

    per_task = {}
    with RssSampler() as mem:
        with open_llamacpp(mf, EngineOptions(n_threads=threads)) as engine:
            mem.mark("after_load")
            for task in tasks:
                print(f"  iberlite {mf.name} {task}", file=sys.stderr, flush=True)
                per_task[task] = run_iberlite(engine, load_instances(task, data_dir, limit), chunk_size)
    r = mem.reading
    return {"peak_rss_bytes": max(r.peak_bytes, r.os_peak_bytes or 0), "tasks": per_task}


def whole_run(mf: ModelFile, tasks: list[str], data_dir: Path, limit: int, threads: int) -> dict:
    """The whole `iberlite run` command, as a user types it, timed from outside: process
    start, plan, model load, scoring, storing, aggregates and the printed table. The cache
    folder is the user's, as on a second run (GGUF facts and layout verdict cached)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "iberlite", "run", "--models", str(mf.path), "--tasks",
               ",".join(tasks), "--limit", str(limit), "--threads", str(threads),
               "--data-dir", str(data_dir), "--db", str(Path(tmp) / "run.db")]
        subprocess.run(cmd[:4] + ["--limit", "1", *cmd[6:]], capture_output=True)  # warm caches
        (Path(tmp) / "run.db").unlink(missing_ok=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            return {"error": proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]}
        from iberlite.store import Store

        store = Store(Path(tmp) / "run.db")
        try:
            cost = store.runs()[0].costs  # one model: the file given by path
            load_ms = next(iter(cost.values())).load_ms or 0.0
        finally:
            store.close()
    n = limit * len(tasks)
    return {"wall_s": wall, "n_items": n, "items_per_s": n / wall, "load_s": load_ms / 1000}


# -- lm-eval --------------------------------------------------------------------------------


def write_lm_eval_tasks(folder: Path, data_dir: Path) -> None:
    """Local copies of lm-eval's task YAMLs reading the TSVs in the data dir."""
    import yaml

    for name, (rel, fields) in LM_EVAL_TASKS.items():
        config = {
            "task": f"{name}_local",
            "dataset_path": "csv",
            "dataset_kwargs": {"data_files": {"test": str(data_dir / rel)}, "sep": "\t",
                               "quoting": 3},  # csv.QUOTE_NONE: fields as written, like iberlite
            "output_type": "multiple_choice",
            "test_split": "test",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
            **{k: v for k, v in fields.items() if k != "process_docs"},
        }
        text = yaml.safe_dump(config, allow_unicode=True, sort_keys=False)
        if "process_docs" in fields:
            text += f"process_docs: {fields['process_docs']}\n"
        (folder / f"{name}_local.yaml").write_text(text, encoding="utf-8")
    (folder / "utils.py").write_text(
        "from lm_eval.tasks.spanish_bench.utils import process_doc_nli  # noqa: F401\n")


def lm_eval_child(mf_path: Path, tasks: list[str], batch_size: str, limit: int, threads: int,
                  task_dir: Path) -> dict:
    """Run in the child process: load once, then evaluate each task, timing evaluation only."""
    import torch

    torch.set_num_threads(threads)
    from lm_eval import simple_evaluate
    from lm_eval.api.registry import get_model
    from lm_eval.tasks import TaskManager, get_task_dict

    out: dict = {"tasks": {}}
    with RssSampler() as mem:
        t0 = time.perf_counter()
        lm = get_model("hf").create_from_arg_string(
            f"pretrained={mf_path.parent},gguf_file={mf_path.name},dtype=float32",
            {"batch_size": batch_size, "device": "cpu"})
        out["load_s"] = time.perf_counter() - t0
        mem.mark("after_load")
        manager = TaskManager(include_path=str(task_dir))
        for task in tasks:
            name = f"{task}_local"
            task_obj = get_task_dict([name], manager)[name]  # dataset read outside the timer
            t0, c0 = time.perf_counter(), time.process_time()
            res = simple_evaluate(model=lm, tasks=[task_obj], limit=limit, bootstrap_iters=0,
                                  log_samples=False, task_manager=manager)
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            r = res["results"][name]
            out["tasks"][task] = {"seconds": seconds, "cpu_seconds": cpu, "acc": r["acc,none"],
                                  "n_items": res["n-samples"][name]["effective"]}
    r = mem.reading
    out["rss_after_load_bytes"] = dict(r.marks)["after_load"]
    out["peak_rss_bytes"] = max(r.peak_bytes, r.os_peak_bytes or 0)
    out["versions"] = {"torch": torch.__version__, "lm_eval": _version("lm_eval"),
                       "transformers": _version("transformers")}
    return out


def _version(pkg: str) -> str:
    from importlib.metadata import version

    return version(pkg)


def run_lm_eval(mf: ModelFile, tasks: list[str], batch_size: str, limit: int, threads: int,
                data_dir: Path) -> dict:
    """lm-eval in a child process (its own RSS); returns the child's JSON."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_lm_eval_tasks(folder, data_dir)
        result = folder / "result.json"
        cmd = [sys.executable, __file__, "--lm-eval-child", str(mf.path), "--child-out", str(result),
               "--tasks", ",".join(tasks), "--limit", str(limit), "--threads", str(threads),
               "--child-batch", batch_size, "--child-task-dir", str(folder)]
        proc = subprocess.run(cmd, env=env)
        if proc.returncode != 0 or not result.is_file():
            return {"error": f"lm-eval child failed with code {proc.returncode}"}
        return json.loads(result.read_text())


def lm_eval_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("lm_eval", "torch", "transformers"))


# -- table ----------------------------------------------------------------------------------


def rows_for(run: dict) -> list[dict]:
    """One row per (model, task, system) with the ratios the issue sets targets for."""
    rows = []
    for m in run["models"]:
        ib = m["iberlite"]
        for task, t in ib["tasks"].items():
            fast = t["fast"]
            base = {"model": m["name"], "types": m["tensor_types"], "task": task, "n": t["n_items"]}
            limit = t["engine_limit_items_per_s"]
            rows.append({**base, "system": "iberlite fast", "items_per_s": fast["items_per_s"],
                         "items_per_cpu_s": fast.get("items_per_cpu_s"),
                         "tokens_per_s": fast["tokens_per_s"], "tokens_per_item": fast["tokens_per_item"],
                         "rows_per_item": fast.get("rows_per_item"),
                         "peak_rss_bytes": ib["peak_rss_bytes"], "acc": fast["acc"]})
            rows.append({**base, "system": "iberlite naive", "items_per_s": t["naive"]["items_per_s"],
                         "items_per_cpu_s": t["naive"].get("items_per_cpu_s"),
                         "tokens_per_s": t["naive"]["tokens_per_s"],
                         "tokens_per_item": t["naive"]["tokens_per_item"],
                         "rows_per_item": t["naive"].get("rows_per_item"),
                         "peak_rss_bytes": ib["peak_rss_bytes"], "acc": t["naive"]["acc"]})
            rows.append({**base, "system": "engine limit (pp512)", "items_per_s": limit,
                         "items_per_cpu_s": t.get("engine_limit_items_per_cpu_s"),
                         "tokens_per_s": t["pp512"], "tokens_per_item": fast["tokens_per_item"],
                         "peak_rss_bytes": None, "acc": None})
            for bs, le in m.get("lm_eval", {}).items():
                lt = le.get("tasks", {}).get(task)
                if not lt:
                    continue
                ips = lt["n_items"] / lt["seconds"]
                rows.append({**base, "system": f"lm-eval hf bs={bs}", "items_per_s": ips,
                             "items_per_cpu_s": lt["n_items"] / lt["cpu_seconds"] if "cpu_seconds" in lt else None,
                             # lm-eval's work, counted as the naive path's tokens (llama.cpp tokenizer)
                             "tokens_per_s": ips * t["naive"]["tokens_per_item"],
                             "tokens_per_item": t["naive"]["tokens_per_item"],
                             "peak_rss_bytes": le["peak_rss_bytes"], "acc": lt["acc"],
                             "load_s": le["load_s"]})
    return rows


def ratios_for(run: dict) -> list[dict]:
    """The issue's targets, per model and task: value, target, met."""
    out = []
    for m in run["models"]:
        for task, t in m["iberlite"]["tasks"].items():
            fast, fast_cpu = t["fast"]["items_per_s"], t["fast"].get("items_per_cpu_s")

            def per_cpu(fast_rate, rate):  # None when the run predates CPU timing
                return fast_rate / rate if fast_rate and rate else None

            def add(what, value, target, note="", cpu=None):
                out.append({"model": m["name"], "task": task, "ratio": what, "value": value,
                            "cpu_value": cpu, "note": note,
                            "target": target, "met": None if target is None else value >= target})

            add("fast / engine limit", fast / t["engine_limit_items_per_s"], TARGETS["engine_limit"],
                cpu=per_cpu(fast_cpu, t.get("engine_limit_items_per_cpu_s")))
            add("fast / naive", fast / t["naive"]["items_per_s"], TARGETS["vs_naive"].get(task),
                cpu=per_cpu(fast_cpu, t["naive"].get("items_per_cpu_s")))
            lm = m.get("lm_eval", {})
            best = [(bs, le["tasks"][task]) for bs, le in lm.items() if task in le.get("tasks", {})]
            if not best:
                continue
            target = TARGETS["vs_lm_eval"].get(m["name"])
            note = "" if target else "no target (Q4_1 kernels on AVX2 slower than PyTorch fp32)" \
                if "Q4_1" in m["file_type"] else ""
            for bs, lt in best:
                add(f"fast / lm-eval bs={bs}", fast / (lt["n_items"] / lt["seconds"]), target, note,
                    cpu=per_cpu(fast_cpu, lt["n_items"] / lt["cpu_seconds"] if "cpu_seconds" in lt else None))
            whole = m.get("whole_run") or {}
            if "items_per_s" in whole and len(m["iberlite"]["tasks"]) == 1:
                goals = TARGETS["whole_run_vs_lm_eval"]
                simd = run.get("simd", "avx2")
                goal = goals.get(simd, {}).get(m["name"], goals["default"])
                top = max(lt["n_items"] / lt["seconds"] for _, lt in best)
                add("whole `iberlite run` / best lm-eval (eval only)", whole["items_per_s"] / top,
                    goal, f"{simd}; run {whole['wall_s']:.1f} s incl. load {whole['load_s']:.1f} s")
            low = min(lm[bs]["peak_rss_bytes"] for bs, _ in best)
            add("iberlite peak RSS / lm-eval's (its lowest)", m["iberlite"]["peak_rss_bytes"] / low, None)
            out[-1]["met"] = out[-1]["value"] <= TARGETS["rss_vs_lm_eval"]
            out[-1]["target"] = f"<= {TARGETS['rss_vs_lm_eval']:.2f}"
    return out


def print_tables(runs: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(160, Console().width))
    rows = [r for run in runs for r in rows_for(run)]
    table = Table(title="Multiple-choice throughput (same items, same GGUF file)")
    for c in ("model", "tensor types", "task", "n", "system", "items/s", "items/CPU-s", "tokens/s",
              "tok/item", "rows/item", "peak RSS MB", "acc"):
        table.add_column(c, justify="left" if c in ("model", "tensor types", "task", "system") else "right")
    for r in rows:
        table.add_row(r["model"], r["types"], r["task"], str(r["n"]), r["system"],
                      f"{r['items_per_s']:.2f}", f"{r['items_per_cpu_s']:.2f}" if r["items_per_cpu_s"] else "-", f"{r['tokens_per_s']:.0f}",
                      f"{r['tokens_per_item']:.1f}",
                      f"{r['rows_per_item']:.1f}" if r.get("rows_per_item") else "-",
                      f"{r['peak_rss_bytes'] / 2**20:.0f}" if r["peak_rss_bytes"] else "-",
                      f"{r['acc']:.3f}" if r["acc"] is not None else "-")
    console.print(table)
    for run in runs:
        console.print(f"device {run['device'].get('fingerprint_id', '?')}: "
                      f"{run['device'].get('cpu_model', '?')}, SIMD {run.get('simd', '?')}")
    rt = Table(title="Ratios vs targets (issues 5 and 12)")
    for c in ("model", "task", "ratio", "wall", "CPU time", "target", "met (wall)", "note"):
        rt.add_column(c)
    for run in runs:
        for r in ratios_for(run):
            met = "-" if r["met"] is None else ("yes" if r["met"] else "[red]NO[/red]")
            target = r["target"] if isinstance(r["target"], str) else (
                f">= {r['target']:.2f}" if r["target"] else "-")
            cpu = f"{r['cpu_value']:.2f}" if r["cpu_value"] is not None else "-"
            rt.add_row(r["model"], r["task"], r["ratio"], f"{r['value']:.2f}", cpu, target, met, r["note"])
    console.print(rt)
    at = Table(title="Fast vs naive agreement (per-choice summed logprob, nats)")
    for c in ("model", "task", "same predictions", "max |diff|", "median |diff|", "choices < 1e-3"):
        at.add_column(c)
    for run in runs:
        for m in run["models"]:
            for task, t in m["iberlite"]["tasks"].items():
                a = t["agreement"]
                at.add_row(m["name"], task, f"{a['same_predictions']}/{a['n_items']}",
                           f"{a['max_abs_diff']:.4f}", f"{a['median_abs_diff']:.4f}",
                           f"{a['share_choices_below_1e-3']:.1%}")
    console.print(at)


# -- main -----------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="smollm2-135m,smollm2-135m@Q8_0,gemma3-270m")
    ap.add_argument("--tasks", default="xstorycloze_es,xnli_es,xnli_eu")
    ap.add_argument("--limit", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("IBERLITE_DATA_DIR", "data")))
    ap.add_argument("--chunk", type=int, default=16, help="items per engine call (the runner's chunk)")
    ap.add_argument("--skip-lm-eval", action="store_true")
    ap.add_argument("--skip-whole-run", action="store_true", help="do not time the `iberlite run` command")
    ap.add_argument("--lm-eval-batch", default=",".join(LM_EVAL_BATCHES))
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "mc_throughput.json")
    ap.add_argument("--show", type=Path, nargs="+", help="print the tables of earlier JSON runs")
    ap.add_argument("--lm-eval-child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child-batch", help=argparse.SUPPRESS)
    ap.add_argument("--child-task-dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]

    if args.lm_eval_child:
        out = lm_eval_child(args.lm_eval_child, tasks, args.child_batch, args.limit, args.threads,
                            args.child_task_dir)
        args.child_out.write_text(json.dumps(out))
        return 0
    if args.show:
        print_tables([json.loads(p.read_text()) for p in args.show])
        return 0

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    with_lm_eval = not args.skip_lm_eval and lm_eval_available()
    if not args.skip_lm_eval and not with_lm_eval:
        print("lm-eval rows need the reference extra: pip install -e .[reference]", file=sys.stderr)
    run = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "host": platform.node(),
        "device": fingerprint(args.threads).to_dict(),
        "simd": plan_kernels(detect()).simd,
        "threads": args.threads,
        "limit": args.limit,
        "chunk": args.chunk,
        "models": [],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        mf = model_file(name, args.threads)
        facts = gguf_facts(mf.path)
        entry = {"name": mf.name, "path": str(mf.path), "sha256": facts.sha256,
                 "file_type": facts.file_type, "tensor_types": facts.tensor_types_label,
                 "loadavg_before": os.getloadavg()}
        print(f"{mf.name}: iberlite fast/naive ({facts.tensor_types_label})", file=sys.stderr, flush=True)
        entry["iberlite"] = iberlite_model(mf, tasks, args.data_dir, args.limit, args.threads, args.chunk)
        if not args.skip_whole_run:
            print(f"{mf.name}: whole iberlite run", file=sys.stderr, flush=True)
            entry["whole_run"] = whole_run(mf, tasks, args.data_dir.resolve(), args.limit, args.threads)
        if with_lm_eval:
            entry["lm_eval"] = {}
            for bs in args.lm_eval_batch.split(","):
                print(f"{mf.name}: lm-eval hf batch {bs}", file=sys.stderr, flush=True)
                entry["lm_eval"][bs] = run_lm_eval(mf, tasks, bs, args.limit, args.threads, args.data_dir)
        entry["loadavg_after"] = os.getloadavg()
        run["models"].append(entry)
        args.out.write_text(json.dumps(run, indent=1))  # after every model: partial runs survive
    print_tables([run])
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
