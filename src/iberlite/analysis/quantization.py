"""What every bit costs: the variants of one model (``MODEL`` and ``MODEL@TYPE``) side by side.

Per family (a model and the variants made from it, see :mod:`iberlite.models.quantize`):

* **Reference.** The variant with the most bits per weight, counting a variant requantized from
  an already quantized file at no more than its source (SmolLM2 ships as Q4_1: its Q8_0 holds
  the Q4_1 weights re-rounded, not more precise ones). On a tie the file that was not
  requantized wins.
* **Score per task and language** (the task's primary metric, with its stored 95% CI) and its
  difference to the reference: a paired bootstrap over the items both evaluated
  (:func:`language_gap.paired_bootstrap`; chrF from per-sentence statistics).
* **Does a language lose more than Spanish?** For each variant, task family and language L,
  the difference in differences ``(v_L - ref_L) - (v_es - ref_es)``: negative when L loses more.
  One bootstrap resample draws the documents once (the same documents in both languages when
  the tasks are parallel, as XStoryCloze and FLORES are; each language alone otherwise) and
  scores all four (variant, language) cells on them.
* **Cost** on the report's cost device: file size, bits per weight, pp512/tg128 from
  ``iberlite bench``, items/s (scoring and generation, from the items' engine time), peak RSS
  and energy per item (:mod:`model_cost`), and the Pareto front of seconds per item against
  the mean score.
* **Advice**: the fastest variant whose score is not significantly below the reference's on
  any task and language, in one sentence.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from iberlite.analysis import language_gap as lg
from iberlite.analysis.gaps import gap_metric, item_values, task_template
from iberlite.analysis.model_summary import ModelCost
from iberlite.analysis.pareto import pareto_front
from iberlite.langs import REFERENCE_LANG, lang_key
from iberlite.models.model_file import family_of, variant_label
from iberlite.scoring.metric import percent_scale
from iberlite.store import BenchRecord, EvalRecord, ItemRecord


@dataclass(frozen=True)
class VariantScore:
    """A variant's primary score on one task, and its paired difference to the reference."""

    task: str
    template: str
    lang: str
    metric: str
    value: float  # on 0-100 (accuracy in percent)
    ci_low: float
    ci_high: float
    n: int
    diff: lg.GapTest | None  # variant minus reference, in the metric's own units; None for the reference

    @property
    def diff_points(self) -> tuple[float, float, float] | None:
        """The difference to the reference and its 95% CI on 0-100 (accuracy points, chrF)."""
        if self.diff is None:
            return None
        k = _scale(self.metric)
        return self.diff.gap * k, self.diff.ci_low * k, self.diff.ci_high * k


@dataclass(frozen=True)
class Variant:
    """One variant of a family: what it is, how it scored, what it cost here."""

    model: str
    qtype: str
    quantized_from: str | None
    bits_per_weight: float | None
    size_bytes: int | None
    scores: tuple[VariantScore, ...]
    pp_tokens_per_s: float | None
    tg_tokens_per_s: float | None
    mc_items_per_s: float | None
    gen_items_per_s: float | None
    items_per_s: float | None
    peak_rss_bytes: int | None
    energy_per_item_j: float | None
    energy_is_estimate: bool

    @property
    def label(self) -> str:
        """``MODEL@TYPE (from Q4_1)`` for a variant made from a quantized file."""
        return variant_label(self.model, self.quantized_from)

    @property
    def mean_score(self) -> float | None:
        """Mean primary score over the family's shared tasks, on 0-100."""
        vals = [s.value for s in self.scores]
        return statistics.fmean(vals) if vals else None


@dataclass(frozen=True)
class LossTest:
    """Does `lang` lose more than Spanish going from the reference to `model` on `template`?"""

    model: str
    template: str
    metric: str
    lang: str
    loss_base: float  # reference minus variant in Spanish (positive = a loss), 0-100 scale
    loss_lang: float
    test: lg.GapTest  # gap = (v_L - r_L) - (v_es - r_es), 0-100 scale; negative: L loses more

    @property
    def loses_more(self) -> bool:
        """True when `lang` loses significantly more than Spanish (the interval is below 0)."""
        return self.test.ci_high < 0


@dataclass(frozen=True)
class FamilyStudy:
    """Every variant of one model, compared on the same tasks and the same device."""

    family: str
    reference: str
    variants: tuple[Variant, ...]  # by bits per weight, highest first
    tasks: tuple[str, ...]
    loss_tests: tuple[LossTest, ...]
    front: tuple[str, ...]  # Pareto front of seconds per item vs mean score
    advice: str


def _scale(metric: str) -> float:
    return 1.0 if percent_scale(metric) else 100.0


def _effective_bits(model: str, engines: Mapping[str, Mapping], family: str) -> float:
    e = engines[model]
    bits = float(e.get("bits_per_weight") or 0.0) or _approx_bits(e)
    if (e.get("extra") or {}).get("quantized_from") and family in engines:
        bits = min(bits, float(engines[family].get("bits_per_weight") or 0.0) or _approx_bits(engines[family]))
    return bits


def _approx_bits(engine: Mapping) -> float:
    size, n = engine.get("size_bytes") or 0, engine.get("n_params") or 0
    return size * 8 / n if n else 0.0


def _rate(n: int, ms: float) -> float | None:
    return n / ms * 1000.0 if n and ms > 0 else None


def did_bootstrap(ref_base: np.ndarray, var_base: np.ndarray, ref_lang: np.ndarray,
                  var_lang: np.ndarray, *, paired_langs: bool, score: lg.ScoreFn = lg.mean_score,
                  n_boot: int = lg.DEFAULT_N_BOOT, seed: int = lg.DEFAULT_SEED) -> lg.GapTest:
    """``(var_lang - ref_lang) - (var_base - ref_base)`` with its bootstrap interval.

    Within a language the variant and the reference are always scored on the same drawn items.
    With `paired_langs` the two languages' rows are aligned documents and share the draw too.
    Rows are per-item values or sufficient statistics, as in :mod:`language_gap`.
    """
    rb, vb, rl, vl = (lg._as_stats(x) for x in (ref_base, var_base, ref_lang, var_lang))
    if len(rb) != len(vb) or len(rl) != len(vl) or (paired_langs and len(rb) != len(rl)):
        raise ValueError("each variant must be scored on the same items as its reference")
    rng = np.random.default_rng(seed)
    cb = lg._resample_counts(rng, len(rb), n_boot)
    cl = cb if paired_langs else lg._resample_counts(rng, len(rl), n_boot)
    nb, nl = len(rb), len(rl)
    boot = ((score(cl @ vl, nl) - score(cl @ rl, nl)) - (score(cb @ vb, nb) - score(cb @ rb, nb)))

    def whole(x: np.ndarray, n: int) -> float:
        return float(score(x.sum(axis=0)[None, :], n)[0])

    base_diff = whole(vb, nb) - whole(rb, nb)
    lang_diff = whole(vl, nl) - whole(rl, nl)
    return lg._result(base_diff, lang_diff, boot, paired=paired_langs, n_base=nb, n_other=nl,
                      n_pairs=nb if paired_langs else 0, n_boot=n_boot, seed=seed)


def _aligned(ref: Sequence[ItemRecord], var: Sequence[ItemRecord]) -> tuple[list[ItemRecord], list[ItemRecord]]:
    """The items both evaluated, in document-id order (so a bootstrap draw is reproducible)."""
    by_id = {it.doc_id: it for it in var}
    pairs = [(it, by_id[it.doc_id]) for it in sorted(ref, key=lambda it: it.doc_id) if it.doc_id in by_id]
    return [a for a, _ in pairs], [b for _, b in pairs]


def quantization_studies(chosen: Mapping[tuple[str, str], EvalRecord],
                         items: Mapping[str, Sequence[ItemRecord]],
                         metrics_of: Mapping[tuple[str, str], set[str]],
                         primary: Mapping[tuple[str, str], tuple[str, float, float, float, int]],
                         costs: Sequence[ModelCost], benches: Sequence[BenchRecord], *,
                         n_boot: int = lg.DEFAULT_N_BOOT, seed: int = lg.DEFAULT_SEED) -> list[FamilyStudy]:
    """One study per family with at least two variants (see the module docstring).

    `chosen` is one evaluation per (model, task), `items` their items by eval key, `metrics_of`
    the metrics each (model, task) has scores for, `primary` the primary score of each (model,
    task) as (metric, value, ci_low, ci_high, n), `costs` the device cost per model and
    `benches` the latest pp/tg figure per (model, test).
    """
    by_family: dict[str, set[str]] = defaultdict(set)
    for model, _task in chosen:
        by_family[family_of(model)].add(model)
    out = []
    for family, models in sorted(by_family.items()):
        if len(models) < 2:
            continue
        study = _study(family, sorted(models), chosen, items, metrics_of, primary, costs, benches,
                       n_boot, seed)
        if study:
            out.append(study)
    return out


def _study(family: str, models: list[str], chosen, items, metrics_of, primary, costs, benches,
           n_boot: int, seed: int) -> FamilyStudy | None:
    engines = {m: max((ev for (mm, _t), ev in chosen.items() if mm == m), key=lambda e: e.created_at).engine
               for m in models}
    tasks = sorted(set.intersection(*({t for (mm, t) in chosen if mm == m} for m in models)))
    if not tasks:
        return None
    ref = max(models, key=lambda m: (_effective_bits(m, engines, family),
                                     not (engines[m].get("extra") or {}).get("quantized_from"), m == family))
    cost_of = {c.model: c for c in costs}
    bench_of = {(b.model, b.test): b.median for b in benches}

    values: dict[tuple[str, str], tuple[str, np.ndarray, lg.ScoreFn, list[ItemRecord]]] = {}
    for m in models:
        for t in tasks:
            ev = chosen[(m, t)]
            its = list(items[ev.eval_key])
            metric = gap_metric(ev, its, metrics_of.get((m, t), set()))
            if metric:
                vals, fn = item_values(metric, its)
                values[(m, t)] = (metric, vals, fn, its)

    variants = []
    for m in models:
        scores = []
        for t in tasks:
            ev = chosen[(m, t)]
            p = primary.get((m, t))
            if p is None:
                continue
            metric, value, lo, hi, n = p
            k = _scale(metric)
            diff = None
            if m != ref and (m, t) in values and (ref, t) in values and values[(m, t)][0] == values[(ref, t)][0]:
                diff = _paired_diff(values[(ref, t)], values[(m, t)], n_boot, seed)
            scores.append(VariantScore(t, task_template(t, ev.lang), ev.lang, metric, value * k, lo * k,
                                       hi * k, n, diff))
        e = engines[m]
        mc = [it for t in tasks if chosen[(m, t)].output == "multiple_choice" for it in items[chosen[(m, t)].eval_key]]
        gen = [it for t in tasks if chosen[(m, t)].output != "multiple_choice" for it in items[chosen[(m, t)].eval_key]]
        c = cost_of.get(m)
        variants.append(Variant(
            model=m, qtype=str(e.get("file_type", "")),
            quantized_from=(e.get("extra") or {}).get("quantized_from"),
            bits_per_weight=float(e.get("bits_per_weight") or 0.0) or _approx_bits(e) or None,
            size_bytes=e.get("size_bytes"), scores=tuple(scores),
            pp_tokens_per_s=bench_of.get((m, "pp512")), tg_tokens_per_s=bench_of.get((m, "tg128")),
            mc_items_per_s=_rate(len(mc), sum(it.wall_ms or 0.0 for it in mc)),
            gen_items_per_s=_rate(len(gen), sum(it.wall_ms or 0.0 for it in gen)),
            items_per_s=_rate(len(mc) + len(gen), sum(it.wall_ms or 0.0 for it in mc + gen)),
            peak_rss_bytes=c.peak_rss_bytes if c else None,
            energy_per_item_j=c.energy_per_item_j if c else None,
            energy_is_estimate=bool(c and c.energy_is_estimate),
        ))
    variants.sort(key=lambda v: (-(v.bits_per_weight or 0.0), v.model))
    secs = [1.0 / v.items_per_s if v.items_per_s else None for v in variants]
    front = tuple(variants[i].model for i in pareto_front(secs, [v.mean_score for v in variants]))
    loss = _loss_tests(ref, [v.model for v in variants], tasks, chosen, values, n_boot, seed)
    return FamilyStudy(family, ref, tuple(variants), tuple(tasks), tuple(loss), front,
                       advice(family, ref, variants))


def _paired_diff(ref: tuple, var: tuple, n_boot: int, seed: int) -> lg.GapTest:
    metric, _, fn, ref_items = ref
    _, _, _, var_items = var
    a_items, b_items = _aligned(ref_items, var_items)
    a, _ = item_values(metric, a_items)
    b, _ = item_values(metric, b_items)
    return lg.paired_bootstrap(a, b, score=fn, n_boot=n_boot, seed=seed)


def _loss_tests(ref: str, models: Sequence[str], tasks: Sequence[str], chosen, values, n_boot: int,
                seed: int) -> list[LossTest]:
    by_template: dict[str, dict[str, str]] = defaultdict(dict)
    for t in tasks:
        ev = chosen[(ref, t)]
        by_template[task_template(t, ev.lang)][ev.lang] = t
    out = []
    for template, by_lang in sorted(by_template.items()):
        base_task = by_lang.get(REFERENCE_LANG)
        if base_task is None or "{lang}" not in template or (ref, base_task) not in values:
            continue
        metric = values[(ref, base_task)][0]
        k = _scale(metric)
        for lang in sorted(by_lang, key=lang_key):
            task = by_lang[lang]
            if lang == REFERENCE_LANG or (ref, task) not in values:
                continue
            for m in models:
                if m == ref or (m, base_task) not in values or (m, task) not in values:
                    continue
                test = _did(values, ref, m, base_task, task, chosen, n_boot, seed)
                if test is None:
                    continue
                test = _scaled(test, k)
                out.append(LossTest(m, template, metric, lang, -test.base, -test.other, test))
    return out


def _did(values, ref: str, model: str, base_task: str, task: str, chosen, n_boot: int,
         seed: int) -> lg.GapTest | None:
    metric, _, fn, rb_items = values[(ref, base_task)]
    _, _, _, vb_items = values[(model, base_task)]
    _, _, _, rl_items = values[(ref, task)]
    _, _, _, vl_items = values[(model, task)]
    rb, vb = _aligned(rb_items, vb_items)
    rl, vl = _aligned(rl_items, vl_items)
    base_lang, lang = chosen[(ref, base_task)].lang, chosen[(ref, task)].lang
    pairs = lg.pair_items([lg.neutral_id(it.doc_id, base_lang) for it in rb],
                          [lg.neutral_id(it.doc_id, lang) for it in rl])
    paired = pairs is not None
    if pairs is not None:
        ia, ib = zip(*pairs)
        rb, vb = [rb[i] for i in ia], [vb[i] for i in ia]
        rl, vl = [rl[j] for j in ib], [vl[j] for j in ib]
    if not rb or not rl:
        return None
    arrays = [item_values(metric, x)[0] for x in (rb, vb, rl, vl)]
    return did_bootstrap(*arrays, paired_langs=paired, score=fn, n_boot=n_boot, seed=seed)


def _scaled(t: lg.GapTest, k: float) -> lg.GapTest:
    from dataclasses import replace

    return replace(t, base=t.base * k, other=t.other * k, gap=t.gap * k, ci_low=t.ci_low * k,
                   ci_high=t.ci_high * k)


def advice(family: str, ref: str, variants: Sequence[Variant]) -> str:
    """One sentence: the fastest variant not significantly worse than the reference anywhere."""
    def worse(v: Variant) -> list[VariantScore]:
        return [s for s in v.scores if s.diff is not None and s.diff.ci_high < 0]

    ok = [v for v in variants if not worse(v) and v.items_per_s]
    by_model = {v.model: v for v in variants}
    if not ok:
        return f"{family}: no variant has a recorded speed here, so none can be advised yet."
    best = max(ok, key=lambda v: (v.items_per_s or 0.0, -(v.size_bytes or 0)))
    r = by_model[ref]
    n_pairs = len(best.scores)
    drops = [(s.diff_points[0], s) for s in best.scores if s.diff_points is not None]
    worst = min(drops, key=lambda d: d[0]) if drops else None
    speed = (f"{best.items_per_s / r.items_per_s:.2f}x the items/s of {r.label}"
             if best.model != ref and r.items_per_s and best.items_per_s else
             f"{best.items_per_s:.2f} items/s")
    size = f", {best.size_bytes / 2**20:.0f} MiB" if best.size_bytes else ""
    if best.model == ref:
        return (f"Ship {best.label} on this device: it is the reference and no variant is both faster "
                f"and not significantly worse on all {n_pairs} task-language pairs ({speed}{size}).")
    detail = (f"; its largest drop is {worst[0]:+.1f} points on {worst[1].task}" if worst else "")
    n_worse = sum(1 for v in variants if worse(v))
    return (f"Ship {best.label} on this device: {speed}{size}, with no significant loss against "
            f"{r.label} on any of {n_pairs} task-language pairs{detail}"
            f" ({n_worse} of {len(variants) - 1} other variants lose significantly somewhere).")
