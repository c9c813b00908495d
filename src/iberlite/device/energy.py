"""Energy over a block of work: RAPL where the kernel lets us read it, otherwise an estimate
from process CPU time and a stated per-core power, labelled as an estimate."""

from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass
from pathlib import Path

# --------------------------------------------------------------------------
# Energy
# --------------------------------------------------------------------------

#: Assumed package power per *busy core*, in watts, when RAPL is unreadable.
#: A deliberately round mid-range figure (laptop/desktop/server cores draw
#: roughly 5-25 W each under full SIMD load); it is an assumption, not a
#: measurement.  Override per device with IBERLITE_CPU_WATTS.
DEFAULT_CPU_WATTS = 15.0
CPU_WATTS_ENV = "IBERLITE_CPU_WATTS"

_RAPL_ROOT = "/sys/class/powercap"


@dataclass(frozen=True)
class EnergyReading:
    """Energy over one block.

    ``method == "rapl"``: measured CPU *package* energy (all processes on the
    package plus idle power), ``watts_assumed`` is None.
    ``method == "estimate"``: ``cpu_seconds * watts_assumed`` -- energy
    attributed to this process only, idle/uncore/DRAM power excluded.
    The two are therefore not directly comparable; always report ``method``.
    """

    joules: float
    method: str
    cpu_seconds: float
    wall_seconds: float
    watts_assumed: float | None


@dataclass(frozen=True)
class _RaplDomain:
    energy_path: Path
    max_range_uj: int


def _rapl_package_domains(root: str = _RAPL_ROOT) -> list[_RaplDomain]:
    """Readable RAPL package domains (``intel-rapl:N``, not subzones ``N:M``).

    Since CVE-2020-8694 most kernels make ``energy_uj`` root-only, so
    "present" is not enough: each counter is test-read and unreadable ones
    are dropped.  AMD Zen exposes the same ``intel-rapl`` interface.
    """
    domains = []
    for zone in sorted(glob.glob(os.path.join(root, "intel-rapl:*"))):
        if os.path.basename(zone).count(":") != 1:
            continue
        energy, max_range = Path(zone, "energy_uj"), Path(zone, "max_energy_range_uj")
        try:
            int(energy.read_text())
            domains.append(_RaplDomain(energy, int(max_range.read_text())))
        except (OSError, ValueError):
            continue
    return domains


def _read_uj(domains: list[_RaplDomain]) -> list[int]:
    return [int(d.energy_path.read_text()) for d in domains]


def _rapl_delta_j(domains: list[_RaplDomain], before: list[int], after: list[int]) -> float:
    """Sum of per-package deltas, undoing one counter wrap per package.

    The counter wraps at ``max_energy_range_uj`` (typically ~262 kJ, i.e.
    tens of minutes at full load); a block spanning more than one wrap would
    be under-counted, which evaluation blocks do not approach.
    """
    total = 0
    for d, b, a in zip(domains, before, after):
        delta = a - b
        total += delta + d.max_range_uj if delta < 0 else delta
    return total / 1e6


def assumed_watts(explicit: float | None = None) -> float:
    """Watts per busy core when nothing measures them: the explicit argument, else
    IBERLITE_CPU_WATTS, else DEFAULT_CPU_WATTS (an estimate, labelled so wherever it is used)."""
    if explicit is not None:
        value = float(explicit)
    else:
        raw = os.environ.get(CPU_WATTS_ENV)
        try:
            value = float(raw) if raw not in (None, "") else DEFAULT_CPU_WATTS
        except ValueError:
            raise ValueError(f"{CPU_WATTS_ENV}={raw!r} is not a number of watts") from None
    if value <= 0:
        raise ValueError(f"assumed CPU watts must be > 0, got {value}")
    return value


class EnergyMeter:
    """Joules spent over a ``with`` block.

    RAPL when readable, else an estimate from this process's CPU time
    (``time.process_time``: user+sys of *all* threads, so llama.cpp's worker
    threads count; child processes do not) times ``watts_per_core``.  The
    estimate scales with busy cores, not wall time: 2 cores busy for 1 s at
    15 W/core is 30 J.  Pass ``use_rapl=False`` to force the estimate (e.g.
    to compare devices where only some expose RAPL).
    """

    def __init__(self, watts_per_core: float | None = None, use_rapl: bool = True,
                 rapl_root: str = _RAPL_ROOT) -> None:
        self._watts_arg = watts_per_core
        self._use_rapl = use_rapl
        self._rapl_root = rapl_root
        self._reading: EnergyReading | None = None

    def __enter__(self) -> "EnergyMeter":
        self._reading = None
        self._domains = _rapl_package_domains(self._rapl_root) if self._use_rapl else []
        self._watts = None if self._domains else assumed_watts(self._watts_arg)
        self._uj0 = _read_uj(self._domains)
        self._cpu0 = time.process_time()
        self._wall0 = time.perf_counter()
        return self

    def __exit__(self, *exc_info) -> None:
        wall = time.perf_counter() - self._wall0
        cpu = time.process_time() - self._cpu0
        if self._domains:
            joules = _rapl_delta_j(self._domains, self._uj0, _read_uj(self._domains))
            self._reading = EnergyReading(joules, "rapl", cpu, wall, None)
        else:
            watts = self._watts if self._watts is not None else assumed_watts(self._watts_arg)
            self._reading = EnergyReading(cpu * watts, "estimate", cpu, wall, watts)

    @property
    def reading(self) -> EnergyReading:
        if self._reading is None:
            raise RuntimeError("EnergyMeter has no reading until its block has exited")
        return self._reading

    # Convenience accessors so callers can write ``meter.joules``.
    joules = property(lambda self: self.reading.joules)
    method = property(lambda self: self.reading.method)
    cpu_seconds = property(lambda self: self.reading.cpu_seconds)
    wall_seconds = property(lambda self: self.reading.wall_seconds)
    watts_assumed = property(lambda self: self.reading.watts_assumed)
