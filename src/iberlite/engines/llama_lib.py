"""The one numeric helper the llama.cpp engine applies to a logits row."""

from __future__ import annotations

import numpy as np


def log_softmax_at(row: np.ndarray, tokens: list[int]) -> tuple[list[float], int]:
    """Logprobs of `tokens` under one logits row, and the row's argmax."""
    top = int(row.argmax())
    m = float(row[top])
    lse = m + float(np.log(np.exp(row - m, dtype=np.float32).sum(dtype=np.float64)))
    return [float(row[t]) - lse for t in tokens], top
