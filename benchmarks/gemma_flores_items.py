"""Gemma 3 on FLORES en->es, item by item: lm-eval's `hf` + `gguf_file` against iberlite.

The issue's new-user setting: lm-eval 0.4.13 `--model hf` on the Gemma 3 GGUF (float32, batch 8
by default here), its flores_en-es config pointed at the data dir, first --limit sentences; then
iberlite's llama.cpp engine on the same sentences. Per item: whether the prompts are the same
string, how many tokens each tokenizer makes of the prompt (llama.cpp's from the GGUF, and the
one transformers rebuilds from it, which lm-eval uses), how many tokens each side generated
(each output re-tokenized by its own side's tokenizer; at or near the task's 256-token budget
means no `\\n` stop), and sentence chrF of each output against the reference. With --generate
N, the transformers model is also fed llama.cpp's token ids of the first N prompts and greedily
continues them, next to llama.cpp's own greedy continuation (same weights, same ids: do they
write the same tokens?).

    python benchmarks/gemma_flores_items.py --limit 60 --generate 60 --data-dir ../shared/data

Needs the reference extra. Prints a summary and writes benchmarks/out/gemma_flores_items.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_var] = "1"  # before transformers is imported anywhere

from gemma_tokenizer_check import first_difference, llama_greedy  # noqa: E402 (beside this script)
from iberlite.fidelity.iberlite_run import run_iberlite  # noqa: E402
from iberlite.fidelity.lm_eval_run import read_samples, run_lm_eval  # noqa: E402
from iberlite.fidelity.lm_eval_tasks import write_task_dir  # noqa: E402
from iberlite.models.names import resolve_model  # noqa: E402
from iberlite.tasks.registry import load_task_specs  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
TASK = "flores_en-es"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="gemma3-270m")
    p.add_argument("--limit", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=8, help="lm-eval's --batch_size")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--generate", type=int, default=0,
                   help="feed llama.cpp's ids of the first N prompts to the transformers model")
    p.add_argument("--new-tokens", type=int, default=24)
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("IBERLITE_DATA_DIR", "../shared/data")))
    p.add_argument("--work-dir", type=Path, default=None)
    p.add_argument("--out", type=Path, default=OUT / "gemma_flores_items.json")
    args = p.parse_args(argv)
    data_dir = args.data_dir.resolve()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="gemma_flores_"))
    work.mkdir(parents=True, exist_ok=True)
    model = resolve_model(args.model)
    budget = load_task_specs(())[TASK].generation.max_tokens  # both sides' token budget

    t0 = time.perf_counter()
    local = write_task_dir([TASK], data_dir, work / "tasks")
    run_lm_eval(model, [local[TASK]], work / "tasks", args.limit, work / "lm", args.threads,
                log=work / "lm_eval.log", batch_size=args.batch_size)
    t_lm = time.perf_counter() - t0
    ref = {d.key: d for d in read_samples(work / "lm", TASK).docs}
    t0 = time.perf_counter()
    ours = {d.key: d for d in run_iberlite("llamacpp", args.model, [TASK], args.limit, data_dir,
                                           work / "iberlite", args.threads, {TASK: ""})[TASK].docs}
    t_ib = time.perf_counter() - t0

    import llama_cpp
    import sacrebleu
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    llm = llama_cpp.Llama(str(model.file), n_ctx=1024, n_threads=args.threads, verbose=False)
    tok = AutoTokenizer.from_pretrained(str(model.file.parent), gguf_file=model.file.name)
    references = (data_dir / "flores200" / "spa_Latn.devtest").read_text(encoding="utf-8").split("\n")
    rows = []
    prompt_ids = {}  # llama.cpp's ids of each prompt, reused by --generate
    for key in [k for k in ref if k in ours]:
        a, b = ref[key], ours[key]
        ll_ids = prompt_ids[key] = llm.tokenize(b.context.encode(), add_bos=True, special=False)
        hf_ids = tok(a.context)["input_ids"]
        gold = references[int(key)]
        rows.append({
            "key": key, "same_prompt": a.context == b.context,
            "prompt_tokens_llama_cpp": len(ll_ids), "prompt_tokens_transformers": len(hf_ids),
            "same_prompt_ids": ll_ids == hf_ids,
            "lm_eval_output": a.prediction, "iberlite_output": b.prediction,
            "lm_eval_tokens": len(tok(a.prediction, add_special_tokens=False)["input_ids"]),
            "iberlite_tokens": len(llm.tokenize(b.prediction.encode(), add_bos=False, special=False)),
            "chrf_lm_eval": sacrebleu.sentence_chrf(a.prediction.strip(), [gold]).score,
            "chrf_iberlite": sacrebleu.sentence_chrf(b.prediction.strip(), [gold]).score,
            "same_output": a.prediction == b.prediction,
        })
    n = len(rows)
    golds = [references[int(r["key"])] for r in rows]
    corpus = {side: sacrebleu.corpus_chrf([r[f"{side}_output"].strip() for r in rows], [golds]).score
              for side in ("lm_eval", "iberlite")}

    generated = []
    if args.generate:
        t0 = time.perf_counter()
        hf_model = AutoModelForCausalLM.from_pretrained(str(model.file.parent), gguf_file=model.file.name,
                                                        dtype=torch.float32).eval()
        for r in rows[: args.generate]:
            ids = prompt_ids[r["key"]]
            with torch.no_grad():
                on_ll = hf_model.generate(torch.tensor([ids]), max_new_tokens=args.new_tokens,
                                          do_sample=False)[0][len(ids):].tolist()
            own = llama_greedy(llm, ids, args.new_tokens)
            generated.append({"key": r["key"], "same_leading_tokens": first_difference(own, on_ll),
                              "n": min(len(own), len(on_ll))})
        t_gen = time.perf_counter() - t0
    summary = {
        "items": n,
        "same_prompt_string": sum(r["same_prompt"] for r in rows),
        "same_prompt_token_ids": sum(r["same_prompt_ids"] for r in rows),
        "prompt_tokens_median": {"llama_cpp": statistics.median(r["prompt_tokens_llama_cpp"] for r in rows),
                                 "transformers": statistics.median(r["prompt_tokens_transformers"] for r in rows)},
        "transformers_prompt_longer": sum(r["prompt_tokens_transformers"] > r["prompt_tokens_llama_cpp"] for r in rows),
        "outputs_at_budget": {"lm_eval": sum(r["lm_eval_tokens"] >= budget - 1 for r in rows),
                              "iberlite": sum(r["iberlite_tokens"] >= budget - 1 for r in rows)},
        "same_output": sum(r["same_output"] for r in rows),
        "corpus_chrf": corpus,
        "items_chrf_higher": {"iberlite": sum(r["chrf_iberlite"] > r["chrf_lm_eval"] for r in rows),
                              "lm_eval": sum(r["chrf_lm_eval"] > r["chrf_iberlite"] for r in rows)},
        "seconds": {"lm_eval": round(t_lm), "iberlite": round(t_ib)},
    }
    if generated:
        summary["transformers_on_llama_cpp_ids"] = {
            "prompts": len(generated), "new_tokens": args.new_tokens,
            "all_tokens_same": sum(g["same_leading_tokens"] == g["n"] for g in generated),
            "first_token_same": sum(g["same_leading_tokens"] >= 1 for g in generated),
            "median_same_leading_tokens": statistics.median(g["same_leading_tokens"] for g in generated),
        }
        summary["seconds"]["generate"] = round(t_gen)
    print(json.dumps(summary, indent=1))
    for r in rows[:3]:
        print(f"\nitem {r['key']}: prompt tokens {r['prompt_tokens_llama_cpp']} (llama.cpp) / "
              f"{r['prompt_tokens_transformers']} (transformers)")
        print(f"  lm-eval  ({r['lm_eval_tokens']} tok, chrF {r['chrf_lm_eval']:.1f}): {r['lm_eval_output'][:100]!r}")
        print(f"  iberlite ({r['iberlite_tokens']} tok, chrF {r['chrf_iberlite']:.1f}): {r['iberlite_output'][:100]!r}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": "benchmarks/gemma_flores_items.py", "args": vars(args) | {
        "data_dir": str(data_dir), "work_dir": str(work), "out": str(args.out)}, "summary": summary,
        "rows": rows, "generated": generated}, ensure_ascii=False, indent=1, default=str) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
