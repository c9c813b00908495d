"""Device cost per (model, task, language), from the items and runs in the store.

Per-item latency, prefill and decode come from the items themselves; memory and energy are
measured per model per run, so energy is attributed to items in proportion to their wall time
(and the row says whether it was read from RAPL or estimated from CPU time). Items pinned to a
device class (a Ray sweep, docs/scale.md) are a row of their own per class, with the
fingerprints of the devices that answered them. A row keeps apart what the evaluation key keeps
apart for the user: an adapter (in the model's name) and the shots with their mode (in the task's
name, `xnli_es (5-shot fixed)`, as in the results grid), so a 5-shot run's latency never mixes
with the zero-shot one's.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from iberlite.run.signature import eval_shots_tag
from iberlite.store import EvalRecord, ItemRecord, RunCost, Store, cost_key


@dataclass(frozen=True)
class CostRow:
    """What answering one task's items cost on this device."""

    model: str
    task: str  # with its shots, when it had some: `xnli_es (5-shot fixed)`
    lang: str
    output: str
    device_class: str | None
    devices: str  # fingerprint ids of the devices that answered, joined by "+"
    n: int
    latency_p50_ms: float
    latency_p95_ms: float
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    prefill_share: float | None  # of the items' wall time, the share spent on the prompt (MC: all)
    prompt_tokens_p50: float | None  # tokens of an item's prompt (MC: evaluated tokens)
    gen_tokens_p50: float | None  # generated tokens of an item (generation only)
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


def device_costs(db_path: Path) -> list[CostRow]:
    """Cost rows for every (model, task, language) with stored items."""
    with Store.open_readonly(db_path) as store:
        return costs_from_store(store)


def costs_from_store(store: Store) -> list[CostRow]:
    """Cost rows for every (model, task, language) with stored items, from an open store."""
    runs = {r.id: r.costs for r in store.runs()}
    # the latest `iberlite bench` median per (model sha256, test), if any was stored
    ceilings = {(b.model_sha256, b.test): b.median for b in store.benches()}
    groups: dict[tuple[str, str, str, str, str], list[tuple[EvalRecord, ItemRecord]]] = defaultdict(list)
    for ev in store.evals():
        for it in store.items(ev.eval_key):
            task = ev.task + eval_shots_tag(ev.task_info)
            groups[(ev.model, task, ev.lang, ev.output, ev.device_class or "")].append((ev, it))
    # energy per run and model (and class) is spread over that run's items by wall time
    run_wall: dict[tuple[int | None, str], float] = defaultdict(float)
    for (model, *_, device_class), rows in groups.items():
        for _ev, it in rows:
            run_wall[(it.run_id, cost_key(model, device_class))] += it.wall_ms or 0.0
    return [_row(key, rows, runs, run_wall, ceilings) for key, rows in sorted(groups.items())]


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def item_energy_j(run_cost: RunCost | None, item_wall_ms: float | None, run_wall_ms: float) -> float | None:
    """An item's share of its run's energy for one model: the run's measured (or estimated)
    energy split by wall time. None when the run has no energy figure."""
    if run_cost is None or run_cost.energy_j is None or not run_wall_ms:
        return None
    return run_cost.energy_j * (item_wall_ms or 0.0) / run_wall_ms


def _row(key: tuple[str, str, str, str, str], rows: list[tuple[EvalRecord, ItemRecord]],
         runs: dict[int, dict[str, RunCost]], run_wall: dict[tuple[int | None, str], float],
         ceilings: dict[tuple[str, str], float]) -> CostRow:
    model, task, lang, output, device_class = key
    ckey = cost_key(model, device_class)
    sha = str(rows[0][0].engine.get("model_sha256", ""))
    items = [it for _ev, it in rows]
    wall = [it.wall_ms for it in items if it.wall_ms is not None]
    ttft = [it.ttft_ms for it in items if it.ttft_ms is not None]
    is_gen = output == "generate"
    decode_tps: float | None
    if is_gen:
        pre_tok = float(sum((it.prompt_tokens or 0) - (it.reused_tokens or 0) for it in items))
        pre_ms = sum(it.prefill_ms or 0.0 for it in items)
        dec_tok = sum(it.gen_tokens or 0 for it in items)
        dec_ms = sum(it.decode_ms or 0.0 for it in items)
        decode_tps = dec_tok / (dec_ms / 1000) if dec_ms else None
    else:  # multiple choice is all prefill: the tokens actually evaluated, shared prefix once
        pre_tok = sum(it.eval_tokens or 0.0 for it in items)
        pre_ms = sum(it.wall_ms or 0.0 for it in items)
        decode_tps = None
    prefill_tps = pre_tok / (pre_ms / 1000) if pre_ms else None
    # how much of answering is reading the prompt: prefill time over item wall time (reading
    # comprehension: long contexts, answers of a few tokens, so most of it)
    item_ms = sum(it.wall_ms or 0.0 for it in items)
    prefill_share = min(1.0, pre_ms / item_ms) if item_ms else None
    prompt_toks = [float(it.prompt_tokens) for it in items if it.prompt_tokens is not None]
    gen_toks = [float(it.gen_tokens) for it in items if it.gen_tokens is not None]
    energy = 0.0
    methods = set()
    peaks = []
    for it in items:
        cost = runs.get(it.run_id or 0, {}).get(ckey)
        share = item_energy_j(cost, it.wall_ms, run_wall[(it.run_id, ckey)])
        if share is None or cost is None:
            continue
        energy += share
        methods.add(str(cost.energy_method))
        if cost.peak_rss_bytes is not None:
            peaks.append(cost.peak_rss_bytes)
    tokens = sum(it.eval_tokens or 0.0 for it in items)
    ceiling = ceilings.get((sha, "tg128" if is_gen else "pp512"))
    achieved = decode_tps if is_gen else prefill_tps
    return CostRow(
        model=model, task=task, lang=lang, output=output, device_class=device_class or None,
        devices="+".join(sorted({it.device_id for it in items if it.device_id})), n=len(items),
        latency_p50_ms=_pct(wall, 50) or 0.0, latency_p95_ms=_pct(wall, 95) or 0.0,
        ttft_p50_ms=_pct(ttft, 50) if is_gen else None,
        ttft_p95_ms=_pct(ttft, 95) if is_gen else None,
        prefill_share=prefill_share, prompt_tokens_p50=_pct(prompt_toks, 50),
        gen_tokens_p50=_pct(gen_toks, 50) if is_gen else None,
        prefill_tokens_per_s=prefill_tps, decode_tokens_per_s=decode_tps,
        peak_rss_mb=max(peaks) / 2**20 if peaks else None,
        energy_per_item_j=energy / len(items) if methods else None,
        energy_per_1k_tokens_j=1000 * energy / tokens if methods and tokens else None,
        energy_method="+".join(sorted(methods)) if methods else None,
        ceiling_share=achieved / ceiling if achieved and ceiling else None,
    )
