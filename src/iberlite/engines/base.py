"""The engine protocol every backend implements, and the records it exchanges."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """Score `continuation` after `context`.

    Requests with the same non-empty `group` (one multiple-choice item) are scored together,
    which lets an engine evaluate their shared token prefix once.
    """

    context: str
    continuation: str
    group: str = ""
    # the start of `context` every request of a task shares (fixed few-shot): an engine may keep
    # its KV across calls instead of computing it for every item
    shared_prefix: str = ""


@dataclass(frozen=True)
class LoglikelihoodResult:
    """Summed logprob of the continuation tokens, their count, and whether greedy decoding
    would have produced exactly them.

    `eval_tokens` and `ms` are this request's share of the work actually done: a prefix
    shared by several requests is counted once, split evenly among them, so summing a
    group's requests gives the item's true cost.
    """

    logprob: float
    n_tokens: int
    is_greedy: bool
    eval_tokens: float = 0.0
    ms: float = 0.0


@dataclass(frozen=True)
class GenerationRequest:
    """Greedy generation from `prompt`, cut at the first of `until`, at most `max_tokens`."""

    prompt: str
    until: tuple[str, ...] = ()
    max_tokens: int = 256


@dataclass(frozen=True)
class GenerationResult:
    """The generated text plus what it cost on the device.

    `reused_tokens` counts prompt tokens taken from the cache instead of prefilled; a reused
    prefix is not a fresh prefill and the timings say so.
    """

    text: str
    prompt_tokens: int
    gen_tokens: int
    prefill_ms: float
    decode_ms: float
    ttft_ms: float
    wall_ms: float
    stop_reason: str  # "until" | "eos" | "length" | "timeout"
    reused_tokens: int = 0
    mean_logprob: float | None = None


class RequestFailed(Exception):
    """One request could not be answered (a remote endpoint timed out, answered 5xx or sent a
    broken body, after its retries). The runner stores the item as failed with `reason` and
    goes on; a resumed run retries it."""

    reason: str = "request failed"


@dataclass(frozen=True)
class EngineInfo:
    """Everything about the engine and model that belongs in a result's signature."""

    engine: str
    engine_version: str
    model_name: str
    model_path: str
    model_sha256: str
    architecture: str
    file_type: str
    tensor_types: str
    n_params: int
    size_bytes: int
    n_threads: int
    n_ctx: int
    n_batch: int
    scoring: str
    seed: int
    load_ms: float
    extra: dict[str, str] = field(default_factory=dict)  # part of the eval key
    bits_per_weight: float = 0.0  # from the file's tensor types (not part of the eval key)


class Engine(Protocol):
    """What the runner needs from a backend."""

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        """Score every request, in order."""
        ...

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Generate for every request, in order."""
        ...

    def info(self) -> EngineInfo:
        """Model and engine facts for the signature."""
        ...

    def close(self) -> None:
        """Free the model and its context."""
        ...
