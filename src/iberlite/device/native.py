"""llama-cpp-python, the native library built for this device, imported quietly.

Engines, quantizing and the benches all load it through here, so llama.cpp's own logging is
set once, before the first model is read.
"""

from __future__ import annotations

import ctypes
import sys

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
