"""What every executor shares: its signature, what it hands back, and a shard that failed.

An executor evaluates the planned items that are not stored yet and gives them to the run's
`RunWriter` (the only writer to the store); the runner does the planning before it and the
scoring through the writer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from iberlite.models.model_file import ModelFile
from iberlite.run.spec import EngineFactory, FailedShard, ModelFailure, PlannedTask, RunSpec
from iberlite.run.writer import RunWriter

EXECUTORS = ("local", "ray")
"""`local`: this process, one model after another (the default). `ray`: shards on a Ray cluster."""


@dataclass(frozen=True)
class Execution:
    """What an executor hands back besides what it gave the writer (items, failures, costs):
    the shards that failed (ray) and the models that could not run (local, --keep-going)."""

    failed: tuple[FailedShard, ...] = ()
    model_failures: tuple[ModelFailure, ...] = ()


Executor = Callable[["Sequence[ModelFile]", "Sequence[PlannedTask]", "RunSpec", "RunWriter", "EngineFactory"],
                    Execution]
"""(models, planned tasks, run spec, writer, engine factory) -> Execution."""
