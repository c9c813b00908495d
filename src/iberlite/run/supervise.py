"""Run a long command in a child process, so a native crash in llama.cpp is reported, not silent.

A segmentation fault inside llama.cpp kills the Python process on the spot: no exception, no
message, only the shell's "Segmentation fault". `iberlite run` therefore runs its work in a
child; the child notes in a small status file what it is evaluating and how many items it has
stored, and if it dies from a signal the parent says which model and task it was, that what was
stored is safe (every chunk is committed), and how to resume.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

STATUS_ENV = "IBERLITE_STATUS_FILE"
PARENT_ENV = "IBERLITE_SUPERVISOR_PID"
_PR_SET_PDEATHSIG = 1


def in_child() -> bool:
    """True inside the supervised child (the work runs here)."""
    return bool(os.environ.get(STATUS_ENV))


def die_with_parent() -> None:
    """In the child: if the supervising parent dies (`kill -9` of its process group, a closed
    terminal), get SIGTERM, which stops the run after its current chunk like Ctrl-C, instead
    of running on unseen. Linux only; elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    parent = os.environ.get(PARENT_ENV)
    if parent and os.getppid() != int(parent):  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def note(**fields: object) -> None:
    """Record what the child is doing (a no-op outside a supervised child)."""
    path = os.environ.get(STATUS_ENV)
    if not path:
        return
    status = _read(Path(path))
    status.update(fields)
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(status, f)
        os.replace(tmp, path)
    except OSError:
        pass  # the status only improves a crash message


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def run_supervised(argv: list[str]) -> tuple[int, str | None]:
    """Run `python -m iberlite ARGV` in a child and wait. Returns its exit code and, when it
    died from a signal, the sentence to print.

    The child has its own process group: Ctrl-C reaches the parent only, which passes it on
    once, so the child stops after its current chunk as it would alone.
    """
    fd, status_path = tempfile.mkstemp(prefix="iberlite-status-", suffix=".json")
    os.close(fd)
    env = {**os.environ, STATUS_ENV: status_path, PARENT_ENV: str(os.getpid())}
    proc = subprocess.Popen([sys.executable, "-m", "iberlite", *argv], env=env, process_group=0)

    def forward(signum, _frame):
        try:
            proc.send_signal(signum)
        except ProcessLookupError:
            pass

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        rc = proc.wait()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    status = _read(Path(status_path))
    Path(status_path).unlink(missing_ok=True)
    if rc >= 0 or -rc in (signal.SIGINT, signal.SIGTERM):
        return (130 if rc == -signal.SIGINT else rc if rc >= 0 else 128 - rc), None
    _mark_run(status, "killed" if -rc == signal.SIGKILL else "crashed")
    return 1, crash_message(-rc, status)


def _mark_run(status: dict, how: str) -> None:
    """Record in the database that the child's run died (it cannot say so itself), so the
    report does not show it as still running."""
    if not status.get("db") or not status.get("run_id"):
        return
    from iberlite.errors import UserError
    from iberlite.store import Store

    try:
        with Store(Path(status["db"])) as store:
            store.end_run_if_running(int(status["run_id"]), how)
    except (UserError, OSError, ValueError):
        pass  # the message still says what is safe


def crash_message(signum: int, status: dict) -> str:
    """One sentence: what crashed, where, what is safe, how to go on."""
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    where = ""
    if status.get("model"):
        where = f" while evaluating {status['model']}"
        if status.get("task"):
            where += f" on {status['task']}"
    db = status.get("db", "the database")
    stored = status.get("stored")
    safe = (f"the {stored} items this run stored before it are safe in {db}" if stored is not None
            else f"everything stored before it is safe in {db}")
    if signum == signal.SIGKILL:  # what the kernel's out-of-memory killer sends
        return (f"The run was killed (SIGKILL, as the out-of-memory killer does){where}; {safe}: "
                "rerun the same command to resume (with less memory in use, or a smaller model).")
    return (f"The engine crashed ({name}){where}; {safe}: run `iberlite doctor` to check this "
            "device, then rerun the same command to resume.")
