"""Render a `Report` as ONE self-contained HTML page.

Everything the page needs is inside the file: the CSS, a few lines of our own JavaScript
(table sort, filters) and plotly.js itself (`plotly.offline.get_plotlyjs()`), so the page opens
offline and makes no network request. Every piece of text that comes from the database (task
names, prompts, model outputs, model names, commands) goes through `html.escape`; figure data
travels as JSON inside ``<script type="application/json">`` with ``<``, ``>`` and ``&`` escaped.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from .model import (
    LANG_NAMES,
    LOWER_IS_BETTER,
    Browser,
    BrowserItem,
    CostAxis,
    Gap,
    ModelCost,
    Report,
    Score,
    lang_key,
)

PALETTE = ("#2563eb", "#e4572e", "#17a673", "#9c51b6", "#d4a017", "#0e9aa7", "#db2777", "#65a30d")
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"


def e(value: Any) -> str:
    """HTML-escape any value (None becomes an empty string)."""
    return html.escape("" if value is None else str(value), quote=True)


def _ts(t: float | None) -> str:
    if not t:
        return ""
    return _dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def _fmt_score(value: float, percent_scale: bool) -> str:
    return f"{value:.1f}" if percent_scale else f"{value:.2f}"


def _fmt_ci(lo: float, hi: float, percent_scale: bool) -> str:
    return f"[{_fmt_score(lo, percent_scale)}, {_fmt_score(hi, percent_scale)}]"


def _fmt_gap(value: float, percent_scale: bool) -> str:
    return f"{value:+.1f}" if percent_scale else f"{value:+.2f}"


def _mib(b: float | None) -> str:
    return "" if b is None else f"{b / 2**20:,.0f} MiB"


def _num(v: float | None, fmt: str = "{:,.1f}", unit: str = "") -> str:
    return "" if v is None else fmt.format(v) + unit


def _template_label(template: str) -> str:
    return template.replace("{lang}", "‹lang›")


def _model_colors(models: Sequence[str]) -> dict[str, str]:
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models)}


# --- figures -----------------------------------------------------------------------------


class _Figures:
    """Collects plotly figures as JSON blobs; the page script draws them on load."""

    def __init__(self) -> None:
        self.n = 0

    def add(self, fig: Any, height: int, css: str = "") -> str:
        import plotly.utils

        self.n += 1
        fid = f"fig{self.n}"
        fig.update_layout(
            height=height, template="plotly_white", autosize=True,
            font={"family": FONT, "size": 12, "color": "#1f2937"},
            margin={"l": 56, "r": 16, "t": 44, "b": 48},
            hoverlabel={"font": {"family": FONT}},
        )
        blob = json.dumps(fig.to_plotly_json(), cls=plotly.utils.PlotlyJSONEncoder)
        blob = blob.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        return (f'<div class="plot"><div class="chart" id="{fid}" data-fig="{fid}-data" style="height:{height}px;{css}"></div>'
                f'<script type="application/json" id="{fid}-data">{blob}</script></div>')


def _go() -> Any:
    import plotly.graph_objects as go

    return go


def _scores_figure(figs: _Figures, template: str, scores: Sequence[Score], models: Sequence[str],
                   colors: dict[str, str], chance: float | None) -> str:
    go = _go()
    fig = go.Figure()
    langs = sorted({s.lang for s in scores}, key=lang_key)
    metric = scores[0].metric
    pct = scores[0].percent_scale
    for m in models:
        pts = {s.lang: s for s in scores if s.model == m}
        if not pts:
            continue
        xs = [lg for lg in langs if lg in pts]
        fig.add_trace(go.Bar(
            name=m, x=xs, y=[pts[x].value for x in xs], marker_color=colors[m],
            error_y={"type": "data", "symmetric": False, "color": "#475569", "thickness": 1.2,
                     "array": [pts[x].ci_high - pts[x].value for x in xs],
                     "arrayminus": [pts[x].value - pts[x].ci_low for x in xs]},
            customdata=[[e(pts[x].task), pts[x].n, _fmt_ci(pts[x].ci_low, pts[x].ci_high, pct)] for x in xs],
            hovertemplate=f"<b>{e(m)}</b><br>%{{customdata[0]}}<br>{e(metric)} %{{y:.3g}} "
                          "%{customdata[2]}<br>n=%{customdata[1]}<extra></extra>",
        ))
    if chance is not None and metric in ("acc", "acc_norm") and langs:
        fig.add_trace(go.Scatter(
            x=[-0.5, len(langs) - 0.5], y=[chance, chance], mode="lines", xaxis="x2",
            name=f"chance ({chance:.2f})", line={"dash": "dot", "color": "#64748b", "width": 1.2},
            hoverinfo="skip"))
        fig.update_layout(xaxis2={"overlaying": "x", "range": [-0.5, len(langs) - 0.5], "visible": False})
    fig.update_layout(
        title={"text": f"{e(_template_label(template))} · {e(metric)} (95% CI)", "font": {"size": 13}},
        barmode="group", bargap=0.25, showlegend=True,
        legend={"orientation": "h", "y": -0.18, "x": 0},
        yaxis={"range": [0, 100 if pct else 1.0], "title": {"text": metric}},
        xaxis={"categoryorder": "array", "categoryarray": langs},
    )
    return figs.add(fig, 300)


def _gap_figure(figs: _Figures, template: str, gaps: Sequence[Gap], models: Sequence[str],
                colors: dict[str, str]) -> str:
    go = _go()
    fig = go.Figure()
    langs = sorted({g.lang for g in gaps}, key=lang_key)
    pct = gaps[0].percent_scale
    offsets = {m: (i - (len(models) - 1) / 2) * 0.18 for i, m in enumerate(models)}
    for m in models:
        gs = [g for g in gaps if g.model == m]
        if not gs:
            continue
        xs = [langs.index(g.lang) + offsets[m] for g in gs]
        fig.add_trace(go.Scatter(
            name=m, x=[None], y=[None], mode="markers", legendgroup=m,
            marker={"color": colors[m], "size": 10, "line": {"color": colors[m], "width": 2}}))
        fig.add_trace(go.Scatter(
            name=m, x=xs, y=[g.test.gap for g in gs], mode="markers", legendgroup=m, showlegend=False,
            marker={"color": [colors[m] if g.test.significant else "white" for g in gs],
                    "line": {"color": colors[m], "width": 2}, "size": 11,
                    "symbol": ["circle" if g.test.paired else "diamond" for g in gs]},
            error_y={"type": "data", "symmetric": False, "color": colors[m], "thickness": 1.5,
                     "array": [g.test.ci_high - g.test.gap for g in gs],
                     "arrayminus": [g.test.gap - g.test.ci_low for g in gs]},
            customdata=[[e(g.lang), _fmt_ci(g.test.ci_low, g.test.ci_high, pct), f"{g.test.p_value:.3f}",
                         "paired" if g.test.paired else "UNPAIRED",
                         "significant" if g.test.significant else "not significant",
                         _fmt_score(g.test.base, pct), _fmt_score(g.test.other, pct)] for g in gs],
            hovertemplate=(f"<b>{e(m)}</b> · %{{customdata[0]}} − es<br>gap %{{y:+.3g}} %{{customdata[1]}}"
                           "<br>es %{customdata[5]} → %{customdata[6]}"
                           "<br>p=%{customdata[2]} (%{customdata[3]}, %{customdata[4]})<extra></extra>"),
        ))
    fig.add_trace(go.Scatter(name="filled: significant · hollow: n.s.", x=[None], y=[None], mode="markers",
                             marker={"color": "white", "size": 10, "line": {"color": "#64748b", "width": 2}}))
    if any(not g.test.paired for g in gaps):
        fig.add_trace(go.Scatter(name="unpaired test (documents differ)", x=[None], y=[None], mode="markers",
                                 marker={"color": "white", "size": 10, "symbol": "diamond",
                                         "line": {"color": "#b45309", "width": 2}}))
    fig.add_hline(y=0, line={"color": "#64748b", "width": 1})
    fig.update_layout(
        title={"text": f"{e(_template_label(template))} · {e(gaps[0].metric)}: language − Spanish",
               "font": {"size": 13}},
        showlegend=True, legend={"orientation": "h", "y": -0.18, "x": 0},
        xaxis={"tickmode": "array", "tickvals": list(range(len(langs))), "ticktext": langs,
               "range": [-0.6, len(langs) - 0.4], "zeroline": False},
        yaxis={"title": {"text": f"gap ({'points' if pct else 'accuracy'})"}, "zeroline": False},
    )
    return figs.add(fig, 300)


def _cost_figure(figs: _Figures, axis: CostAxis, colors: dict[str, str], acc_label: str) -> str:
    from ..analysis.pareto import front_steps

    go = _go()
    fig = go.Figure()
    idx = {m: i for i, m in enumerate(axis.models)}
    front_idx = [idx[m] for m in axis.front]
    if len(front_idx) > 1:
        xs, ys = front_steps(axis.costs, axis.accuracies, front_idx)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="Pareto front",
                                 line={"color": "#94a3b8", "dash": "dash", "width": 1.5, "shape": "linear"},
                                 hoverinfo="skip"))
    for m, x, y in zip(axis.models, axis.costs, axis.accuracies):
        on_front = m in axis.front
        fig.add_trace(go.Scatter(
            x=[x], y=[y], mode="markers+text", name=m, text=[e(m)], textposition="top center",
            textfont={"size": 11, "color": colors.get(m, "#333")},
            marker={"color": colors.get(m, "#333"), "size": 16 if on_front else 11,
                    "symbol": "star" if on_front else "circle",
                    "line": {"color": "#1f2937" if on_front else "white", "width": 1}},
            hovertemplate=(f"<b>{e(m)}</b><br>{e(axis.title)}: %{{x:,.3g}} {e(axis.unit)}<br>"
                           f"accuracy %{{y:.3f}}<br>{'on' if on_front else 'not on'} the Pareto front"
                           "<extra></extra>"),
            showlegend=False,
        ))
    ys_all = list(axis.accuracies)
    lo, hi = min(ys_all), max(ys_all)
    pad = max(0.05, (hi - lo) * 0.25)
    xs_all = list(axis.costs)
    xlo, xhi = min(xs_all), max(xs_all)
    xpad = max((xhi - xlo) * 0.2, abs(xhi) * 0.1, 1e-9)
    fig.update_layout(
        title={"text": f"Accuracy vs {e(axis.title)}", "font": {"size": 13}},
        xaxis={"title": {"text": f"{e(axis.title)} ({e(axis.unit)}) — lower is better"},
               "range": [max(0.0, xlo - xpad), xhi + xpad]},
        yaxis={"title": {"text": "accuracy"}, "range": [max(0.0, lo - pad), min(1.0, hi + pad)]},
        showlegend=len(front_idx) > 1, legend={"orientation": "h", "y": -0.25, "x": 0},
    )
    return figs.add(fig, 320)


# --- sections ----------------------------------------------------------------------------


def _ci_bar(s: Score) -> str:
    top = 100.0 if s.percent_scale else 1.0
    lo = max(0.0, min(1.0, s.ci_low / top)) * 100
    hi = max(0.0, min(1.0, s.ci_high / top)) * 100
    v = max(0.0, min(1.0, s.value / top)) * 100
    return (f'<div class="cibar" aria-hidden="true"><span class="ci" style="left:{lo:.1f}%;width:{max(hi - lo, 0.6):.1f}%"></span>'
            f'<span class="v" style="left:{v:.1f}%"></span></div>')


def _signature_html(sig: str) -> str:
    parts = "".join(f"<li>{e(p)}</li>" for p in sig.split("|"))
    return f'<details class="sig"><summary>signature</summary><ul>{parts}</ul></details>'


def _leaderboard(report: Report, figs: _Figures, colors: dict[str, str]) -> str:
    out = ['<section id="leaderboard" class="card"><h2>Leaderboard</h2>']
    out.append('<p class="lead">Score of every model on every task and language, with the 95% '
               'percentile-bootstrap interval over items (1000 resamples). BLEU, chrF and TER are on '
               '0–100, everything else on 0–1; TER is lower-is-better. Click a column header to sort; '
               'open <em>signature</em> to see exactly what a number measures (model file, quantization, '
               'engine, prompt, data, item count, seed, device).</p>')
    chance = {b.template: _chance(b) for b in report.browsers}
    by_template: dict[str, list[Score]] = defaultdict(list)
    for s in report.scores:
        if s.primary:
            by_template[s.template].append(s)
    charts = []
    for template in sorted(by_template):
        ss = by_template[template]
        metric = _majority(s.metric for s in ss)
        ss = [s for s in ss if s.metric == metric]
        if len({s.task for s in ss}) < 1:
            continue
        charts.append(_scores_figure(figs, template, ss, report.models, colors, chance.get(template)))
    if charts:
        out.append('<h3>Primary metric by language</h3><div class="grid2">' + "".join(charts) + "</div>")
    out.append('<h3>All scores</h3><div class="controls">'
               '<input type="search" id="lb-filter" placeholder="Filter rows (model, task, language, metric)…" '
               'aria-label="filter leaderboard">'
               '<label><input type="checkbox" id="lb-primary" checked> primary metric only</label>'
               '<span class="count" id="lb-count"></span></div>')
    out.append('<div class="tablewrap"><table class="sortable" id="lb"><thead><tr>'
               '<th data-type="text">Model</th><th data-type="text">Task</th><th data-type="text">Family</th>'
               '<th data-type="lang">Lang</th><th data-type="text">Metric</th><th data-type="num">n</th>'
               '<th data-type="num">Score</th><th data-type="num">95% CI</th><th class="nosort">CI on scale</th>'
               '<th class="nosort">What it is</th></tr></thead><tbody>')
    for s in report.scores:
        lower = " (lower is better)" if s.metric in LOWER_IS_BETTER else ""
        out.append(
            f'<tr data-primary="{1 if s.primary else 0}">'
            f'<td class="model"><span class="dot" style="background:{colors.get(s.model, "#333")}"></span>{e(s.model)}</td>'
            f'<td>{e(s.task)}</td><td>{e(s.family)}</td>'
            f'<td data-v="{lang_key(s.lang)[0]}">{e(s.lang)}</td><td>{e(s.metric)}{e(lower)}</td>'
            f'<td class="num" data-v="{s.n}">{s.n}</td>'
            f'<td class="num score" data-v="{s.value:.6f}" title="{e(s.signature)}">{_fmt_score(s.value, s.percent_scale)}</td>'
            f'<td class="num ci" data-v="{s.ci_high - s.ci_low:.6f}">{_fmt_ci(s.ci_low, s.ci_high, s.percent_scale)}</td>'
            f'<td>{_ci_bar(s)}</td><td>{_signature_html(s.signature)}</td></tr>')
    out.append("</tbody></table></div></section>")
    return "".join(out)


def _majority(values: Iterable[str]) -> str:
    counts: dict[str, int] = defaultdict(int)
    for v in values:
        counts[v] += 1
    return max(counts, key=lambda k: counts[k])


def _chance(b: Browser) -> float | None:
    ns = [len(it.choices) for it in b.items if it.choices]
    if not ns:
        return None
    return sum(1.0 / n for n in ns) / len(ns)


def _gaps(report: Report, figs: _Figures, colors: dict[str, str]) -> str:
    out = ['<section id="gaps" class="card"><h2>Language gaps (vs Spanish)</h2>']
    out.append(
        '<p class="lead">For each model and task family: each language\'s score minus the Spanish score '
        'on the same task. Where the tasks are parallel (the same documents in every language, matched by '
        'document id) the test is a <strong>paired bootstrap</strong>: each resample draws documents and '
        'scores both languages on the same ones. Where the documents differ the test falls back to an '
        '<strong>unpaired bootstrap</strong> and is labelled so (◆ in the charts, <em>unpaired</em> in the table). Filled markers: the 95% interval of the '
        'gap excludes 0. Accuracy gaps are in accuracy units, chrF gaps in chrF points. No correction '
        'for multiple comparisons: with many rows, expect about one false "significant" in twenty.</p>')
    if not report.gaps:
        out.append('<p class="empty">No gaps to show: a task family needs Spanish and at least one '
                   'other language for the same model.</p></section>')
        return "".join(out)
    by_template: dict[str, list[Gap]] = defaultdict(list)
    for g in report.gaps:
        by_template[g.template].append(g)
    out.append('<div class="grid2">')
    for template in sorted(by_template):
        out.append(_gap_figure(figs, template, by_template[template], report.models, colors))
    out.append("</div>")
    out.append('<div class="tablewrap"><table class="sortable" id="gaptable"><thead><tr>'
               '<th data-type="text">Model</th><th data-type="text">Family</th><th data-type="text">Task</th>'
               '<th data-type="text">Metric</th><th data-type="lang">Lang</th><th data-type="num">Spanish</th>'
               '<th data-type="num">Lang score</th><th data-type="num">Gap</th><th data-type="num">95% CI</th>'
               '<th data-type="num">p</th><th data-type="text">Test</th><th data-type="text">Verdict</th>'
               '</tr></thead><tbody>')
    for g in report.gaps:
        t = g.test
        pct = g.percent_scale
        verdict = ('<span class="badge bad">significant</span>' if t.significant and t.gap < 0 else
                   '<span class="badge ok">significant</span>' if t.significant else
                   '<span class="badge muted">n.s.</span>')
        test = ('<span class="badge paired">paired</span>' if t.paired
                else '<span class="badge est">unpaired</span>')
        out.append(
            f'<tr><td class="model"><span class="dot" style="background:{colors.get(g.model, "#333")}"></span>{e(g.model)}</td>'
            f'<td>{e(g.family)}</td><td>{e(_template_label(g.template))}</td><td>{e(g.metric)}</td>'
            f'<td data-v="{lang_key(g.lang)[0]}">{e(g.lang)}</td>'
            f'<td class="num" data-v="{t.base:.6f}">{_fmt_score(t.base, pct)}</td>'
            f'<td class="num" data-v="{t.other:.6f}">{_fmt_score(t.other, pct)}</td>'
            f'<td class="num" data-v="{t.gap:.6f}"><strong>{_fmt_gap(t.gap, pct)}</strong></td>'
            f'<td class="num" data-v="{t.ci_low:.6f}">{_fmt_ci(t.ci_low, t.ci_high, pct)}</td>'
            f'<td class="num" data-v="{t.p_value:.6f}">{t.p_value:.3f}</td>'
            f'<td class="nowrap" title="{e(t.method)}">{test} <span class="small">{e(t.n_pairs if t.paired else f"{t.n_base}/{t.n_other}")} items</span></td>'
            f'<td>{verdict}</td></tr>')
    out.append("</tbody></table></div></section>")
    return "".join(out)


def _costs(report: Report, figs: _Figures, colors: dict[str, str]) -> str:
    out = ['<section id="cost" class="card"><h2>Accuracy vs device cost</h2>']
    if report.accuracy_label:
        out.append(f'<p class="lead">One point per model. Accuracy is the {e(report.accuracy_label)}; '
                   'cost comes from the same forward passes, on device '
                   f'<code>{e(report.cost_device)}</code>. '
                   '<span class="star">★</span> marks models on the Pareto front (no other model is both '
                   'cheaper and at least as accurate); the dashed line is the front.</p>')
    estimate = any(c.energy_is_estimate for c in report.costs if c.energy_j is not None)
    if estimate:
        out.append('<div class="callout est"><strong>Energy is an estimate, not a measurement.</strong> '
                   'RAPL energy counters were not readable on this device, so energy = process CPU '
                   'seconds × an assumed power per busy core. Compare models on the same device only.</div>')
    if report.cost_axes:
        out.append('<div class="grid2">')
        for axis in report.cost_axes:
            out.append('<figure>' + _cost_figure(figs, axis, colors, report.accuracy_label)
                       + f'<figcaption>{e(axis.note)}</figcaption></figure>')
        out.append("</div>")
    else:
        out.append('<p class="empty">No accuracy-vs-cost plot: it needs tasks with per-item correctness '
                   'that every model ran, and the cost of those runs.</p>')
    missing = [name for key, name in (("latency", "latency"), ("memory", "peak memory"),
                                      ("energy", "energy"), ("size", "model size"))
               if key not in {a.key for a in report.cost_axes}]
    if report.cost_axes and missing:
        out.append(f'<p class="small">No plot for {e(", ".join(missing))}: not recorded for these runs '
                   '(a run records its memory and energy when it finishes).</p>')
    out.append(_cost_table(report.costs, colors))
    out.append("</section>")
    return "".join(out)


def _cost_table(costs: Sequence[ModelCost], colors: dict[str, str]) -> str:
    def two(a: str, b: str) -> str:
        return f'{a}<div class="small">{b}</div>' if b else a

    rows = []
    for c in costs:
        tag = ' <span class="badge est">estimate</span>' if c.energy_is_estimate else ""
        energy = "" if c.energy_j is None else two(
            f"{c.energy_per_item_j:,.2f} J / item{tag}" if c.energy_per_item_j is not None else f"{c.energy_j:,.0f} J{tag}",
            f"{c.energy_j:,.0f} J over {c.energy_items} items" + ("" if c.energy_is_estimate else " (RAPL)"))
        params = _num(c.n_params and c.n_params / 1e6, "{:,.0f}", "M params")
        tput = " · ".join(x for x in (
            _num(c.mc_tokens_per_s, "{:,.0f}", " MC"), _num(c.prefill_tokens_per_s, "{:,.0f}", " prefill"),
            _num(c.decode_tokens_per_s, "{:,.1f}", " decode")) if x)
        rows.append(
            f'<tr><td class="model"><span class="dot" style="background:{colors.get(c.model, "#333")}"></span>{e(c.model)}</td>'
            f'<td data-v="{c.size_bytes or 0}">{two(e(c.file_type), e(params))}</td>'
            f'<td class="num" data-v="{c.size_bytes or 0}">{_mib(c.size_bytes)}</td>'
            f'<td class="num" data-v="{c.accuracy or 0}"><strong>{_num(c.accuracy, "{:.3f}")}</strong>'
            f'<div class="small">{c.accuracy_tasks} tasks</div></td>'
            f'<td class="num" data-v="{c.p50_ms or 0}">{two(_num(c.p50_ms, "{:,.0f}", " ms"), _num(c.p90_ms, "p90 {:,.0f} ms"))}</td>'
            f'<td class="num" data-v="{c.load_ms or 0}">{_num(c.load_ms, "{:,.0f}", " ms")}</td>'
            f'<td class="num" data-v="{c.peak_rss_bytes or 0}">{two(_mib(c.peak_rss_bytes), "after load " + _mib(c.rss_after_load_bytes) if c.rss_after_load_bytes else "")}</td>'
            f'<td class="num" data-v="{c.energy_per_item_j or 0}">{energy}</td>'
            f'<td class="num">{e(tput)}</td></tr>')
    return ('<h3>Per model</h3><div class="tablewrap"><table class="sortable" id="costtable"><thead><tr>'
            '<th data-type="text">Model</th><th data-type="num">Quantization</th><th data-type="num">File</th>'
            '<th data-type="num">Accuracy</th><th data-type="num">Item latency p50</th><th data-type="num">Load</th>'
            '<th data-type="num">Peak RSS</th><th data-type="num">Energy</th>'
            '<th class="nosort" title="observed during evaluation: MC = evaluated tokens per second of item wall time; '
            'prefill = fresh prompt tokens per second of prefill; decode = generated tokens per second of decode">'
            'Observed tokens/s</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table></div>"
            '<p class="small">Latency percentiles are over the items behind the accuracy column. Energy per '
            'item divides the energy of the runs by the items those runs evaluated (model load included). '
            'Throughput is observed during evaluation; the engine ceilings, if measured, are in the device section.</p>')


def _browser(b: Browser, idx: int, colors: dict[str, str]) -> str:
    bid = f"br{idx}"
    mc = b.output == "multiple_choice"
    with_prompt = any(it.prompt for it in b.items)
    out = [f'<section class="card browser" id="{bid}"><h3>{e(_template_label(b.template))} '
           f'<span class="small">({e(b.family)}, {"multiple choice" if mc else "generation"})</span></h3>']
    if b.lang_ok:
        out.append(_lang_ok_table(b, colors))
    shown = len(b.items)
    cap_note = (f"Showing {shown} of {b.n_total} documents: the first {b.per_lang_cap} per language "
                "(the page is capped to stay small; every item is in the database)."
                if shown < b.n_total else f"All {b.n_total} documents.")
    if not with_prompt and b.items:
        cap_note += " The prompt context is empty for this task: the choices carry the whole text."
    opts = "".join(f'<option value="{e(lg)}">{e(lg)} — {e(LANG_NAMES.get(lg, lg))}</option>' for lg in b.langs)
    mopts = "".join(f'<option value="{i}">wrong by {e(m)}</option>' for i, m in enumerate(b.models))
    wrong_help = ("wrong choice" if mc else
                  "wrong answer, or (for corpus-scored tasks like translation) output not in the target language")
    out.append(f'<div class="controls"><label>Language <select class="f-lang"><option value="">all</option>{opts}</select></label>'
               f'<label>Show <select class="f-wrong"><option value="">all items</option>'
               f'<option value="any">wrong by any model</option>{mopts}</select></label>'
               f'<span class="count"></span></div>')
    out.append(f'<p class="small">{e(cap_note)} “Wrong” = {e(wrong_help)}.'
               + (' Coloured dots next to a choice show which model picked it.' if mc else "") + "</p>")
    head = "".join(f'<th><span class="dot" style="background:{colors.get(m, "#333")}"></span>{e(m)}</th>' for m in b.models)
    gold_head = "Choices (gold ✓)" if mc else "Reference"
    cols = '<col class="c-lang">' + ('<col class="c-prompt">' if with_prompt else "") + \
        f'<col class="c-gold{"" if with_prompt else " wide"}">' + '<col>' * len(b.models)
    out.append(f'<div class="tablewrap items"><table><colgroup>{cols}</colgroup><thead><tr><th>Lang</th>'
               f'{"<th>Prompt</th>" if with_prompt else ""}<th>{gold_head}</th>{head}</tr></thead><tbody>')
    for it in b.items:
        out.append(_browser_row(it, b.models, mc, with_prompt, colors))
    out.append("</tbody></table></div></section>")
    return "".join(out)


def _browser_row(it: BrowserItem, models: Sequence[str], mc: bool, with_prompt: bool,
                 colors: dict[str, str]) -> str:
    by_model = {r.model: r for r in it.results}
    wrong = [str(i) for i, m in enumerate(models) if m in by_model and by_model[m].wrong]
    doc = f'<div class="small doc">{e(it.task)} · {e(it.doc_id)}</div>'
    prompt = ""
    if with_prompt:
        prompt = (f'<td><div class="prompt">{e(it.prompt)}</div>{doc}</td>' if it.prompt else
                  f'<td><div class="prompt empty">(empty context)</div>{doc}</td>')
    if mc and it.choices is not None:
        lis = []
        for k, c in enumerate(it.choices):
            gold = str(k) == it.gold
            pickers = "".join(f'<span class="pick" style="background:{colors.get(m, "#333")}" title="{e(m)} picked this"></span>'
                              for m in models if m in by_model and by_model[m].prediction == str(k))
            lis.append(f'<li class="{"gold" if gold else ""}"><span class="k">{k}</span> {e(c)}'
                       f'{" <b>✓</b>" if gold else ""}{pickers}</li>')
        middle = f'<ol class="choices">{"".join(lis)}</ol>'
    else:
        middle = f'<div class="gold-text">{e(it.gold)}</div>'
    if not with_prompt:
        middle += doc
    cells = []
    for m in models:
        r = by_model.get(m)
        if r is None:
            cells.append('<td class="na">—</td>')
            continue
        mark = ('<span class="badge ok">✓ correct</span>' if r.correct else
                '<span class="badge bad">✗ wrong</span>' if r.correct is False else "")
        if mc:
            body = f'{mark}<div class="small">picked {e(r.prediction)}</div>'
        else:
            lang = ""
            if r.lang_detected is not None or r.lang_ok is not None:
                cls = "ok" if r.lang_ok else "bad"
                lang = (f'<span class="badge {cls}" title="language identified by langid.py; '
                        f'{"target language" if r.lang_ok else "not the target language"}">{e(r.lang_detected or "?")}</span>')
            chrf = f'<span class="small">chrF {r.chrf:.1f}</span>' if r.chrf is not None else ""
            body = f'<div class="out">{e(r.generated)}</div><div class="meta">{mark}{lang}{chrf}</div>'
        cells.append(f'<td class="{"wrong" if r.wrong else ""}">{body}</td>')
    return (f'<tr data-lang="{e(it.lang)}" data-wrong="{" ".join(wrong)}"><td class="lang">{e(it.lang)}</td>'
            f'{prompt}<td>{middle}</td>{"".join(cells)}</tr>')


def _lang_ok_table(b: Browser, colors: dict[str, str]) -> str:
    langs = sorted({s.lang for s in b.lang_ok}, key=lang_key)
    tasks = {s.lang: s.task for s in b.lang_ok}
    head = "".join(f'<th title="{e(tasks[lg])}">{e(lg)}</th>' for lg in langs)
    rows = []
    for m in b.models:
        cells = []
        for lg in langs:
            s = next((s for s in b.lang_ok if s.model == m and s.lang == lg), None)
            if s is None:
                cells.append("<td></td>")
                continue
            cls = "ok" if s.value >= 0.9 else "bad" if s.value < 0.5 else "warn"
            cells.append(f'<td class="num"><span class="rate {cls}" title="95% CI {_fmt_ci(s.ci_low, s.ci_high, False)}, n={s.n}">'
                         f'{s.value:.0%}</span></td>')
        rows.append(f'<tr><td class="model"><span class="dot" style="background:{colors.get(m, "#333")}"></span>{e(m)}</td>{"".join(cells)}</tr>')
    return ('<p class="small"><strong>lang_ok</strong>: share of outputs identified (langid.py, restricted '
            'to es/ca/eu/gl/pt/en) as the target language. The identifier is weakest on Galician and on '
            'very short outputs.</p>'
            f'<table class="compact"><thead><tr><th>lang_ok</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _items(report: Report, colors: dict[str, str]) -> str:
    out = ['<section id="items" class="card"><h2>Items</h2>'
           '<p class="lead">Every answer behind the numbers, one table per task family. Filter by language, '
           'or show only the items a model got wrong.</p>']
    if not report.browsers:
        out.append('<p class="empty">No items stored.</p>')
    links = " · ".join(f'<a href="#br{i}">{e(_template_label(b.template))}</a>' for i, b in enumerate(report.browsers))
    out.append(f'<p>{links}</p></section>')
    for i, b in enumerate(report.browsers):
        out.append(_browser(b, i, colors))
    return "".join(out)


def _option_label(o: dict | None) -> str:
    if not o:
        return "-"
    t = f" t={o['threshold']:.3f}" if o["action"] == "cascade" and o.get("threshold") is not None else ""
    return f"{o['action']}{t}"


def _routing_figure(figs: _Figures, d: dict, device: str, cloud: str) -> str:
    go = _go()
    fig = go.Figure()
    pts = sorted(d["curve"], key=lambda p: p["cloud_share"])
    fig.add_trace(go.Scatter(
        x=[p["cloud_share"] for p in pts], y=[p["accuracy"] for p in pts], mode="lines+markers",
        name="cascade (test half)", line={"color": "#2563eb", "width": 2}, marker={"size": 5},
        customdata=[[p["threshold"], p["cost_per_1k"], p["p95_ms"]] for p in pts],
        hovertemplate=("cloud share %{x:.0%}<br>accuracy %{y:.3f}<br>threshold %{customdata[0]}<br>"
                       "cost per 1k requests %{customdata[1]:.3f}<br>p95 %{customdata[2]:.0f} ms<extra></extra>"),
    ))
    marks = [("device only", d["device"], "#15803d", "circle"), ("cloud only", d["cloud"], "#b91c1c", "square"),
             ("chosen", d["chosen"], "#f59e0b", "star")]
    for label, o, color, symbol in marks:
        fig.add_trace(go.Scatter(x=[o["cloud_share"]], y=[o["accuracy"]], mode="markers", name=label,
                                 marker={"color": color, "size": 13 if label == "chosen" else 10, "symbol": symbol},
                                 hovertemplate=f"{label}: {_option_label(o)}<br>accuracy %{{y:.3f}}<extra></extra>"))
    fig.update_layout(
        title={"text": f"{e(d['task'])} ({e(d['lang'])}): accuracy vs share sent to {e(cloud)}", "font": {"size": 13}},
        xaxis={"title": {"text": "share of requests escalated to the cloud"}, "tickformat": ".0%", "range": [-0.03, 1.03]},
        yaxis={"title": {"text": "accuracy (test half)"}},
        legend={"orientation": "h", "y": -0.3, "x": 0},
    )
    return figs.add(fig, 320)


def _routing(report: Report, figs: _Figures, colors: dict[str, str]) -> str:
    r = report.routing
    if not r:
        return ""
    prof = r["profile"]
    cur = prof.get("currency", "")
    out = ['<section id="routing" class="card"><h2>Routing: device, cloud or cascade</h2>',
           f'<p class="lead">Device model <b>{e(r["device"])}</b>, cloud model <b>{e(r["cloud"])}</b>, '
           f'target accuracy {r["min_accuracy"]:.2f}. Each task\'s items are split in two halves by a seeded hash '
           'of their id: the threshold and the recommendation are chosen on the calibration half, every number '
           'below is measured on the test half. Confidence: probability margin between the top two choices '
           '(multiple choice) or mean token logprob (generation).</p>']
    if prof.get("illustrative"):
        out.append(f'<div class="callout warn">The cost profile <code>{e(prof.get("source", ""))}</code> is marked '
                   'illustrative: its prices are examples, not facts.</div>')
    out.append('<div class="tablewrap"><table class="sortable" id="routetable"><thead><tr>'
               '<th>task</th><th>lang</th><th>n cal/test</th><th>device acc</th><th>cloud acc</th><th>cascade</th>'
               '<th>rule (per language)</th><th>recommendation</th><th>accuracy [95% CI]</th><th>cloud share</th>'
               f'<th>monthly ({e(cur)})</th><th>break-even / month</th></tr></thead><tbody>')
    for d in r["decisions"]:
        c, cas = d["chosen"], d.get("cascade")
        rec = _option_label(c) + ("" if d["meets_target"] else " (below target)")
        be = "never" if d.get("break_even_volume") is None else f"{d['break_even_volume']:,.0f}"
        cas_txt = "-" if not cas else f"{cas['accuracy']:.3f} ({cas['cloud_share']:.0%} cloud)"
        out.append(
            f'<tr><td>{e(d["task"])}</td><td>{e(d["lang"])}</td><td class="num">{d["n_calib"]}/{d["n_test"]}</td>'
            f'<td class="num">{d["device"]["accuracy"]:.3f}</td><td class="num">{d["cloud"]["accuracy"]:.3f}</td>'
            f'<td class="num">{e(cas_txt)}</td>'
            f'<td>{e(d["rule"]["action"].removeprefix("rule:"))} {d["rule"]["accuracy"]:.3f}</td><td><b>{e(rec)}</b></td>'
            f'<td class="num">{c["accuracy"]:.3f} [{c["ci_low"]:.2f}, {c["ci_high"]:.2f}]</td>'
            f'<td class="num">{c["cloud_share"]:.0%}</td><td class="num">{c["monthly_cost"]:,.2f}</td>'
            f'<td class="num">{e(be)}</td></tr>')
    out.append('</tbody></table></div><div class="grid2">')
    for d in r["decisions"]:
        out.append(_routing_figure(figs, d, r["device"], r["cloud"]))
    out.append(f'</div><p class="small">Command: <code class="cmd">{e(r.get("command") or "")}</code></p></section>')
    return "".join(out)


def _device(report: Report) -> str:
    out = ['<section id="device" class="card"><h2>Device</h2>']
    for fid, d in report.devices.items():
        runs = [r.id for r in report.runs if r.device_id == fid]
        flags = ", ".join(d.get("cpu_flags", []) or [])
        rows = [
            ("Fingerprint", f"<code>{e(fid)}</code> (runs {e(', '.join(map(str, runs)))})"),
            ("CPU", e(d.get("cpu_model"))),
            ("SIMD flags", e(flags)),
            ("Cores / threads used", e(f"{d.get('physical_cores')} physical, {d.get('logical_cores')} logical; "
                                       f"{d.get('n_threads')} threads")),
            ("RAM", e(f"{d['total_ram_bytes'] / 2**30:.1f} GiB" if d.get("total_ram_bytes") else "")),
            ("OS", e(d.get("os"))),
            ("Python", e(d.get("python_version"))),
            ("llama-cpp-python", e(d.get("llama_cpp_python_version"))),
            ("llama.cpp build", f'<code class="wrap">{e(d.get("llama_system_info"))}</code>'),
        ]
        out.append('<table class="kv">' + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>")

    out.append("<h3>Energy: how it was obtained</h3>")
    energy_rows = []
    for r in report.runs:
        for m, c in sorted(r.cost.items()):
            if not isinstance(c, dict):
                continue
            method = c.get("energy_method")
            if method == "rapl":
                how = '<span class="badge ok">measured (RAPL)</span> CPU package energy, all processes on the package'
            elif method == "estimate":
                how = (f'<span class="badge est">ESTIMATE</span> {c.get("cpu_s", 0):,.1f} CPU s × '
                       f'{c.get("watts_assumed") or "?"} W per busy core (assumed, not measured)')
            else:
                how = e(method or "not recorded")
            energy_rows.append(
                f'<tr><td>{r.id}</td><td>{e(m)}</td><td class="num">{_num(c.get("energy_j"), "{:,.0f}", " J")}</td>'
                f'<td>{how}</td><td class="num">{_num(c.get("wall_s"), "{:,.1f}", " s")}</td>'
                f'<td class="num">{_num(c.get("cpu_s"), "{:,.1f}", " s")}</td></tr>')
    if energy_rows:
        out.append('<table class="compact"><thead><tr><th>Run</th><th>Model</th><th>Energy</th><th>Method</th>'
                   '<th>Wall</th><th>CPU</th></tr></thead><tbody>' + "".join(energy_rows) + "</tbody></table>")
        out.append('<p class="small">RAPL measures the whole CPU package (every process, idle power included); '
                   'the estimate counts this process only and excludes idle, uncore and DRAM power. The two are '
                   'not comparable with each other.</p>')
    else:
        out.append('<p class="empty">No run has recorded its cost yet.</p>')

    out.append("<h3>Engine ceilings</h3>")
    if report.benches:
        observed = {c.model: c for c in report.costs}
        rows = []
        for b in report.benches:
            c = observed.get(b.model)
            obs = None
            if c is not None:
                obs = c.prefill_tokens_per_s if b.test.startswith("pp") else c.decode_tokens_per_s if b.test.startswith("tg") else None
            extra = ", ".join(f"{k}={v}" for k, v in b.extra.items() if k not in ("created_at",))
            rows.append(f'<tr><td>{e(b.model)}</td><td>{e(b.test)}</td><td class="num">{b.median:,.1f}</td>'
                        f'<td class="num">{b.min:,.1f} – {b.max:,.1f}</td><td class="num">{_num(obs, "{:,.1f}")}</td>'
                        f'<td class="small">{e(extra)}</td></tr>')
        out.append('<p class="small">What the engine can do on this device with nothing else in the way '
                   '(tokens per second: pp = prompt processing, tg = token generation), next to the throughput '
                   'observed during the evaluation.</p>'
                   '<table class="compact"><thead><tr><th>Model</th><th>Test</th><th>Median tok/s</th>'
                   '<th>Min – max</th><th>Observed in eval</th><th>Details</th></tr></thead><tbody>'
                   + "".join(rows) + "</tbody></table>")
    elif report.has_bench_table:
        out.append('<p class="empty">The <code>benches</code> table is empty.</p>')
    else:
        out.append('<p class="empty">No engine-ceiling benchmarks are stored in this database.</p>')
    out.append("</section>")
    return "".join(out)


def _methodology(report: Report) -> str:
    out = ['<section id="methodology" class="card"><h2>Methodology</h2>']
    out.append(
        '<ul class="method">'
        '<li><strong>Zero-shot</strong>, one prompt per task (the lm-evaluation-harness 0.4.13 prompt where the task '
        'exists there). Multiple choice: each choice is scored by its summed log-probability after the context; '
        '<code>acc</code> takes the argmax, <code>acc_norm</code> divides by the choice length in characters. '
        'Generation: greedy decoding up to the stop string; BLEU/chrF/TER are sacreBLEU corpus scores.</li>'
        '<li><strong>Intervals</strong>: 95% percentile bootstrap over items, 1000 resamples, seed from the '
        'signature.</li>'
        '<li><strong>Language gaps</strong>: paired bootstrap over shared documents when the tasks are parallel, '
        'unpaired otherwise (1000 resamples, seed 1234); significant when the 95% interval excludes 0.</li>'
        '<li><strong>Cost</strong> is recorded on the same forward passes as the scores: per item wall/prefill/decode '
        'time; per model load time, RSS, CPU time and energy (RAPL when readable, otherwise an estimate).</li>'
        '<li><strong>Pareto front</strong>: a model is on it when no other model is both cheaper and at least as '
        'accurate (and strictly better on one of the two).</li></ul>')
    out.append("<h3>Prompts and data</h3><p class=\"small\">A rendered example per task: the stored prompt of its "
               "first item, exactly as the model saw it.</p>")
    for t in report.tasks:
        choices = ""
        if t.example_choices is not None:
            choices = '<div class="small">choices, each scored as a continuation of the prompt (gold ✓):</div>' + "<ol class=\"choices\">" + "".join(
                f'<li class="{"gold" if str(k) == t.example_gold else ""}">{e(c)}{" <b>✓</b>" if str(k) == t.example_gold else ""}</li>'
                for k, c in enumerate(t.example_choices)) + "</ol>"
        else:
            choices = f'<div class="small">reference: {e(t.example_gold)}</div>'
        target = f" → {e(t.target_lang)}" if t.target_lang != t.lang else ""
        out.append(
            f'<details class="task"><summary><code>{e(t.task)}</code> <span class="small">{e(t.lang)}{target} · '
            f'{e(t.family)} · {e(t.output)} · {t.n_items} items · prompt {e(t.prompt_hash)} · data {e(t.data_hash)}'
            f'</span></summary>'
            f'<p class="small">{e(t.description)}{" · " if t.description else ""}reference: {e(t.reference)}</p>'
            f'<div class="small">first document <code>{e(t.example_doc)}</code>; prompt:</div>'
            f'<pre class="prompt-example">{e(t.example_prompt) or "<span class=empty>(empty context)</span>"}</pre>'
            f'{choices}</details>')
    out.append('<h3>Data hashes</h3><div class="tablewrap"><table class="compact sortable"><thead><tr>'
               '<th data-type="text">Task</th><th data-type="lang">Lang</th><th data-type="text">Prompt hash</th>'
               '<th data-type="text">Data hash</th><th data-type="num">Items</th><th data-type="text">Source</th></tr></thead><tbody>'
               + "".join(f'<tr><td>{e(t.task)}</td><td data-v="{lang_key(t.lang)[0]}">{e(t.lang)}</td>'
                         f'<td><code>{e(t.prompt_hash)}</code></td><td><code>{e(t.data_hash)}</code></td>'
                         f'<td class="num" data-v="{t.n_items}">{t.n_items}</td><td>{e(t.reference)}</td></tr>'
                         for t in report.tasks)
               + "</tbody></table></div>")
    out.append("<h3>Versions</h3>")
    seen: dict[str, list[int]] = {}
    for r in report.runs:
        seen.setdefault(json.dumps(r.versions, sort_keys=True), []).append(r.id)
    for blob, ids in seen.items():
        v = json.loads(blob)
        out.append(f'<p class="small">Runs {e(", ".join(map(str, ids)))}:</p><table class="kv">'
                   + "".join(f"<tr><th>{e(k)}</th><td>{e(val)}</td></tr>" for k, val in v.items()) + "</table>")
    out.append("<h3>Runs and how to reproduce them</h3>"
               '<p class="small">Rerunning a command against the same database evaluates only what is missing; '
               'against a fresh database it evaluates everything again.</p>')
    out.append('<div class="tablewrap"><table class="compact"><thead><tr><th>Run</th><th>Started</th><th>Ended</th>'
               '<th>Status</th><th>Device</th><th>Command</th></tr></thead><tbody>')
    for r in report.runs:
        out.append(f'<tr><td>{r.id}</td><td>{e(_ts(r.started_at))}</td><td>{e(_ts(r.ended_at))}</td>'
                   f'<td>{e(r.status)}</td><td><code>{e(r.device_id)}</code></td>'
                   f'<td><code class="cmd">{e(r.reproduce)}</code></td></tr>')
    out.append("</tbody></table></div></section>")
    return "".join(out)


def _header(report: Report) -> str:
    done = [r for r in report.runs if r.status == "done"]
    dev = next(iter(report.devices.values()), {})
    chips = [
        f"{len(report.models)} model{'s' if len(report.models) != 1 else ''}",
        f"{len({s.task for s in report.scores})} tasks",
        "languages: " + ", ".join(report.langs),
        f"{len(report.runs)} run{'s' if len(report.runs) != 1 else ''} ({len(done)} done)",
    ]
    if dev:
        chips.append(f"{dev.get('cpu_model', '')} · {dev.get('n_threads', '?')} threads")
    notes = []
    if report.is_sample_suite:
        notes.append('<div class="callout warn"><strong>Sample suite.</strong> These tasks are the project\'s '
                     'smoke test (a few items written by the project), not a benchmark: the numbers show the '
                     'pipeline works, not how good a model is.</div>')
    for n in report.notes:
        notes.append(f'<div class="callout">{e(n)}</div>')
    return (f'<header><div class="wrap"><h1>iberlite report</h1>'
            f'<p class="sub">Compact LLMs on Iberian-language tasks, with the device cost of every answer · '
            f'<code>{e(report.db_path)}</code> · generated {e(_ts(report.generated_at))}</p>'
            f'<div class="chips">{"".join(f"<span>{e(c)}</span>" for c in chips)}</div></div></header>'
            f'<nav><div class="wrap"><a href="#leaderboard">Leaderboard</a><a href="#gaps">Language gaps</a>'
            f'<a href="#cost">Accuracy vs cost</a><a href="#items">Items</a>'
            + ('<a href="#routing">Routing</a>' if report.routing else '')
            + f'<a href="#device">Device</a>'
            f'<a href="#methodology">Methodology</a></div></nav>'
            f'<main class="wrap">{"".join(notes)}')


def render_html(report: Report) -> str:
    """The whole page as one string."""
    import plotly.offline

    figs = _Figures()
    colors = _model_colors(report.models)
    body = [
        _header(report),
        _leaderboard(report, figs, colors),
        _gaps(report, figs, colors),
        _costs(report, figs, colors),
        _items(report, colors),
        _routing(report, figs, colors),
        _device(report),
        _methodology(report),
        '<footer>Made by iberlite. Self-contained page: no network access needed.</footer></main>',
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>iberlite report — {e(report.db_path)}</title><style>{_CSS}</style>"
            f"<script>{plotly.offline.get_plotlyjs()}</script></head><body>"
            + "".join(body) + f"<script>{_JS}</script></body></html>\n")


_CSS = """
:root{--fg:#1f2937;--muted:#64748b;--line:#e2e8f0;--bg:#f6f7f9;--card:#fff;--ok:#15803d;--bad:#b91c1c;--est:#b45309;--accent:#2563eb}
*{box-sizing:border-box}
body{margin:0;font-family:system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;color:var(--fg);background:var(--bg);font-size:14px;line-height:1.45}
.wrap{max-width:1280px;margin:0 auto;padding:0 24px}
header{background:#0f172a;color:#e2e8f0;padding:22px 0 16px}
header h1{margin:0 0 4px;font-size:24px;color:#fff;letter-spacing:.2px}
header .sub{margin:0 0 12px;color:#94a3b8;font-size:13px}
header code{color:#cbd5e1}
.chips span{display:inline-block;background:#1e293b;border:1px solid #334155;border-radius:999px;padding:2px 10px;margin:0 6px 6px 0;font-size:12px}
nav{position:sticky;top:0;z-index:10;background:#fff;border-bottom:1px solid var(--line);box-shadow:0 1px 2px rgba(0,0,0,.03)}
nav a{display:inline-block;padding:10px 14px 9px;color:var(--fg);text-decoration:none;font-weight:500;border-bottom:2px solid transparent}
nav a:hover{border-color:var(--accent);color:var(--accent)}
main{padding-top:8px;padding-bottom:40px}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:18px 22px;margin:18px 0;scroll-margin-top:50px}
h2{margin:0 0 8px;font-size:20px}
h3{margin:18px 0 8px;font-size:15px}
.card>h3:first-child{margin-top:0}
.lead{color:#334155;max-width:100ch;margin:0 0 10px}
.small{color:var(--muted);font-size:12px}
.empty{color:var(--muted);font-style:italic}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px;background:#f1f5f9;border-radius:4px;padding:0 4px}
code.wrap,code.cmd{white-space:pre-wrap;word-break:break-all}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:14px;margin:8px 0 12px}
.plot{border:1px solid var(--line);border-radius:8px;background:#fff;min-width:0;overflow:hidden}
figure .plot{border:none;border-radius:0}
.grid2>figure{border:1px solid var(--line);border-radius:8px;background:#fff;min-width:0;overflow:hidden}
figure{margin:0;padding:0 0 6px}
figcaption{font-size:12px;color:var(--muted);padding:0 12px}
.tablewrap{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:6px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{background:#f8fafc;position:sticky;top:0;font-weight:600;white-space:nowrap;border-bottom:2px solid var(--line)}
table.sortable thead th:not(.nosort){cursor:pointer;user-select:none}
table.sortable thead th:not(.nosort):after{content:' ↕';color:#cbd5e1;font-size:11px}
table.sortable thead th.asc:after{content:' ▲';color:var(--accent)}
table.sortable thead th.desc:after{content:' ▼';color:var(--accent)}
tbody tr:hover{background:#f8fafc}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.score{font-weight:600}
table.compact{width:auto}
table.kv{width:auto;margin-bottom:10px}
table.kv th{background:none;position:static;color:var(--muted);font-weight:500;border-bottom:1px solid var(--line);white-space:nowrap}
.dot{display:inline-block;width:9px;height:9px;border-radius:50%;margin-right:6px;vertical-align:0}
.cibar{position:relative;width:120px;height:10px;background:#f1f5f9;border-radius:5px;margin-top:4px}
.cibar .ci{position:absolute;top:2px;height:6px;background:#93c5fd;border-radius:3px}
.cibar .v{position:absolute;top:0;width:2px;height:10px;margin-left:-1px;background:#1d4ed8}
details.sig summary{cursor:pointer;color:var(--accent);font-size:12px}
details.sig ul{margin:4px 0;padding-left:16px;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:11px;color:#334155;word-break:break-all}
.controls{display:flex;flex-wrap:wrap;gap:10px 16px;align-items:center;margin:6px 0 10px}
.controls input[type=search]{min-width:320px;padding:6px 10px;border:1px solid #cbd5e1;border-radius:6px;font:inherit}
.controls select{padding:4px 6px;border:1px solid #cbd5e1;border-radius:6px;font:inherit;background:#fff}
.count{color:var(--muted);font-size:12px}
.badge{display:inline-block;padding:0 7px;border-radius:999px;font-size:11px;font-weight:600;line-height:18px;margin-right:4px;white-space:nowrap}
.badge.ok{background:#dcfce7;color:var(--ok)}
.badge.bad{background:#fee2e2;color:var(--bad)}
.badge.est{background:#fef3c7;color:var(--est)}
.badge.muted{background:#f1f5f9;color:var(--muted)}
.badge.paired{background:#dbeafe;color:#1d4ed8}
.rate{font-weight:600}.rate.ok{color:var(--ok)}.rate.bad{color:var(--bad)}.rate.warn{color:var(--est)}
.callout{border-left:4px solid #94a3b8;background:#f8fafc;padding:10px 14px;margin:14px 0;border-radius:0 8px 8px 0}
.callout.warn{border-color:#f59e0b;background:#fffbeb}
.callout.est{border-color:#f59e0b;background:#fffbeb}
.star{color:#1f2937}
.browser h3{margin-top:0}
.items table{table-layout:fixed}
.items col.c-lang{width:52px}
.items col.c-prompt{width:33%}
.items col.c-gold{width:27%}
.items col.c-gold.wide{width:50%}
td.model,td.nowrap{white-space:nowrap}
.items td.lang{font-weight:600}
.prompt{max-height:9.5em;overflow:auto;white-space:pre-wrap;word-wrap:break-word}
.prompt.empty{color:var(--muted);font-style:italic}
.doc{margin-top:4px;word-break:break-all}
ol.choices{margin:0;padding-left:0;list-style:none}
ol.choices li{margin:0 0 4px;padding:2px 6px;border-radius:4px}
ol.choices li.gold{background:#f0fdf4}
ol.choices .k{display:inline-block;min-width:16px;color:var(--muted);font-size:11px}
.pick{display:inline-block;margin-left:5px;width:10px;height:10px;border-radius:50%;vertical-align:-1px;border:1px solid #fff;box-shadow:0 0 0 1px rgba(0,0,0,.15)}
.gold-text{white-space:pre-wrap;color:#14532d}
.out{white-space:pre-wrap;word-wrap:break-word;margin-bottom:4px}
td.wrong{background:#fff7f7}
td.na{color:var(--muted)}
details.task{border:1px solid var(--line);border-radius:8px;padding:6px 10px;margin:6px 0}
details.task summary{cursor:pointer}
pre.prompt-example{white-space:pre-wrap;word-wrap:break-word;background:#f8fafc;border:1px solid var(--line);border-radius:6px;padding:8px 10px;font-size:12px;max-height:16em;overflow:auto}
ul.method li{margin-bottom:4px}
footer{color:var(--muted);font-size:12px;text-align:center;padding:20px 0}
"""

_JS = r"""
(function(){
  'use strict';
  // Charts: figure JSON lives in <script type="application/json"> next to each chart div.
  document.querySelectorAll('div.chart[data-fig]').forEach(function(div){
    var spec = JSON.parse(document.getElementById(div.dataset.fig).textContent);
    Plotly.newPlot(div, spec.data, spec.layout, {displaylogo:false, responsive:true,
      modeBarButtonsToRemove:['select2d','lasso2d','autoScale2d']});
  });

  // Sortable tables: click a header; numbers sort by data-v when present.
  function cellValue(row, i, type){
    var c = row.cells[i]; if(!c) return '';
    var v = c.dataset.v !== undefined ? c.dataset.v : c.textContent.trim();
    if(type === 'num' || type === 'lang'){ var f = parseFloat(v); return isNaN(f) ? -Infinity : f; }
    return v.toLowerCase();
  }
  document.querySelectorAll('table.sortable').forEach(function(table){
    var ths = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(ths, function(th, i){
      if(th.classList.contains('nosort')) return;
      th.addEventListener('click', function(){
        var asc = !th.classList.contains('asc');
        Array.prototype.forEach.call(ths, function(h){ h.classList.remove('asc','desc'); });
        th.classList.add(asc ? 'asc' : 'desc');
        var type = th.dataset.type || 'text', body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function(a, b){
          var x = cellValue(a, i, type), y = cellValue(b, i, type);
          return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
        });
        rows.forEach(function(r){ body.appendChild(r); });
      });
    });
  });

  // Leaderboard filters.
  var lb = document.getElementById('lb');
  if(lb){
    var q = document.getElementById('lb-filter'), prim = document.getElementById('lb-primary');
    var count = document.getElementById('lb-count');
    var apply = function(){
      var words = q.value.toLowerCase().split(/\s+/).filter(Boolean), n = 0, total = 0;
      Array.prototype.forEach.call(lb.tBodies[0].rows, function(r){
        total++;
        var text = r.textContent.toLowerCase();
        var ok = (!prim.checked || r.dataset.primary === '1') && words.every(function(w){ return text.indexOf(w) >= 0; });
        r.style.display = ok ? '' : 'none'; if(ok) n++;
      });
      count.textContent = n + ' of ' + total + ' rows';
    };
    q.addEventListener('input', apply); prim.addEventListener('change', apply); apply();
  }

  // Item browsers: filter by language and by wrong answers.
  document.querySelectorAll('section.browser').forEach(function(sec){
    var lang = sec.querySelector('.f-lang'), wrong = sec.querySelector('.f-wrong');
    var count = sec.querySelector('.count'), rows = sec.querySelectorAll('.items tbody tr');
    var apply = function(){
      var n = 0;
      rows.forEach(function(r){
        var w = r.dataset.wrong ? r.dataset.wrong.split(' ') : [];
        var ok = (!lang.value || r.dataset.lang === lang.value) &&
                 (!wrong.value || (wrong.value === 'any' ? w.length > 0 : w.indexOf(wrong.value) >= 0));
        r.style.display = ok ? '' : 'none'; if(ok) n++;
      });
      count.textContent = n + ' of ' + rows.length + ' items shown';
    };
    lang.addEventListener('change', apply); wrong.addEventListener('change', apply); apply();
  });
})();
"""
