"""Plan and execute a grid of models x tasks on this device, storing every item.

Stages: plan (resolve models, select tasks, load and render documents: every user error
surfaces here, before a model is loaded) -> execute (per model: load the engine, evaluate the
items not yet stored, in chunks, each chunk committed) -> score (aggregates with CIs and
signatures, from the stored items).
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
from .device import EnergyMeter, RssSampler, fingerprint
from .engines.base import Engine, GenerationRequest, LoglikelihoodRequest
from .engines.factory import ENGINES, EngineOptions, open_engine
from .errors import UserError
from .isolate import evaluate_isolating
from .language_id import LanguageIdentifier, identifier_signature, lang_ok
from .signature import eval_key, signature
from .store import AggregateRecord, ItemFailure, ItemRecord, RunCost, Store
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
class ModelFailure:
    """A model that could not be evaluated (with --keep-going the run went on without it)."""

    model: str
    reason: str


@dataclass(frozen=True)
class RunResult:
    """A finished run: its id in the store, every task outcome, and each model's device cost."""

    run_id: int
    outcomes: tuple[TaskOutcome, ...]
    cost: dict[str, RunCost]  # model name -> what loading and running it cost
    model_failures: tuple[ModelFailure, ...] = ()
    skipped: str | None = None  # one sentence on the data rows skipped, if any

    @property
    def complete(self) -> bool:
        """No model and no item failed."""
        return not self.model_failures and not any(o.failures for o in self.outcomes)


def plan(spec: RunSpec) -> tuple[list[ModelFile], list[PlannedTask]]:
    """Resolve models and tasks and render every instance; raises UserError on bad input."""
    from .engines.llamacpp import SCORING_MODES

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
    tasks = select_tasks(specs, spec.tasks or None, spec.langs or None)
    planned = []
    for t in tasks:
        items = load_items(t, spec.data_dir, spec.limit, online=spec.online, strict=spec.strict)
        dh = "hub" if spec.online else data_hash(t, spec.data_dir)
        planned.append(PlannedTask(t, items.instances, dh, items.faults))
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


def _score_mc(engine: Engine, batch: Sequence[tuple[int, Instance]]) -> list[ItemRecord]:
    reqs = [
        LoglikelihoodRequest(inst.context, inst.target_delimiter + c, group=f"{seq}:{inst.doc_id}")
        for seq, inst in batch
        for c in inst.choices
    ]
    results = iter(engine.loglikelihood(reqs))
    out = []
    for seq, inst in batch:
        rs = [next(results) for _ in inst.choices]
        lps = tuple(r.logprob for r in rs)
        pred = metrics.mc_prediction(lps)
        out.append(ItemRecord(
            doc_id=inst.doc_id, seq=seq, prompt=inst.context, gold=str(inst.gold),
            choices=inst.choices, logprobs=lps, n_tokens=tuple(r.n_tokens for r in rs),
            greedy=tuple(r.is_greedy for r in rs), prediction=str(pred),
            correct=pred == inst.gold, eval_tokens=sum(r.eval_tokens for r in rs),
            wall_ms=sum(r.ms for r in rs), prefill_ms=sum(r.ms for r in rs),
            prompt_tokens=int(round(sum(r.eval_tokens for r in rs))),
            confidence=metrics.choice_margin(lps),
        ))
    return out


def _generate(engine: Engine, spec: TaskSpec, batch: Sequence[tuple[int, Instance]]) -> list[ItemRecord]:
    reqs = [GenerationRequest(inst.context, inst.until, inst.max_tokens) for _, inst in batch]
    results = engine.generate(reqs)
    checks_answer = any(m.startswith("exact_match") for m in spec.metrics)
    out = []
    for (seq, inst), r in zip(batch, results):
        correct = None
        if checks_answer:
            scorer = metrics.exact_match_flex if "exact_match_flex" in spec.metrics else metrics.exact_match
            correct = scorer(r.text, str(inst.gold)) > 0
        out.append(ItemRecord(
            doc_id=inst.doc_id, seq=seq, prompt=inst.context, gold=str(inst.gold),
            prediction=r.text, generated=r.text, correct=correct, stop_reason=r.stop_reason,
            eval_tokens=float(r.prompt_tokens - r.reused_tokens + r.gen_tokens),
            prompt_tokens=r.prompt_tokens, gen_tokens=r.gen_tokens, reused_tokens=r.reused_tokens,
            wall_ms=r.wall_ms, prefill_ms=r.prefill_ms, decode_ms=r.decode_ms, ttft_ms=r.ttft_ms,
            confidence=r.mean_logprob,
        ))
    return out


def score_items(spec: TaskSpec, items: Sequence[ItemRecord], seed: int) -> list[metrics.MetricScore]:
    """Every metric of the task over the stored items, each with a bootstrap 95% CI."""
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


def _evaluate_task(engine: Engine, store: Store, run_id: int, model: ModelFile, task: PlannedTask,
                   spec: RunSpec, device_id: str, advance: Callable[[str, int], None],
                   on_stored: Callable[[int], None]) -> TaskOutcome:
    info = engine.info()
    t = task.spec
    supervise.note(model=model.name, task=t.name)
    key = eval_key(info, t, task.data_hash)
    store.ensure_eval(key, model=model.name, task=t.name, lang=t.lang, family=t.family,
                      output=t.output, engine=asdict(info),
                      task_info={"path": str(t.path), "prompt_hash": t.prompt_hash(),
                                 "data_hash": task.data_hash, "reference": t.reference,
                                 "target_lang": t.output_lang, "description": t.description})
    done = store.done_doc_ids(key)
    todo = [(i, inst) for i, inst in enumerate(task.instances) if inst.doc_id not in done]
    advance(t.name, len(task.instances) - len(todo))
    def evaluate(batch: Sequence[tuple[int, Instance]]) -> list[ItemRecord]:
        return _score_mc(engine, batch) if t.output == "multiple_choice" else _generate(engine, t, batch)

    for s in range(0, len(todo), spec.chunk_size):
        batch = todo[s:s + spec.chunk_size]
        records, failed = evaluate_isolating(evaluate, batch)
        if t.output != "multiple_choice":  # stored, so a report never runs language ID again
            detected = LanguageIdentifier().identify_many([r.generated for r in records])
            records = [replace(r, lang_detected=d) for r, d in zip(records, detected)]
        store.add_items(key, run_id, records)
        store.add_failures(key, run_id, failed)
        on_stored(len(records))
        advance(t.name, len(batch))
        interrupt.check()  # Ctrl-C stops here, with this chunk stored
    doc_ids = {inst.doc_id for inst in task.instances}
    failures = tuple(f for f in store.open_failures(key) if f.doc_id in doc_ids)
    items = store.items(key, [inst.doc_id for inst in task.instances])
    scores = score_items(t, items, spec.seed) if items else []  # every item failed: no score
    sig = signature(info, t, task.data_hash, len(items), device_id)
    store.add_aggregates(run_id, [
        AggregateRecord(key, model.name, t.name, t.lang, s.metric, s.value, s.ci_low, s.ci_high,
                        s.n, sig)
        for s in scores
    ])
    return TaskOutcome(model.name, t.name, t.lang, t.family, len(items), len(todo),
                       tuple(scores), sig, failures)


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

    An interrupted run (Ctrl-C: after the chunk in flight) keeps every committed chunk, is
    marked `interrupted` and raises `interrupt.RunInterrupted`; rerunning the same spec
    continues where it stopped, retrying items that failed. With `spec.keep_going` a model
    that cannot be loaded or run is listed in `RunResult.model_failures` and the others go on.
    `engine_factory` opens each model's engine (default :func:`default_engine`); tests pass a
    deterministic fake here.
    """
    open_model = engine_factory or default_engine
    models, tasks = plan(spec)
    store = Store(spec.db)
    device = fingerprint(spec.n_threads or _threads())
    run_id = store.start_run(_spec_dict(spec), command, device.to_dict(), _versions())
    outcomes: list[TaskOutcome] = []
    cost: dict[str, RunCost] = {}
    model_failures: list[ModelFailure] = []
    status = "failed"
    stored = 0

    def on_stored(n: int) -> None:
        nonlocal stored
        stored += n
        supervise.note(stored=stored)

    supervise.note(db=str(spec.db), run_id=run_id, stored=0)
    try:
        with interrupt.stop_between_chunks():
            total = sum(len(t.instances) for t in tasks)
            for model in models:
                interrupt.check()
                done = 0

                def advance(task_name: str, n: int, model_name: str = model.name) -> None:
                    nonlocal done
                    done += n
                    if progress:
                        progress(model_name, task_name, done, total)

                supervise.note(model=model.name, task=None)
                try:
                    with RssSampler() as mem, EnergyMeter() as energy:
                        engine = open_model(model, spec)
                        mem.mark("after_load")
                        try:
                            for task in tasks:
                                outcomes.append(_evaluate_task(engine, store, run_id, model, task, spec,
                                                               device.fingerprint_id, advance, on_stored))
                        finally:
                            load_ms = engine.info().load_ms
                            engine.close()
                except (UserError, RuntimeError, OSError) as exc:
                    if not spec.keep_going:
                        raise
                    model_failures.append(ModelFailure(model.name, str(exc)))
                    continue
                # a remote model's energy and memory are spent elsewhere: only its load time counts
                cost[model.name] = (RunCost(load_ms=load_ms, remote=True) if model.remote
                                    else _model_cost(mem, energy, load_ms))
        result = RunResult(run_id, tuple(outcomes), cost, tuple(model_failures),
                           skipped_summary([f for t in tasks for f in t.skipped]))
        status = "done" if result.complete else "incomplete"
    except KeyboardInterrupt as exc:
        status = "interrupted"
        raise interrupt.RunInterrupted(run_id, stored, spec.db) from exc
    finally:
        store.end_run(run_id, status, cost)
        store.close()
    return result


def _model_cost(mem: RssSampler, energy: EnergyMeter, load_ms: float) -> RunCost:
    m, e = mem.reading, energy.reading
    return RunCost(
        load_ms=load_ms, rss_start_bytes=m.start_bytes,
        rss_after_load_bytes=dict(m.marks).get("after_load"), peak_rss_bytes=m.peak_bytes,
        os_peak_rss_bytes=m.os_peak_bytes, energy_j=e.joules, energy_method=e.method,
        watts_assumed=e.watts_assumed, cpu_s=e.cpu_seconds, wall_s=e.wall_seconds,
    )


def _threads() -> int:
    from .device import usable_cpus

    return usable_cpus()


def _spec_dict(spec: RunSpec) -> dict:
    d = asdict(spec)
    d["data_dir"] = str(spec.data_dir)
    d["db"] = str(spec.db)
    d["tasks_dirs"] = [str(p) for p in spec.tasks_dirs]
    d["started"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    return d
