"""What a run is asked to do and what it gives back: the records every stage of a run shares.

`RunSpec` (what to evaluate, where to store it) goes in; `plan` turns it into `ModelFile`s and
`PlannedTask`s; an executor evaluates them; `RunResult` (outcomes, device cost, failures) comes
out. They live here, apart from the code that makes them, so that the runner, the writer and
every executor can share them without importing each other (as HELM keeps `run_spec.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from iberlite.engines.base import Engine
from iberlite.engines.factory import EngineOptions, open_engine
from iberlite.models.catalog import DEFAULT_MODELS
from iberlite.models.model_file import ModelFile
from iberlite.scoring.metrics import MetricScore
from iberlite.store import ItemFailure, RunCost
from iberlite.tasks.data import RowFault, default_data_dir
from iberlite.tasks.fewshot import FewshotPlan
from iberlite.tasks.render import Instance
from iberlite.tasks.spec import TaskSpec

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
    num_fewshot: int = 0  # shots before each item (tasks/fewshot.py), drawn with `seed`
    fewshot_mode: str = "per-item"  # "per-item" (lm-eval's draws) or "fixed" (one shared prefix)
    lm_eval_include: tuple[Path, ...] = ()  # folders of lm-eval task YAMLs for `lm_eval:NAME` tasks


@dataclass(frozen=True)
class PlannedTask:
    """A task with its rendered instances and data hash, ready to run on any model."""

    spec: TaskSpec
    instances: tuple[Instance, ...]
    data_hash: str
    skipped: tuple[RowFault, ...] = ()  # data rows that cannot be evaluated
    fewshot: FewshotPlan | None = None  # k > 0: which shots, part of the key and signature


@dataclass(frozen=True)
class TaskOutcome:
    """What one model scored on one task in this run."""

    model: str
    task: str
    lang: str
    family: str
    n_items: int
    n_new: int
    scores: tuple[MetricScore, ...]
    signature: str
    failures: tuple[ItemFailure, ...] = ()  # items left out of the scores: they failed


@dataclass(frozen=True)
class FailedShard:
    """A shard that still failed after its retries: what it held and the last error."""

    model: str
    task: str
    device_class: str | None
    first_seq: int
    n_items: int
    error: str

    def describe(self) -> str:
        """One line for the run summary."""
        where = f" on class {self.device_class}" if self.device_class else ""
        return (f"{self.model} {self.task} items {self.first_seq}-{self.first_seq + self.n_items - 1}"
                f"{where}: {self.error}")


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
    cost: dict[str, RunCost]  # `cost_key(model, device class)` -> what loading and running it cost
    model_failures: tuple[ModelFailure, ...] = ()  # local, --keep-going: models that could not run
    skipped: str | None = None  # one sentence on the data rows skipped, if any
    failed: tuple[FailedShard, ...] = ()  # ray: shards that kept failing (their items are not stored)

    @property
    def complete(self) -> bool:
        """No model, shard or item failed."""
        return not self.model_failures and not self.failed and not any(o.failures for o in self.outcomes)



def engine_options(spec: RunSpec) -> EngineOptions:
    """The engine settings a run asks for."""
    return EngineOptions(engine=spec.engine, n_threads=spec.n_threads, seed=spec.seed,
                         scoring=spec.scoring, prefix_cache=spec.prefix_cache,
                         base_url=spec.base_url, api_key_env=spec.api_key_env, api=spec.api,
                         item_timeout_s=spec.item_timeout_s)


def default_engine(model: ModelFile, spec: RunSpec) -> Engine:
    """The engine a run opens for a model: `engines.factory.open_engine` with the run's options."""
    return open_engine(model, engine_options(spec))
