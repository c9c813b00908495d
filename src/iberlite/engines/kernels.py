"""Which llama.cpp buffers and which scoring layout are safe on this CPU.

Two facts decide it, both read at engine start:

* AMX. llama.cpp built on a CPU with AMX puts quantized weights in its AMX "extra buffer", and
  with llama-cpp-python 0.3.36 its AMX matmul (`ggml_backend_amx_mul_mat`) crashes at the
  first decode for every format tried (SmolLM2 Q4_1/Q8_0/Q4_0, Gemma Q4_K_M/Q8_0/Q4_0). So
  where llama.cpp has AMX compiled in and the CPU has it, extra buffers are off unless the
  user opts in (`IBERLITE_AMX=1`, for a llama.cpp whose AMX path works). Extra buffers also
  hold the repacked CPU weights; turning them off costs little here (docs/performance.md).
* SIMD width. The exact layout (engines/layout.py) needs blocks as wide as the widest float
  lanes the kernels use: 16 where llama.cpp was built with AVX-512, 8 otherwise (AVX2, NEON).
  llama.cpp's own system info says what the build uses, which may be less than the CPU has.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

from iberlite.device.fingerprint import all_cpu_flags, llama_system_info, read_cpuinfo

AMX_ENV = "IBERLITE_AMX"
ALIGN_ENV = "IBERLITE_ALIGN"


@dataclass(frozen=True)
class CpuFeatures:
    """What the CPU reports (/proc/cpuinfo flags) and what llama.cpp was built to use
    (the `NAME = 1` entries of its system info)."""

    cpu_flags: frozenset[str]
    llama_features: frozenset[str]

    @property
    def amx(self) -> bool:
        """AMX both in the CPU and compiled into llama.cpp: its AMX buffer would be used."""
        return "AMX_INT8" in self.llama_features and bool({"amx_int8", "amx_tile"} & self.cpu_flags)

    @property
    def simd(self) -> str:
        """Widest SIMD the llama.cpp build uses here."""
        for name in ("AVX512", "AVX2", "AVX", "SVE", "NEON"):
            if name in self.llama_features:
                return name.lower()
        return "scalar"


def parse_system_info(text: str) -> frozenset[str]:
    """Feature names set to 1 in llama.cpp's system info (`CPU : SSE3 = 1 | AVX2 = 1 | ...`)."""
    out = set()
    for part in text.replace(":", "|").split("|"):
        name, sep, value = part.partition("=")
        if sep and value.strip() == "1":
            out.add(name.strip())
    return frozenset(out)


@lru_cache(maxsize=1)
def detect() -> CpuFeatures:
    """This CPU's flags and the running llama.cpp build's features."""
    return CpuFeatures(all_cpu_flags(read_cpuinfo()), parse_system_info(llama_system_info()))


@dataclass(frozen=True)
class KernelPlan:
    """How to load and lay out a model on this CPU, and why."""

    use_extra_bufts: bool
    align: int
    simd: str
    reason: str

    @property
    def buffers(self) -> str:
        """Short label of the weight buffers, for the engine info and the report."""
        return "extra" if self.use_extra_bufts else "plain (AMX off)"


def plan_kernels(features: CpuFeatures, *, allow_amx: bool | None = None,
                 align: int | None = None) -> KernelPlan:
    """The buffer choice and block size for `features`; `allow_amx` and `align` override the
    rule (defaults: the IBERLITE_AMX and IBERLITE_ALIGN environment variables)."""
    if allow_amx is None:
        allow_amx = os.environ.get(AMX_ENV, "") == "1"
    if align is None and os.environ.get(ALIGN_ENV):
        align = int(os.environ[ALIGN_ENV])
    reasons = []
    use_extra = True
    if features.amx and not allow_amx:
        use_extra = False
        reasons.append(f"AMX off: llama.cpp's AMX kernel crashes in llama-cpp-python 0.3.36 "
                       f"(set {AMX_ENV}=1 to try it)")
    elif features.amx:
        reasons.append(f"AMX on ({AMX_ENV}=1)")
    simd = features.simd
    if align is None:
        align = 16 if simd == "avx512" else 8
        reasons.append(f"blocks of {align} for {simd.upper()} kernels")
    else:
        reasons.append(f"blocks of {align} (asked)")
    return KernelPlan(use_extra_bufts=use_extra, align=align, simd=simd, reason="; ".join(reasons))


_LLAMA_DEFAULTS: list = []  # llama-cpp-python's own llama_model_default_params, once replaced


def apply_to_llama_cpp_python(plan: KernelPlan) -> None:
    """Make llama-cpp-python's own `Llama` class (bench's direct reference, its HTTP server)
    load weights with the plan's buffers: its constructor starts from
    `llama_model_default_params()`, and offers no argument for extra buffers."""
    import llama_cpp.llama_cpp as low

    if not _LLAMA_DEFAULTS:  # applied twice, the second plan wraps the original, not the first
        _LLAMA_DEFAULTS.append(low.llama_model_default_params)
    original = _LLAMA_DEFAULTS[0]

    def defaults():
        params = original()
        params.use_extra_bufts = plan.use_extra_bufts
        return params

    low.llama_model_default_params = defaults
