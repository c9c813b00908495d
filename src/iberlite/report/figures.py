"""The report's plotly charts: scores by language, language gaps, accuracy versus cost, and the
routing cascade. Each chart becomes a `Figure` (an id, a height and its JSON); the page's
script draws them on load (see templates/macros.html.j2 and static/report.js).

Text inside a figure (titles, hover labels) is rendered by plotly as HTML, so every value
from the database is HTML-escaped here; the JSON itself is made safe to sit inside a
``<script>`` element by escaping ``<``, ``>`` and ``&``.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from iberlite.analysis.adaptation import AdaptCurve
from iberlite.analysis.model_summary import CostAxis
from iberlite.analysis.pareto import front_steps
from iberlite.analysis.quantization import FamilyStudy
from iberlite.decide.routing import Decision, Option
from iberlite.langs import LANG_NAMES, lang_key
from iberlite.report.sections import Gap, LeaderboardEntry
from iberlite.scoring.metric import REGISTRY

PALETTE = ("#2563eb", "#e4572e", "#17a673", "#9c51b6", "#d4a017", "#0e9aa7", "#db2777", "#65a30d")
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"


@dataclass(frozen=True)
class Figure:
    """One chart of the page: its element id, height in pixels and plotly JSON (script-safe)."""

    id: str
    height: int
    data: str


def e(value: Any) -> str:
    """HTML-escape any value for plotly's HTML text (None becomes an empty string)."""
    return html.escape("" if value is None else str(value), quote=True)


def model_colors(models: Sequence[str]) -> dict[str, str]:
    """A colour per model, in model order, cycling through the palette."""
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models)}


def template_label(template: str) -> str:
    """A task family name for display (``xnli_{lang}`` -> ``xnli_‹lang›``)."""
    return template.replace("{lang}", "‹lang›")


def fmt_score(value: float, percent_scale: bool) -> str:
    """A score as the report prints it: 1 decimal on 0-100, 2 decimals on 0-1."""
    return f"{value:.1f}" if percent_scale else f"{value:.2f}"


def fmt_ci(lo: float, hi: float, percent_scale: bool) -> str:
    """A confidence interval as ``[lo, hi]``."""
    return f"[{fmt_score(lo, percent_scale)}, {fmt_score(hi, percent_scale)}]"


class Figures:
    """Numbers the page's figures in the order they are added (fig1, fig2, ...)."""

    def __init__(self) -> None:
        self.n = 0

    def add(self, fig: Any, height: int) -> Figure:
        """Apply the page's common layout and serialize the figure."""
        import plotly.utils

        self.n += 1
        fig.update_layout(
            height=height, template="plotly_white", autosize=True,
            font={"family": FONT, "size": 12, "color": "#1f2937"},
            margin={"l": 56, "r": 16, "t": 44, "b": 48},
            hoverlabel={"font": {"family": FONT}},
        )
        blob = json.dumps(fig.to_plotly_json(), cls=plotly.utils.PlotlyJSONEncoder)
        blob = blob.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        return Figure(f"fig{self.n}", height, blob)


def _go() -> Any:
    import plotly.graph_objects as go

    return go


def scores_figure(figs: Figures, template: str, scores: Sequence[LeaderboardEntry], models: Sequence[str],
                  colors: dict[str, str], chance: float | None) -> Figure:
    """Grouped bars: one metric of a task family per language and model, with 95% CIs."""
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
            customdata=[[e(pts[x].task), pts[x].n, fmt_ci(pts[x].ci_low, pts[x].ci_high, pct)] for x in xs],
            hovertemplate=f"<b>{e(m)}</b><br>%{{customdata[0]}}<br>{e(metric)} %{{y:.3g}} "
                          "%{customdata[2]}<br>n=%{customdata[1]}<extra></extra>",
        ))
    if chance is not None and metric in REGISTRY and REGISTRY[metric].chance and langs:
        fig.add_trace(go.Scatter(
            x=[-0.5, len(langs) - 0.5], y=[chance, chance], mode="lines", xaxis="x2",
            name=f"chance ({chance:.2f})", line={"dash": "dot", "color": "#64748b", "width": 1.2},
            hoverinfo="skip"))
        fig.update_layout(xaxis2={"overlaying": "x", "range": [-0.5, len(langs) - 0.5], "visible": False})
    fig.update_layout(
        title={"text": f"{e(template_label(template))} · {e(metric)} (95% CI)", "font": {"size": 13}},
        barmode="group", bargap=0.25, showlegend=True,
        legend={"orientation": "h", "y": -0.18, "x": 0},
        yaxis={"range": [0, 100 if pct else 1.0], "title": {"text": metric}},
        xaxis={"categoryorder": "array", "categoryarray": langs},
    )
    return figs.add(fig, 300)


def gap_figure(figs: Figures, template: str, gaps: Sequence[Gap], models: Sequence[str],
               colors: dict[str, str]) -> Figure:
    """Each language minus Spanish per model, filled when significant, a diamond when unpaired."""
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
            customdata=[[e(g.lang), fmt_ci(g.test.ci_low, g.test.ci_high, pct), f"{g.test.p_value:.3f}",
                         "paired" if g.test.paired else "UNPAIRED",
                         "significant" if g.test.significant else "not significant",
                         fmt_score(g.test.base, pct), fmt_score(g.test.other, pct)] for g in gs],
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
        title={"text": f"{e(template_label(template))} · {e(gaps[0].metric)}: language − Spanish",
               "font": {"size": 13}},
        showlegend=True, legend={"orientation": "h", "y": -0.18, "x": 0},
        xaxis={"tickmode": "array", "tickvals": list(range(len(langs))), "ticktext": langs,
               "range": [-0.6, len(langs) - 0.4], "zeroline": False},
        yaxis={"title": {"text": f"gap ({'points' if pct else 'accuracy'})"}, "zeroline": False},
    )
    return figs.add(fig, 300)


def cost_figure(figs: Figures, axis: CostAxis, colors: dict[str, str]) -> Figure:
    """Accuracy against one cost, one point per model, stars and a dashed line on the Pareto front."""
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
    lo, hi = min(axis.accuracies), max(axis.accuracies)
    pad = max(0.05, (hi - lo) * 0.25)
    xlo, xhi = min(axis.costs), max(axis.costs)
    xpad = max((xhi - xlo) * 0.2, abs(xhi) * 0.1, 1e-9)
    fig.update_layout(
        title={"text": f"Accuracy vs {e(axis.title)}", "font": {"size": 13}},
        xaxis={"title": {"text": f"{e(axis.title)} ({e(axis.unit)}) — lower is better"},
               "range": [max(0.0, xlo - xpad), xhi + xpad]},
        yaxis={"title": {"text": "accuracy"}, "range": [max(0.0, lo - pad), min(1.0, hi + pad)]},
        showlegend=len(front_idx) > 1, legend={"orientation": "h", "y": -0.25, "x": 0},
    )
    return figs.add(fig, 320)


def option_label(o: Option | None) -> str:
    """A routing option as a short label (``cascade t=0.123``)."""
    if o is None:
        return "-"
    t = f" t={o.threshold:.3f}" if o.action == "cascade" and o.threshold is not None else ""
    return f"{o.action}{t}"


def routing_figure(figs: Figures, d: Decision, cloud: str) -> Figure:
    """The cascade's accuracy against the share sent to the cloud, with the three options marked."""
    go = _go()
    fig = go.Figure()
    pts = sorted(d.curve, key=lambda p: p.cloud_share)
    fig.add_trace(go.Scatter(
        x=[p.cloud_share for p in pts], y=[p.accuracy for p in pts], mode="lines+markers",
        name="cascade (test half)", line={"color": "#2563eb", "width": 2}, marker={"size": 5},
        customdata=[[p.threshold, p.cost_per_1k, p.p95_ms] for p in pts],
        hovertemplate=("cloud share %{x:.0%}<br>accuracy %{y:.3f}<br>threshold %{customdata[0]}<br>"
                       "cost per 1k requests %{customdata[1]:.3f}<br>p95 %{customdata[2]:.0f} ms<extra></extra>"),
    ))
    marks = [("device only", d.device, "#15803d", "circle"), ("cloud only", d.cloud, "#b91c1c", "square"),
             ("chosen", d.chosen, "#f59e0b", "star")]
    for label, o, color, symbol in marks:
        fig.add_trace(go.Scatter(x=[o.cloud_share], y=[o.accuracy], mode="markers", name=label,
                                 marker={"color": color, "size": 13 if label == "chosen" else 10, "symbol": symbol},
                                 hovertemplate=f"{label}: {option_label(o)}<br>accuracy %{{y:.3f}}<extra></extra>"))
    fig.update_layout(
        title={"text": f"{e(d.task)} ({e(d.lang)}): accuracy vs share sent to {e(cloud)}", "font": {"size": 13}},
        xaxis={"title": {"text": "share of requests escalated to the cloud"}, "tickformat": ".0%", "range": [-0.03, 1.03]},
        yaxis={"title": {"text": "accuracy (test half)"}},
        legend={"orientation": "h", "y": -0.3, "x": 0},
    )
    return figs.add(fig, 320)


def quant_score_figure(figs: Figures, study: FamilyStudy) -> Figure:
    """Score against bits per weight, one line per task and language; filled markers differ
    significantly from the reference (paired bootstrap)."""
    go = _go()
    fig = go.Figure()
    keys = sorted({(s.template, s.lang) for v in study.variants for s in v.scores},
                  key=lambda k: (k[0], lang_key(k[1])))
    for i, (template, lang) in enumerate(keys):
        pts = [(v, s) for v in study.variants for s in v.scores
               if (s.template, s.lang) == (template, lang) and v.bits_per_weight]
        pts.sort(key=lambda p: p[0].bits_per_weight or 0.0)
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(
            name=f"{template_label(template)} {lang}", x=[v.bits_per_weight for v, _ in pts],
            y=[s.value for _, s in pts], mode="lines+markers", line={"color": color, "width": 1.5},
            marker={"size": 9, "color": [color if s.diff and s.diff.significant else "white" for _, s in pts],
                    "line": {"color": color, "width": 2}},
            error_y={"type": "data", "symmetric": False, "color": color, "thickness": 1,
                     "array": [s.ci_high - s.value for _, s in pts],
                     "arrayminus": [s.value - s.ci_low for _, s in pts]},
            customdata=[[e(v.label), e(s.task), e(s.metric),
                         (f"{s.diff_points[0]:+.1f} vs reference, p={s.diff.p_value:.3f}")
                         if s.diff and s.diff_points else "reference"] for v, s in pts],
            hovertemplate=("<b>%{customdata[0]}</b><br>%{customdata[1]} · %{customdata[2]} %{y:.1f}"
                           "<br>%{x:.2f} bits/weight<br>%{customdata[3]}<extra></extra>"),
        ))
    fig.update_layout(
        title={"text": f"{e(study.family)}: score vs bits per weight (95% CI; filled: differs "
                       "significantly from the reference)", "font": {"size": 13}},
        xaxis={"title": {"text": "bits per weight (from the file's tensor types)"}},
        yaxis={"title": {"text": "score (accuracy %, chrF)"}},
        legend={"orientation": "h", "y": -0.25, "x": 0},
    )
    return figs.add(fig, 340)


def quant_front_figure(figs: Figures, study: FamilyStudy) -> Figure:
    """Mean score against engine seconds per item, the Pareto front starred."""
    go = _go()
    fig = go.Figure()
    pts = [(v, 1.0 / v.items_per_s, v.mean_score) for v in study.variants
           if v.items_per_s and v.mean_score is not None]
    front = [p for p in pts if p[0].model in study.front]
    front.sort(key=lambda p: p[1])
    if len(front) > 1:
        fig.add_trace(go.Scatter(x=[p[1] for p in front], y=[p[2] for p in front], mode="lines",
                                 name="Pareto front", hoverinfo="skip",
                                 line={"color": "#94a3b8", "dash": "dash", "width": 1.5}))
    for i, (v, x, y) in enumerate(pts):
        on = v.model in study.front
        fig.add_trace(go.Scatter(
            x=[x], y=[y], mode="markers+text", text=[e(v.qtype)], textposition="top center",
            name=e(v.label), showlegend=False,
            marker={"size": 15 if on else 10, "symbol": "star" if on else "circle",
                    "color": PALETTE[i % len(PALETTE)], "line": {"color": "#1f2937", "width": 1}},
            hovertemplate=(f"<b>{e(v.label)}</b><br>%{{x:.3f}} s per item<br>mean score %{{y:.1f}}"
                           f"<br>{v.bits_per_weight or 0:.2f} bits/weight<br>"
                           f"{'on' if on else 'not on'} the Pareto front<extra></extra>"),
        ))
    fig.update_layout(
        title={"text": f"{e(study.family)}: mean score vs engine time per item (this device)",
               "font": {"size": 13}},
        xaxis={"title": {"text": "seconds per item — lower is better"}},
        yaxis={"title": {"text": "mean score over the shared tasks"}},
    )
    return figs.add(fig, 320)


def adaptation_figure(figs: Figures, curves: Sequence[AdaptCurve], colors: dict[str, str],
                      target: float) -> Figure:
    """One task: score against training examples, one line per base model from its zero-shot
    point at 0, with 95% CI whiskers; filled markers differ significantly from the base."""
    go = _go()
    fig = go.Figure()
    first = curves[0]
    pct = first.points[0].percent_scale
    for c in curves:
        color = colors.get(c.base, "#333")
        pts = c.points
        fig.add_trace(go.Scatter(
            name=e(c.base), x=[p.examples for p in pts], y=[p.score for p in pts], mode="lines+markers",
            line={"color": color, "width": 2},
            marker={"size": 10, "color": [color if p.adapter is None or p.significant else "white" for p in pts],
                    "line": {"color": color, "width": 2}},
            error_y={"type": "data", "symmetric": False, "color": color, "thickness": 1.2,
                     "array": [p.ci_high - p.score for p in pts],
                     "arrayminus": [p.score - p.ci_low for p in pts]},
            customdata=[[e(p.model), fmt_ci(p.ci_low, p.ci_high, pct),
                         "zero-shot (the base)" if p.adapter is None else
                         f"{p.diff_points:+.1f} points vs base, p={p.p_value:.3f}"
                         if p.diff_points is not None and p.p_value is not None else "no base to compare",
                         p.n] for p in pts],
            hovertemplate=("<b>%{customdata[0]}</b><br>%{x} training examples<br>"
                           f"{e(c.metric)} %{{y:.3f}} %{{customdata[1]}}<br>%{{customdata[2]}}"
                           "<br>n=%{customdata[3]}<extra></extra>"),
        ))
    xmax = max(p.examples for c in curves for p in c.points) or 1
    fig.add_trace(go.Scatter(x=[0, xmax], y=[target, target], mode="lines", name=f"target {target:g}",
                             line={"dash": "dot", "color": "#64748b", "width": 1.2}, hoverinfo="skip"))
    fig.update_layout(
        title={"text": f"{e(first.task)} ({e(LANG_NAMES.get(first.lang, first.lang))}) · "
                       f"{e(first.metric)} vs training examples (95% CI)", "font": {"size": 13}},
        xaxis={"title": {"text": "training examples (0 = the base model, zero-shot)"},
               "tickmode": "array", "tickvals": sorted({p.examples for c in curves for p in c.points})},
        yaxis={"title": {"text": first.metric}, "range": [0, 100 if pct else 1.0]},
        legend={"orientation": "h", "y": -0.25, "x": 0},
    )
    return figs.add(fig, 320)
