"""What device a result was measured on, and what it cost there.

iberlite's claim is that a model's quality and its device cost come from the
*same* forward passes.  This module supplies the three device-side pieces:

* :func:`fingerprint` -- which machine/configuration produced a number, so
  results from different devices (or thread counts) are never silently mixed.
* :class:`RssSampler` -- resident memory over a block (start, sampled peak,
  named marks, and the kernel's own high-water mark as a cross-check).
* :class:`EnergyMeter` -- joules over a block, measured with RAPL when the
  kernel lets us read it, otherwise *estimated* from process CPU time and an
  explicitly stated per-core power assumption.

Everything here is Linux-first (that is where llama.cpp edge deployments
live) but degrades to psutil / ``None`` elsewhere instead of failing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import platform
import threading
from dataclasses import dataclass
from pathlib import Path

import psutil

from iberlite.device.energy import CPU_WATTS_ENV, DEFAULT_CPU_WATTS, EnergyMeter, EnergyReading

__all__ = [
    "DeviceFingerprint",
    "fingerprint",
    "MemoryReading",
    "RssSampler",
    "EnergyReading",
    "EnergyMeter",
    "DEFAULT_CPU_WATTS",
    "CPU_WATTS_ENV",
]

# --------------------------------------------------------------------------
# Device fingerprint
# --------------------------------------------------------------------------

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


def _llama_system_info() -> str:
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
        llama_system_info=_llama_system_info(),
    )


# --------------------------------------------------------------------------
# Resident memory
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class MemoryReading:
    """RSS over one block, in bytes.

    ``peak_bytes`` is the max of the periodic samples and the marks; a
    sampler can miss spikes shorter than its interval, so ``os_peak_bytes``
    (the kernel's ``VmHWM``) is recorded as an upper cross-check.
    ``os_peak_scope`` says what that cross-check covers: ``"block"`` when
    the high-water mark was reset at block start, ``"process"`` when it also
    includes everything the process did before the block, ``"unavailable"``
    when the OS does not expose it (then ``os_peak_bytes`` is None).
    """

    start_bytes: int
    peak_bytes: int
    os_peak_bytes: int | None
    marks: tuple[tuple[str, int], ...]
    n_samples: int
    os_peak_scope: str


class _RssReader:
    """Reads current RSS as cheaply as possible.

    Measured on the dev box (Linux 6.x, CPython 3.11): ``psutil`` ~21 us,
    open+read ``/proc/self/statm`` ~15 us, ``os.pread`` on a descriptor kept
    open ~2 us.  So on Linux we keep the descriptor open and pread it;
    elsewhere psutil.
    """

    def __init__(self) -> None:
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        try:
            self._fd: int | None = os.open("/proc/self/statm", os.O_RDONLY)
        except OSError:
            self._fd = None
            self._proc = psutil.Process()

    def __call__(self) -> int:
        if self._fd is None:
            return self._proc.memory_info().rss
        return int(os.pread(self._fd, 128, 0).split()[1]) * self._page

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _vm_hwm_bytes() -> int | None:
    """Kernel high-water RSS (``VmHWM``) in bytes, or None if not exposed."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_vm_hwm() -> bool:
    """Reset ``VmHWM`` to current RSS (Linux >= 4.0, "5" > clear_refs).

    Only touches the peak-RSS counter, not page reference bits.  Without it,
    a second model evaluated in the same process would inherit the first
    model's peak.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class RssSampler:
    """Sample this process's RSS every ``interval_s`` in a daemon thread.

    Usage::

        with RssSampler() as mem:
            model = load()
            mem.mark("after_load")
            run(model)
        mem.reading  # MemoryReading

    The loop is one timed ``Lock.acquire`` plus one ~2 us ``pread`` per
    tick.  The lock doubles as the stop signal (``__exit__`` releases it, so
    the thread ends at once rather than after up to one interval) and is
    ~15% cheaper per wake-up than ``Event.wait``, which builds a Condition
    and a fresh lock on every call.  Per tick the cost is dominated by the
    thread wake-up itself (~100 us of CPU on a 2-vCPU VM, ~40 us of which is
    the kernel/hypervisor floor measured from C), i.e. ~1% of one core at
    the default 10 ms.  Entering/leaving costs ~0.4 ms (thread start/join),
    so wrap a whole run or batch, not each token.  Only a running max and a
    count are kept (not every sample) so the sampler does not itself grow
    the memory it measures.

    With ``reset_os_peak=True`` (default) the kernel high-water mark is reset
    at block start so ``os_peak_bytes`` covers this block only -- except when
    another sampler is already active in the process: resetting then would
    corrupt the outer block's cross-check, so the inner one reports scope
    ``"process"`` instead.
    """

    _active = 0
    _active_lock = threading.Lock()

    def __init__(self, interval_s: float = 0.01, reset_os_peak: bool = True) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.interval_s = interval_s
        self.reset_os_peak = reset_os_peak
        self._lock = threading.Lock()
        self._stop = threading.Lock()  # held while running; released to stop
        self._thread: threading.Thread | None = None
        self._read: _RssReader | None = None
        self._clear_state()

    def _clear_state(self) -> None:
        self.start_bytes = 0
        self.peak_bytes = 0
        self.samples = 0
        self.os_peak_bytes: int | None = None
        self._marks: list[tuple[str, int]] = []
        self._os_scope = "unavailable"

    @property
    def marks(self) -> tuple[tuple[str, int], ...]:
        return tuple(self._marks)

    def _observe(self, rss: int) -> None:
        with self._lock:
            self.samples += 1
            if rss > self.peak_bytes:
                self.peak_bytes = rss

    def _run(self) -> None:
        stopped, read, observe = self._stop.acquire, self._read, self._observe
        assert read is not None  # set by __enter__ before the thread starts
        while not stopped(timeout=self.interval_s):
            observe(read())
        self._stop.release()

    def _begin_os_peak(self) -> None:
        with RssSampler._active_lock:
            alone = RssSampler._active == 0
            RssSampler._active += 1
        reset = self.reset_os_peak and alone and _reset_vm_hwm()
        self._os_scope = "block" if reset else "process"

    def __enter__(self) -> "RssSampler":
        if self._thread is not None:
            raise RuntimeError("RssSampler is already running")
        self._clear_state()
        self._stop.acquire()
        self._begin_os_peak()
        self._read = _RssReader()
        self.start_bytes = self._read()
        self._observe(self.start_bytes)
        self._thread = threading.Thread(target=self._run, name="iberlite-rss", daemon=True)
        self._thread.start()
        return self

    def mark(self, name: str) -> int:
        """Record RSS now under ``name`` (also feeds the peak); returns bytes."""
        if self._read is None:
            raise RuntimeError("mark() is only valid inside the RssSampler block")
        rss = self._read()
        self._observe(rss)
        self._marks.append((name, rss))
        return rss

    def __exit__(self, *exc_info) -> None:
        assert self._thread is not None
        self._stop.release()
        self._thread.join()  # the thread re-releases _stop, leaving it free for reuse
        self._thread = None
        read = self._read
        assert read is not None
        self._observe(read())  # a final sample so short blocks still have an end value
        read.close()
        self._read = None
        self.os_peak_bytes = _vm_hwm_bytes()
        if self.os_peak_bytes is None:
            self._os_scope = "unavailable"
        with RssSampler._active_lock:
            RssSampler._active -= 1

    @property
    def reading(self) -> MemoryReading:
        """Frozen snapshot; meaningful after the block has exited."""
        return MemoryReading(
            start_bytes=self.start_bytes,
            peak_bytes=self.peak_bytes,
            os_peak_bytes=self.os_peak_bytes,
            marks=self.marks,
            n_samples=self.samples,
            os_peak_scope=self._os_scope,
        )
