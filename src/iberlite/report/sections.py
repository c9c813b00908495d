"""The records a report is made of: frozen dataclasses the renderers only format.

Cost records (`ModelCost`, `CostAxis`) and gaps (`Gap`) come from :mod:`iberlite.analysis`;
runs and benches are the store's own records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from iberlite.analysis.adaptation import DEFAULT_TARGET, AdaptCurve
from iberlite.analysis.device_cost import CostRow
from iberlite.analysis.fewshot import ShotScore
from iberlite.analysis.gaps import Gap
from iberlite.analysis.model_summary import CostAxis, ModelCost
from iberlite.analysis.quantization import FamilyStudy
from iberlite.bench.advise import Advice
from iberlite.decide.candidates import routing_labelling, routing_moves
from iberlite.decide.routing import Decision
from iberlite.scoring.metric import percent_scale
from iberlite.store import BenchRecord, RunRecord

__all__ = ["Browser", "BrowserItem", "CostAxis", "FamilyStudy", "Gap", "ItemResult", "LeaderboardEntry", "ModelCost",
           "Report", "Routing", "TaskInfo", "reproduce"]


@dataclass(frozen=True)
class LeaderboardEntry:
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
        """True for the metrics on 0-100 (BLEU, chrF, TER)."""
        return percent_scale(self.metric)


@dataclass(frozen=True)
class ItemResult:
    """What one model answered on one document.

    `lang_detected` / `lang_ok` are the language identified in a generated output when it was
    scored, as stored; None when the database predates storing it."""

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
    """The item browser of one task family (template), capped at a number of documents."""

    template: str
    family: str
    output: str
    langs: tuple[str, ...]
    models: tuple[str, ...]
    items: tuple[BrowserItem, ...]
    n_total: int
    per_lang_cap: int
    lang_ok: tuple[LeaderboardEntry, ...]

    @property
    def chance(self) -> float | None:
        """Expected accuracy of a uniform guess over the shown multiple-choice items."""
        ns = [len(it.choices) for it in self.items if it.choices]
        if not ns:
            return None
        return sum(1.0 / n for n in ns) / len(ns)


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
class Routing:
    """The latest `iberlite decide` outcome stored in the database."""

    id: int
    created_at: float
    command: str
    device: str
    cloud: str
    min_accuracy: float
    currency: str
    illustrative: bool
    profile_source: str
    decisions: tuple[Decision, ...]

    @property
    def moves(self) -> tuple[str, ...]:
        """Which adapted or few-shot device candidates move a task and language toward the
        device and what that saves (or that none does); empty when one candidate was decided."""
        return routing_moves(self.decisions)

    @property
    def labelling(self) -> tuple[str, ...]:
        """Per (task, language) whose candidate was trained on people's labels: what the labels
        cost against what the device then saves per month; empty for decisions without labels."""
        return routing_labelling(self.decisions)


@dataclass(frozen=True)
class EngineSetup:
    """How one model ran on the device, as stored with its evaluations: engine, threads, the
    weight buffers and scoring layout llama.cpp used (engines/kernels.py), and whether the
    doctor's probe found that layout exact there."""

    model: str
    engine: str
    n_threads: int | None
    scoring: str
    buffers: str
    simd: str
    layout: str

    @property
    def exact(self) -> bool | None:
        """False for a layout labelled approx; None when no layout was recorded."""
        return None if not self.layout else "approx" not in self.layout


@dataclass(frozen=True)
class Report:
    """Everything a report shows."""

    db_path: str
    generated_at: float
    runs: tuple[RunRecord, ...]
    models: tuple[str, ...]
    langs: tuple[str, ...]
    scores: tuple[LeaderboardEntry, ...]
    gaps: tuple[Gap, ...]
    costs: tuple[ModelCost, ...]
    cost_axes: tuple[CostAxis, ...]
    accuracy_label: str
    cost_device: str
    browsers: tuple[Browser, ...]
    tasks: tuple[TaskInfo, ...]
    benches: tuple[BenchRecord, ...]
    has_bench_table: bool
    notes: tuple[str, ...]
    routing: Routing | None = None
    engine_setups: tuple[EngineSetup, ...] = ()
    quantization: tuple[FamilyStudy, ...] = ()  # per model with variants (MODEL@TYPE)
    advice: tuple[Advice, ...] = ()  # `iberlite advise`: newest per model and device
    class_costs: tuple[CostRow, ...] = ()  # device figures of items pinned to a device class
    item_time: tuple[CostRow, ...] = ()  # generation tasks: where an item's time goes (prefill vs decode)
    worker_devices: tuple[tuple[str, dict[str, Any]], ...] = ()  # fingerprints of Ray workers that answered
    shots: tuple[ShotScore, ...] = ()  # few-shot: every k per model and task (empty: zero-shot only)
    # how much local data is enough: score vs adapter training examples per base model and task
    adaptation: tuple[AdaptCurve, ...] = ()
    adapt_target: float = DEFAULT_TARGET  # the score the curves' sentences ask for (0-1 scale)

    @property
    def devices(self) -> dict[str, dict[str, Any]]:
        """Device fingerprint id -> fingerprint, in run order, then the Ray workers' others."""
        out: dict[str, dict[str, Any]] = {}
        for r in sorted(self.runs, key=lambda r: r.id):
            if r.device:
                out.setdefault(r.device_id, r.device)
        for fid, device in self.worker_devices:
            out.setdefault(fid, device)
        return out

    @property
    def is_sample_suite(self) -> bool:
        """True when every score is on the project's sample suite (a smoke test)."""
        return bool(self.scores) and all(s.task.startswith("sample_") for s in self.scores)


def reproduce(run: RunRecord) -> str:
    """The command that made the run, or one rebuilt from its spec for library calls."""
    if run.command:
        return run.command
    s = run.spec
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
