"""lm-evaluation-harness 0.4.13's own k-shot requests for a local task copy, without a model.

lm-eval builds every request before it loads any model (`Task.build_all_requests`), so its
contexts can be read in-process, in a few seconds, the way `simple_evaluate` prepares a task:
num_fewshot set on the task, then `set_fewshot_seed(1234)`, then the requests of the first
`limit` documents in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from iberlite.fidelity.lm_eval_tasks import ADAPTERS, PREFIX


@dataclass(frozen=True)
class BuiltRequests:
    """One document's requests as lm-eval built them: its key, context and continuations."""

    key: str
    context: str
    continuations: tuple[str, ...]


def lm_eval_requests(task: str, include_dir: Path, k: int, limit: int,
                     seed: int = 1234) -> list[BuiltRequests]:
    """lm-eval's requests for the local copy of `task` (written by `write_task_dir`)."""
    from lm_eval.tasks import TaskManager

    local = PREFIX + task
    manager = TaskManager(include_path=str(include_dir))
    lm_task = manager.load([local])["tasks"][local]
    lm_task.set_config(key="num_fewshot", value=k)
    lm_task.set_fewshot_seed(seed=seed)
    lm_task.build_all_requests(limit=limit)
    id_field = ADAPTERS[task].id_field
    out: dict[int, BuiltRequests] = {}
    for inst in lm_task.instances:
        doc_id = inst.doc_id
        key = str(inst.doc[id_field]) if id_field else str(doc_id)
        ctx, cont = inst.arguments[0], inst.arguments[1]
        prev = out.get(doc_id)
        conts = (prev.continuations if prev else ()) + (cont if isinstance(cont, str) else "",)
        out[doc_id] = BuiltRequests(key, ctx, conts)
    return [out[i] for i in sorted(out)]
