"""Measure how far iberlite's language identifier (behind ``lang_ok``) can be trusted.

For each language, identify every FLORES-200 devtest sentence, and again only its first few words
(short generations are where identifiers fail), and print accuracy and what each language is
mistaken for. Writes the full confusion counts as JSON.

    python benchmarks/langid_accuracy.py --data-dir ../shared/data \
        [--out benchmarks/out/langid_accuracy.json] [--n 1012] [--words 5]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

try:
    from iberlite.scoring import language_id
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO / "src"))
    from iberlite.scoring import language_id


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n (sound near 0 and 1, unlike the normal one)."""
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def summarise(gold: str, counts: Counter) -> dict:
    n = sum(counts.values())
    k = counts[gold]
    errors = {str(lab): c for lab, c in counts.most_common() if lab != gold}
    lo, hi = wilson(k, n)
    return {
        "n": n,
        "correct": k,
        "accuracy": k / n,
        "ci95": [round(lo, 4), round(hi, 4)],
        "mistaken_for": errors,  # wrong label -> count, most frequent first ("None": empty text)
    }


def confusion_text(summary: dict, top: int = 2) -> str:
    """E.g. 'es 46, pt 46' — the labels this language is most often mistaken for."""
    errors = list(summary["mistaken_for"].items())[:top]
    return ", ".join(f"{lab} {c}" for lab, c in errors) if errors else "-"


def main(argv: list[str] | None = None) -> int:
    default_data = os.environ.get("IBERLITE_DATA_DIR") or str(REPO.parent / "shared" / "data")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=Path(default_data),
                    help="directory holding flores200/*.devtest (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "langid_accuracy.json",
                    help="JSON output file (default: %(default)s)")
    ap.add_argument("--n", type=int, default=None,
                    help="first N sentences per language (default: all of devtest)")
    ap.add_argument("--words", type=int, default=5,
                    help="also measure on the first WORDS words of each sentence (default: 5)")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    try:
        full = language_id.flores_predictions(args.data_dir, args.n)
        short = language_id.flores_predictions(args.data_dir, args.n, max_words=args.words)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - t0

    rows = {
        lang: {"full": summarise(lang, full[lang]), f"first_{args.words}_words": summarise(lang, short[lang])}
        for lang in language_id.LANGS
    }

    sig = language_id.identifier_signature()
    short_key = f"first_{args.words}_words"
    header = ["lang", "n", "acc", "mistaken for", f"acc {args.words}w", f"mistaken for ({args.words}w)"]
    table = [
        [
            lang,
            str(r["full"]["n"]),
            f"{r['full']['accuracy']:.3f}",
            confusion_text(r["full"]),
            f"{r[short_key]['accuracy']:.3f}",
            confusion_text(r[short_key]),
        ]
        for lang, r in rows.items()
    ]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
    print(f"{sig} on FLORES-200 devtest ({args.data_dir})")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    print(f"({elapsed:.1f} s; 'mistaken for' = most frequent wrong labels with counts)")

    result = {
        "identifier": sig,
        "dataset": "FLORES-200 devtest",
        "data_dir": str(args.data_dir.resolve()),
        "n_per_language": args.n,
        "truncate_words": args.words,
        "python": platform.python_version(),
        "seconds": round(elapsed, 2),
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
