"""Will a model fit in memory? Checked from the GGUF header before llama.cpp loads anything.

A model that does not fit is not slow, it is killed: the kernel's out-of-memory killer ends the
process mid-run (SIGKILL, no message). So the engine factory refuses it first, in one sentence:
the need is the file (weights are mapped whole) plus the KV cache for the context asked
(n_ctx x layers x KV heads x (key + value dims) x bytes per element, f16 by default); the
budget is the memory available now minus a headroom, or `IBERLITE_MEMORY_LIMIT` when set.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from iberlite.errors import RunFailure, UserError
from iberlite.models.gguf_facts import GgufFacts

MEMORY_LIMIT_ENV = "IBERLITE_MEMORY_LIMIT"
HEADROOM_BYTES = 512 * 1024**2
"""Left free for Python, the tokenizer, the data and the OS when the budget is measured."""
KV_BYTES_PER_ELEMENT = 2  # llama.cpp's default KV cache type is f16

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
          "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4,
          "tb": 1000**4, "tib": 1024**4}


@dataclass(frozen=True)
class MemoryNeed:
    """What loading a model with a context of `n_ctx` tokens takes: file + KV cache, in bytes."""

    file_bytes: int
    kv_bytes: int
    n_ctx: int

    @property
    def total(self) -> int:
        """File and KV cache together."""
        return self.file_bytes + self.kv_bytes


@dataclass(frozen=True)
class MemoryBudget:
    """How much memory a model may take, and where that figure comes from."""

    bytes: int
    source: str  # "IBERLITE_MEMORY_LIMIT" or "available"


def parse_size(text: str) -> int:
    """`200MB`, `1.5GiB`, `512m`, `1073741824` -> bytes; anything else is a user error."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS:
        raise UserError(f"{MEMORY_LIMIT_ENV}={text!r} is not a size; write it like 200MB, 1.5GiB "
                        "or 1073741824.", 2)
    return int(float(m.group(1)) * _UNITS[unit])


def model_need(facts: GgufFacts, n_ctx: int) -> MemoryNeed:
    """The file plus its KV cache for `n_ctx` tokens, from the header's shape facts (a header
    without them counts the file only)."""
    kv = 0
    if facts.n_layers and facts.n_head_kv and facts.key_length and facts.value_length:
        kv = (n_ctx * facts.n_layers * facts.n_head_kv * (facts.key_length + facts.value_length)
              * KV_BYTES_PER_ELEMENT)
    return MemoryNeed(facts.size_bytes, kv, n_ctx)


def budget() -> MemoryBudget:
    """`IBERLITE_MEMORY_LIMIT` when set, else the memory available now minus the headroom."""
    limit = os.environ.get(MEMORY_LIMIT_ENV)
    if limit:
        return MemoryBudget(parse_size(limit), MEMORY_LIMIT_ENV)
    import psutil

    return MemoryBudget(max(0, psutil.virtual_memory().available - HEADROOM_BYTES), "available")


def _mb(n: int) -> str:
    return f"{n / 1024**2:,.0f} MiB"


def ensure_fits(model_name: str, facts: GgufFacts, n_ctx: int) -> MemoryNeed:
    """Refuse, in one sentence, a model whose need exceeds the budget; return the need."""
    need, have = model_need(facts, n_ctx), budget()
    if need.total > have.bytes:
        where = (f"{MEMORY_LIMIT_ENV} allows {_mb(have.bytes)}" if have.source == MEMORY_LIMIT_ENV
                 else f"only {_mb(have.bytes)} is available (after {_mb(HEADROOM_BYTES)} headroom)")
        raise ModelTooLarge(
            f"{model_name} needs {_mb(need.total)} ({_mb(need.file_bytes)} file + "
            f"{_mb(need.kv_bytes)} KV cache for {n_ctx} tokens) but {where}; it was not loaded: "
            "free memory, pick a smaller model or a smaller context.")
    return need


class ModelTooLarge(RunFailure):
    """A model that would not fit in memory on this device; refused before loading (exit 1:
    the request was valid, the device cannot serve it)."""
