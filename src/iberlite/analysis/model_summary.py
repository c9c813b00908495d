"""What each model cost on one device, next to its accuracy: the data behind the
accuracy-versus-cost plots and their Pareto fronts.

Choices, so that every number has one meaning:

* Cost is read from runs on one device (the newest run's that recorded a cost); runs on other
  devices are not mixed in.
* Accuracy is the mean over the tasks with per-item correctness that every model ran
  (multiple choice first, else exact match); latency percentiles are over those tasks' items.
* Energy per item divides the energy of the runs that evaluated items by the items they
  evaluated (model load included); a rerun that found everything stored is left out, since
  it would inflate the figure with load energy only.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from iberlite.analysis.pareto import pareto_front
from iberlite.store import EvalRecord, ItemRecord, RunCost, RunRecord


@dataclass(frozen=True)
class ModelCost:
    """What one model cost on the device, and its accuracy over the shared tasks."""

    model: str
    file_type: str
    n_params: int | None
    size_bytes: int | None
    load_ms: float | None
    rss_after_load_bytes: int | None
    peak_rss_bytes: int | None
    energy_j: float | None
    energy_items: int
    energy_method: str | None
    watts_assumed: float | None
    cpu_s: float | None
    wall_s: float | None
    p50_ms: float | None
    p90_ms: float | None
    latency_items: int
    mc_tokens_per_s: float | None
    decode_tokens_per_s: float | None
    prefill_tokens_per_s: float | None
    accuracy: float | None
    accuracy_tasks: int

    @property
    def energy_per_item_j(self) -> float | None:
        """Energy divided by the items the energy runs evaluated (None when not recorded)."""
        if self.energy_j is None or not self.energy_items:
            return None
        return self.energy_j / self.energy_items

    @property
    def energy_is_estimate(self) -> bool:
        """True when the energy was estimated from CPU time rather than read from RAPL."""
        return self.energy_method is not None and self.energy_method != "rapl"


@dataclass(frozen=True)
class CostAxis:
    """One accuracy-versus-cost plot: which cost, its values per model, the Pareto front."""

    key: str
    title: str
    unit: str
    models: tuple[str, ...]
    costs: tuple[float, ...]
    accuracies: tuple[float, ...]
    front: tuple[str, ...]
    note: str = ""


def cost_device(runs: Sequence[RunRecord]) -> str:
    """The device the cost views use: that of the newest run with a recorded cost."""
    for r in sorted(runs, key=lambda r: r.id, reverse=True):
        if r.device and r.costs:
            return r.device_id
    for r in sorted(runs, key=lambda r: r.id, reverse=True):
        if r.device:
            return r.device_id
    return "unknown"


def accuracy_tasks(chosen: Mapping[tuple[str, str], EvalRecord], items: Mapping[str, Sequence[ItemRecord]],
                   models: Sequence[str]) -> tuple[list[str], str]:
    """Tasks with per-item correctness that every model ran (MC first, then exact match), and
    a label saying what their mean accuracy is."""
    def with_correct(output_mc: bool) -> dict[str, set[str]]:
        per_model: dict[str, set[str]] = defaultdict(set)
        for (model, task), ev in chosen.items():
            its = items[ev.eval_key]
            if (ev.output == "multiple_choice") == output_mc and its and all(
                    it.correct is not None for it in its):
                per_model[model].add(task)
        return per_model

    for mc, what in ((True, "multiple-choice accuracy"), (False, "exact-match accuracy")):
        per_model = with_correct(mc)
        if not per_model:
            continue
        shared = set.intersection(*(per_model.get(m, set()) for m in models))
        if shared:
            label = (f"mean {what} over the {len(shared)} task(s) every model ran"
                     if len(models) > 1 else f"mean {what} over {len(shared)} task(s)")
            return sorted(shared), label
    return [], ""


def _quantile(values: Sequence[float], q: float) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None
    return float(np.percentile(vals, q))


def _sum(values: Sequence[float | int | None]) -> float:
    return float(sum(v for v in values if v is not None))


def _rate(tokens: float, ms: float) -> float | None:
    return tokens / ms * 1000.0 if ms > 0 and tokens > 0 else None


def model_costs(runs: Sequence[RunRecord], chosen: Mapping[tuple[str, str], EvalRecord],
                items: Mapping[str, Sequence[ItemRecord]], new_items: Mapping[tuple[int, str], int],
                device: str) -> tuple[list[ModelCost], str]:
    """One cost summary per model on `device`, and the label of the accuracy they are plotted against.

    `chosen` is one evaluation per (model, task), `items` their items by eval key, and
    `new_items` the items each (run, model) stored.
    """
    dev_runs = {r.id: r for r in runs if r.device_id == device or not r.device}
    models = sorted({m for (m, _t) in chosen})
    acc_tasks, acc_label = accuracy_tasks(chosen, items, models)
    out = []
    for model in models:
        evs = [ev for (m, _t), ev in chosen.items() if m == model]
        engine = max(evs, key=lambda e: e.created_at).engine
        costs: list[tuple[RunRecord, RunCost]] = [
            (r, r.costs[model]) for r in dev_runs.values() if model in r.costs]
        energy_runs = [(r, c) for r, c in costs
                       if c.energy_j is not None and new_items.get((r.id, model), 0) > 0]
        methods = sorted({str(c.energy_method) for _r, c in energy_runs})
        method = methods[0] if len(methods) == 1 else ("mixed: " + ", ".join(methods) if methods else None)
        watts = sorted({c.watts_assumed for _r, c in energy_runs if c.watts_assumed is not None})
        latest = max(costs, key=lambda rc: rc[0].id)[1] if costs else RunCost()
        peak = [c.peak_rss_bytes for _r, c in costs if c.peak_rss_bytes is not None]
        after = [c.rss_after_load_bytes for _r, c in costs if c.rss_after_load_bytes is not None]

        acc_evs = [ev for ev in evs if ev.task in acc_tasks]
        lat_items = [it for ev in acc_evs for it in items[ev.eval_key] if it.run_id in dev_runs]
        walls = [it.wall_ms for it in lat_items if it.wall_ms is not None]
        accs = [float(np.mean([float(bool(it.correct)) for it in items[ev.eval_key]])) for ev in acc_evs]
        mc = [it for ev in evs if ev.output == "multiple_choice" for it in items[ev.eval_key]
              if it.run_id in dev_runs]
        gen = [it for ev in evs if ev.output != "multiple_choice" for it in items[ev.eval_key]
               if it.run_id in dev_runs]
        out.append(ModelCost(
            model=model, file_type=str(engine.get("file_type", "")),
            n_params=engine.get("n_params"), size_bytes=engine.get("size_bytes"),
            load_ms=latest.load_ms,
            rss_after_load_bytes=max(after) if after else None,
            peak_rss_bytes=max(peak) if peak else None,
            energy_j=_sum([c.energy_j for _r, c in energy_runs]) if energy_runs else None,
            energy_items=sum(new_items.get((r.id, model), 0) for r, _c in energy_runs),
            energy_method=method, watts_assumed=watts[0] if len(watts) == 1 else None,
            cpu_s=_sum([c.cpu_s for _r, c in costs]) if costs else None,
            wall_s=_sum([c.wall_s for _r, c in costs]) if costs else None,
            p50_ms=_quantile(walls, 50), p90_ms=_quantile(walls, 90), latency_items=len(walls),
            mc_tokens_per_s=_rate(_sum([it.eval_tokens for it in mc]), _sum([it.wall_ms for it in mc])),
            decode_tokens_per_s=_rate(_sum([it.gen_tokens for it in gen]), _sum([it.decode_ms for it in gen])),
            prefill_tokens_per_s=_rate(
                _sum([(it.prompt_tokens or 0) - (it.reused_tokens or 0) for it in gen]),
                _sum([it.prefill_ms for it in gen])),
            accuracy=statistics.fmean(accs) if accs else None, accuracy_tasks=len(accs),
        ))
    return out, acc_label


def cost_axes(costs: Sequence[ModelCost]) -> list[CostAxis]:
    """The accuracy-versus-cost plots that have data: latency, memory, energy, file size."""
    def axis(key: str, title: str, unit: str, get: Callable[[ModelCost], float | None],
             note: str = "") -> CostAxis | None:
        pts = [(c.model, get(c), c.accuracy) for c in costs]
        full = [(m, x, y) for m, x, y in pts if x is not None and y is not None]
        if not full:
            return None
        ms, xs, ys = zip(*full)
        front = pareto_front(xs, ys)
        return CostAxis(key, title, unit, tuple(ms), tuple(float(x) for x in xs),
                        tuple(float(y) for y in ys), tuple(ms[i] for i in front), note)

    estimate = any(c.energy_is_estimate for c in costs if c.energy_j is not None)
    watts = sorted({c.watts_assumed for c in costs if c.watts_assumed is not None})
    energy_title = "Energy per item (ESTIMATE)" if estimate else "Energy per item (RAPL)"
    energy_note = (f"Estimated, not measured: process CPU seconds x {', '.join(f'{w:g}' for w in watts) or 'assumed'} W "
                   "per busy core, spread over the items the model evaluated (model load included)."
                   if estimate else "Measured with RAPL (CPU package energy), spread over the items "
                   "the model evaluated (model load included).")
    axes = [
        axis("latency", "p50 item latency", "ms", lambda c: c.p50_ms,
             "Median wall time per item, over the items of the accuracy tasks."),
        axis("memory", "Peak memory (process RSS)", "MiB",
             lambda c: c.peak_rss_bytes / 2**20 if c.peak_rss_bytes else None,
             "Peak resident memory of the evaluating process while the model was loaded and run."),
        axis("energy", energy_title, "J", lambda c: c.energy_per_item_j, energy_note),
        axis("size", "Model file size", "MiB",
             lambda c: c.size_bytes / 2**20 if c.size_bytes else None, "GGUF file size on disk."),
    ]
    return [a for a in axes if a is not None]
