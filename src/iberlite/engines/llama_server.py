"""`python -m iberlite.engines.llama_server ARGS`: llama-cpp-python's own HTTP server, loading
weights with the buffers engines/kernels.py finds safe on this CPU (tests compare it with
the engine; on an AMX machine the unpatched server crashes at its first decode)."""

import runpy

from iberlite.engines.kernels import apply_to_llama_cpp_python, detect, plan_kernels

if __name__ == "__main__":
    apply_to_llama_cpp_python(plan_kernels(detect()))
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
