"""`iberlite select`: score a task's pool on the device and pick the rows worth labelling.

Rows are scored through the same multiple-choice path as an evaluation (each choice's
log-probability after the rendered question, `run/evaluate.py`'s requests), by llama.cpp on
this device, with or without an adapter. Scores are stored per model file (and adapter) and
pool row as they are computed, so a pool is scored once per model, an interrupted scoring
resumes, and a new round with a new adapter scores only with that adapter.

What is left to pick: pool rows that hold no label and are not evaluated items (their labels
could never be trained on).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from iberlite.engines.base import Engine
from iberlite.engines.factory import EngineOptions, open_engine
from iberlite.engines.requests import batch_choice_requests
from iberlite.errors import UserError
from iberlite.label.defaults import DEFAULT_STRATEGY
from iberlite.label.strategies import Candidate, select
from iberlite.models.gguf_facts import gguf_facts
from iberlite.models.model_file import ModelFile
from iberlite.models.names import resolve_model
from iberlite.store import Store
from iberlite.store.labels import LabelBook, Pick, PoolRow
from iberlite.tasks.render import render_fields
from iberlite.tasks.spec import TaskSpec

BATCH = 16  # pool rows scored (and stored) at a time


@dataclass(frozen=True)
class Selected:
    """A batch `select` picked and recorded, with what scoring it cost."""

    selection_id: int
    task: str
    model: str
    strategy: str
    picks: tuple[Pick, ...]
    left: int  # rows that could be picked
    scored_now: int  # rows scored in this call (the rest came from the store)
    seconds: float  # scoring and picking, wall time


def scorer_key(model: ModelFile) -> str:
    """Who scored a row: the model file's hash, and its adapter's when it has one."""
    key = gguf_facts(model.file).sha256[:16]
    return f"{key}+{(model.adapter_sha256 or '')[:16]}" if model.adapter else key


def left_to_pick(book: LabelBook, pool: list[PoolRow]) -> list[PoolRow]:
    """The rows of `pool` without a label that may be trained on."""
    labelled = set(book.labels(pool[0].task)) if pool else set()
    return [r for r in pool if not r.evaluated and r.row_hash not in labelled]


def score_rows(engine: Engine, spec: TaskSpec, rows: list[PoolRow],
               store_batch: Callable[[list[tuple[str, list[float], list[int]]]], None],
               on_progress: Callable[[int], None] | None = None) -> None:
    """Choice log-probabilities of `rows`, stored a batch at a time."""
    for start in range(0, len(rows), BATCH):
        chunk = rows[start:start + BATCH]
        insts = [(i, render_fields(spec, r.fields, r.row_hash)) for i, r in enumerate(chunk)]
        results = iter(engine.loglikelihood(batch_choice_requests(insts)))
        out = []
        for row, (_, inst) in zip(chunk, insts):
            rs = [next(results) for _ in inst.choices]
            out.append((row.row_hash, [r.logprob for r in rs], [r.n_tokens for r in rs]))
        store_batch(out)
        if on_progress:
            on_progress(len(chunk))


def select_rows(db: Path, spec: TaskSpec, model_name: str, n: int, *, strategy: str = DEFAULT_STRATEGY,
                seed: int = 0, models_dir: Path | None = None, n_threads: int | None = None,
                on_start: Callable[[int], None] | None = None,
                on_progress: Callable[[int], None] | None = None,
                engine: Engine | None = None) -> Selected:
    """Score what is left of the pool (from the store where it can) and record the batch picked.
    `engine` may be given to reuse a loaded model (the simulation does)."""
    t0 = time.perf_counter()
    model = resolve_model(model_name, models_dir=models_dir)
    if model.remote:
        raise UserError(f"{model_name} is remote; select scores the pool on this device, with a local model.", 2)
    if model.adapter_task and model.adapter_task != spec.name:
        raise UserError(f"{model_name} was adapted to {model.adapter_task}, not {spec.name}.", 2)
    scorer = scorer_key(model)
    with Store(db) as store:
        book = LabelBook(store)
        pool = book.pool(spec.name)
        if not pool:
            raise UserError(f"The pool of {spec.name} is empty; add texts with `iberlite pool add "
                            f"{spec.name} FILE` first.", 2)
        rows = left_to_pick(book, pool)
        if not rows:
            raise UserError(f"Every usable row of the {spec.name} pool holds a label; add more texts "
                            "to the pool.", 2)
        prompt = spec.prompt_hash()
        known = book.scores(scorer, spec.name, prompt)
        todo = [r for r in rows if r.row_hash not in known]
        if todo:
            if on_start:
                on_start(len(todo))
            own = engine is None
            eng = engine or open_engine(model, EngineOptions(n_threads=n_threads))
            try:
                score_rows(eng, spec, todo, lambda batch: book.add_scores(scorer, spec.name, prompt, batch),
                           on_progress)
            finally:
                if own:
                    eng.close()
            known = book.scores(scorer, spec.name, prompt)
        candidates = [Candidate(r.row_hash, r.text, tuple(known[r.row_hash][0])) for r in rows]
        ranked = select(candidates, n, strategy, seed)
        picks = tuple(Pick(r.row_hash, r.rank, r.prediction, r.score) for r in ranked)
        seconds = time.perf_counter() - t0
        sid = book.add_selection(spec.name, model_name, scorer, strategy, seed, seconds, picks)
    return Selected(sid, spec.name, model_name, strategy, picks, len(rows), len(todo), seconds)
