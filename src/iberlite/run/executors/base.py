"""What every executor shares: its signature, what it hands back, and a shard that failed.

An executor evaluates the planned items that are not stored yet and gives them to the run's
`RunWriter` (the only writer to the store); the runner does the planning before it and the
scoring through the writer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from iberlite.models.catalog import ModelFile
    from iberlite.run.runner import EngineFactory, PlannedTask, RunSpec, RunWriter

EXECUTORS = ("local", "ray")
"""`local`: this process, one model after another (the default). `ray`: shards on a Ray cluster."""


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
class Execution:
    """What an executor hands back besides what it gave the writer (items, failures, costs):
    the shards that failed (ray) and the models that could not run (local, --keep-going)."""

    failed: tuple[FailedShard, ...] = ()
    model_failures: tuple[ModelFailure, ...] = ()


Executor = Callable[["Sequence[ModelFile]", "Sequence[PlannedTask]", "RunSpec", "RunWriter", "EngineFactory"],
                    Execution]
"""(models, planned tasks, run spec, writer, engine factory) -> Execution."""
