"""Render a `Report` as ONE self-contained HTML page, from the Jinja2 templates in
``templates/`` and the CSS and JavaScript in ``static/``.

Everything the page needs is inside the file: the CSS, a few lines of our own JavaScript
(table sort, filters) and plotly.js itself (`plotly.offline.get_plotlyjs()`), so the page opens
offline and makes no network request. The templates run in a sandboxed environment with
autoescaping on: every value from the database (task names, prompts, model outputs, model
names, commands) is HTML-escaped on output; figure data travels as JSON inside
``<script type="application/json">`` with ``<``, ``>`` and ``&`` escaped (see figures.py).
"""

from __future__ import annotations

import datetime as _dt
import html
from collections import defaultdict
from collections.abc import Iterable, Sequence
from functools import cache
from importlib import resources
from typing import Any

from jinja2 import PackageLoader
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from iberlite.analysis.adaptation import curve_sentence, target_on_scale
from iberlite.analysis.fewshot import sentence
from iberlite.langs import LANG_NAMES, lang_key
from iberlite.report import figures as fg
from iberlite.report.build import bench_details
from iberlite.report.sections import Browser, BrowserItem, ItemResult, Report, reproduce
from iberlite.scoring.metric import LOWER_IS_BETTER


def _finalize(value: Any) -> Any:
    # html.escape (quotes as &quot;/&#x27;) for every value; Markup (already safe) passes through
    if value is None:
        return ""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


def _ts(t: float | None) -> str:
    if not t:
        return ""
    return _dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def _num(v: float | None, spec: str = ",.1f", unit: str = "") -> str:
    return "" if v is None else format(v, spec) + unit


def _mib(b: float | None) -> str:
    return "" if b is None else f"{b / 2**20:,.0f} MiB"


def _lang_ok_langs(b: Browser) -> list[str]:
    return sorted({s.lang for s in b.lang_ok}, key=lang_key)


def _results_by_model(it: BrowserItem) -> dict[str, ItemResult]:
    return {r.model: r for r in it.results}


def _wrong_columns(it: BrowserItem, models: Sequence[str]) -> list[str]:
    """Indexes (as text) of the models that got the item wrong: the browser's filter values."""
    by_model = _results_by_model(it)
    return [str(i) for i, m in enumerate(models) if m in by_model and by_model[m].wrong]


@cache
def environment() -> SandboxedEnvironment:
    """The report's template environment (autoescaped, sandboxed, whitespace-trimmed)."""
    env = SandboxedEnvironment(loader=PackageLoader("iberlite.report", "templates"), autoescape=True,
                               finalize=_finalize, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(
        score=fg.fmt_score, ci=fg.fmt_ci, gap=lambda v, pct: f"{v:+.1f}" if pct else f"{v:+.2f}",
        fmt=lambda v, spec: format(v, spec), num=_num, mib=_mib, ts=_ts, label=fg.template_label,
        lang_rank=lambda lang: lang_key(lang)[0], reproduce=reproduce, bench_details=bench_details,
        option=fg.option_label, lang_name=lambda lang: LANG_NAMES.get(lang, lang),
    )
    env.globals.update(LOWER_IS_BETTER=LOWER_IS_BETTER, lang_ok_langs=_lang_ok_langs,
                       results_by_model=_results_by_model, wrong_columns=_wrong_columns)
    return env


def _static(name: str) -> Markup:
    return Markup(resources.files("iberlite.report").joinpath("static", name).read_text(encoding="utf-8"))


def _majority(values: Iterable[str]) -> str:
    counts: dict[str, int] = defaultdict(int)
    for v in values:
        counts[v] += 1
    return max(counts, key=lambda k: counts[k])


def _figures(report: Report, colors: dict[str, str]) -> dict[str, Any]:
    """Every chart, in page order (leaderboard, gaps, cost, routing) so ids follow the page."""
    figs = fg.Figures()
    chance = {b.template: b.chance for b in report.browsers}
    primary: dict[str, list[Any]] = defaultdict(list)
    for s in report.scores:
        if s.primary:
            primary[s.template].append(s)
    score_figs = []
    for template in sorted(primary):
        metric = _majority(s.metric for s in primary[template])
        ss = [s for s in primary[template] if s.metric == metric]
        score_figs.append(fg.scores_figure(figs, template, ss, report.models, colors, chance.get(template)))
    by_template: dict[str, list[Any]] = defaultdict(list)
    for g in report.gaps:
        by_template[g.template].append(g)
    gap_figs = [fg.gap_figure(figs, t, by_template[t], report.models, colors) for t in sorted(by_template)]
    cost_figs = [(axis, fg.cost_figure(figs, axis, colors)) for axis in report.cost_axes]
    quant_figs = [(fg.quant_score_figure(figs, st), fg.quant_front_figure(figs, st))
                  for st in report.quantization]
    adapt_figs = _adaptation_figures(figs, report, colors)
    routing_figs = ([fg.routing_figure(figs, d, report.routing.cloud) for d in report.routing.decisions]
                    if report.routing else [])
    return {"scores": score_figs, "gaps": gap_figs, "costs": cost_figs, "routing": routing_figs,
            "quant": quant_figs, "adaptation": adapt_figs}


def render_html(report: Report) -> str:
    """The whole page as one string."""
    import plotly.offline

    colors = fg.model_colors(report.models)
    estimate = any(c.energy_is_estimate for c in report.costs if c.energy_j is not None)
    axis_keys = {a.key for a in report.cost_axes}
    missing_axes = [name for key, name in (("latency", "latency"), ("memory", "peak memory"),
                                           ("energy", "energy"), ("size", "model size")) if key not in axis_keys]
    versions: dict[str, tuple[dict[str, str], list[int]]] = {}
    for r in report.runs:
        key = repr(sorted(r.versions.items()))
        versions.setdefault(key, (dict(sorted(r.versions.items())), []))[1].append(r.id)
    page = environment().get_template("page.html.j2").render(
        report=report, colors=colors, figs=_figures(report, colors), energy_estimate=estimate,
        missing_axes=missing_axes, versions=list(versions.values()),
        observed={c.model: c for c in report.costs}, css=_static("report.css"), js=_static("report.js"),
        plotly_js=Markup(plotly.offline.get_plotlyjs()), shot_sentences=_shot_sentences(report),
        adapt_sentences=[curve_sentence(c, report.adapt_target) for c in report.adaptation],
    )
    return page


def _shot_sentences(report: Report) -> list[str]:
    zeros = {(s.model, s.task): s for s in report.shots if s.k == 0}
    return [sentence(s, zeros.get((s.model, s.task))) for s in report.shots if s.k]


def _adaptation_figures(figs: fg.Figures, report: Report, colors: dict[str, str]) -> list[fg.Figure]:
    """One panel per task of the adaptation curves, one line per base model."""
    by_task: dict[str, list[Any]] = defaultdict(list)
    for c in report.adaptation:
        by_task[c.task].append(c)
    return [fg.adaptation_figure(figs, cs, colors, target_on_scale(report.adapt_target, cs[0].metric))
            for cs in by_task.values()]
