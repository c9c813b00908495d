"""The local executor: every model in this process, one after the other. Each chunk of items is
stored as soon as it is evaluated, so an interrupted run keeps what it finished; Ctrl-C is
honoured between chunks; a request that fails costs its item, not the chunk; with
`--keep-going` a model that cannot be loaded or run is listed and the others go on."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from iberlite.device.energy import EnergyMeter
from iberlite.device.memory import RssSampler
from iberlite.engines.base import Engine
from iberlite.errors import UserError
from iberlite.models.model_file import ModelFile
from iberlite.run import interrupt, supervise
from iberlite.run.evaluate import evaluate_batch
from iberlite.run.executors.base import Execution
from iberlite.run.isolate import evaluate_isolating
from iberlite.run.spec import EngineFactory, ModelFailure, PlannedTask, RunSpec
from iberlite.run.writer import RunWriter
from iberlite.store import RunCost


def execute(models: Sequence[ModelFile], tasks: Sequence[PlannedTask], spec: RunSpec,
            writer: RunWriter, open_model: EngineFactory) -> Execution:
    """Evaluate each model on every task here; the cost of each model is measured around it."""
    failures: list[ModelFailure] = []
    total = sum(len(t.instances) for t in tasks)
    for model in models:
        interrupt.check()
        supervise.note(model=model.name, task=None)
        try:
            with RssSampler() as mem, EnergyMeter() as energy:
                engine = open_model(model, spec)
                mem.mark("after_load")
                try:
                    _evaluate_model(engine, model, tasks, spec, writer, total)
                finally:
                    load_ms = engine.info().load_ms
                    engine.close()
        except (UserError, RuntimeError, OSError) as exc:
            if not spec.keep_going:
                raise
            failures.append(ModelFailure(model.name, str(exc)))
            continue
        # a remote model's energy and memory are spent elsewhere: only its load time counts
        writer.add_cost(model.name, RunCost(load_ms=load_ms, remote=True) if model.remote
                        else measured_cost(mem, energy, load_ms))
    return Execution(model_failures=tuple(failures))


def _evaluate_model(engine: Engine, model: ModelFile, tasks: Sequence[PlannedTask], spec: RunSpec,
                    writer: RunWriter, total: int) -> None:
    done = 0
    for task in tasks:
        t = task.spec
        supervise.note(model=model.name, task=t.name)
        ev = writer.open_eval(model, task, engine.info())
        todo = ev.todo()
        done += len(task.instances) - len(todo)
        if writer.progress:
            writer.progress(model.name, t.name, done, total)
        for s in range(0, len(todo), spec.chunk_size):
            batch = todo[s:s + spec.chunk_size]
            records, failed = evaluate_isolating(partial(evaluate_batch, engine, t), batch)
            writer.add_items(ev, records, failed)
            done += len(batch)
            if writer.progress:
                writer.progress(model.name, t.name, done, total)
            interrupt.check()  # Ctrl-C stops here, with this chunk stored
        writer.close_eval(ev)


def measured_cost(mem: RssSampler, energy: EnergyMeter, load_ms: float | None) -> RunCost:
    """The cost of one block of work from its memory and energy readings."""
    m, e = mem.reading, energy.reading
    return RunCost(
        load_ms=load_ms, rss_start_bytes=m.start_bytes,
        rss_after_load_bytes=dict(m.marks).get("after_load"), peak_rss_bytes=m.peak_bytes,
        os_peak_rss_bytes=m.os_peak_bytes, energy_j=e.joules, energy_method=e.method,
        watts_assumed=e.watts_assumed, cpu_s=e.cpu_seconds, wall_s=e.wall_seconds,
    )
