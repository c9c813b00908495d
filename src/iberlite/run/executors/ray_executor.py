"""The Ray executor: one sweep cut into shards and spread over a Ray cluster.

The driver (this process) plans as a local run does, asks one worker per (model, device class)
which engine setup it runs (that keys the evaluation, and so says which items are stored
already), cuts the items still to do into shards of (model, task, item range), and submits one
Ray task per shard, pinned to its device class through the custom resource `device:NAME`.
Each task opens the engine through the same factory as a local run, with as many threads as
CPUs Ray gave it, and returns its items with the worker's fingerprint. Only the driver writes
to the database, as each shard comes back; a shard that fails is tried again up to
`spec.retries` times, and one that still fails is reported while the rest finish.
See docs/scale.md.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from iberlite.errors import UserError
from iberlite.models.model_file import ModelFile
from iberlite.run import interrupt, supervise
from iberlite.run.executors.base import Execution
from iberlite.run.executors.shards import Shard, cut, engine_facts, evaluate_shard, worker_spec
from iberlite.run.spec import EngineFactory, FailedShard, PlannedTask, RunSpec
from iberlite.run.writer import OpenEval, RunWriter
from iberlite.store import RunCost, cost_key

RESOURCE_PREFIX = "device:"
# A pinned task asks for this much of its class's resource: a node started with
# `--resources '{"device:NAME": 1}'` takes as many of them as its CPUs allow.
_CLASS_SHARE = 0.001


def execute(models: Sequence[ModelFile], tasks: Sequence[PlannedTask], spec: RunSpec,
            writer: RunWriter, open_model: EngineFactory) -> Execution:
    """Evaluate the sweep on the Ray cluster at `spec.address` (None: Ray's default, which
    starts one here when none runs on this machine) and store every shard as it finishes."""
    ray = _import_ray()
    started_here = _connect(ray, spec.address)
    try:
        return _Sweep(ray, models, tasks, spec, writer, open_model).run()
    finally:
        if started_here:
            ray.shutdown()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("The ray executor needs Ray: install it with `pip install -e '.[ray]'`.", 2) from None
    return ray


def _connect(ray: Any, address: str | None) -> bool:
    """Join (or start) a cluster unless this process is already connected; True if this call
    connected, so the run disconnects when it ends."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR)
    except ConnectionError as exc:
        raise UserError(f"Cannot reach the Ray cluster at {address} ({exc}); start one with "
                        "`ray start --head` or leave out --address.", 2) from None
    return True


def _error_text(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".strip()


def merge_costs(costs: Sequence[RunCost]) -> RunCost:
    """One model's cost over its shards: energy, CPU and wall time add up (worker-seconds);
    load time and memory are the largest any worker saw."""
    def total(name: str) -> Any:
        values = [getattr(c, name) for c in costs if getattr(c, name) is not None]
        return sum(values) if values else None

    def most(name: str) -> Any:
        values = [getattr(c, name) for c in costs if getattr(c, name) is not None]
        return max(values) if values else None

    methods = sorted({c.energy_method for c in costs if c.energy_method})
    return RunCost(load_ms=most("load_ms"), rss_start_bytes=most("rss_start_bytes"),
                   rss_after_load_bytes=most("rss_after_load_bytes"), peak_rss_bytes=most("peak_rss_bytes"),
                   os_peak_rss_bytes=most("os_peak_rss_bytes"), energy_j=total("energy_j"),
                   energy_method="+".join(methods) or None, watts_assumed=most("watts_assumed"),
                   cpu_s=total("cpu_s"), wall_s=total("wall_s"))


class _Sweep:
    """One run's shards: submitted together, stored one by one as they finish."""

    def __init__(self, ray: Any, models: Sequence[ModelFile], tasks: Sequence[PlannedTask], spec: RunSpec,
                 writer: RunWriter, open_model: EngineFactory) -> None:
        self.ray, self.models, self.tasks, self.spec, self.writer = ray, models, tasks, spec, writer
        self.classes: tuple[str | None, ...] = spec.device_classes or (None,)
        self.n_cpus = spec.n_threads or 1
        self.wspec = worker_spec(spec, self.n_cpus)
        self.open_model = open_model
        self.failed: list[FailedShard] = []
        self.costs: dict[tuple[str, str | None], list[RunCost]] = defaultdict(list)  # (model, class)
        self.total = len(self.classes) * len(models) * sum(len(t.instances) for t in tasks)
        self.done = 0

    def _options(self, device_class: str | None) -> dict[str, Any]:
        opts: dict[str, Any] = {"num_cpus": self.n_cpus, "max_retries": self.spec.retries,
                                "retry_exceptions": True}
        if device_class:
            opts["resources"] = {RESOURCE_PREFIX + device_class: _CLASS_SHARE}
        return opts

    def _check_classes(self) -> None:
        offered = sorted(k.removeprefix(RESOURCE_PREFIX) for k in self.ray.cluster_resources()
                         if k.startswith(RESOURCE_PREFIX))
        missing = [c for c in self.classes if c and c not in offered]
        if missing:
            raise UserError(f"No node of the Ray cluster offers device class {', '.join(missing)} "
                            f"(offered: {', '.join(offered) or 'none'}); start one with "
                            f"`ray start --resources '{{\"device:{missing[0]}\": 1}}'`.", 2)

    def _progress(self, label: str, n: int) -> None:
        self.done += n
        if self.writer.progress:
            self.writer.progress("sweep", label, self.done, self.total)

    def run(self) -> Execution:
        self._check_classes()
        ray = self.ray
        spec_ref, factory_ref = ray.put(self.wspec), ray.put(self.open_model)
        probe, remote_shard = ray.remote(engine_facts), ray.remote(evaluate_shard)
        # which engine setup each (model, class) runs: one small task each, all at once
        probes = {(m.name, c): (m, probe.options(**self._options(c)).remote(m, spec_ref, factory_ref))
                  for m in self.models for c in self.classes}
        pending: dict[Any, tuple[Shard, OpenEval]] = {}
        left: dict[str, int] = {}
        for (_name, c), (model, ref) in probes.items():
            try:
                facts = ray.get(ref)
            except ray.exceptions.RayError as exc:
                for task in self.tasks:
                    n = len(task.instances)
                    self.failed.append(FailedShard(model.name, task.spec.name, c, 0, n, _error_text(exc)))
                    self._progress(f"{model.name} {task.spec.name}", n)
                continue
            for task in self.tasks:
                ev = self.writer.open_eval(model, task, facts.info, c)
                todo = ev.todo()
                self._progress(f"{model.name} {task.spec.name}", len(task.instances) - len(todo))
                shards = cut(model, task.spec, todo, self.spec.shard_size, c)
                left[ev.key] = len(shards)
                if not shards:
                    self.writer.close_eval(ev)
                for shard in shards:
                    pending[remote_shard.options(**self._options(c)).remote(shard, spec_ref, factory_ref)] = (shard, ev)
        try:
            self._collect(pending, left)
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref)
            raise
        return Execution(tuple(self.failed))

    def _collect(self, pending: dict[Any, tuple[Shard, OpenEval]], left: dict[str, int]) -> None:
        ray = self.ray
        broken: set[str] = set()
        received: set[str] = set()
        also: dict[str, dict[str, OpenEval]] = defaultdict(dict)  # evals keyed by another worker setup
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                shard, ev = pending.pop(ref)
                label = f"{shard.model.name} {shard.task.name}" + (f" on {shard.device_class}" if shard.device_class else "")
                supervise.note(model=shard.model.name, task=shard.task.name)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    self.failed.append(FailedShard(shard.model.name, shard.task.name, shard.device_class,
                                                   shard.first_seq, len(shard.items), _error_text(exc)))
                    broken.add(ev.key)
                else:
                    target = self.writer.open_eval(shard.model, ev.task, result.worker.info, shard.device_class)
                    if target.key != ev.key:  # a worker of this class runs another setup: its own eval
                        target = also[ev.key].setdefault(target.key, target)
                    else:
                        target = ev
                    self.writer.add_items(target, result.records, result.failures, result.worker.device)
                    received.add(target.key)
                    self._add_cost(shard.model, shard.device_class, result.cost)
                self._progress(label, len(shard.items))
                left[ev.key] -= 1
                if left[ev.key] == 0 and ev.key not in broken:
                    for finished in (ev, *also[ev.key].values()):
                        if finished.done or finished.key in received:
                            self.writer.close_eval(finished)
            interrupt.check()  # Ctrl-C stops here: every shard that came back is stored

    def _add_cost(self, model: ModelFile, device_class: str | None, cost: RunCost) -> None:
        """The model's cost on the class so far (kept by the writer as each shard comes back)."""
        costs = self.costs[(model.name, device_class)]
        costs.append(cost)
        merged = merge_costs(costs)
        self.writer.add_cost(cost_key(model.name, device_class),
                             RunCost(load_ms=merged.load_ms, remote=True) if model.remote else merged)
