"""Behaviour of iberlite.device.fingerprint a user would notice."""

import json
import mmap
import sys
import time
from pathlib import Path

import numpy as np
import pytest

try:
    import iberlite  # noqa: F401
except ImportError:  # package not installed into the venv yet: use the src tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from iberlite.device import energy, fingerprint as device
from iberlite.device.energy import EnergyMeter  # noqa: E402
from iberlite.device.fingerprint import fingerprint  # noqa: E402
from iberlite.device.memory import RssSampler  # noqa: E402

MB = 1024 * 1024


def _busy(seconds: float) -> int:
    """Pure-Python CPU-bound loop for about ``seconds``."""
    end, n = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        n += sum(range(1000))
    return n


# ---------------------------------------------------------------- fingerprint

def test_fingerprint_describes_this_machine():
    fp = fingerprint(n_threads=2)
    assert fp.cpu_model.strip()
    assert fp.physical_cores >= 1 and fp.logical_cores >= fp.physical_cores
    assert fp.total_ram_bytes > 0
    assert isinstance(fp.cpu_flags, tuple)
    assert set(fp.cpu_flags) <= set(device.FLAGS_OF_INTEREST)
    assert fp.n_threads == 2
    assert fp.llama_cpp_python_version


def test_fingerprint_id_is_stable_and_depends_on_threads():
    a, b = fingerprint(2), fingerprint(2)
    assert a.fingerprint_id == b.fingerprint_id
    assert len(a.fingerprint_id) == 12
    int(a.fingerprint_id, 16)
    assert fingerprint(1).fingerprint_id != a.fingerprint_id


def test_fingerprint_serialises_and_summarises():
    fp = fingerprint(1)
    d = fp.to_dict()
    assert json.loads(json.dumps(d))["fingerprint_id"] == fp.fingerprint_id
    line = fp.short()
    assert "\n" not in line and fp.cpu_model in line and "GiB" in line


def test_fingerprint_rejects_zero_threads():
    with pytest.raises(ValueError):
        fingerprint(0)


def test_fingerprint_is_frozen():
    fp = fingerprint(1)
    with pytest.raises(AttributeError):
        fp.n_threads = 3


# ---------------------------------------------------------------- memory


def _fresh_pages(n_bytes: int) -> mmap.mmap:
    """Memory this process did not hold before, every page written (resident). An allocator
    would reuse pages an earlier test freed (a torch training run leaves a large heap), which
    raises no RSS; an anonymous mapping always does, and is given back when deleted."""
    buf = mmap.mmap(-1, n_bytes)
    np.frombuffer(buf, dtype=np.uint8)[:] = 1
    return buf


def test_sampler_sees_a_200mb_allocation_without_marks():
    with RssSampler(interval_s=0.005) as mem:
        before = mem.mark("before_alloc")
        arr = _fresh_pages(200 * MB)  # every page written, so it is resident
        time.sleep(0.1)               # several sampler ticks, no mark taken
        peak_seen_by_thread = mem.peak_bytes
        del arr
        after = mem.mark("after_free")
    r = mem.reading
    assert peak_seen_by_thread >= before + 150 * MB
    assert r.peak_bytes >= before >= r.start_bytes - 8 * MB
    assert after <= r.peak_bytes
    assert r.n_samples > 5
    assert [name for name, _ in r.marks] == ["before_alloc", "after_free"]


def test_os_high_water_mark_cross_checks_the_sampled_peak():
    with RssSampler() as mem:
        arr = _fresh_pages(100 * MB)
        mem.mark("allocated")
        del arr
    r = mem.reading
    if r.os_peak_bytes is None:
        pytest.skip("VmHWM not exposed on this OS")
    # VmHWM and statm come from the same kernel counters; a few MB of slack
    # covers per-CPU counter batching.
    assert r.os_peak_bytes >= r.peak_bytes - 4 * MB
    assert r.os_peak_scope in ("block", "process")


def test_os_peak_is_block_scoped_after_an_earlier_spike():
    arr = _fresh_pages(300 * MB)
    del arr  # process high-water mark is now >= 300 MB above baseline
    with RssSampler() as mem:
        pass
    r = mem.reading
    if r.os_peak_scope != "block":
        pytest.skip("kernel does not allow resetting VmHWM")
    assert r.os_peak_bytes < r.start_bytes + 100 * MB


def test_nested_sampler_does_not_reset_outer_high_water_mark():
    with RssSampler() as outer:
        arr = _fresh_pages(200 * MB)
        del arr
        with RssSampler() as inner:
            pass
    assert inner.reading.os_peak_scope in ("process", "unavailable")
    if outer.reading.os_peak_scope == "block":
        assert outer.reading.os_peak_bytes >= outer.reading.start_bytes + 150 * MB


def test_sampler_thread_stops_on_exit_even_after_an_exception():
    sampler = RssSampler()
    with pytest.raises(KeyError):
        with sampler:
            thread = sampler._thread
            raise KeyError("boom")
    assert not thread.is_alive()
    with pytest.raises(RuntimeError):
        sampler.mark("outside")


def test_sampler_can_be_reused_and_rejects_double_entry():
    sampler = RssSampler()
    for _ in range(2):
        with sampler:
            with pytest.raises(RuntimeError):
                sampler.__enter__()
            time.sleep(0.03)
        assert sampler.reading.n_samples >= 2
        assert sampler._thread is None


# ---------------------------------------------------------------- energy

def test_energy_after_cpu_bound_loop():
    with EnergyMeter() as meter:
        _busy(0.3)
    r = meter.reading
    assert r.method in ("rapl", "estimate")
    assert r.joules > 0
    assert r.cpu_seconds > 0
    assert r.wall_seconds >= 0.3
    assert (r.watts_assumed is None) == (r.method == "rapl")
    assert meter.joules == r.joules


def test_estimate_uses_env_watts(monkeypatch):
    monkeypatch.setenv(energy.CPU_WATTS_ENV, "10")
    with EnergyMeter() as meter:
        _busy(0.2)
    r = meter.reading
    if r.method != "estimate":
        pytest.skip("RAPL readable here; estimate not used")
    assert r.watts_assumed == 10.0
    assert r.joules == pytest.approx(r.cpu_seconds * 10, rel=1e-9)


def test_forced_estimate_defaults_to_documented_watts(monkeypatch):
    monkeypatch.delenv(energy.CPU_WATTS_ENV, raising=False)
    with EnergyMeter(use_rapl=False) as meter:
        _busy(0.05)
    assert meter.method == "estimate"
    assert meter.watts_assumed == energy.DEFAULT_CPU_WATTS == 15.0


def test_bad_env_watts_is_an_error_not_a_silent_default(monkeypatch):
    monkeypatch.setenv(energy.CPU_WATTS_ENV, "lots")
    with pytest.raises(ValueError, match=energy.CPU_WATTS_ENV):
        with EnergyMeter(use_rapl=False):
            pass


def test_reading_before_exit_is_an_error():
    meter = EnergyMeter()
    with pytest.raises(RuntimeError):
        meter.reading


def test_rapl_reading_handles_counter_wrap(tmp_path):
    zone = tmp_path / "intel-rapl:0"
    sub = tmp_path / "intel-rapl:0:0"  # subzone: must be ignored
    for z in (zone, sub):
        z.mkdir()
        (z / "max_energy_range_uj").write_text("1000000\n")
    (zone / "energy_uj").write_text("900000\n")
    (sub / "energy_uj").write_text("0\n")
    with EnergyMeter(rapl_root=str(tmp_path)) as meter:
        (zone / "energy_uj").write_text("100000\n")  # wrapped: 0.1 J + 0.1 J
    assert meter.method == "rapl"
    assert meter.watts_assumed is None
    assert meter.joules == pytest.approx(0.2)
