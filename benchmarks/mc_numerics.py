"""Why fast and naive logprobs differ: which layout change moves a sequence's logprob.

One sequence (the first XStoryCloze-es item, first ending) is scored alone from a cleared
cache, then again with one thing changed, with flash attention on and off:

* ``rows+m``: m rows of another sequence appended to the same batch (same cells, bigger batch:
  tests whether the matmul kernels give a row the same result whatever the batch size);
* ``cells+m``: the KV cells shifted by m (another sequence decoded first; same batch);
* ``split``: the context decoded in one call and the rest in a second call (same cells);

and over ``--items`` items, each choice scored by the engine's ``fast`` and ``naive`` paths and
by ``rewind``: the shared prefix decoded once at cells 0.., then each choice's remaining tokens
decoded alone right after it (cell = position), compared with every choice alone from a
cleared cache; with flash attention off, also ``aligned_rows`` (the premise of the engine's
aligned layout, see engines/layout.py). Differences are in nats on the summed
continuation logprob.

    python benchmarks/mc_numerics.py --data-dir ../shared/data --models smollm2-135m@Q8_0,gemma3-270m
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mc_throughput import REPO, load_instances, model_file  # noqa: E402


class Probe:
    """Direct decodes on an engine's context: rows are (token, position, sequence id)."""

    def __init__(self, engine) -> None:
        self.eng = engine

    def clear(self) -> None:
        self.eng.clear_cache()

    def decode(self, rows, want=()) -> dict[int, np.ndarray]:
        """Decode rows in one call; logits rows for the positions in `want` (sequence 0)."""
        want = set(want)
        flags = [seq == 0 and pos in want for _, pos, seq in rows]
        out = self.eng.decode_rows(rows, flags)
        return {pos: out[i] for i, (_, pos, _) in enumerate(rows) if flags[i]}


def _logprob(rows: dict[int, np.ndarray], tokens: list[int], start: int) -> float:
    from iberlite.engines.llama_lib import log_softmax_at

    return sum(log_softmax_at(rows[p], [tokens[p + 1]])[0][0] for p in range(start - 1, len(tokens) - 1))


def layout_effects(probe: Probe, tokens: list[int], start: int, filler: list[int]) -> dict[str, float]:
    want = range(start - 1, len(tokens) - 1)
    seq = [(t, p, 0) for p, t in enumerate(tokens)]
    probe.clear()
    alone = _logprob(probe.decode(seq, want), tokens, start)
    out = {}
    for m in (1, 2, 3, 8, 16, 32, 64):
        other = [(t, p, 1) for p, t in enumerate(filler[:m])]
        probe.clear()
        out[f"rows+{m}"] = _logprob(probe.decode(seq + other, want), tokens, start) - alone
        probe.clear()
        probe.decode(other)
        out[f"cells+{m}"] = _logprob(probe.decode(seq, want), tokens, start) - alone
    probe.clear()
    rows = probe.decode(seq[:start - 1], want)
    rows.update(probe.decode(seq[start - 1:], want))
    out["split"] = _logprob(rows, tokens, start) - alone
    return out


def aligned_rows(probe: Probe, tokens: list[int], start: int, filler: list[int]) -> dict[str, float]:
    """The aligned layout's premise: with every decode padded to a multiple of 4 rows, rows of
    other sequences before (a multiple of 8, so cells stay aligned) and after a sequence leave
    its logprob unchanged. Keys are 'before+after'."""
    want = range(start - 1, len(tokens) - 1)
    seq = [(t, p, 0) for p, t in enumerate(tokens)]

    def padded(rows):
        return rows + [(t, p, 3) for p, t in enumerate(filler[:-len(rows) % 4])]

    probe.clear()
    alone = _logprob(probe.decode(padded(seq), want), tokens, start)
    out = {}
    for before, after in ((0, 1), (0, 5), (0, 33), (8, 0), (16, 5), (24, 3), (40, 1), (64, 37),
                          (96, 0), (128, 5), (200, 100), (264, 2)):
        rows = ([(t, p, 1) for p, t in enumerate(filler[:before])] + seq
                + [(t, p, 2) for p, t in enumerate(filler[:after])])
        probe.clear()
        out[f"{before}+{after}"] = _logprob(probe.decode(padded(rows), want), tokens, start) - alone
    return out


def _shared(seqs: list[list[int]]) -> int:
    n = min(len(s) for s in seqs)
    k = next((k for k in range(n) if any(s[k] != seqs[0][k] for s in seqs)), n)
    return min(k, n - 1)  # every choice keeps at least one token of its own


def rewind_vs_alone(probe: Probe, pairs: list[tuple[list[int], int]]) -> tuple[list[float], list[float]]:
    """Logprobs of an item's choices: each alone from a cleared cache, and by rewind."""
    alone = []
    for tokens, start in pairs:
        probe.clear()
        rows = probe.decode([(t, p, 0) for p, t in enumerate(tokens)], range(start - 1, len(tokens) - 1))
        alone.append(_logprob(rows, tokens, start))
    k = _shared([t for t, _ in pairs])
    probe.clear()
    first = pairs[0][0]
    prefix_rows = probe.decode([(t, p, 0) for p, t in enumerate(first[:k])],
                               range(min(s for _, s in pairs) - 1, k))
    rewind = []
    for tokens, start in pairs:
        probe.eng.drop_from(0, k)
        rows = dict(prefix_rows)
        rows.update(probe.decode([(tokens[p], p, 0) for p in range(k, len(tokens))],
                                 range(max(k, start - 1), len(tokens) - 1)))
        rewind.append(_logprob(rows, tokens, start))
    return alone, rewind


def _summary(a: list[float], b: list[float]) -> dict:
    d = [abs(x - y) for x, y in zip(a, b)]
    return {"max": max(d), "median": statistics.median(d), "exact": sum(x == 0 for x in d),
            "below_1e-3": sum(x < 1e-3 for x in d), "n": len(d)}


def run_model(name: str, data_dir: Path, items: int, threads: int) -> list[dict]:
    from iberlite.engines.factory import EngineOptions, open_llamacpp
    from mc_throughput import _requests

    mf = model_file(name, threads)
    insts = load_instances("xstorycloze_es", data_dir, items)
    reqs = _requests(insts)
    out = []
    for fa in (1, 0):
        # the probe explores layouts itself: no exactness check on open
        opts = EngineOptions(n_threads=threads, context_overrides={"flash_attn_type": fa}, check_layout=False)
        with open_llamacpp(mf, opts) as eng:
            probe = Probe(eng)
            tokens, start = eng.encode_pair(insts[0].context, " " + insts[0].choices[0])
            filler = [eng.bos] + eng.tokenize(" uno dos tres" * 90, add_special=False)
            row = {"model": mf.name, "flash_attn": bool(fa),
                   "layout": layout_effects(probe, tokens, start, filler)}
            if not fa:
                row["aligned_rows"] = [aligned_rows(probe, *eng.encode_pair(i.context, " " + i.choices[0]), filler)
                                       for i in insts[:4]]
            alone, rewind = [], []
            for inst in insts:
                a, r = rewind_vs_alone(probe, [eng.encode_pair(inst.context, inst.target_delimiter + c)
                                               for c in inst.choices])
                alone += a
                rewind += r
            scored = {}
            for mode in ("fast", "naive"):
                eng.scoring = mode
                scored[mode] = [r.logprob for r in eng.loglikelihood(reqs)]
            row["rewind_vs_alone"] = _summary(rewind, alone)
            row["fast_vs_naive"] = _summary(scored["fast"], scored["naive"])
            row["naive_vs_alone"] = _summary(scored["naive"], alone)
            out.append(row)
            print(json.dumps(row), flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="smollm2-135m,smollm2-135m@Q8_0,gemma3-270m")
    ap.add_argument("--items", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", type=Path, default=Path("data"))
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "mc_numerics.json")
    args = ap.parse_args()
    rows = [r for m in args.models.split(",") for r in run_model(m.strip(), args.data_dir, args.items, args.threads)]
    print(f"\n{'model':20} {'FA':3} {'rows+1':>8} {'rows+3':>8} {'cells+1':>8} {'cells+8':>8} "
          f"{'cells+32':>8} {'cells+64':>8} {'split':>8} | rewind=alone  fast~naive max")
    for r in rows:
        lay = r["layout"]
        rw, fn = r["rewind_vs_alone"], r["fast_vs_naive"]
        print(f"{r['model']:20} {'on' if r['flash_attn'] else 'off':3} "
              + " ".join(f"{lay[k]:+8.1e}" for k in ("rows+1", "rows+3", "cells+1", "cells+8",
                                                      "cells+32", "cells+64", "split"))
              + f" | {rw['exact']:>3}/{rw['n']} exact  {fn['max']:.2e}")
        if "aligned_rows" in r:
            diffs = [abs(v) for d in r["aligned_rows"] for v in d.values()]
            print(f"{'':24} aligned rows (4 items x {len(diffs) // 4} layouts): max |diff| {max(diffs):.1e}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
