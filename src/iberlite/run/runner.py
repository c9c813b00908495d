"""Plan and execute a grid of models x tasks on this device, storing every item.

Stages: plan (resolve models, select tasks, load and render documents: every user error
surfaces here, before a model is loaded) -> execute (an executor of :mod:`iberlite.run.executors`
evaluates the items not yet stored: `local` per model in this process, in chunks, each chunk
committed; `ray` in shards on a cluster) -> score (aggregates with CIs and signatures, from the
stored items). Whatever the executor, this process alone writes to the store (`RunWriter`).
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version

from iberlite.device.fingerprint import fingerprint, usable_cpus
from iberlite.run import interrupt, supervise
from iberlite.run.executors import executor
from iberlite.run.plan import plan
from iberlite.run.spec import EngineFactory, ProgressFn, RunResult, RunSpec, default_engine
from iberlite.run.writer import RunWriter
from iberlite.scoring.language_id import identifier_signature
from iberlite.store import Store
from iberlite.tasks.items import skipped_summary


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for pkg in ("iberlite", "llama-cpp-python", "numpy", "sacrebleu", "langid"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    out["language_id"] = identifier_signature()
    return out


def run(spec: RunSpec, progress: ProgressFn | None = None, command: str = "",
        engine_factory: EngineFactory | None = None) -> RunResult:
    """Evaluate every (model, task) of the spec; store items and aggregates; return outcomes.

    The executor named by `spec.executor` evaluates the items (`local`: in this process;
    `ray`: shards on a Ray cluster, see docs/scale.md); this process alone writes to the store.
    An interrupted run (Ctrl-C: after the chunk or shard in flight) keeps everything stored, is
    marked `interrupted` and raises `interrupt.RunInterrupted`; rerunning the same spec
    continues where it stopped, retrying items that failed. With `spec.keep_going` a model
    that cannot be loaded or run is listed in `RunResult.model_failures` and the others go on.
    `engine_factory` opens each model's engine (default :func:`default_engine`); tests pass a
    deterministic fake here.
    """
    execute = executor(spec.executor)
    models, tasks = plan(spec)
    store = Store(spec.db)
    device = fingerprint(spec.n_threads or usable_cpus())
    run_id = store.start_run(_spec_dict(spec), command, device.to_dict(), _versions())
    writer = RunWriter(store, run_id, spec, device.to_dict(), progress)
    status = "failed"
    supervise.note(db=str(spec.db), run_id=run_id, stored=0)
    try:
        with interrupt.stop_between_chunks():
            execution = execute(models, tasks, spec, writer, engine_factory or default_engine)
        result = RunResult(run_id, tuple(writer.outcomes), dict(writer.cost), execution.model_failures,
                           skipped_summary([f for t in tasks for f in t.skipped]), execution.failed)
        status = "done" if result.complete else "incomplete"
    except KeyboardInterrupt as exc:
        status = "interrupted"
        raise interrupt.RunInterrupted(run_id, writer.stored, spec.db) from exc
    finally:
        store.end_run(run_id, status, writer.cost)  # the cost of what finished, even on failure
        store.close()
    return result


def _spec_dict(spec: RunSpec) -> dict:
    d = asdict(spec)
    d["data_dir"] = str(spec.data_dir)
    d["db"] = str(spec.db)
    d["tasks_dirs"] = [str(p) for p in spec.tasks_dirs]
    d["lm_eval_include"] = [str(p) for p in spec.lm_eval_include]
    d["started"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    return d
