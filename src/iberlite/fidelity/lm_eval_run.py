"""Run lm-evaluation-harness 0.4.13 itself (`lm_eval run --model hf`, a subprocess) on the
local task copies, and read its logged samples back as ScoredDocs.

lm-eval runs with batch size 1 here: its loglikelihood batches are right-padded and its
generation batches left-padded, and padding changes float rounding; one sequence per forward
pass keeps the reference free of batch effects.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iberlite.errors import RunFailure
from iberlite.fidelity.lm_eval_tasks import ADAPTERS, PREFIX
from iberlite.fidelity.scored_docs import ScoredDoc, SystemRun
from iberlite.models.model_file import ModelFile

# lm-eval metric key -> iberlite metric name
_METRICS = {
    "acc,none": "acc",
    "bleu,none": "bleu",
    "chrf,none": "chrf",
    "ter,none": "ter",
    "exact_match,remove_whitespace": "exact_match",
    "exact_match,flexible-extract": "exact_match_flex",
    "exact_match,none": "squad_em",  # process_results_qa (XQuAD, CatalanQA): SQuAD's exact match
    "f1,none": "squad_f1",
}


def offline_env(n_threads: int) -> dict[str, str]:
    """The environment for reference runs: hub access off, torch threads pinned."""
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               OMP_NUM_THREADS=str(n_threads), TOKENIZERS_PARALLELISM="false")
    return env


@dataclass(frozen=True)
class LmEvalRun:
    """Where one lm-eval invocation wrote its results, and the command that ran."""

    command: tuple[str, ...]
    output_dir: Path
    wall_s: float


def run_lm_eval(model: ModelFile, local_tasks: list[str], include_dir: Path, limit: int,
                output_dir: Path, n_threads: int, log: Path | None = None,
                num_fewshot: int = 0, batch_size: int = 1) -> LmEvalRun:
    """lm-eval's own `hf` path on the GGUF file (dequantized to float32), logging samples;
    with `num_fewshot`, its own k-shot contexts (few-shot seed 1234, its default)."""
    import time

    exe = Path(sys.executable).with_name("lm_eval")
    cmd = (
        str(exe), "run", "--model", "hf",
        "--model_args", f"pretrained={model.file.parent},gguf_file={model.file.name},dtype=float32",
        "--include_path", str(include_dir), "--tasks", ",".join(local_tasks),
        "--limit", str(limit), "--batch_size", str(batch_size), "--device", "cpu",
        "--log_samples", "--output_path", str(output_dir),
        *(("--num_fewshot", str(num_fewshot)) if num_fewshot else ()),
    )
    t0 = time.perf_counter()
    with (log.open("a") if log else open(os.devnull, "w")) as out:
        proc = subprocess.run(cmd, env=offline_env(n_threads), stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        where = f"; see {log}" if log else ""
        raise RunFailure(f"lm-eval failed with exit code {proc.returncode}{where}.")
    return LmEvalRun(cmd, output_dir, time.perf_counter() - t0)


def _latest(output_dir: Path, pattern: str) -> Path:
    found = sorted(output_dir.rglob(pattern), key=lambda p: p.stat().st_mtime)
    if not found:
        raise RunFailure(f"lm-eval wrote no {pattern} under {output_dir}.")
    return found[-1]


def _arguments(sample: dict) -> list[tuple]:
    args = sample["arguments"]
    if isinstance(args, dict):  # {"gen_args_0": {"arg_0": ..., "arg_1": ...}, ...}
        return [tuple(v[k] for k in sorted(v)) for _, v in sorted(args.items(),
                key=lambda kv: int(kv[0].rsplit("_", 1)[1]))]
    return [tuple(a) for a in args]


def _doc_key(task: str, sample: dict) -> str:
    field = ADAPTERS[task].id_field
    return str(sample["doc"][field]) if field else str(sample["doc_id"])


def read_samples(output_dir: Path, task: str) -> SystemRun:
    """lm-eval's logged samples and aggregate metrics for one iberlite task."""
    local = PREFIX + task
    results = json.loads(_latest(output_dir, "results_*.json").read_text())["results"][local]
    metrics = {ours: float(results[k]) for k, ours in _METRICS.items() if k in results}
    docs = []
    seen: set[str] = set()
    with _latest(output_dir, f"samples_{local}_*.jsonl").open(encoding="utf-8") as f:
        for line in f:
            s = json.loads(line)
            key = _doc_key(task, s)
            # one line per filter (MGSM: remove_whitespace, flexible-extract); the raw
            # response is the same, and the item's `correct` is the strict filter's
            if key in seen or s.get("filter") not in ("none", "remove_whitespace"):
                continue
            seen.add(key)
            args = _arguments(s)
            if "acc" in s:  # multiple choice: one (context, continuation) request per choice
                lps = tuple(float(r[0][0]) for r in s["resps"])
                pred = int(np.argmax(lps))
                docs.append(ScoredDoc(key, args[0][0], tuple(a[1] for a in args), lps,
                                      str(pred), bool(s["acc"])))
            else:
                text = s["resps"][0][0]
                em = s.get("exact_match")
                docs.append(ScoredDoc(key, args[0][0], (), (), text,
                                      None if em is None else bool(em)))
    return SystemRun("lm-eval", task, tuple(docs), metrics)
