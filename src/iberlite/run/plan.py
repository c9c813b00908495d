"""Plan a run: resolve its models and tasks and render every instance, so that every user error
surfaces before a model is loaded."""

from __future__ import annotations

from iberlite.engines.factory import ENGINES
from iberlite.engines.llamacpp import SCORING_MODES
from iberlite.errors import UserError
from iberlite.models.gguf_facts import gguf_facts
from iberlite.models.model_file import ModelFile
from iberlite.models.names import resolve_model
from iberlite.run.executors.base import EXECUTORS
from iberlite.run.spec import PlannedTask, RunSpec
from iberlite.tasks import lm_eval_source
from iberlite.tasks.data import data_hash
from iberlite.tasks.fewshot import FewshotSetup, apply_fewshot
from iberlite.tasks.items import load_items
from iberlite.tasks.registry import load_task_specs, select_tasks


def plan(spec: RunSpec) -> tuple[list[ModelFile], list[PlannedTask]]:
    """Resolve models and tasks and render every instance; raises UserError on bad input."""
    if spec.executor not in EXECUTORS:
        raise UserError(f"Unknown executor {spec.executor!r}; valid: {', '.join(EXECUTORS)}.", 2)
    if spec.device_classes and spec.executor != "ray":
        raise UserError("--device-class needs --executor ray: device classes are Ray resources.", 2)
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
    ours, lm_names = lm_eval_source.split_names(spec.tasks)
    setup = FewshotSetup(spec.num_fewshot, spec.fewshot_mode, spec.seed)
    if lm_names:  # before any data is read: a few-shot request lm-eval tasks cannot honour
        lm_eval_source.check_fewshot(setup)
    tasks = select_tasks(specs, ours or None, spec.langs or None) if ours or not lm_names else []
    planned = []
    for t in tasks:
        items = load_items(t, spec.data_dir, spec.limit, online=spec.online, strict=spec.strict)
        dh = "hub" if spec.online else data_hash(t, spec.data_dir)
        instances, shots = apply_fewshot(t, items.instances, spec.data_dir, setup, online=spec.online)
        planned.append(PlannedTask(t, instances, dh, items.faults, shots))
    if lm_names:  # built by lm-eval itself (tasks/lm_eval_source.py)
        for lt in lm_eval_source.load_lm_eval_tasks(lm_names, spec.lm_eval_include, spec.limit, setup):
            planned.append(PlannedTask(lt.spec, lt.instances, lt.data_hash, fewshot=lt.fewshot))
    return models, planned
