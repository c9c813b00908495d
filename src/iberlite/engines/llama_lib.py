"""llama-cpp-python, imported quietly, and the one numeric helper the engine applies to a
logits row."""

from __future__ import annotations

import ctypes
import sys

import numpy as np

_LOG_CALLBACK = None  # kept alive for as long as llama.cpp may call it


def quiet_llama_cpp():
    """Import llama_cpp with llama.cpp's own logging reduced to errors.

    Model loading prints hundreds of lines (and some warnings about the shipped GGUFs that a
    user cannot act on); only llama.cpp errors reach stderr.
    """
    global _LOG_CALLBACK
    import llama_cpp

    if _LOG_CALLBACK is None:
        @llama_cpp.llama_log_callback
        def _errors_only(level, text, user_data):
            if level == 4:  # GGML_LOG_LEVEL_ERROR (ggml: 1 debug, 2 info, 3 warn, 4 error)
                sys.stderr.write(text.decode("utf-8", errors="replace"))

        _LOG_CALLBACK = _errors_only
        llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))
    return llama_cpp


def log_softmax_at(row: np.ndarray, tokens: list[int]) -> tuple[list[float], int]:
    """Logprobs of `tokens` under one logits row, and the row's argmax."""
    top = int(row.argmax())
    m = float(row[top])
    lse = m + float(np.log(np.exp(row - m, dtype=np.float32).sum(dtype=np.float64)))
    return [float(row[t]) - lse for t in tokens], top
