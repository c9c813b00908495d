"""Which device a result was measured on: :func:`fingerprint` names the machine and its
configuration (CPU, SIMD flags, cores, threads, RAM, OS, llama.cpp build), so results from
different devices (or thread counts) are never silently mixed. It is also the one reader of
the CPU's flags and of llama.cpp's system info (:mod:`iberlite.engines.kernels` uses both).

Memory over a block is :mod:`iberlite.device.memory`, energy :mod:`iberlite.device.energy`.
Everything here is Linux-first (that is where llama.cpp edge deployments live) but degrades
to psutil / ``None`` elsewhere instead of failing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import psutil

#: CPU features that decide which llama.cpp kernels run (and so speed/energy).
#: x86 names come from the ``flags`` line, ARM names from ``Features``.
FLAGS_OF_INTEREST: tuple[str, ...] = (
    "avx", "avx2", "avx512f", "avx512_vnni", "fma", "f16c", "neon", "asimd",
)

# Best-first, used only for the one-line summary.
_SIMD_RANK: tuple[str, ...] = ("avx512_vnni", "avx512f", "avx2", "avx", "asimd", "neon")

_GIB = 1024 ** 3


@dataclass(frozen=True)
class DeviceFingerprint:
    """Identity of the device *configuration* a measurement was taken on.

    ``n_threads`` is part of the identity on purpose: llama.cpp throughput,
    latency and energy change with the thread count, so the same box at 2 and
    at 8 threads is treated as two different devices.
    """

    cpu_model: str
    cpu_flags: tuple[str, ...]
    physical_cores: int
    logical_cores: int
    n_threads: int
    total_ram_bytes: int
    os: str
    python_version: str
    llama_cpp_python_version: str
    llama_system_info: str

    @property
    def fingerprint_id(self) -> str:
        """12-hex-char sha256 over *all* fields.

        Every field can change measured cost (CPU, SIMD flags, cores, threads,
        RAM, kernel/OS, Python overhead, llama.cpp build), and none of them
        varies between two calls on an unchanged machine, so all are hashed.
        Note the id changes when llama-cpp-python goes from "not installed" to
        installed: that is a different software configuration.
        """
        payload = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]

    def to_dict(self) -> dict:
        """JSON-ready dict (flags as a list) including ``fingerprint_id``."""
        d = dataclasses.asdict(self)
        d["cpu_flags"] = list(self.cpu_flags)
        d["fingerprint_id"] = self.fingerprint_id
        return d

    def short(self) -> str:
        """One-line human summary, e.g. ``AMD EPYC | 2 cores/2 threads | AVX2 | 7.8 GiB``."""
        simd = next((f.upper() for f in _SIMD_RANK if f in self.cpu_flags), "no SIMD flags")
        ram = self.total_ram_bytes / _GIB
        return (f"{self.cpu_model} | {self.physical_cores} cores/{self.n_threads} threads"
                f" | {simd} | {ram:.1f} GiB")


def read_cpuinfo() -> dict[str, str]:
    """First value of each key in /proc/cpuinfo ({} where unavailable)."""
    info: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return info
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info.setdefault(key.strip().lower(), value.strip())
    return info


def _cpu_model(info: dict[str, str]) -> str:
    """CPU model name; ARM boards often lack "model name", hence the fallbacks."""
    for key in ("model name", "hardware", "model", "cpu model"):
        if info.get(key):
            return info[key]
    return platform.processor() or platform.machine() or "unknown"


def all_cpu_flags(info: dict[str, str]) -> frozenset[str]:
    """Every flag the CPU reports (x86 `flags`, ARM `Features`)."""
    return frozenset((info.get("flags", "") + " " + info.get("features", "")).split())


def _cpu_flags(info: dict[str, str]) -> tuple[str, ...]:
    """The subset of :data:`FLAGS_OF_INTEREST` this CPU reports, in that order."""
    present = all_cpu_flags(info)
    return tuple(f for f in FLAGS_OF_INTEREST if f in present)


def _llama_cpp_python_version() -> str:
    try:
        return importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def llama_system_info() -> str:
    """llama.cpp's own view of the build (which SIMD backends it compiled in).

    Any failure (not installed, shared library fails to load) yields "" so a
    fingerprint can always be taken.
    """
    try:
        import llama_cpp  # noqa: PLC0415 - optional, heavy import
        raw = llama_cpp.llama_print_system_info()
    except Exception:  # noqa: BLE001 - optional dependency, any failure means "unknown"
        return ""
    return raw.decode("utf-8", "replace").strip() if isinstance(raw, bytes) else str(raw).strip()


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask: taskset, cgroups, a Ray worker), the
    default thread count everywhere."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def fingerprint(n_threads: int) -> DeviceFingerprint:
    """Describe this machine as configured to run with ``n_threads`` threads."""
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    info = read_cpuinfo()
    logical = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False) or logical
    return DeviceFingerprint(
        cpu_model=_cpu_model(info),
        cpu_flags=_cpu_flags(info),
        physical_cores=physical,
        logical_cores=logical,
        n_threads=n_threads,
        total_ram_bytes=psutil.virtual_memory().total,
        os=platform.platform(),
        python_version=platform.python_version(),
        llama_cpp_python_version=_llama_cpp_python_version(),
        llama_system_info=llama_system_info(),
    )
