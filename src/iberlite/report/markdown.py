"""Render a `Report` as Markdown, for terminals and CI logs: leaderboard, gaps, cost, device.

Table cells are escaped for Markdown (pipes, newlines); there are no prompts or outputs here,
only names and numbers, so the text stays short.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence

from iberlite.analysis.adaptation import curve_sentence
from iberlite.analysis.fewshot import sentence
from iberlite.decide.prices import money
from iberlite.langs import lang_key
from iberlite.report.sections import Report
from iberlite.scoring.metric import LOWER_IS_BETTER


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def _table(head: Sequence[str], rows: Sequence[Sequence[object]], align: Sequence[str] = ()) -> list[str]:
    aligns = list(align) + ["l"] * (len(head) - len(align))
    sep = ["---:" if a == "r" else "---" for a in aligns]
    out = ["| " + " | ".join(_cell(h) for h in head) + " |", "| " + " | ".join(sep) + " |"]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


def _score(value: float, lo: float, hi: float, pct: bool) -> str:
    if pct:
        return f"{value:.1f} [{lo:.1f}, {hi:.1f}]"
    return f"{value:.2f} [{lo:.2f}, {hi:.2f}]"


def render_markdown(report: Report) -> str:
    """The report as one Markdown document."""
    out: list[str] = ["# iberlite report", ""]
    when = _dt.datetime.fromtimestamp(report.generated_at).strftime("%Y-%m-%d %H:%M:%S")
    out.append(f"Database `{report.db_path}`, generated {when}. Models: {', '.join(report.models) or 'none'}; "
               f"languages: {', '.join(report.langs) or 'none'}; runs: {len(report.runs)}.")
    out.append("")
    if report.is_sample_suite:
        out += ["> **Sample suite**: the project's smoke test, not a benchmark.", ""]
    for note in report.notes:
        out += [f"> {note}", ""]

    out += ["## Leaderboard", "",
            "Score with its 95% bootstrap CI; BLEU/chrF/TER on 0-100 (TER lower is better), the rest 0-1.", ""]
    keys: dict[tuple[str, str, str, int], dict[str, str]] = {}
    for s in report.scores:
        key = (s.task, s.lang, s.metric, s.n)
        keys.setdefault(key, {})[s.model] = _score(s.value, s.ci_low, s.ci_high, s.percent_scale)
    order = sorted(keys, key=lambda k: (k[0], lang_key(k[1]), k[2], k[3]))
    rows = [[t, lg, m + (" (lower better)" if m in LOWER_IS_BETTER else ""), n,
             *[keys[(t, lg, m, n)].get(model, "") for model in report.models]]
            for (t, lg, m, n) in order]
    if rows:
        out += _table(["task", "lang", "metric", "n", *report.models], rows,
                      ["l", "l", "l", "r", *["r"] * len(report.models)])
    else:
        out.append("No results stored yet.")
    out.append("")

    out += ["## Language gaps (language minus Spanish)", ""]
    if report.gaps:
        out += ["Paired bootstrap over shared documents when the tasks are parallel, otherwise unpaired; "
                "`*` = 95% interval excludes 0 (no multiple-comparison correction).", ""]
        rows = []
        for g in report.gaps:
            t = g.test
            pct = g.percent_scale
            f = (lambda v: f"{v:.1f}") if pct else (lambda v: f"{v:.2f}")
            gap = (f"{t.gap:+.1f}" if pct else f"{t.gap:+.2f}") + (" *" if t.significant else "")
            rows.append([g.model, g.template, g.metric, g.lang, f(t.base), f(t.other), gap,
                         f"[{f(t.ci_low)}, {f(t.ci_high)}]", f"{t.p_value:.3f}",
                         f"paired ({t.n_pairs})" if t.paired else f"UNPAIRED ({t.n_base}/{t.n_other})"])
        out += _table(["model", "task", "metric", "lang", "es", "lang score", "gap", "95% CI", "p", "test"],
                      rows, ["l", "l", "l", "l", "r", "r", "r", "r", "r", "l"])
    else:
        out.append("No gaps: a task family needs Spanish and another language for the same model.")
    out.append("")

    if report.routing:
        rt = report.routing
        cur = rt.currency
        out += ["## Routing: device, cloud or cascade", "",
                f"Device {rt.device}, cloud {rt.cloud}, target accuracy {rt.min_accuracy:.2f}; chosen on the "
                "calibration half, measured on the test half"
                + (" (cost profile marked illustrative)." if rt.illustrative else "."), ""]
        rows = []
        for dec in rt.decisions:
            ch = dec.chosen
            act = ch.action + (f" t={ch.threshold:.3f}" if ch.action == "cascade" and ch.threshold is not None else "")
            act += f" ({dec.candidate})" if dec.candidates else ""
            rows.append([dec.task, dec.lang, f"{dec.n_calib}/{dec.n_test}", f"{dec.device.accuracy:.3f}",
                         f"{dec.cloud.accuracy:.3f}", act + ("" if dec.meets_target else " (below target)"),
                         _score(ch.accuracy, ch.ci_low, ch.ci_high, False), f"{ch.cloud_share:.0%}",
                         money(ch.monthly_cost, cur),
                         "never" if dec.break_even_volume is None else f"{dec.break_even_volume:,.0f}"])
        out += _table(["task", "lang", "n cal/test", "device", "cloud", "recommendation", "accuracy",
                       "cloud share", "monthly", "break-even/mo"], rows, ["l", "l", "r", "r", "r", "l", "r", "r", "r", "r"])
        out += ["", *[f"- {m}" for m in rt.moves]] if rt.moves else []
        out += ["", *[f"- {m}" for m in rt.labelling]] if rt.labelling else []
        out.append("")

    out += ["## Cost (same forward passes)", ""]
    if report.costs:
        estimate = any(mc.energy_is_estimate for mc in report.costs if mc.energy_j is not None)
        if report.accuracy_label:
            out += [f"Accuracy: {report.accuracy_label}. Pareto front = no other model both cheaper and at "
                    "least as accurate.", ""]
        rows = []
        for mc in report.costs:
            est = " (estimate)" if mc.energy_is_estimate else ""
            rows.append([
                mc.model, mc.file_type, f"{mc.size_bytes / 2**20:,.0f} MiB" if mc.size_bytes else "",
                f"{mc.accuracy:.3f}" if mc.accuracy is not None else "",
                f"{mc.p50_ms:,.0f} ms" if mc.p50_ms is not None else "",
                f"{mc.peak_rss_bytes / 2**20:,.0f} MiB" if mc.peak_rss_bytes else "",
                f"{mc.energy_per_item_j:,.2f} J{est}" if mc.energy_per_item_j is not None else "",
            ])
        out += _table(["model", "quant", "file", "accuracy", "p50 item", "peak RSS", "energy / item"], rows,
                      ["l", "l", "r", "r", "r", "r", "r"])
        out.append("")
        for axis in report.cost_axes:
            out.append(f"- Pareto front on {axis.title.lower()}: {', '.join(axis.front)}")
        if estimate:
            out += ["", "**Energy is an ESTIMATE** (process CPU seconds x assumed watts per busy core), "
                    "not a measurement."]
    else:
        out.append("No cost recorded.")
    out.append("")

    out += _quantization(report)
    out += _fewshot(report)
    out += _adaptation(report)
    for a in report.advice:
        out += [f"## Fastest format on this CPU: {a.family}", "", a.sentence, ""]
        out += _table(["format", "bits/w", "scoring tok/s", "gen tok/s", "check right", f"agrees with {a.reference}"],
                      [[c.label, f"{c.bits_per_weight:.2f}", f"{c.pp_tokens_per_s:.0f}", f"{c.tg_tokens_per_s:.1f}",
                        f"{c.check_correct}/{c.check_items}", f"{c.check_agree}/{c.check_items}"]
                       for c in a.candidates], ["l", "r", "r", "r", "r", "r"])
        out.append("")
    out += ["## Device", ""]
    for fid, dev in report.devices.items():
        runs = ", ".join(str(r.id) for r in report.runs if r.device_id == fid)
        ram = f"{dev['total_ram_bytes'] / 2**30:.1f} GiB" if dev.get("total_ram_bytes") else "?"
        out.append(f"- `{fid}` ({f'runs {runs}' if runs else 'a Ray worker'}): {dev.get('cpu_model', '?')}, "
                   f"{', '.join(dev.get('cpu_flags', []) or [])}; {dev.get('physical_cores')} cores, "
                   f"{dev.get('n_threads')} threads; {ram} RAM; {dev.get('os', '')}; "
                   f"llama-cpp-python {dev.get('llama_cpp_python_version', '?')}")
    if report.class_costs:
        out += ["", "Device classes (items pinned to a kind of device; latency per item):", ""]
        out += _table(["class", "model", "task", "lang", "n", "p50 ms", "p95 ms", "prefill tok/s", "decode tok/s",
                       "devices"],
                      [[r.device_class or "", r.model, r.task, r.lang, str(r.n), f"{r.latency_p50_ms:,.0f}",
                        f"{r.latency_p95_ms:,.0f}", _num(r.prefill_tokens_per_s, ",.0f"), _num(r.decode_tokens_per_s, ",.0f"),
                        f"`{r.devices}`"] for r in report.class_costs],
                      ["l", "l", "l", "l", "r", "r", "r", "r", "r", "l"])
    if report.item_time:
        out += ["", "Where an item's time goes (generation tasks; prefill share = prompt time over the "
                "items' time; TTFT and token counts are medians per item):", ""]
        out += _table(["model", "task", "lang", "n", "TTFT p50 ms", "prefill share", "prompt tok", "gen tok",
                       "p50 ms", "decode tok/s"],
                      [[r.model, r.task, r.lang, str(r.n), _num(r.ttft_p50_ms, ",.0f"), _num(r.prefill_share, ".0%"),
                        _num(r.prompt_tokens_p50, ",.0f"), _num(r.gen_tokens_p50, ",.0f"),
                        f"{r.latency_p50_ms:,.0f}", _num(r.decode_tokens_per_s, ",.0f")] for r in report.item_time],
                      ["l", "l", "l", "r", "r", "r", "r", "r", "r", "r"])
    if report.engine_setups:
        out += ["", "How llama.cpp ran (weight buffers, scoring layout; approx = not exact here):", ""]
        out += _table(["model", "threads", "scoring", "buffers", "SIMD", "layout"],
                      [[s.model, str(s.n_threads), s.scoring, s.buffers or "?", s.simd or "?",
                        f"`{s.layout}`" if s.layout else "?"] for s in report.engine_setups])
    energy = []
    for run in report.runs:
        for m, cost in sorted(run.costs.items()):
            method = cost.energy_method
            how = ("measured (RAPL)" if method == "rapl" else
                   f"ESTIMATE: {cost.cpu_s or 0:.1f} CPU s x {cost.watts_assumed} W/core assumed"
                   if method == "estimate" else str(method))
            j = cost.energy_j
            energy.append([run.id, m, f"{j:,.0f} J" if j is not None else "", how])
    if energy:
        out += ["", "Energy by run:", ""]
        out += _table(["run", "model", "energy", "how it was obtained"], energy, ["r", "l", "r", "l"])
    out.append("")
    if report.benches:
        out += ["Engine ceilings (tokens/s):", ""]
        out += _table(["model", "test", "median", "min", "max"],
                      [[b.model, b.test, f"{b.median:,.1f}", f"{b.min:,.1f}", f"{b.max:,.1f}"]
                       for b in report.benches], ["l", "l", "r", "r", "r"])
    else:
        out.append("No engine-ceiling benchmarks stored.")
    out.append("")
    return "\n".join(out)


def _num(v: float | None, spec: str) -> str:
    return "" if v is None else format(v, spec)


def _quantization(report: Report) -> list[str]:
    """Per model with variants: advice, cost per variant, differences and language tests."""
    if not report.quantization:
        return []
    out = ["## Quantization: what every bit costs", "",
           "Scores on 0-100; differences to the reference (most bits per weight, a requantized file "
           "counted at no more than its source) are paired bootstraps; the language test is "
           "(variant - reference) in the language minus the same in Spanish.", ""]
    for st in report.quantization:
        out += [f"### {st.family}", "", f"**{st.advice}**", ""]
        rows = [[v.label + (" (reference)" if v.model == st.reference else ""), _num(v.bits_per_weight, ".2f"),
                 _num(v.size_bytes / 2**20 if v.size_bytes else None, ".0f"), _num(v.pp_tokens_per_s, ".0f"),
                 _num(v.tg_tokens_per_s, ".1f"), _num(v.mc_items_per_s, ".2f"), _num(v.gen_items_per_s, ".2f"),
                 _num(v.peak_rss_bytes / 2**20 if v.peak_rss_bytes else None, ".0f"),
                 _num(v.energy_per_item_j, ".2f"), _num(v.mean_score, ".1f"),
                 "yes" if v.model in st.front else ""] for v in st.variants]
        out += _table(["variant", "bits/w", "MiB", "pp512", "tg128", "items/s MC", "items/s gen",
                       "peak RSS MiB", "J/item", "mean score", "Pareto"], rows,
                      ["l", *["r"] * 9, "l"])
        out.append("")
        rows = []
        for v in st.variants:
            for sc in v.scores:
                d = sc.diff_points
                verdict = ("" if sc.diff is None else "worse" if sc.diff.significant and d and d[0] < 0
                           else "better" if sc.diff.significant else "n.s.")
                rows.append([v.model, sc.task, sc.metric, f"{sc.value:.1f} [{sc.ci_low:.1f}, {sc.ci_high:.1f}]",
                             f"{d[0]:+.1f} [{d[1]:+.1f}, {d[2]:+.1f}]" if d else "reference",
                             _num(sc.diff.p_value if sc.diff else None, ".3f"), verdict])
        out += _table(["variant", "task", "metric", "score [95% CI]", "vs reference", "p", ""], rows,
                      ["l", "l", "l", "r", "r", "r", "l"])
        out.append("")
        if st.loss_tests:
            rows = [[t.model, t.template, t.lang, f"{t.loss_base:+.1f}", f"{t.loss_lang:+.1f}",
                     f"{t.test.gap:+.1f} [{t.test.ci_low:+.1f}, {t.test.ci_high:+.1f}]",
                     f"{t.test.p_value:.3f}",
                     f"{t.lang} loses more" if t.loses_more else "es loses more" if t.test.significant else "n.s."]
                    for t in st.loss_tests]
            out += _table(["variant", "task", "lang", "loss es", "loss lang", "difference [95% CI]", "p", ""],
                          rows, ["l", "l", "l", "r", "r", "r", "r", "l"])
            out.append("")
    return out


def _fewshot(report: Report) -> list[str]:
    """Accuracy at each k, the paired gain over zero-shot, and what an item cost."""
    if not report.shots:
        return []
    zeros = {(s.model, s.task): s for s in report.shots if s.k == 0}
    out = ["## Few-shot: what shots buy and cost", "",
           "Per-item shots are lm-eval 0.4.13's (drawn per item); fixed shots are one seeded set "
           "whose KV the engine computes once (a different experiment). Gain: paired bootstrap over "
           "the items both evaluations answered. Cost per item: prefill tokens computed (a kept "
           "prefix counted once), p50 wall time, items per second.", ""]
    out += [f"- {sentence(s, zeros.get((s.model, s.task)))}" for s in report.shots if s.k]
    out.append("")
    rows = []
    for s in report.shots:
        gain = (f"{s.gain * 100:+.1f} [{(s.gain_low or 0) * 100:+.1f}, {(s.gain_high or 0) * 100:+.1f}]"
                if s.gain is not None else "-")
        rows.append([s.model, s.task, s.k, s.mode, s.n, _score(s.acc, s.acc_low, s.acc_high, False), gain,
                     f"{s.prefill_tokens:.0f}", f"{s.p50_ms:.0f}", f"{s.items_per_s:.1f}"])
    out += _table(["model", "task", "k", "mode", "n", "acc [95% CI]", "vs k=0 (points)", "tok/item",
                   "p50 ms", "items/s"], rows, ["l", "l", "r", "l", "r", "r", "r", "r", "r", "r"])
    out.append("")
    return out


def _adaptation(report: Report) -> list[str]:
    """Score against adapter training examples, the paired difference to the base, the
    training cost and the run-time overhead; one sentence per base model and task."""
    if not report.adaptation:
        return []
    out = ["## How much local data is enough", "",
           "Each base model (0 examples, zero-shot) and its LoRA adapters trained for the task "
           "(`iberlite adapt --curve`), on the task's primary metric with its 95% bootstrap CI. "
           "Δ vs base: paired bootstrap over the items both answered, in points (`*` = the interval "
           "excludes 0). Training: the adapter's one-off wall time, CPU time and peak RSS. Overhead: "
           "p50 latency per item with the adapter against without, on the same items, from passes run "
           "at different times (on a busy machine it shows load too; `benchmarks/adapt_curve.py "
           f"--overhead-items` times them interleaved). Target: "
           f"{report.adapt_target:.2f} (decide's default --min-accuracy; `iberlite adapt --curve "
           "--target-score` asks for another).", ""]
    out += [f"- {curve_sentence(c, report.adapt_target)}" for c in report.adaptation]
    out.append("")
    rows = []
    for c in report.adaptation:
        for p in c.points:
            pct = p.percent_scale
            diff = ("base" if p.adapter is None else "-" if p.diff_points is None else
                    f"{p.diff_points:+.1f} [{(p.diff_low or 0) * (1 if pct else 100):+.1f}, "
                    f"{(p.diff_high or 0) * (1 if pct else 100):+.1f}]{' *' if p.significant else ''}")
            t = p.training
            train = "" if p.adapter is None else "-" if t is None else \
                f"{t.seconds:,.0f} s ({t.cpu_seconds:,.0f} CPU s, {t.peak_rss_bytes / 2**30:.1f} GiB)"
            over = p.latency_overhead
            rows.append([p.model, p.task, p.examples, p.metric, _score(p.score, p.ci_low, p.ci_high, pct), diff,
                         train, "" if over is None else f"{over:+.0%} p50",
                         _num(p.items_per_s, ".1f")])
    out += _table(["model", "task", "examples", "metric", "score [95% CI]", "Δ vs base (points)", "training",
                   "overhead", "items/s"], rows, ["l", "l", "r", "l", "r", "r", "r", "r", "r"])
    out.append("")
    return out
