"""Plan and execute a grid of models x tasks on this device, storing every item.

Stages: plan (resolve models, select tasks, load and render documents: every user error
surfaces here, before a model is loaded) -> execute (an executor of :mod:`iberlite.executors`
evaluates the items not yet stored: `local` per model in this process, in chunks, each chunk
committed; `ray` in shards on a cluster) -> score (aggregates with CIs and signatures, from the
stored items). Whatever the executor, this process alone writes to the store (`RunWriter`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from . import interrupt, metrics, supervise
from .catalog import DEFAULT_MODELS, ModelFile, gguf_facts, resolve_model
from .data import RowFault, data_hash, default_data_dir
from .device import fingerprint
from .engines.base import Engine, EngineInfo
from .engines.factory import ENGINES, EngineOptions, open_engine
from .errors import UserError
from .executors.base import EXECUTORS, FailedShard, ModelFailure
from .language_id import identifier_signature, lang_ok
from .signature import eval_key, signature
from .store import AggregateRecord, ItemFailure, ItemRecord, RunCost, Store
from .tasks import lm_eval_source
from .tasks.items import load_items, skipped_summary
from .tasks.registry import load_task_specs, select_tasks
from .tasks.render import Instance
from .tasks.spec import TaskSpec

ProgressFn = Callable[[str, str, int, int], None]
"""Called with (model, current task, items done, items total for the model) as work advances."""

EngineFactory = Callable[["ModelFile", "RunSpec"], Engine]
"""Opens the engine for one model of a run (the default is :func:`default_engine`)."""


@dataclass(frozen=True)
class RunSpec:
    """What to evaluate and where to store it. Empty `tasks` means the sample suite."""

    models: tuple[str, ...] = DEFAULT_MODELS
    tasks: tuple[str, ...] = ()
    langs: tuple[str, ...] = ()
    limit: int | None = None
    data_dir: Path = field(default_factory=default_data_dir)
    tasks_dirs: tuple[Path, ...] = ()
    db: Path = Path("iberlite.db")
    n_threads: int | None = None
    engine: str = "llamacpp"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    api: str = "completions"
    scoring: str = "fast"
    prefix_cache: bool = False
    seed: int = 1234
    online: bool = False
    strict: bool = False  # a data row that cannot be evaluated is an error, not skipped
    chunk_size: int = 16
    keep_going: bool = False  # a model that fails to load or run is recorded; the others go on
    item_timeout_s: float | None = None
    executor: str = "local"
    address: str | None = None  # ray: the cluster to join (None: Ray's default, see docs/scale.md)
    device_classes: tuple[str, ...] = ()  # ray: run the grid once on each class (docs/scale.md)
    shard_size: int = 64  # ray: items per shard
    retries: int = 2  # ray: how often a failed shard is tried again
    lm_eval_include: tuple[Path, ...] = ()  # folders of lm-eval task YAMLs for `lm_eval:NAME` tasks


@dataclass(frozen=True)
class PlannedTask:
    """A task with its rendered instances and data hash, ready to run on any model."""

    spec: TaskSpec
    instances: tuple[Instance, ...]
    data_hash: str
    skipped: tuple[RowFault, ...] = ()  # data rows that cannot be evaluated


@dataclass(frozen=True)
class TaskOutcome:
    """What one model scored on one task in this run."""

    model: str
    task: str
    lang: str
    family: str
    n_items: int
    n_new: int
    scores: tuple[metrics.MetricScore, ...]
    signature: str
    failures: tuple[ItemFailure, ...] = ()  # items left out of the scores: they failed


@dataclass(frozen=True)
class RunResult:
    """A finished run: its id in the store, every task outcome, and each model's device cost."""

    run_id: int
    outcomes: tuple[TaskOutcome, ...]
    cost: dict[str, RunCost]  # `cost_key(model, device class)` -> what loading and running it cost
    model_failures: tuple[ModelFailure, ...] = ()  # local, --keep-going: models that could not run
    skipped: str | None = None  # one sentence on the data rows skipped, if any
    failed: tuple[FailedShard, ...] = ()  # ray: shards that kept failing (their items are not stored)

    @property
    def complete(self) -> bool:
        """No model, shard or item failed."""
        return not self.model_failures and not self.failed and not any(o.failures for o in self.outcomes)


def plan(spec: RunSpec) -> tuple[list[ModelFile], list[PlannedTask]]:
    """Resolve models and tasks and render every instance; raises UserError on bad input."""
    from .engines.llamacpp import SCORING_MODES

    if spec.executor not in EXECUTORS:
        raise UserError(f"Unknown executor {spec.executor!r}; valid: {', '.join(EXECUTORS)}.", 2)
    if spec.device_classes and spec.executor != "ray":
        raise UserError("--device-class needs --executor ray: device classes are Ray resources.", 2)
    if spec.engine not in ENGINES:
        raise UserError(f"Unknown engine {spec.engine!r}; valid: {', '.join(ENGINES)}.", 2)
    if spec.engine == "llamacpp" and spec.scoring not in SCORING_MODES:
        raise UserError(f"Unknown scoring {spec.scoring!r}; valid: {', '.join(SCORING_MODES)}.", 2)
    models = [resolve_model(m) for m in spec.models]
    for m in models:
        if m.remote:
            if not spec.base_url:
                raise UserError(f"Model {m.name} is remote: pass --base-url (for example "
                                "http://127.0.0.1:8000/v1).", 2)
            continue
        gguf_facts(m.file)  # a corrupt file fails now, not after the models before it ran
    specs = load_task_specs(spec.tasks_dirs)
    ours, lm_names = lm_eval_source.split_names(spec.tasks)
    tasks = select_tasks(specs, ours or None, spec.langs or None) if ours or not lm_names else []
    planned = []
    for t in tasks:
        items = load_items(t, spec.data_dir, spec.limit, online=spec.online, strict=spec.strict)
        dh = "hub" if spec.online else data_hash(t, spec.data_dir)
        planned.append(PlannedTask(t, items.instances, dh, items.faults))
    if lm_names:  # built by lm-eval itself (tasks/lm_eval_source.py)
        for lt in lm_eval_source.load_lm_eval_tasks(lm_names, spec.lm_eval_include, spec.limit):
            planned.append(PlannedTask(lt.spec, lt.instances, lt.data_hash))
    return models, planned


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for pkg in ("iberlite", "llama-cpp-python", "numpy", "sacrebleu", "langid"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    out["language_id"] = identifier_signature()
    return out


def score_items(spec: TaskSpec, items: Sequence[ItemRecord], seed: int) -> list[metrics.MetricScore]:
    """Every metric of the task over the stored items, each with a bootstrap 95% CI."""
    if lm_eval_source.lm_eval_spec(spec):  # lm-eval's own process_results and aggregations
        return lm_eval_source.score(spec, items, seed)
    outcomes = [
        metrics.ItemOutcome(
            logprobs=it.logprobs, choices=it.choices,
            gold=int(it.gold) if spec.output == "multiple_choice" else it.gold,
            output=it.generated,
        )
        for it in items
    ]
    scores = []
    for m in spec.metrics:
        if m == "lang_ok":
            flags = lang_ok([it.generated or "" for it in items], spec.output_lang)
            value, lo, hi = metrics.mean_with_ci([float(f) for f in flags], seed=seed)
            scores.append(metrics.MetricScore("lang_ok", value, lo, hi, len(items)))
        else:
            scores.append(metrics.aggregate(m, outcomes, seed=seed))
    return scores


def engine_options(spec: RunSpec) -> EngineOptions:
    """The engine settings a run asks for."""
    return EngineOptions(engine=spec.engine, n_threads=spec.n_threads, seed=spec.seed,
                         scoring=spec.scoring, prefix_cache=spec.prefix_cache,
                         base_url=spec.base_url, api_key_env=spec.api_key_env, api=spec.api,
                         item_timeout_s=spec.item_timeout_s)


def default_engine(model: ModelFile, spec: RunSpec) -> Engine:
    """The engine a run opens for a model: `engines.factory.open_engine` with the run's options."""
    return open_engine(model, engine_options(spec))


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
    from .executors import executor

    execute = executor(spec.executor)
    models, tasks = plan(spec)
    store = Store(spec.db)
    device = fingerprint(spec.n_threads or _threads())
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
        key = eval_key(info, t, task.data_hash)
        self.store.ensure_eval(key, model=model.name, task=t.name, lang=t.lang, family=t.family,
                               output=t.output, engine=asdict(info),
                               task_info={"path": str(t.path), "prompt_hash": t.prompt_hash(),
                                          "data_hash": task.data_hash, "reference": t.reference,
                                          "target_lang": t.output_lang, "description": t.description})
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
        sig = signature(ev.info, t, ev.task.data_hash, len(items), "+".join(devices))
        self.store.add_aggregates(self.run_id, [
            AggregateRecord(ev.key, ev.model, t.name, t.lang, s.metric, s.value, s.ci_low, s.ci_high,
                            s.n, sig)
            for s in scores
        ])
        outcome = TaskOutcome(ev.model, t.name, t.lang, t.family, len(items), len(ev.todo()),
                              tuple(scores), sig, failures)
        self.outcomes.append(outcome)
        return outcome


def _threads() -> int:
    from .device import usable_cpus

    return usable_cpus()


def _spec_dict(spec: RunSpec) -> dict:
    d = asdict(spec)
    d["data_dir"] = str(spec.data_dir)
    d["db"] = str(spec.db)
    d["tasks_dirs"] = [str(p) for p in spec.tasks_dirs]
    d["lm_eval_include"] = [str(p) for p in spec.lm_eval_include]
    d["started"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    return d
