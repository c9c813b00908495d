"""`iberlite doctor`: is this device safe and exact for iberlite? Each model is loaded, decoded
and probed for exactness (:mod:`iberlite.engines.exactness`) in a child process
(`iberlite doctor-child MODEL`), so a native crash is caught, named and reported instead of
killing the command.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from iberlite.engines.exactness import choose_layout, store_verdict
from iberlite.errors import UserError


@dataclass(frozen=True)
class ModelCheck:
    """What the doctor found for one model. `stage` is where it stopped if it failed."""

    model: str
    ok: bool
    stage: str
    error: str = ""
    load_ms: float | None = None
    decode_tok_s: float | None = None
    buffers: str = ""
    align: int | None = None
    exact: bool | None = None
    max_delta: float | None = None
    seconds: float = 0.0


def run_child(model: str, n_threads: int | None) -> None:
    """The doctor's child process (`iberlite doctor-child MODEL`): report each stage on stdout
    before entering it, then the result, as JSON lines the parent reads."""
    from iberlite.engines.base import GenerationRequest
    from iberlite.engines.factory import EngineOptions, open_llamacpp
    from iberlite.models.names import resolve_model

    def stage(name: str) -> None:
        print(json.dumps({"stage": name}), flush=True)

    stage("loading")
    engine = open_llamacpp(resolve_model(model), EngineOptions(n_threads=n_threads, check_layout=False))
    try:
        stage("decoding")
        gen = engine.generate([GenerationRequest("La capital de España es", max_tokens=16)])[0]
        if gen.gen_tokens < 1 and gen.stop_reason != "eos":
            raise RuntimeError("the model generated nothing")
        stage("checking exactness")
        verdict = choose_layout(engine)
        store_verdict(engine, verdict)
        worst = max(c.worst for c in verdict.checks)
        result = {"load_ms": engine.load_ms,
                  "decode_tok_s": gen.gen_tokens / max(gen.decode_ms, 1e-9) * 1000 if gen.gen_tokens > 1 else None,
                  "buffers": engine.kernels.buffers, "align": verdict.align,
                  "exact": verdict.exact, "max_delta": worst}
    finally:
        engine.close()
    print(json.dumps({"result": result}), flush=True)


def check_model(model: str, n_threads: int | None = None, timeout: float = 300.0) -> ModelCheck:
    """Run the checks for one model in a child process; a crash becomes a failed check."""
    from iberlite.models.names import resolve_model

    mf = resolve_model(model)  # an unknown name is a user error here, not a child's crash
    if mf.remote:
        raise UserError(f"iberlite doctor checks local models; {model} is remote.", 2)
    cmd = [sys.executable, "-m", "iberlite", "doctor-child", model]
    if n_threads:
        cmd += ["--threads", str(n_threads)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return ModelCheck(model, False, "timeout", f"no answer within {timeout:.0f} s",
                          seconds=time.perf_counter() - t0)
    stage, result = "starting", None
    for line in proc.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        stage = msg.get("stage", stage)
        result = msg.get("result", result)
    seconds = time.perf_counter() - t0
    if proc.returncode == 0 and result is not None:
        return ModelCheck(model, bool(result["exact"]), "done", "" if result["exact"] else
                          "fast scoring is not exact here (results will be labelled approx)",
                          seconds=seconds, **result)
    return ModelCheck(model, False, stage, _failure(proc.returncode, proc.stderr), seconds=seconds)


def _failure(returncode: int, stderr: str) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"llama.cpp crashed ({name})"
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit code {returncode}"
