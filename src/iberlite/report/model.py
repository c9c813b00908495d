"""Everything the report shows, read out of an iberlite database into frozen dataclasses.

`load_report(db)` opens the database read-only (a report never writes, and works while a run is
still writing) and computes what the renderers need: the leaderboard, the language gaps with
their bootstrap tests, the per-model cost summary behind the accuracy-versus-cost plots, the
item browser rows, the device and the methodology. The renderers (`html.py`, `markdown.py`)
only format these records.

Choices made here, so that every number in the report has one meaning:

* Leaderboard: the newest aggregate per (signature, metric), as `iberlite results`; of the
  aggregates of one evaluation (same eval key, metric and device) only the one over the most
  items is kept, since a smaller one is a prefix of it.
* Item-level views (gaps, cost, browser) use one evaluation per (model, task): the one with the
  most stored items, the newest on a tie.
* The language gap of a task family is a language's score minus Spanish on the same task in
  both languages (task names that differ only by the language code), for the task's primary
  metric: accuracy (or exact match) from the stored per-item correctness, chrF for translation
  (corpus chrF from per-sentence statistics, so the gap equals the leaderboard difference).
* Cost is read from runs on one device (the newest run's); other devices are listed, not mixed.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import statistics
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis import language_gap as lg
from ..analysis.pareto import pareto_front
from ..errors import UserError
from ..store import latest_aggregates_sql

LANG_ORDER: tuple[str, ...] = ("es", "ca", "eu", "gl", "pt", "en")
LANG_NAMES: dict[str, str] = {"es": "Spanish", "ca": "Catalan", "eu": "Basque", "gl": "Galician",
                              "pt": "Portuguese", "en": "English"}
REFERENCE_LANG = "es"
MAX_BROWSER_ITEMS = 300
PRIMARY_ORDER: tuple[str, ...] = ("acc", "exact_match_flex", "exact_match", "f1_macro", "chrf",
                                  "bleu", "acc_norm", "ter", "lang_ok")
PERCENT_SCALE_METRICS = frozenset({"bleu", "chrf", "ter"})
LOWER_IS_BETTER = frozenset({"ter"})
REQUIRED_TABLES = ("runs", "evals", "items", "aggregates")


def lang_key(lang: str) -> tuple[int, str]:
    """Sort key putting languages in report order (Spanish first, English last)."""
    return (LANG_ORDER.index(lang) if lang in LANG_ORDER else len(LANG_ORDER), lang)


def task_template(task: str, lang: str) -> str:
    """The task name with its language code replaced by ``{lang}``: tasks with the same
    template are the same task in different languages (``xnli_eu`` -> ``xnli_{lang}``)."""
    return lg.neutral_id(task, lang)


# --- records --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    """One stored run."""

    id: int
    started_at: float
    ended_at: float | None
    status: str
    command: str
    spec: dict[str, Any]
    device: dict[str, Any]
    versions: dict[str, str]
    cost: dict[str, dict[str, Any]]

    @property
    def device_id(self) -> str:
        return str(self.device.get("fingerprint_id", "unknown"))

    @property
    def reproduce(self) -> str:
        """The command that made the run, or one rebuilt from its spec for library calls."""
        if self.command:
            return self.command
        s = self.spec
        parts = ["iberlite", "run"]
        if s.get("models"):
            parts += ["--models", ",".join(s["models"])]
        if s.get("tasks"):
            parts += ["--tasks", ",".join(s["tasks"])]
        if s.get("langs"):
            parts += ["--langs", ",".join(s["langs"])]
        if s.get("limit"):
            parts += ["--limit", str(s["limit"])]
        if s.get("scoring") and s["scoring"] != "fast":
            parts += ["--scoring", str(s["scoring"])]
        if s.get("prefix_cache"):
            parts.append("--prefix-cache")
        if s.get("seed") is not None and s.get("seed") != 1234:
            parts += ["--seed", str(s["seed"])]
        if s.get("n_threads"):
            parts += ["--threads", str(s["n_threads"])]
        if s.get("db"):
            parts += ["--db", str(s["db"])]
        return " ".join(parts) + "   # rebuilt from the stored run spec"


@dataclass(frozen=True)
class Score:
    """One leaderboard cell: a metric of a model on a task, with its 95% CI and signature."""

    model: str
    task: str
    template: str
    family: str
    lang: str
    output: str
    metric: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    signature: str
    primary: bool

    @property
    def percent_scale(self) -> bool:
        return self.metric in PERCENT_SCALE_METRICS


@dataclass(frozen=True)
class ItemResult:
    """What one model answered on one document."""

    model: str
    prediction: str | None
    correct: bool | None
    generated: str | None
    lang_detected: str | None
    lang_ok: bool | None
    chrf: float | None
    wall_ms: float | None

    @property
    def wrong(self) -> bool:
        """Wrong answer; for scored-by-corpus generation, an output in the wrong language."""
        if self.correct is not None:
            return not self.correct
        return self.lang_ok is False


@dataclass(frozen=True)
class BrowserItem:
    """One document of a task family in one language, with every model's answer."""

    task: str
    lang: str
    doc_id: str
    prompt: str
    choices: tuple[str, ...] | None
    gold: str
    results: tuple[ItemResult, ...]


@dataclass(frozen=True)
class Browser:
    """The item browser of one task family (template), capped at `MAX_BROWSER_ITEMS` documents."""

    template: str
    family: str
    output: str
    langs: tuple[str, ...]
    models: tuple[str, ...]
    items: tuple[BrowserItem, ...]
    n_total: int
    per_lang_cap: int
    lang_ok: tuple[Score, ...]


@dataclass(frozen=True)
class Gap:
    """A language's score minus Spanish for one model on one task family."""

    model: str
    template: str
    family: str
    metric: str
    lang: str
    base_task: str
    other_task: str
    test: lg.GapTest

    @property
    def percent_scale(self) -> bool:
        return self.metric in PERCENT_SCALE_METRICS


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
        if self.energy_j is None or not self.energy_items:
            return None
        return self.energy_j / self.energy_items

    @property
    def energy_is_estimate(self) -> bool:
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


@dataclass(frozen=True)
class TaskInfo:
    """Methodology facts of one task: prompt example, hashes, where it came from."""

    task: str
    template: str
    family: str
    lang: str
    target_lang: str
    output: str
    description: str
    reference: str
    prompt_hash: str
    data_hash: str
    example_doc: str
    example_prompt: str
    example_choices: tuple[str, ...] | None
    example_gold: str
    n_items: int


@dataclass(frozen=True)
class Bench:
    """An engine-ceiling measurement (llama-bench style pp/tg tokens per second)."""

    model: str
    test: str
    median: float
    min: float
    max: float
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Report:
    """Everything a report shows."""

    db_path: str
    generated_at: float
    runs: tuple[RunInfo, ...]
    models: tuple[str, ...]
    langs: tuple[str, ...]
    scores: tuple[Score, ...]
    gaps: tuple[Gap, ...]
    costs: tuple[ModelCost, ...]
    cost_axes: tuple[CostAxis, ...]
    accuracy_label: str
    cost_device: str
    browsers: tuple[Browser, ...]
    tasks: tuple[TaskInfo, ...]
    benches: tuple[Bench, ...]
    has_bench_table: bool
    notes: tuple[str, ...]
    routing: dict[str, Any] | None = None  # the latest `iberlite decide`, if any

    @property
    def devices(self) -> dict[str, dict[str, Any]]:
        """Device fingerprint id -> fingerprint, in run order."""
        out: dict[str, dict[str, Any]] = {}
        for r in sorted(self.runs, key=lambda r: r.id):
            if r.device:
                out.setdefault(r.device_id, r.device)
        return out

    @property
    def is_sample_suite(self) -> bool:
        return bool(self.scores) and all(s.task.startswith("sample_") for s in self.scores)


# --- reading ---------------------------------------------------------------------------------


def _connect(db: Path) -> sqlite3.Connection:
    db = Path(db)
    if not db.exists():
        raise UserError(f"No results database at {db}; run `iberlite run` first or pass --db.")
    try:
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise UserError(f"{db} is not an iberlite database ({exc}).") from exc
    missing = [t for t in REQUIRED_TABLES if t not in names]
    if missing:
        conn.close()
        raise UserError(f"{db} is not an iberlite database (no {', '.join(missing)} table).")
    conn.row_factory = sqlite3.Row
    return conn


def _json(value: str | None, default: Any) -> Any:
    if not value:
        return default
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return default


def _runs(conn: sqlite3.Connection) -> list[RunInfo]:
    out = []
    for r in conn.execute("SELECT * FROM runs ORDER BY id"):
        out.append(RunInfo(
            id=r["id"], started_at=r["started_at"], ended_at=r["ended_at"], status=r["status"],
            command=r["command"] or "", spec=_json(r["spec_json"], {}),
            device=_json(r["device_json"], {}), versions=_json(r["versions_json"], {}),
            cost=_json(r["cost_json"], {}) or {},
        ))
    return out


def _device_of_signature(sig: str) -> str:
    m = re.search(r"(?:^|\|)device:([^|]*)", sig)
    return m.group(1) if m else ""


def _primary_metric(metrics: Sequence[str]) -> str | None:
    for m in PRIMARY_ORDER:
        if m in metrics:
            return m
    return metrics[0] if metrics else None


@dataclass(frozen=True)
class _Eval:
    eval_key: str
    model: str
    task: str
    lang: str
    family: str
    output: str
    engine: dict[str, Any]
    task_info: dict[str, Any]
    created_at: float

    @property
    def template(self) -> str:
        return task_template(self.task, self.lang)


@dataclass(frozen=True)
class _Item:
    doc_id: str
    seq: int
    run_id: int
    prompt: str
    choices: tuple[str, ...] | None
    prediction: str | None
    gold: str
    correct: bool | None
    generated: str | None
    wall_ms: float | None
    prefill_ms: float | None
    decode_ms: float | None
    eval_tokens: float | None
    prompt_tokens: int | None
    reused_tokens: int | None
    gen_tokens: int | None


def _evals(conn: sqlite3.Connection) -> dict[str, _Eval]:
    out = {}
    for r in conn.execute("SELECT * FROM evals"):
        out[r["eval_key"]] = _Eval(r["eval_key"], r["model"], r["task"], r["lang"], r["family"],
                                   r["output"], _json(r["engine_json"], {}), _json(r["task_json"], {}),
                                   r["created_at"])
    return out


def _items(conn: sqlite3.Connection, eval_key: str) -> list[_Item]:
    rows = conn.execute(
        "SELECT doc_id, seq, run_id, prompt, choices_json, prediction, gold, correct, generated, "
        "wall_ms, prefill_ms, decode_ms, eval_tokens, prompt_tokens, reused_tokens, gen_tokens "
        "FROM items WHERE eval_key = ? ORDER BY seq, id", (eval_key,))
    out = []
    for r in rows:
        choices = _json(r["choices_json"], None)
        out.append(_Item(
            doc_id=r["doc_id"], seq=r["seq"], run_id=r["run_id"], prompt=r["prompt"] or "",
            choices=tuple(str(c) for c in choices) if choices is not None else None,
            prediction=r["prediction"], gold=r["gold"],
            correct=None if r["correct"] is None else bool(r["correct"]), generated=r["generated"],
            wall_ms=r["wall_ms"], prefill_ms=r["prefill_ms"], decode_ms=r["decode_ms"],
            eval_tokens=r["eval_tokens"], prompt_tokens=r["prompt_tokens"],
            reused_tokens=r["reused_tokens"], gen_tokens=r["gen_tokens"],
        ))
    return out


def _leaderboard(conn: sqlite3.Connection, evals: dict[str, _Eval]) -> list[Score]:
    rows = conn.execute(latest_aggregates_sql()).fetchall()
    best: dict[tuple[str, str, str], sqlite3.Row] = {}
    for r in rows:
        key = (r["eval_key"], r["metric"], _device_of_signature(r["signature"]))
        cur = best.get(key)
        if cur is None or (r["n"], r["id"]) > (cur["n"], cur["id"]):
            best[key] = r
    by_eval: dict[tuple[str, str], list[str]] = defaultdict(list)
    for (ek, metric, dev) in best:
        by_eval[(ek, dev)].append(metric)
    out = []
    for (ek, metric, dev), r in best.items():
        ev = evals.get(ek)
        family = ev.family if ev else ""
        output = ev.output if ev else ""
        primary = metric == _primary_metric(by_eval[(ek, dev)])
        out.append(Score(r["model"], r["task"], task_template(r["task"], r["lang"]), family,
                         r["lang"], output, metric, r["value"], r["ci_low"], r["ci_high"], r["n"],
                         r["signature"], primary))
    out.sort(key=lambda s: (s.template, lang_key(s.lang), s.task, s.model,
                            PRIMARY_ORDER.index(s.metric) if s.metric in PRIMARY_ORDER else 99, s.n))
    return out


def _choose_evals(conn: sqlite3.Connection, evals: dict[str, _Eval]) -> dict[tuple[str, str], _Eval]:
    counts = dict(conn.execute("SELECT eval_key, COUNT(*) FROM items GROUP BY eval_key").fetchall())
    chosen: dict[tuple[str, str], _Eval] = {}
    for ek, ev in evals.items():
        if not counts.get(ek):
            continue
        key = (ev.model, ev.task)
        cur = chosen.get(key)
        if cur is None or (counts[ek], ev.created_at) > (counts[cur.eval_key], cur.created_at):
            chosen[key] = ev
    return chosen


def _specs() -> dict[str, Any]:
    try:
        from ..tasks.registry import load_task_specs

        return load_task_specs()
    except Exception:  # noqa: BLE001 - the report must work without the task files
        return {}


def _spec_for(ev: _Eval, specs: dict[str, Any]) -> Any:
    spec = specs.get(ev.task)
    if spec is not None:
        return spec
    path = ev.task_info.get("path")
    if path and Path(path).is_file():
        try:
            from ..tasks.spec import read_task_file

            return read_task_file(Path(path))
        except Exception:  # noqa: BLE001
            return None
    return None


def _target_lang(ev: _Eval, spec: Any) -> str:
    if spec is not None:
        return spec.output_lang
    m = re.search(r"[_-]([a-z]{2})-([a-z]{2})$", ev.task)
    return m.group(2) if m else ev.lang


def _detect_langs(texts: list[str | None]) -> list[str | None]:
    if not texts:
        return []
    try:
        from ..language_id import LanguageIdentifier

        return LanguageIdentifier().identify_many(texts)
    except Exception:  # noqa: BLE001 - langid missing: the browser just shows no language
        return [None] * len(texts)


def _sentence_chrf(hyp: str, ref: str) -> float | None:
    try:
        from sacrebleu.metrics.chrf import CHRF

        return float(CHRF().sentence_score(hyp, [ref]).score)
    except Exception:  # noqa: BLE001
        return None


def _quantile(values: Sequence[float], q: float) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None
    return float(np.percentile(vals, q))


def _sum(values: Sequence[float | int | None]) -> float:
    return float(sum(v for v in values if v is not None))


# --- the report -----------------------------------------------------------------------------


def load_report(db: Path, *, n_boot: int = lg.DEFAULT_N_BOOT, seed: int = lg.DEFAULT_SEED,
                max_browser_items: int = MAX_BROWSER_ITEMS) -> Report:
    """Read a database and compute everything the report shows."""
    conn = _connect(db)
    try:
        return _build(conn, Path(db), n_boot=n_boot, seed=seed, max_browser_items=max_browser_items)
    finally:
        conn.close()


def _build(conn: sqlite3.Connection, db: Path, *, n_boot: int, seed: int,
           max_browser_items: int) -> Report:
    runs = _runs(conn)
    evals = _evals(conn)
    scores = _leaderboard(conn, evals)
    chosen = _choose_evals(conn, evals)
    items = {ev.eval_key: _items(conn, ev.eval_key) for ev in chosen.values()}
    specs = _specs()
    spec_of = {ev.task: _spec_for(ev, specs) for ev in chosen.values()}
    notes: list[str] = []

    models = tuple(sorted({ev.model for ev in chosen.values()} | {s.model for s in scores}))
    langs = tuple(sorted({ev.lang for ev in chosen.values()} | {s.lang for s in scores}, key=lang_key))

    # Per-item language and sentence chrF of every generated output (browser and cost views).
    gen_keys = [ek for ek, ev in ((ev.eval_key, ev) for ev in chosen.values()) if ev.output != "multiple_choice"]
    flat = [(ek, i) for ek in gen_keys for i in range(len(items[ek]))]
    detected = _detect_langs([items[ek][i].generated for ek, i in flat])
    lang_of: dict[tuple[str, int], str | None] = {k: d for k, d in zip(flat, detected)}

    gaps = _gaps(chosen, items, scores, n_boot=n_boot, seed=seed)
    browsers = _browsers(chosen, items, spec_of, lang_of, scores, max_browser_items)
    cost_device = _cost_device(runs)
    costs, acc_label = _costs(conn, runs, chosen, items, cost_device)
    if len({r.device_id for r in runs if r.device}) > 1:
        notes.append(f"Runs from {len({r.device_id for r in runs if r.device})} devices are stored; "
                     f"the cost views use device {cost_device} only.")
    running = [r.id for r in runs if r.status == "running"]
    if running:
        notes.append(f"Run(s) {', '.join(map(str, running))} had not finished when this report "
                     "was built: their items are included, their cost is not recorded yet.")
    benches, has_bench = _benches(conn)
    return Report(
        db_path=str(db), generated_at=time.time(), runs=tuple(runs), models=models, langs=langs,
        scores=tuple(scores), gaps=tuple(gaps), costs=tuple(costs),
        cost_axes=_cost_axes(costs), accuracy_label=acc_label, cost_device=cost_device,
        browsers=tuple(browsers), tasks=tuple(_task_infos(chosen, items, spec_of)),
        benches=tuple(benches), has_bench_table=has_bench, notes=tuple(notes),
        routing=_routing(conn),
    )


def _routing(conn: sqlite3.Connection) -> dict[str, Any] | None:
    """The latest routing decision stored by `iberlite decide` (None if there is none)."""
    try:
        row = conn.execute("SELECT id, created_at, command, device_model, cloud_model, min_accuracy, "
                           "profile_json, decisions_json FROM decisions ORDER BY id DESC LIMIT 1").fetchone()
    except sqlite3.OperationalError:  # a database from before decisions existed
        return None
    if row is None:
        return None
    return {"id": row[0], "created_at": row[1], "command": row[2], "device": row[3], "cloud": row[4],
            "min_accuracy": row[5], "profile": _json(row[6], {}), "decisions": _json(row[7], [])}


def _gap_metric(ev: _Eval, its: list[_Item], scores: list[Score]) -> str | None:
    if its and all(it.correct is not None for it in its):
        if ev.output == "multiple_choice":
            return "acc"
        metrics = {s.metric for s in scores if s.model == ev.model and s.task == ev.task}
        return "exact_match_flex" if "exact_match_flex" in metrics else "exact_match"
    if its and all(it.generated is not None for it in its):
        metrics = {s.metric for s in scores if s.model == ev.model and s.task == ev.task}
        return "bleu" if "bleu" in metrics and "chrf" not in metrics else "chrf"
    return None


def _gap_values(metric: str, its: list[_Item]) -> tuple[np.ndarray, lg.ScoreFn]:
    if metric in PERCENT_SCALE_METRICS:
        return lg.corpus_stats(metric, [it.generated or "" for it in its], [it.gold for it in its])
    return np.array([float(bool(it.correct)) for it in its]), lg.mean_score


def _gaps(chosen: dict[tuple[str, str], _Eval], items: dict[str, list[_Item]],
          scores: list[Score], *, n_boot: int, seed: int) -> list[Gap]:
    by_template: dict[tuple[str, str], dict[str, _Eval]] = defaultdict(dict)
    for (model, _task), ev in chosen.items():
        by_template[(model, ev.template)][ev.lang] = ev
    out = []
    for (model, template), by_lang in sorted(by_template.items()):
        base = by_lang.get(REFERENCE_LANG)
        if base is None or "{lang}" not in template or len(by_lang) < 2:
            continue
        base_items = items[base.eval_key]
        metric = _gap_metric(base, base_items, scores)
        if metric is None:
            continue
        a_vals, score_fn = _gap_values(metric, base_items)
        a_ids = [lg.neutral_id(it.doc_id, base.lang) for it in base_items]
        for lang in sorted(by_lang, key=lang_key):
            if lang == REFERENCE_LANG:
                continue
            ev = by_lang[lang]
            its = items[ev.eval_key]
            if _gap_metric(ev, its, scores) != metric:
                continue
            b_vals, _ = _gap_values(metric, its)
            b_ids = [lg.neutral_id(it.doc_id, ev.lang) for it in its]
            test = lg.gap_test(a_ids, a_vals, b_ids, b_vals, score=score_fn, n_boot=n_boot, seed=seed)
            out.append(Gap(model, template, base.family, metric, lang, base.task, ev.task, test))
    return out


def _browsers(chosen: dict[tuple[str, str], _Eval], items: dict[str, list[_Item]],
              spec_of: dict[str, Any], lang_of: dict[tuple[str, int], str | None],
              scores: list[Score], max_items: int) -> list[Browser]:
    by_template: dict[str, list[_Eval]] = defaultdict(list)
    for ev in chosen.values():
        by_template[ev.template].append(ev)
    out = []
    for template in sorted(by_template):
        evs = by_template[template]
        models = tuple(sorted({e.model for e in evs}))
        tasks = sorted({e.task for e in evs}, key=lambda t: lang_key(next(e.lang for e in evs if e.task == t)))
        langs = tuple(sorted({e.lang for e in evs}, key=lang_key))
        per_lang = max(1, max_items // max(1, len(tasks)))
        rows: list[BrowserItem] = []
        n_total = 0
        for task in tasks:
            task_evs = {e.model: e for e in evs if e.task == task}
            target = _target_lang(next(iter(task_evs.values())), spec_of.get(task))
            docs: dict[str, dict[str, tuple[int, _Item]]] = defaultdict(dict)
            order: list[str] = []
            for model, e in task_evs.items():
                for i, it in enumerate(items[e.eval_key]):
                    if it.doc_id not in docs:
                        order.append(it.doc_id)
                    docs[it.doc_id][model] = (i, it)
            n_total += len(order)
            for doc_id in order[:per_lang]:
                per_model = docs[doc_id]
                first = next(iter(per_model.values()))[1]
                results = []
                for model in models:
                    if model not in per_model:
                        continue
                    i, it = per_model[model]
                    e = task_evs[model]
                    detected = lang_of.get((e.eval_key, i))
                    gen = e.output != "multiple_choice"
                    results.append(ItemResult(
                        model=model, prediction=it.prediction, correct=it.correct,
                        generated=it.generated, lang_detected=detected if gen else None,
                        lang_ok=(detected == target) if gen and it.generated is not None else None,
                        chrf=_sentence_chrf(it.generated or "", it.gold) if gen and it.correct is None else None,
                        wall_ms=it.wall_ms,
                    ))
                lang = task_evs[next(iter(per_model))].lang
                rows.append(BrowserItem(task, lang, doc_id, first.prompt, first.choices, first.gold,
                                        tuple(results)))
        lang_ok = tuple(s for s in scores if s.template == template and s.metric == "lang_ok")
        out.append(Browser(template, evs[0].family, evs[0].output, langs, models, tuple(rows),
                           n_total, per_lang, lang_ok))
    return out


def _cost_device(runs: list[RunInfo]) -> str:
    for r in sorted(runs, key=lambda r: r.id, reverse=True):
        if r.device and r.cost:
            return r.device_id
    for r in sorted(runs, key=lambda r: r.id, reverse=True):
        if r.device:
            return r.device_id
    return "unknown"


def _accuracy_tasks(chosen: dict[tuple[str, str], _Eval], items: dict[str, list[_Item]],
                    models: Sequence[str]) -> tuple[list[str], str]:
    """Tasks with per-item correctness that every model ran (MC first, then exact match)."""
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


def _costs(conn: sqlite3.Connection, runs: list[RunInfo], chosen: dict[tuple[str, str], _Eval],
           items: dict[str, list[_Item]], device: str) -> tuple[list[ModelCost], str]:
    dev_runs = {r.id: r for r in runs if r.device_id == device or not r.device}
    models = sorted({m for (m, _t) in chosen})
    acc_tasks, acc_label = _accuracy_tasks(chosen, items, models)
    new_items: dict[tuple[int, str], int] = {
        (run_id, model): n for run_id, model, n in conn.execute(
            "SELECT i.run_id, e.model, COUNT(*) FROM items i JOIN evals e USING (eval_key) "
            "GROUP BY i.run_id, e.model")
    }
    out = []
    for model in models:
        evs = [ev for (m, _t), ev in chosen.items() if m == model]
        engine = max(evs, key=lambda e: e.created_at).engine
        costs = [(r, r.cost[model]) for r in dev_runs.values() if isinstance(r.cost.get(model), dict)]
        # a rerun that found every item stored spent energy on loading only: it would inflate
        # the per-item figure, so only runs that evaluated items count
        energy_runs = [(r, c) for r, c in costs
                       if c.get("energy_j") is not None and new_items.get((r.id, model), 0) > 0]
        methods = sorted({str(c.get("energy_method")) for _r, c in energy_runs})
        method = methods[0] if len(methods) == 1 else ("mixed: " + ", ".join(methods) if methods else None)
        watts = sorted({c.get("watts_assumed") for _r, c in energy_runs if c.get("watts_assumed") is not None})
        latest = max(costs, key=lambda rc: rc[0].id)[1] if costs else {}
        peak = [c.get("peak_rss_bytes") for _r, c in costs if c.get("peak_rss_bytes") is not None]
        after = [c.get("rss_after_load_bytes") for _r, c in costs if c.get("rss_after_load_bytes") is not None]

        acc_evs = [ev for ev in evs if ev.task in acc_tasks]
        lat_items = [it for ev in acc_evs for it in items[ev.eval_key] if it.run_id in dev_runs]
        walls = [it.wall_ms for it in lat_items if it.wall_ms is not None]
        accs = [float(np.mean([float(bool(it.correct)) for it in items[ev.eval_key]])) for ev in acc_evs]

        mc = [it for ev in evs if ev.output == "multiple_choice" for it in items[ev.eval_key]
              if it.run_id in dev_runs]
        gen = [it for ev in evs if ev.output != "multiple_choice" for it in items[ev.eval_key]
               if it.run_id in dev_runs]

        def rate(tokens: float, ms: float) -> float | None:
            return tokens / ms * 1000.0 if ms > 0 and tokens > 0 else None

        out.append(ModelCost(
            model=model, file_type=str(engine.get("file_type", "")),
            n_params=engine.get("n_params"), size_bytes=engine.get("size_bytes"),
            load_ms=latest.get("load_ms"),
            rss_after_load_bytes=max(after) if after else None,
            peak_rss_bytes=max(peak) if peak else None,
            energy_j=_sum([c["energy_j"] for _r, c in energy_runs]) if energy_runs else None,
            energy_items=sum(new_items.get((r.id, model), 0) for r, _c in energy_runs),
            energy_method=method, watts_assumed=watts[0] if len(watts) == 1 else None,
            cpu_s=_sum([c.get("cpu_s") for _r, c in costs]) if costs else None,
            wall_s=_sum([c.get("wall_s") for _r, c in costs]) if costs else None,
            p50_ms=_quantile(walls, 50), p90_ms=_quantile(walls, 90), latency_items=len(walls),
            mc_tokens_per_s=rate(_sum([it.eval_tokens for it in mc]), _sum([it.wall_ms for it in mc])),
            decode_tokens_per_s=rate(_sum([it.gen_tokens for it in gen]), _sum([it.decode_ms for it in gen])),
            prefill_tokens_per_s=rate(
                _sum([(it.prompt_tokens or 0) - (it.reused_tokens or 0) for it in gen]),
                _sum([it.prefill_ms for it in gen])),
            accuracy=statistics.fmean(accs) if accs else None, accuracy_tasks=len(accs),
        ))
    return out, acc_label


def _cost_axes(costs: Sequence[ModelCost]) -> list[CostAxis]:
    def axis(key: str, title: str, unit: str, get: Any, note: str = "") -> CostAxis | None:
        pts = [(c.model, get(c), c.accuracy) for c in costs]
        pts = [(m, x, y) for m, x, y in pts if x is not None and y is not None]
        if not pts:
            return None
        ms, xs, ys = zip(*pts)
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


def _task_infos(chosen: dict[tuple[str, str], _Eval], items: dict[str, list[_Item]],
                spec_of: dict[str, Any]) -> list[TaskInfo]:
    by_task: dict[str, list[_Eval]] = defaultdict(list)
    for ev in chosen.values():
        by_task[ev.task].append(ev)
    out = []
    for task, evs in by_task.items():
        ev = max(evs, key=lambda e: len(items[e.eval_key]))
        its = items[ev.eval_key]
        first = its[0]
        spec = spec_of.get(task)
        out.append(TaskInfo(
            task=task, template=ev.template, family=ev.family, lang=ev.lang,
            target_lang=_target_lang(ev, spec), output=ev.output,
            description=getattr(spec, "description", "") or "",
            reference=str(ev.task_info.get("reference", "")),
            prompt_hash=str(ev.task_info.get("prompt_hash", "")),
            data_hash=str(ev.task_info.get("data_hash", "")),
            example_doc=first.doc_id, example_prompt=first.prompt, example_choices=first.choices,
            example_gold=first.gold, n_items=len(its),
        ))
    out.sort(key=lambda t: (t.template, lang_key(t.lang), t.task))
    return out


def _benches(conn: sqlite3.Connection) -> tuple[list[Bench], bool]:
    has = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='benches'").fetchone()
    if not has:
        return [], False
    try:
        cur = conn.execute("SELECT * FROM benches ORDER BY rowid")
        names = [c[0] for c in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
    except sqlite3.DatabaseError:
        return [], True
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in rows:
        if not all(k in r for k in ("model", "test", "median")):
            continue
        dev = _json(r.get("device_json"), {}) if isinstance(r.get("device_json"), str) else {}
        key = (r["model"], r["test"], r.get("n_threads"), dev.get("fingerprint_id"))
        latest[key] = r  # rows are in insertion order: the newest wins
    out = []
    for r in latest.values():
        dev = _json(r.get("device_json"), {}) if isinstance(r.get("device_json"), str) else {}
        extra = {k: r[k] for k in ("file_type", "n_tokens", "reps", "std", "n_threads", "created_at")
                 if k in r and r[k] is not None}
        if dev.get("fingerprint_id"):
            extra["device"] = dev["fingerprint_id"]
        out.append(Bench(str(r["model"]), str(r["test"]), float(r["median"]),
                         float(r.get("min", r["median"])), float(r.get("max", r["median"])), extra))
    out.sort(key=lambda b: (b.model, b.test))
    return out, True
