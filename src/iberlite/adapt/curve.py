"""How much local data is enough: one adapter per training-set size, all on the same base.

Sizes are prefixes of one seeded shuffle of the train split (`examples.load_training_set`), so
a larger adapter sees every example a smaller one saw; size 0 is the base model, zero-shot.
Each adapter is named ``TASK-nSIZE`` and cached like any other, so a curve that stopped half
way picks up the adapters it already made. The evaluation of the points is an ordinary run of
``MODEL``, ``MODEL+TASK-n100``, ... on the same test items, stored like any run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from iberlite.adapt.make import adapt, plan
from iberlite.adapt.train import StepInfo, TrainConfig
from iberlite.errors import UserError
from iberlite.models.adapters import ADAPTER_SEP, Adapter


@dataclass(frozen=True)
class CurvePoint:
    """One size of the curve: the model to evaluate and the adapter behind it (none at 0)."""

    examples: int
    model: str
    adapter: Adapter | None
    cached: bool


def parse_sizes(text: str) -> tuple[int, ...]:
    """`0,100,300` -> (0, 100, 300); anything else is a user error."""
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        sizes = ()
    if not sizes or any(s < 0 for s in sizes) or len(set(sizes)) != len(sizes):
        raise UserError(f"--curve takes distinct example counts like 0,100,300; got {text!r}.", 2)
    return tuple(sorted(sizes))


def curve_name(task: str, size: int, labels: bool = False) -> str:
    """The adapter name of one point (``TASK-labels-nSIZE`` when trained on people's labels)."""
    return f"{task}-labels-n{size}" if labels else f"{task}-n{size}"


def train_curve(model: str, task: str, sizes: tuple[int, ...], config: TrainConfig, *, data_dir: Path,
                tasks_dirs: tuple[Path, ...] = (), models_dir: Path | None = None,
                n_threads: int | None = None, drop_overlap: bool = False, labels_db: Path | None = None,
                on_point: Callable[[int, int], None] | None = None,
                on_step: Callable[[StepInfo], None] | None = None,
                on_status: Callable[[str], None] | None = None) -> list[CurvePoint]:
    """Train (or find cached) the adapter of every size; every plan is checked before any
    training, so a size larger than the train split fails at once."""
    plans = {s: plan(model, task, config, data_dir=data_dir, train_limit=s,
                     name=curve_name(task, s, labels_db is not None), tasks_dirs=tasks_dirs,
                     models_dir=models_dir, drop_overlap=drop_overlap, n_threads=n_threads, labels_db=labels_db)
             for s in sizes if s > 0}
    for s, p in plans.items():
        if len(p.training.examples) < s:
            where = "labels" if labels_db is not None else "train split"
            raise UserError(f"The {where} of {task} has {p.training.pool} usable examples, fewer "
                            f"than the curve's {s}.", 2)
    points = [CurvePoint(0, model, None, True)] if 0 in sizes else []
    for s, p in plans.items():
        if on_point:
            on_point(s, len(sizes))
        adapter, hit = adapt(p, on_step=on_step, on_status=on_status)
        points.append(CurvePoint(s, f"{p.base.name}{ADAPTER_SEP}{p.name}", adapter, hit))
    return points
