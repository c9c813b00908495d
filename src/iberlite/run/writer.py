"""The driver's side of a run and the only writer to its store: executors hand it the items
they evaluated; it keys them, stores them, scores finished tasks and reports progress."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

from iberlite.engines.base import EngineInfo
from iberlite.models.adapters import read_record, training_facts
from iberlite.models.model_file import ModelFile
from iberlite.run import supervise
from iberlite.run.signature import eval_key, signature
from iberlite.run.spec import PlannedTask, ProgressFn, RunSpec, TaskOutcome
from iberlite.run.task_scores import score_items
from iberlite.store import AggregateRecord, ItemFailure, ItemRecord, RunCost, Store
from iberlite.tasks.render import Instance


@dataclass(frozen=True)
class OpenEval:
    """One evaluation being written: its key, what it evaluates, and the documents it already has."""

    key: str
    model: str
    task: PlannedTask
    info: EngineInfo
    device_class: str | None
    done: frozenset[str]

    def todo(self) -> list[tuple[int, Instance]]:
        """The task's (position, instance) pairs not stored yet, in task order."""
        return [(i, inst) for i, inst in enumerate(self.task.instances) if inst.doc_id not in self.done]


class RunWriter:
    """The driver's side of a run and the only writer to its store: executors hand it the
    engine facts of each (model, task), the items they evaluated, and say when a task is
    finished; it keys, stores, scores and reports progress."""

    def __init__(self, store: Store, run_id: int, spec: RunSpec, device: dict,
                 progress: ProgressFn | None) -> None:
        self.store, self.run_id, self.spec, self.device = store, run_id, spec, device
        self.progress = progress
        self.outcomes: list[TaskOutcome] = []
        self.cost: dict[str, RunCost] = {}  # `cost_key(model, device class)` -> its device cost
        self.stored = 0
        self._devices: set[str] = {str(device.get("fingerprint_id"))}

    def open_eval(self, model: ModelFile, task: PlannedTask, info: EngineInfo,
                  device_class: str | None = None) -> OpenEval:
        """Register the evaluation of `task` on `model` with this engine setup (and device class:
        a pinned sweep measures each class apart, so the class is part of the key)."""
        if device_class:
            info = replace(info, extra={**info.extra, "device_class": device_class})
        t = task.spec
        key = eval_key(info, t, task.data_hash, task.fewshot)
        engine = asdict(info)
        if model.adapter is not None:  # examples and training cost, kept beside (not in) the key
            engine["adapter_training"] = training_facts(read_record(model.adapter))
        self.store.ensure_eval(key, model=model.name, task=t.name, lang=t.lang, family=t.family,
                               output=t.output, engine=engine,
                               task_info={"path": str(t.path), "prompt_hash": t.prompt_hash(),
                                          "data_hash": task.data_hash, "reference": t.reference,
                                          "target_lang": t.output_lang, "description": t.description,
                                          **({"fewshot": asdict(task.fewshot)} if task.fewshot else {})})
        return OpenEval(key, model.name, task, info, device_class, frozenset(self.store.done_doc_ids(key)))

    def add_items(self, ev: OpenEval, records: Sequence[ItemRecord], failures: Sequence[ItemFailure] = (),
                  device: dict | None = None) -> None:
        """Store evaluated items in one transaction, each with the fingerprint of the device that
        answered it (default: this process's) and the eval's device class; and the items that
        failed (a remote request), with why, so that a resumed run retries them."""
        device = device or self.device
        fid = str(device.get("fingerprint_id"))
        if fid not in self._devices:
            self.store.add_device(device)
            self._devices.add(fid)
        self.store.add_items(ev.key, self.run_id, [replace(r, device_id=fid, device_class=ev.device_class)
                                                   for r in records])
        self.store.add_failures(ev.key, self.run_id, failures)
        self.stored += len(records)
        supervise.note(stored=self.stored)

    def add_cost(self, key: str, cost: RunCost) -> None:
        """What a model (on a device class: `store.cost_key`) cost; kept even if the run fails later."""
        self.cost[key] = cost

    def close_eval(self, ev: OpenEval) -> TaskOutcome:
        """Score the evaluation's stored items of this task and store the aggregates."""
        t = ev.task.spec
        doc_ids = [inst.doc_id for inst in ev.task.instances]
        wanted = set(doc_ids)
        failures = tuple(f for f in self.store.open_failures(ev.key) if f.doc_id in wanted)
        items = self.store.items(ev.key, doc_ids)
        scores = score_items(t, items, self.spec.seed) if items else []  # every item failed: no score
        devices = sorted({it.device_id for it in items if it.device_id}) or [str(self.device.get("fingerprint_id"))]
        sig = signature(ev.info, t, ev.task.data_hash, len(items), "+".join(devices), ev.task.fewshot)
        self.store.add_aggregates(self.run_id, [
            AggregateRecord(ev.key, ev.model, t.name, t.lang, s.metric, s.value, s.ci_low, s.ci_high,
                            s.n, sig)
            for s in scores
        ])
        outcome = TaskOutcome(ev.model, t.name, t.lang, t.family, len(items), len(ev.todo()),
                              tuple(scores), sig, failures)
        self.outcomes.append(outcome)
        return outcome
