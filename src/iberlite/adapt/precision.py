"""The precision of training's forward pass: bf16 matmuls where the CPU has them, else fp32.

bf16 pays only where the CPU multiplies bf16 in hardware; elsewhere oneDNN emulates it
(conversions around fp32 arithmetic), which saves no arithmetic and adds the conversions. Two
x86 features do it:

* ``avx512_bf16`` (AVX512-BF16: ``VDPBF16PS`` dot products into fp32), on Intel Cooper Lake
  and later Xeons and on AMD Zen 4 and Zen 5;
* ``amx_bf16`` (AMX tiles multiplying bf16, ``TDPBF16PS``), on Intel Sapphire Rapids and later.

Not counted: ``amx_int8`` and the VNNI flags (integer dot products only), ``avx512f`` alone
(torch's own ``_is_mkldnn_bf16_supported`` says yes there, but oneDNN emulates),
``avx_ne_convert`` (bf16 conversions, not products), and ARM's ``bf16`` (BFMMLA exists, but
whether torch's CPU build uses it depends on its Arm Compute Library; `--precision bf16` is
there for anyone who measures it).

The flags come from the one reader of the CPU's flags (:mod:`iberlite.device.fingerprint`); the
rule is a pure function of them, so it is tested with injected flag sets.
"""

from __future__ import annotations

from iberlite.device.fingerprint import all_cpu_flags, read_cpuinfo
from iberlite.errors import UserError

NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
PRECISIONS = ("auto", "bf16", "fp32")


def training_precision(flags: frozenset[str], override: str | None = None) -> str:
    """``"bf16"`` or ``"fp32"``: the override when it names one, else bf16 exactly where one of
    :data:`NATIVE_BF16_FLAGS` is among `flags`."""
    choice = override or "auto"
    if choice not in PRECISIONS:
        raise UserError(f"--precision takes {', '.join(PRECISIONS)}; got {override!r}.", 2)
    if choice != "auto":
        return choice
    return "bf16" if flags & NATIVE_BF16_FLAGS else "fp32"


def this_cpu_precision(override: str | None = None) -> str:
    """:func:`training_precision` for this CPU."""
    return training_precision(all_cpu_flags(read_cpuinfo()), override)
