"""Why llama.cpp and transformers disagree on the same GGUF file: tokens, BOS, or numerics.

For the first N items of each task, every (context, continuation) request is tokenized by
both engines (llama.cpp's own tokenizer; transformers' tokenizer rebuilt from the GGUF, called
as lm-eval calls it) and the sequences compared with and without a leading BOS. Then
llama.cpp (high-level `Llama`, one sequence, all logits, flash attention off) scores
transformers' exact token sequence, so the remaining difference is numerics alone
(dequantized float32 weights vs llama.cpp's quantized matmuls).

    python benchmarks/fidelity_causes.py --models smollm2-135m --tasks xstorycloze_es,xnli_eu \
        --limit 100 --data-dir ../shared/data

Prints a table and writes JSON to benchmarks/out/.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

from iberlite.engines.base import LoglikelihoodRequest  # noqa: E402
from iberlite.engines.factory import EngineOptions, open_llamacpp  # noqa: E402
from iberlite.engines.llamacpp import LlamaCppEngine  # noqa: E402
from iberlite.engines.transformers import TransformersEngine  # noqa: E402
from iberlite.models.names import resolve_model  # noqa: E402
from iberlite.run.plan import plan  # noqa: E402
from iberlite.run.spec import RunSpec  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"


def _llama_score(llm, tokens: list[int], start: int) -> float:
    """Summed logprob of tokens[start:] given the ones before, from one full evaluation."""
    llm.reset()
    llm.eval(tokens)
    scores = np.asarray(llm.scores[: len(tokens)], dtype=np.float64)
    total = 0.0
    for p in range(start - 1, len(tokens) - 1):
        row = scores[p]
        total += row[tokens[p + 1]] - (row.max() + math.log(np.exp(row - row.max()).sum()))
    return total


def analyse(model_name: str, task: str, limit: int, data_dir: Path, threads: int,
            tf: TransformersEngine, lc: LlamaCppEngine, llm) -> dict:
    """Token, BOS and numerics comparison on one task's first `limit` items."""
    _, planned = plan(RunSpec(models=(model_name,), tasks=(task,), limit=limit, data_dir=data_dir))
    insts = planned[0].instances
    n_req = same_tokens = same_split = tf_bos = lc_bos = 0
    pred_strings = pred_tokens = 0
    d_strings, d_tokens = [], []
    examples = []
    bos_tf, bos_lc = tf.prefix_token, lc.bos
    for inst in insts:
        reqs = [LoglikelihoodRequest(inst.context, inst.target_delimiter + c) for c in inst.choices]
        lp_tf = [r.logprob for r in tf.loglikelihood(reqs)]
        lp_lc = [r.logprob for r in lc.loglikelihood(reqs)]  # llama.cpp on its own tokens
        lp_lc_tf_tokens = []
        for r in reqs:
            ctx, cont = tf.encode_pair(r.context, r.continuation)
            seq_tf = ctx + cont
            seq_lc, start_lc = lc.encode_pair(r.context, r.continuation)
            n_req += 1
            tf_bos += seq_tf[0] == bos_tf
            lc_bos += seq_lc[0] == bos_lc
            bare_tf = seq_tf[1:] if seq_tf[0] == bos_tf else seq_tf
            bare_lc = seq_lc[1:] if seq_lc[0] == bos_lc else seq_lc
            same = bare_tf == bare_lc
            same_tokens += same
            same_split += same and len(cont) == len(seq_lc) - start_lc
            if not same and len(examples) < 5:
                examples.append({"text": r.context[-40:] + "|" + r.continuation[:80],
                                 "transformers": bare_tf[:40], "llama.cpp": bare_lc[:40]})
            lp_lc_tf_tokens.append(_llama_score(llm, seq_tf, len(ctx)))
        pred_strings += int(np.argmax(lp_tf)) == int(np.argmax(lp_lc))
        pred_tokens += int(np.argmax(lp_tf)) == int(np.argmax(lp_lc_tf_tokens))
        d_strings += [abs(a - b) for a, b in zip(lp_tf, lp_lc)]
        d_tokens += [abs(a - b) for a, b in zip(lp_tf, lp_lc_tf_tokens)]
    n = len(insts)
    return {
        "model": model_name, "task": task, "items": n, "requests": n_req,
        "transformers_bos_share": tf_bos / n_req, "llamacpp_bos_share": lc_bos / n_req,
        "same_tokens_without_bos": same_tokens / n_req, "same_split": same_split / n_req,
        "pred_agreement_own_tokens": pred_strings / n,
        "pred_agreement_same_tokens": pred_tokens / n,
        "median_abs_dlogprob_own_tokens": float(np.median(d_strings)),
        "median_abs_dlogprob_same_tokens": float(np.median(d_tokens)),
        "max_abs_dlogprob_same_tokens": float(np.max(d_tokens)),
        "token_examples": examples,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="smollm2-135m")
    p.add_argument("--tasks", default="xstorycloze_es,xnli_eu")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--data-dir", type=Path,
                   default=Path(os.environ.get("IBERLITE_DATA_DIR", "../shared/data")))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    from llama_cpp import Llama

    from iberlite.engines.kernels import apply_to_llama_cpp_python, detect, plan_kernels

    apply_to_llama_cpp_python(plan_kernels(detect()))
    rows = []
    for m in args.models.split(","):
        model = resolve_model(m)
        tf = TransformersEngine(model, n_threads=args.threads)
        lc = open_llamacpp(model, EngineOptions(n_threads=args.threads, scoring="naive"))
        llm = Llama(str(model.path), n_ctx=2048, n_batch=512, logits_all=True, verbose=False,
                    n_threads=args.threads, flash_attn=False)
        try:
            for t in args.tasks.split(","):
                rows.append(analyse(m, t, args.limit, args.data_dir.resolve(), args.threads,
                                    tf, lc, llm))
                r = rows[-1]
                print(f"| {m} | {t} | {r['items']} | {r['transformers_bos_share']:.2f} | "
                      f"{r['llamacpp_bos_share']:.2f} | {100 * r['same_tokens_without_bos']:.1f}% | "
                      f"{100 * r['pred_agreement_own_tokens']:.1f}% | "
                      f"{100 * r['pred_agreement_same_tokens']:.1f}% | "
                      f"{r['median_abs_dlogprob_own_tokens']:.3f} | "
                      f"{r['median_abs_dlogprob_same_tokens']:.3f} |", flush=True)
        finally:
            llm.close()
            lc.close()
            tf.close()
    out = OUT / f"fidelity_causes_{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1,
                              ensure_ascii=False))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
