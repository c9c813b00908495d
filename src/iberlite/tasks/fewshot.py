"""Few-shot contexts as lm-evaluation-harness 0.4.13 builds them, and a fixed-shot device mode.

lm-eval (api/task.py `fewshot_context`, api/samplers.py) builds a k-shot context as
`description + shot_1 + ... + shot_k + question`, each shot being
`question + target_delimiter + gold answer text + fewshot_delimiter`. The shots are drawn from
one pool (the few-shot split, else train, else validation, else the evaluated split) by one
`random.Random(seed)` per task, consumed document after document in evaluation order: the shots
of document i depend on how many draws the documents before it took. When the sampler is handed
the evaluated document it draws k+1 and drops that document. Reproducing those draws exactly is
what makes an iberlite k-shot number comparable to lm-eval's, item for item.

`fixed` mode is a different experiment made for the device: one seeded set of k shots for the
whole task, so every item starts with the same text and an engine can compute its KV once.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from iberlite.errors import RowError, UserError
from iberlite.tasks.data import Doc, docs_from_rows, read_rows
from iberlite.tasks.render import Instance, render, render_text
from iberlite.tasks.sandbox import template_fields
from iberlite.tasks.spec import TaskSpec

MODES = ("per-item", "fixed")


@dataclass(frozen=True)
class FewshotSetup:
    """What the user asked for: k shots, per item (lm-eval) or one fixed set, and the seed."""

    k: int
    mode: str = "per-item"
    seed: int = 1234


@dataclass(frozen=True)
class FewshotPlan:
    """What a k-shot evaluation used: part of its evaluation key and of its signature."""

    k: int
    mode: str
    sampler: str
    seed: int
    pool: str  # the split shots come from ("train", "eval split (doc excluded)", ...)
    pool_size: int
    pool_hash: str
    dropped: int = 0  # fixed mode on the evaluated split: items left out because they are shots

    def key_parts(self) -> dict[str, object]:
        """The parts of the evaluation key that tell k-shot evaluations apart."""
        return {"k": self.k, "mode": self.mode, "sampler": self.sampler, "seed": self.seed,
                "pool": self.pool_hash}

    @property
    def label(self) -> str:
        """Signature field: `5shot,per-item,default,seed1234,pool@abc123`."""
        return f"{self.k}shot,{self.mode},{self.sampler},seed{self.seed},pool@{self.pool_hash}"


def sample_shots(rnd: random.Random, pool: Sequence[Doc], n: int, sampler: str,
                 eval_doc: Doc | None = None) -> list[Doc]:
    """lm-eval 0.4.13's `ContextSampler.sample` / `FirstNSampler.sample`, draw for draw.

    Documents are equal when their fields are (lm-eval compares document dicts), so a pool row
    identical to the evaluated one is never its shot.
    """
    if n == 0:
        return []
    if sampler == "first_n":
        kept = [d for d in pool if eval_doc is None or d.fields != eval_doc.fields]
        if n > len(kept):
            raise UserError(f"The few-shot pool has {len(kept)} documents; {n} shots were asked for.", 2)
        return list(kept[:n])
    need = n + 1 if eval_doc is not None else n
    if need > len(pool):
        raise UserError(f"The few-shot pool has {len(pool)} documents; {n} shots need {need}.", 2)
    drawn = rnd.sample(list(pool), need)
    if eval_doc is None:
        return drawn
    res = [d for d in drawn if d.fields != eval_doc.fields][:n]
    if len(res) < n:  # the pool repeats the evaluated row: draw again without any copy of it
        rest = [d for d in pool if d.fields != eval_doc.fields]
        if n > len(rest):
            raise UserError(f"The few-shot pool has {len(rest)} other documents; {n} shots were asked for.", 2)
        res = rnd.sample(rest, n)
    return res


def qa_turn(question: str, answer: str, target_delimiter: str, fewshot_delimiter: str) -> str:
    """One shot as lm-eval writes it: an empty answer leaves the question alone."""
    if answer == "":
        return question
    return question + target_delimiter + answer + fewshot_delimiter


def build_context(description: str, shots: Sequence[str], question: str) -> str:
    """The whole context: description, the shots, then the evaluated question."""
    return description + "".join(shots) + question


def gold_text(inst: Instance) -> str:
    """The answer a shot shows: the gold choice's text, or the reference for generation."""
    if inst.choices and isinstance(inst.gold, int):
        return inst.choices[inst.gold]
    return str(inst.gold)


def pool_hash(pool: Sequence[Doc]) -> str:
    """Hash of the pool's documents in order (the draws depend on both)."""
    h = hashlib.sha256()
    for d in pool:
        h.update(json.dumps(d.fields, sort_keys=True, ensure_ascii=False, default=str).encode())
        h.update(b"\n")
    return h.hexdigest()[:12]


def load_pool(spec: TaskSpec, data_dir: Path, *, online: bool = False) -> list[Doc]:
    """The documents shots are drawn from: the few-shot source's, else the evaluated split's
    (every usable row, not only the first `limit`), in file order."""
    fs = spec.fewshot
    pool_spec = replace(spec, source=fs.source) if fs.source is not None else spec
    return docs_from_rows(pool_spec, read_rows(pool_spec, data_dir, online=online))


class _Shots:
    """Renders pool documents into shot text once each."""

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        fs = spec.fewshot
        self.tdelim = spec.target_delimiter if fs.target_delimiter is None else fs.target_delimiter
        self.fdelim = fs.fewshot_delimiter
        self._cache: dict[int, str] = {}

    def text(self, doc: Doc) -> str:
        key = id(doc)
        if key not in self._cache:
            try:
                inst = render(self.spec, doc)
            except RowError as exc:
                raise UserError(f"Task {self.spec.name}: a few-shot document (line {doc.line} of "
                                f"{doc.file}) cannot be a shot: {exc.detail or exc}.", 2) from None
            self._cache[key] = qa_turn(inst.context, gold_text(inst), self.tdelim, self.fdelim)
        return self._cache[key]


def _fixed(spec: TaskSpec, pool: Sequence[Doc], setup: FewshotSetup, shots: _Shots) -> tuple[str, list[Doc]]:
    fs = spec.fewshot
    if fs.description and template_fields(fs.description):
        raise UserError(f"Task {spec.name}: its few-shot description reads document fields, so "
                        "it cannot be part of a fixed prefix; use --fewshot-mode per-item.", 2)
    chosen = sample_shots(random.Random(setup.seed), pool, setup.k, fs.sampler)
    description = render_text(spec, "fewshot.description", fs.description, Doc("-", {}))
    return build_context(description, [shots.text(d) for d in chosen], ""), chosen


def fixed_prefix(spec: TaskSpec, pool: Sequence[Doc], setup: FewshotSetup) -> str:
    """The text a fixed-mode evaluation put before every item: the same description and k shots
    for the same task, pool and seed, so a router can prompt a new request exactly as the
    evaluation did (per-item shots depend on the document's place in the evaluated order)."""
    return _fixed(spec, pool, setup, _Shots(spec))[0]


def fewshot_instances(spec: TaskSpec, instances: Sequence[Instance], eval_docs: dict[str, Doc],
                      pool: Sequence[Doc], setup: FewshotSetup) -> tuple[tuple[Instance, ...], int]:
    """The instances with their k-shot contexts, in order, and how many were dropped (fixed mode
    on the evaluated split leaves out the items that are its shots).

    `eval_docs` maps each instance's doc_id to its document (for exclusion and the description).
    """
    fs = spec.fewshot
    shots = _Shots(spec)
    if setup.mode == "fixed":
        prefix, chosen = _fixed(spec, pool, setup, shots)
        taken = [d.fields for d in chosen] if fs.excludes_doc else []
        kept = [i for i in instances if eval_docs[i.doc_id].fields not in taken]
        return (tuple(replace(i, context=prefix + i.context, shared_prefix=prefix) for i in kept),
                len(instances) - len(kept))
    rnd = random.Random(setup.seed)
    out = []
    for inst in instances:
        doc = eval_docs[inst.doc_id]
        drawn = sample_shots(rnd, pool, setup.k, fs.sampler, doc if fs.excludes_doc else None)
        description = render_text(spec, "fewshot.description", fs.description, doc)
        out.append(replace(inst, context=build_context(description, [shots.text(d) for d in drawn],
                                                       inst.context)))
    return tuple(out), 0


def apply_fewshot(spec: TaskSpec, instances: Sequence[Instance], data_dir: Path, setup: FewshotSetup,
                  *, online: bool = False) -> tuple[tuple[Instance, ...], FewshotPlan | None]:
    """Give a task's instances their k-shot contexts (k = 0 with no description: unchanged, and
    no plan, so zero-shot evaluation keys stay as they were)."""
    fs = spec.fewshot
    if setup.mode not in MODES:
        raise UserError(f"Unknown few-shot mode {setup.mode!r}; valid: {', '.join(MODES)}.", 2)
    if setup.k < 0:
        raise UserError(f"--num-fewshot must be 0 or more; got {setup.k}.", 2)
    if setup.k == 0 and not fs.description:
        return tuple(instances), None
    eval_docs = {d.id: d for d in docs_from_rows(spec, read_rows(spec, data_dir, online=online))}
    pool = load_pool(spec, data_dir, online=online) if setup.k else []
    out, dropped = fewshot_instances(spec, instances, eval_docs, pool, setup)
    if setup.k == 0:
        return out, None
    plan = FewshotPlan(k=setup.k, mode=setup.mode, sampler=fs.sampler, seed=setup.seed,
                       pool=fs.pool_label, pool_size=len(pool), pool_hash=pool_hash(pool),
                       dropped=dropped)
    return out, plan
