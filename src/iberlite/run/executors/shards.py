"""Shards: the unit of work the Ray executor hands a worker, and what the worker does with it.

A shard is (model, task, language, item range) plus the device class it is pinned to. This
module imports no Ray: `evaluate_shard` is a plain function that the Ray executor wraps as a
remote task, so it opens the engine through the same factory and scores items through the same
`evaluate_batch` as a local run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial

from iberlite.device.energy import EnergyMeter
from iberlite.device.fingerprint import fingerprint
from iberlite.device.memory import RssSampler
from iberlite.engines.base import Engine, EngineInfo
from iberlite.models.model_file import ModelFile
from iberlite.run.evaluate import evaluate_batch
from iberlite.run.executors.local import measured_cost
from iberlite.run.isolate import evaluate_isolating
from iberlite.run.spec import EngineFactory, RunSpec, engine_options
from iberlite.store import ItemFailure, ItemRecord, RunCost
from iberlite.tasks.render import Instance
from iberlite.tasks.spec import TaskSpec


@dataclass(frozen=True)
class Shard:
    """Items of one task for one model, to be evaluated on one worker."""

    model: ModelFile
    task: TaskSpec
    items: tuple[tuple[int, Instance], ...]  # (position in the task, instance)
    device_class: str | None = None

    @property
    def first_seq(self) -> int:
        """The position of the shard's first item in its task."""
        return self.items[0][0] if self.items else 0


@dataclass(frozen=True)
class WorkerFacts:
    """Who evaluated: the engine setup and the device fingerprint of the worker, its node and pid."""

    info: EngineInfo
    device: dict
    node_id: str
    pid: int


@dataclass(frozen=True)
class ShardResult:
    """A shard's items as the worker evaluated them, who evaluated them and what it cost."""

    records: tuple[ItemRecord, ...]
    worker: WorkerFacts
    cost: RunCost
    failures: tuple[ItemFailure, ...] = ()  # items whose request failed (remote engines), with why


def cut(model: ModelFile, task: TaskSpec, todo: Sequence[tuple[int, Instance]], size: int,
        device_class: str | None = None) -> list[Shard]:
    """The items still to do of one (model, task), in shards of at most `size` items."""
    return [Shard(model, task, tuple(todo[s:s + size]), device_class) for s in range(0, len(todo), size)]


# One open engine per worker process: the next shard of the same model skips the load.
_cached: tuple[str, Engine] | None = None


def _engine(model: ModelFile, spec: RunSpec, open_model: EngineFactory) -> tuple[Engine, bool]:
    """The worker's engine for `model` (opened now, True, or kept from an earlier shard, False)."""
    global _cached
    key = repr((model, engine_options(spec), getattr(open_model, "__qualname__", type(open_model).__qualname__)))
    if _cached is not None and _cached[0] == key:
        return _cached[1], False
    if _cached is not None:
        _cached[1].close()
        _cached = None
    engine = open_model(model, spec)
    _cached = (key, engine)
    return engine, True


def worker_spec(spec: RunSpec, n_threads: int) -> RunSpec:
    """The run's spec as a worker uses it: as many engine threads as CPUs the task was given
    (Ray sets no CPU affinity, so the affinity mask would say the whole node)."""
    return replace(spec, n_threads=n_threads)


def _facts(engine: Engine, spec: RunSpec) -> WorkerFacts:
    node_id = ""
    try:
        import ray

        node_id = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - outside a Ray worker there is no node
        pass
    return WorkerFacts(engine.info(), fingerprint(spec.n_threads or 1).to_dict(), node_id, os.getpid())


def engine_facts(model: ModelFile, spec: RunSpec, open_model: EngineFactory) -> WorkerFacts:
    """Open (or reuse) the engine on this worker and say what it is: the driver needs the engine
    setup to key the evaluation, and so to know which items are stored already."""
    engine, _ = _engine(model, spec, open_model)
    return _facts(engine, spec)


def evaluate_shard(shard: Shard, spec: RunSpec, open_model: EngineFactory) -> ShardResult:
    """Evaluate a shard on this worker, in chunks of `spec.chunk_size` as a local run does."""
    with RssSampler() as mem, EnergyMeter() as energy:
        engine, loaded = _engine(shard.model, spec, open_model)
        mem.mark("after_load")
        records: list[ItemRecord] = []
        failures: list[ItemFailure] = []
        for s in range(0, len(shard.items), spec.chunk_size):
            done, failed = evaluate_isolating(partial(evaluate_batch, engine, shard.task),
                                              shard.items[s:s + spec.chunk_size])
            records += done
            failures += failed
    facts = _facts(engine, spec)
    return ShardResult(tuple(records), facts, measured_cost(mem, energy, facts.info.load_ms if loaded else None),
                       tuple(failures))
