"""Render a `Report` as Markdown, for terminals and CI logs: leaderboard, gaps, cost, device.

Table cells are escaped for Markdown (pipes, newlines); there are no prompts or outputs here,
only names and numbers, so the text stays short.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence

from .model import LOWER_IS_BETTER, Report, lang_key


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
        r = report.routing
        cur = r["profile"].get("currency", "")
        out += ["## Routing: device, cloud or cascade", "",
                f"Device {r['device']}, cloud {r['cloud']}, target accuracy {r['min_accuracy']:.2f}; chosen on the "
                "calibration half, measured on the test half"
                + (" (cost profile marked illustrative)." if r["profile"].get("illustrative") else "."), ""]
        rows = []
        for d in r["decisions"]:
            c = d["chosen"]
            act = c["action"] + (f" t={c['threshold']:.3f}" if c["action"] == "cascade" else "")
            rows.append([d["task"], d["lang"], f"{d['n_calib']}/{d['n_test']}", f"{d['device']['accuracy']:.3f}",
                         f"{d['cloud']['accuracy']:.3f}", act + ("" if d["meets_target"] else " (below target)"),
                         _score(c["accuracy"], c["ci_low"], c["ci_high"], False), f"{c['cloud_share']:.0%}",
                         f"{c['monthly_cost']:,.2f} {cur}".strip(),
                         "never" if d.get("break_even_volume") is None else f"{d['break_even_volume']:,.0f}"])
        out += _table(["task", "lang", "n cal/test", "device", "cloud", "recommendation", "accuracy",
                       "cloud share", "monthly", "break-even/mo"], rows, ["l", "l", "r", "r", "r", "l", "r", "r", "r", "r"])
        out.append("")

    out += ["## Cost (same forward passes)", ""]
    if report.costs:
        estimate = any(c.energy_is_estimate for c in report.costs if c.energy_j is not None)
        if report.accuracy_label:
            out += [f"Accuracy: {report.accuracy_label}. Pareto front = no other model both cheaper and at "
                    "least as accurate.", ""]
        rows = []
        for c in report.costs:
            est = " (estimate)" if c.energy_is_estimate else ""
            rows.append([
                c.model, c.file_type, f"{c.size_bytes / 2**20:,.0f} MiB" if c.size_bytes else "",
                f"{c.accuracy:.3f}" if c.accuracy is not None else "",
                f"{c.p50_ms:,.0f} ms" if c.p50_ms is not None else "",
                f"{c.peak_rss_bytes / 2**20:,.0f} MiB" if c.peak_rss_bytes else "",
                f"{c.energy_per_item_j:,.2f} J{est}" if c.energy_per_item_j is not None else "",
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

    out += ["## Device", ""]
    for fid, d in report.devices.items():
        runs = ", ".join(str(r.id) for r in report.runs if r.device_id == fid)
        ram = f"{d['total_ram_bytes'] / 2**30:.1f} GiB" if d.get("total_ram_bytes") else "?"
        out.append(f"- `{fid}` (runs {runs}): {d.get('cpu_model', '?')}, "
                   f"{', '.join(d.get('cpu_flags', []) or [])}; {d.get('physical_cores')} cores, "
                   f"{d.get('n_threads')} threads; {ram} RAM; {d.get('os', '')}; "
                   f"llama-cpp-python {d.get('llama_cpp_python_version', '?')}")
    energy = []
    for r in report.runs:
        for m, c in sorted(r.cost.items()):
            if not isinstance(c, dict):
                continue
            method = c.get("energy_method")
            how = ("measured (RAPL)" if method == "rapl" else
                   f"ESTIMATE: {c.get('cpu_s', 0):.1f} CPU s x {c.get('watts_assumed')} W/core assumed"
                   if method == "estimate" else str(method))
            j = c.get("energy_j")
            energy.append([r.id, m, f"{j:,.0f} J" if j is not None else "", how])
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
