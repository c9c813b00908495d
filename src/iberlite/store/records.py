"""What the store hands out and takes in: one frozen dataclass per kind of stored row.

Free-form JSON blobs that other modules own (a run's spec, a device fingerprint, an engine's
facts, a cost profile) stay dicts; everything whose shape the store defines is a record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class RunCost:
    """What loading and running one model cost in one run: memory, energy, CPU and wall time.

    A remote model (an OpenAI-compatible endpoint) spends its memory and energy elsewhere:
    only its load time is recorded, and `remote` is True.
    """

    load_ms: float | None = None
    remote: bool = False
    rss_start_bytes: int | None = None
    rss_after_load_bytes: int | None = None
    peak_rss_bytes: int | None = None
    os_peak_rss_bytes: int | None = None
    energy_j: float | None = None
    energy_method: str | None = None
    watts_assumed: float | None = None
    cpu_s: float | None = None
    wall_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored in `runs.cost_json` (a remote model stores its load time only)."""
        if self.remote:
            return {"load_ms": self.load_ms, "remote": True}
        d = asdict(self)
        d.pop("remote")
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunCost:
        """Read back a stored cost object; unknown keys are ignored, missing ones are None."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def cost_key(model: str, device_class: str | None = None) -> str:
    """The key of a model's cost in `runs.cost_json`: the model name, with ` on CLASS` when its
    items were pinned to a device class (one run then measures the model on several devices;
    `@` already means a quantized variant, MODEL@TYPE)."""
    return f"{model} on {device_class}" if device_class else model


@dataclass(frozen=True)
class RunRecord:
    """One stored run: what was asked, on which device, with which versions, and what it cost."""

    id: int
    started_at: float
    ended_at: float | None
    status: str
    command: str
    spec: dict[str, Any]
    device: dict[str, Any]
    versions: dict[str, str]
    costs: dict[str, RunCost]  # model name -> cost

    @property
    def device_id(self) -> str:
        """The device fingerprint id the run was made on ("unknown" when not recorded)."""
        return str(self.device.get("fingerprint_id", "unknown"))


@dataclass(frozen=True)
class EvalRecord:
    """One evaluation: a model on a task's prompt and data with one engine setup (its key)."""

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
    def device_class(self) -> str | None:
        """The device class its items were pinned to (None: not pinned)."""
        extra = self.engine.get("extra") or {}
        return extra.get("device_class") or None


@dataclass(frozen=True)
class ItemRecord:
    """One evaluated item as stored: what was asked, what came back, what it cost.

    `lang_detected` is the language identified in a generated output when it was scored
    (None for multiple choice and for items stored before schema version 2). `device_id` is the
    fingerprint id of the device that answered it and `device_class` the class its shard was
    pinned to (None when not pinned; see docs/scale.md). `run_id` is set on items read back
    from the store.
    """

    doc_id: str
    seq: int
    prompt: str
    gold: str
    choices: tuple[str, ...] | None = None
    logprobs: tuple[float, ...] | None = None
    n_tokens: tuple[int, ...] | None = None
    greedy: tuple[bool, ...] | None = None
    prediction: str | None = None
    correct: bool | None = None
    generated: str | None = None
    stop_reason: str | None = None
    eval_tokens: float | None = None
    prompt_tokens: int | None = None
    gen_tokens: int | None = None
    reused_tokens: int | None = None
    wall_ms: float | None = None
    prefill_ms: float | None = None
    decode_ms: float | None = None
    ttft_ms: float | None = None
    confidence: float | None = None
    lang_detected: str | None = None
    device_id: str | None = None
    device_class: str | None = None
    run_id: int | None = None


@dataclass(frozen=True)
class ItemFailure:
    """An item that could not be evaluated, and why (`timeout`, `HTTP 503`, `malformed JSON`...).

    Failed items are kept apart from `ItemRecord`s: they have no answer to score, a resumed run
    evaluates them again, and scores say how many were left out. `run_id` is set when read back.
    """

    doc_id: str
    seq: int
    reason: str
    run_id: int | None = None


@dataclass(frozen=True)
class AggregateRecord:
    """One metric over one evaluation, with its CI and its signature (`id` once stored)."""

    eval_key: str
    model: str
    task: str
    lang: str
    metric: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    signature: str
    id: int | None = None


@dataclass(frozen=True)
class BenchRecord:
    """One engine-ceiling measurement (llama-bench style pp/tg tokens per second).

    Only model, test and the three tokens/s figures are required: databases written by older
    versions may lack the other columns.
    """

    model: str
    test: str
    median: float
    min: float
    max: float
    model_sha256: str = ""
    file_type: str = ""
    n_tokens: int | None = None
    reps: int | None = None
    std: float | None = None
    n_threads: int | None = None
    device: dict[str, Any] = field(default_factory=dict)
    samples: tuple[float, ...] = ()
    id: int | None = None
    created_at: float | None = None


@dataclass(frozen=True)
class DecisionRecord:
    """One stored `iberlite decide` outcome. `decisions` are the JSON objects of
    :class:`iberlite.decide.routing.Decision` (read them back with `decision_from_json`)."""

    id: int
    created_at: float
    command: str
    device_model: str
    cloud_model: str
    min_accuracy: float
    profile: dict[str, Any]
    decisions: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class AdviceRecord:
    """One stored `iberlite advise` outcome: the fields of
    :class:`iberlite.bench.advise.Advice` (read them back with `advice_from_json`)."""

    id: int
    created_at: float
    family: str
    device_id: str
    device: dict[str, Any]
    advice: dict[str, Any]
