"""Executors: where a run's items are evaluated. `local` (this process) needs nothing more;
`ray` (a cluster, docs/scale.md) imports Ray only when asked for."""

from __future__ import annotations

from iberlite.run.executors.base import EXECUTORS, Execution, Executor
from iberlite.run.spec import FailedShard

__all__ = ["EXECUTORS", "Execution", "Executor", "FailedShard", "executor"]


def executor(name: str) -> Executor:
    """The executor called `name` (one of `EXECUTORS`)."""
    if name == "ray":
        from iberlite.run.executors.ray_executor import execute as ray_execute

        return ray_execute
    from iberlite.run.executors.local import execute

    return execute
