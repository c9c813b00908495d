"""Device cost per (model, task, language), from the items and runs in the store.

Per-item latency, prefill and decode come from the items themselves; memory and energy are
measured per model per run, so energy is attributed to items in proportion to their wall time
(and the row says whether it was read from RAPL or estimated from CPU time).
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class CostRow:
    """What answering one task's items cost on this device."""

    model: str
    task: str
    lang: str
    output: str
    n: int
    latency_p50_ms: float
    latency_p95_ms: float
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    prefill_tokens_per_s: float | None
    decode_tokens_per_s: float | None
    peak_rss_mb: float | None
    energy_per_item_j: float | None
    energy_per_1k_tokens_j: float | None
    energy_method: str | None
    ceiling_share: float | None  # achieved tokens/s over the engine ceiling (pp512 or tg128)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)


def _ceilings(db: sqlite3.Connection) -> dict[tuple[str, str], float]:
    """Latest `iberlite bench` medians per (model sha256, test), if any were stored."""
    try:
        rows = db.execute("SELECT model_sha256, test, median FROM benches ORDER BY id").fetchall()
    except sqlite3.OperationalError:  # no bench has been run on this database
        return {}
    return {(sha, test): med for sha, test, med in rows}


def device_costs(db_path: Path) -> list[CostRow]:
    """Cost rows for every (model, task, language) with stored items."""
    db = sqlite3.connect(db_path)
    try:
        runs = {rid: json.loads(cost) if cost else {}
                for rid, cost in db.execute("SELECT id, cost_json FROM runs")}
        ceilings = _ceilings(db)
        rows = db.execute(
            "SELECT e.model, e.task, e.lang, e.output, e.engine_json, i.run_id, i.wall_ms, "
            "i.ttft_ms, i.prefill_ms, i.decode_ms, i.eval_tokens, i.prompt_tokens, "
            "i.reused_tokens, i.gen_tokens FROM items i JOIN evals e USING (eval_key)"
        ).fetchall()
    finally:
        db.close()
    # energy per run and model is spread over that run's items by wall time
    run_wall: dict[tuple[int, str], float] = defaultdict(float)
    for r in rows:
        run_wall[(r[5], r[0])] += r[6] or 0.0
    groups: dict[tuple[str, str, str, str], list] = defaultdict(list)
    for r in rows:
        groups[(r[0], r[1], r[2], r[3])].append(r)
    return [_row(key, items, runs, run_wall, ceilings) for key, items in sorted(groups.items())]


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def item_energy_j(run_cost: dict | None, item_wall_ms: float | None, run_wall_ms: float) -> float | None:
    """An item's share of its run's energy for one model: the run's measured (or estimated)
    energy split by wall time. None when the run has no energy figure."""
    if not run_cost or run_cost.get("energy_j") is None or not run_wall_ms:
        return None
    return run_cost["energy_j"] * (item_wall_ms or 0.0) / run_wall_ms


def _row(key, items, runs, run_wall, ceilings) -> CostRow:
    model, task, lang, output = key
    sha = json.loads(items[0][4]).get("model_sha256", "")
    wall = [r[6] for r in items if r[6] is not None]
    ttft = [r[7] for r in items if r[7] is not None]
    is_gen = output == "generate"
    if is_gen:
        pre_tok = sum((r[11] or 0) - (r[12] or 0) for r in items)
        pre_ms = sum(r[8] or 0.0 for r in items)
        dec_tok = sum(r[13] or 0 for r in items)
        dec_ms = sum(r[9] or 0.0 for r in items)
        decode_tps = dec_tok / (dec_ms / 1000) if dec_ms else None
    else:  # multiple choice is all prefill: the tokens actually evaluated, shared prefix once
        pre_tok = sum(r[10] or 0.0 for r in items)
        pre_ms = sum(r[6] or 0.0 for r in items)
        decode_tps = None
    prefill_tps = pre_tok / (pre_ms / 1000) if pre_ms else None
    energy = 0.0
    methods = set()
    peaks = []
    for r in items:
        cost = runs.get(r[5], {}).get(model)
        share = item_energy_j(cost, r[6], run_wall[(r[5], model)])
        if share is None:
            continue
        energy += share
        methods.add(cost["energy_method"])
        peaks.append(cost["peak_rss_bytes"])
    tokens = sum(r[10] or 0.0 for r in items)
    ceiling = ceilings.get((sha, "tg128" if is_gen else "pp512"))
    achieved = decode_tps if is_gen else prefill_tps
    return CostRow(
        model=model, task=task, lang=lang, output=output, n=len(items),
        latency_p50_ms=_pct(wall, 50) or 0.0, latency_p95_ms=_pct(wall, 95) or 0.0,
        ttft_p50_ms=_pct(ttft, 50) if is_gen else None,
        ttft_p95_ms=_pct(ttft, 95) if is_gen else None,
        prefill_tokens_per_s=prefill_tps, decode_tokens_per_s=decode_tps,
        peak_rss_mb=max(peaks) / 2**20 if peaks else None,
        energy_per_item_j=energy / len(items) if methods else None,
        energy_per_1k_tokens_j=1000 * energy / tokens if methods and tokens else None,
        energy_method="+".join(sorted(methods)) if methods else None,
        ceiling_share=achieved / ceiling if achieved and ceiling else None,
    )
