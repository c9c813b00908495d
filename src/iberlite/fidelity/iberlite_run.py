"""Run iberlite itself (the runner, any engine) on the crosscheck's documents."""

from __future__ import annotations

from pathlib import Path

from iberlite.fidelity.scored_docs import SystemRun, from_store
from iberlite.run.runner import run
from iberlite.run.spec import RunSpec


def run_iberlite(engine: str, model: str, tasks: list[str], limit: int, data_dir: Path,
                 work: Path, threads: int, delimiters: dict[str, str]) -> dict[str, SystemRun]:
    """`iberlite run` with `engine` into a scratch DB in `work`; the stored items per task."""
    work.mkdir(parents=True, exist_ok=True)
    db = work / f"{engine}.db"
    result = run(RunSpec(models=(model,), tasks=tuple(tasks), limit=limit, data_dir=data_dir,
                         db=db, n_threads=threads, engine=engine))
    metrics = {o.task: {s.metric: s.value for s in o.scores} for o in result.outcomes}
    wanted = {t: delimiters[t] for t in tasks}  # the DB may hold other tasks' items too
    return from_store(db, engine, model, wanted, metrics)
