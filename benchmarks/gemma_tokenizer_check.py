"""Why lm-eval's `--model hf` + `gguf_file` translates worse with Gemma 3 than iberlite does.

lm-eval's `hf` path uses the tokenizer transformers rebuilds from the GGUF. This compares it with
llama.cpp's on FLORES en->es prompts (the flores_en-es task's template), then greedily generates
with the transformers model (the GGUF dequantized to float32) from both tokenizations, next to
llama.cpp's own generation: if transformers fed llama.cpp's ids writes what llama.cpp writes, the
weights are fine and the difference is the tokenizer.

    python benchmarks/gemma_tokenizer_check.py --data-dir ../shared/data [--model gemma3-270m]

Needs the reference extra. Prints the comparison and writes benchmarks/out/gemma_tokenizer_check.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_var] = "1"

OUT = Path(__file__).resolve().parent / "out"


def llama_greedy(llm, ids: list[int], n: int) -> list[int]:
    """llama.cpp's greedy continuation of `ids`: up to `n` tokens, stopping at end of text."""
    out: list[int] = []
    llm.reset()
    for token in llm.generate(ids, temp=0.0, top_k=1):
        if token == llm.token_eos() or len(out) >= n:
            break
        out.append(token)
    return out


def first_difference(a: list[int], b: list[int]) -> int:
    """How many leading tokens two sequences share."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="gemma3-270m")
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("IBERLITE_DATA_DIR", "../shared/data")))
    p.add_argument("--n-tokenize", type=int, default=5, help="prompts whose tokenizations are compared")
    p.add_argument("--n-generate", type=int, default=3, help="prompts generated from")
    p.add_argument("--new-tokens", type=int, default=24)
    p.add_argument("--out", type=Path, default=OUT / "gemma_tokenizer_check.json")
    args = p.parse_args(argv)

    import llama_cpp
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from iberlite.models.names import resolve_model

    torch.set_num_threads(1)
    model_file = resolve_model(args.model).file
    llm = llama_cpp.Llama(str(model_file), n_ctx=512, n_threads=1, verbose=False)
    tok = AutoTokenizer.from_pretrained(str(model_file.parent), gguf_file=model_file.name)
    sentences = (args.data_dir / "flores200" / "eng_Latn.devtest").read_text(encoding="utf-8").split("\n")
    prompts = [f"English sentence: {s}\nSpanish sentence:" for s in sentences[: args.n_tokenize]]
    rows = []
    for prompt in prompts:
        ll = llm.tokenize(prompt.encode(), add_bos=True, special=False)
        hf = tok(prompt)["input_ids"]
        rows.append({"prompt": prompt, "llama_cpp_ids": ll, "transformers_ids": hf,
                     "llama_cpp_pieces": [llm.detokenize([t]).decode(errors="replace") for t in ll[:12]],
                     "transformers_pieces": tok.convert_ids_to_tokens(hf[:12])})
        print(f"{len(ll):>4} llama.cpp tokens  {len(hf):>4} transformers tokens  "
              f"{'same' if ll == hf else 'different'}")
    print("first pieces, llama.cpp:   ", rows[0]["llama_cpp_pieces"])
    print("first pieces, transformers:", rows[0]["transformers_pieces"])
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(str(model_file.parent), gguf_file=model_file.name,
                                                 dtype=torch.float32).eval()
    print(f"(transformers model loaded in {time.perf_counter() - t0:.0f} s)")
    for row in rows[: args.n_generate]:
        ll, hf = row["llama_cpp_ids"], row["transformers_ids"]
        with torch.no_grad():
            on_ll = model.generate(torch.tensor([ll]), max_new_tokens=args.new_tokens, do_sample=False)[0][len(ll):].tolist()
            on_hf = model.generate(torch.tensor([hf]), max_new_tokens=args.new_tokens, do_sample=False)[0][len(hf):].tolist()
        own = llama_greedy(llm, ll, args.new_tokens)
        same = first_difference(own, on_ll)
        row.update(llama_cpp_text=llm.detokenize(own).decode(errors="replace"),
                   transformers_on_llama_ids_text=llm.detokenize(on_ll).decode(errors="replace"),
                   transformers_on_own_ids_text=tok.decode(on_hf), same_leading_tokens=same)
        print(f"\nllama.cpp:                      {row['llama_cpp_text']!r}")
        print(f"transformers, llama.cpp's ids:  {row['transformers_on_llama_ids_text']!r} "
              f"(first {same} tokens identical)")
        print(f"transformers, its own ids:      {row['transformers_on_own_ids_text']!r}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": args.model, "rows": rows}, ensure_ascii=False, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
