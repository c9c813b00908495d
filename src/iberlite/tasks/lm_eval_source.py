"""Any lm-evaluation-harness task by name: `iberlite run --tasks lm_eval:NAME[,NAME...]`.

The task is built by lm-eval itself (its `TaskManager`, with `--lm-eval-include DIR` folders taking
precedence over its own tasks): its documents (after its `process_docs`), its zero-shot contexts,
choices, target delimiter, targets and generation settings become iberlite `Instance`s, which then
run through iberlite's engines, store, cost measurement and report like a built-in task. They are
scored with lm-eval's own functions: its filters, `process_results` and aggregations
(`score`), so a number means what it means in an lm-eval results table.

This module is a task source, so it lives with the other task sources (`tasks/`); the fidelity
module uses it to check that the built-in tasks render what lm-eval renders.

What iberlite does not take from lm-eval: few-shot examples (iberlite is zero-shot: contexts are
built with `num_fewshot=0`), sampling (generation is greedy), and tasks whose requests are not
one context with one continuation per choice (`multiple_input` tasks) or not multiple choice or
generation (perplexity tasks): those are refused with one sentence.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iberlite.errors import UserError
from iberlite.langs import LANGS
from iberlite.scoring import metrics
from iberlite.tasks.render import Instance
from iberlite.tasks.spec import GenerationSpec, SourceSpec, TaskSpec

PREFIX = "lm_eval:"
FORMAT = "lm_eval"  # the `source.format` of a TaskSpec built here
DEFAULT_MAX_GEN_TOKS = 256  # lm-eval's HF model default `max_gen_toks`
_N_BOOT_CORPUS = 200  # resamples for a non-mean aggregation (each one runs lm-eval's aggregation)

# language codes in lm-eval task names, ISO 639-1 and -3 / FLORES spellings -> iberlite's
_LANG_TOKENS = {
    "es": "es", "spa": "es", "spanish": "es", "ca": "ca", "cat": "ca", "catalan": "ca",
    "eu": "eu", "eus": "eu", "basque": "eu", "gl": "gl", "glg": "gl", "galician": "gl",
    "pt": "pt", "por": "pt", "portuguese": "pt", "en": "en", "eng": "en", "english": "en",
}


@dataclass(frozen=True)
class LmEvalTask:
    """One lm-eval task as iberlite runs it: a TaskSpec, the instances, the hash of its documents,
    and lm-eval's task object with its documents by id (for scoring with its own functions)."""

    spec: TaskSpec
    instances: tuple[Instance, ...]
    data_hash: str
    task: Any  # lm_eval.api.task.ConfigurableTask
    docs: dict[str, Any]


_LOADED: dict[str, LmEvalTask] = {}  # spec name -> the task, for `score` in the same process


def is_lm_eval(name: str) -> bool:
    """Whether a `--tasks` entry names an lm-eval task (`lm_eval:NAME`)."""
    return name.startswith(PREFIX)


def _lm_eval():
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager, get_task_dict
    except ImportError:
        raise UserError("--tasks lm_eval:NAME needs lm-evaluation-harness, which comes with the "
                        "reference extra: pip install 'iberlite[reference]'.", 2) from None
    return lm_eval, TaskManager, get_task_dict


def _leaves(tree: dict) -> list[Any]:
    """The task objects of get_task_dict's answer, groups flattened in order."""
    out = []
    for value in tree.values():
        out += _leaves(value) if isinstance(value, dict) else [value]
    return out


def load_lm_eval_tasks(names: Sequence[str], include_dirs: Sequence[Path] = (),
                       limit: int | None = None) -> list[LmEvalTask]:
    """Build lm-eval's tasks (names without the `lm_eval:` prefix; a group gives its tasks) and
    turn the first `limit` documents of each into iberlite instances.

    An unknown name, a task iberlite cannot run, or a missing reference extra is a `UserError`
    (exit 2) of one sentence. Loading a task reads its dataset the way lm-eval does (the hub,
    unless an include dir points it at local files).
    """
    lm_eval, task_manager_cls, get_task_dict = _lm_eval()
    for d in include_dirs:
        if not Path(d).is_dir():
            raise UserError(f"--lm-eval-include {d} is not a folder.", 2)
    tm = task_manager_cls(include_path=[str(d) for d in include_dirs] or None)
    known = set(tm.all_tasks)
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise UserError(f"lm-eval {lm_eval.__version__} has no task {name!r}{hint}; "
                            "`lm_eval ls tasks` lists them, and --lm-eval-include adds a folder of yours.", 2)
    try:
        tasks = _leaves(get_task_dict(list(names), tm))
    except Exception as exc:  # lm-eval could not build it: its data, or a config error
        raise UserError(f"lm-eval could not load {', '.join(names)}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}.", 2) from None
    out = []
    for task in tasks:
        loaded = _convert(task, limit, lm_eval.__version__)
        _LOADED[loaded.spec.name] = loaded
        out.append(loaded)
    return out


def _lang(task_name: str) -> str:
    """The iberlite language of an lm-eval task, from a language token in its name
    (`xnli_es`, `belebele_eus_Latn`, `flores_en-ca`: the last one wins), else "und"."""
    found = [_LANG_TOKENS[t] for t in re.split(r"[_\-.]", task_name.lower()) if t in _LANG_TOKENS]
    lang = found[-1] if found else "und"
    return lang if lang in LANGS else "und"


def _until(gen_kwargs: dict) -> tuple[str, ...]:
    until = gen_kwargs.get("until") or ()
    return (until,) if isinstance(until, str) else tuple(until)


def _convert(task: Any, limit: int | None, version: str) -> LmEvalTask:
    name = task.config.task
    kind = task.OUTPUT_TYPE
    if kind not in ("multiple_choice", "generate_until"):
        raise UserError(f"lm-eval task {name} is a {kind} task; iberlite runs multiple-choice and "
                        "generation tasks only.", 2)
    if getattr(task, "multiple_input", False):
        raise UserError(f"lm-eval task {name} puts its choices in the context (multiple inputs), "
                        "which iberlite does not run.", 2)
    delim = task.config.target_delimiter
    gen = dict(task.config.generation_kwargs or {})
    until, max_tokens = _until(gen), int(gen.get("max_gen_toks", DEFAULT_MAX_GEN_TOKS))
    instances, docs = [], {}
    h = hashlib.sha256()
    for doc_id, doc in task.doc_iterator(limit=limit):
        key = str(doc_id)
        ctx = task.fewshot_context(doc, num_fewshot=0, gen_prefix=task.doc_to_prefix(doc))
        target = task.doc_to_target(doc)
        if kind == "multiple_choice":
            choices = tuple(task.doc_to_choice(doc))
            requests = task.construct_requests(doc=doc, ctx=ctx, metadata=(name, doc_id, 1))
            args = [tuple(r.arguments[:2]) for r in requests]
            if args != [(ctx, f"{delim}{c}") for c in choices]:
                raise UserError(f"lm-eval task {name} scores other requests than one per choice; "
                                "iberlite does not run it.", 2)
            if isinstance(target, list):
                raise UserError(f"lm-eval task {name} has several gold answers per document, "
                                "which iberlite does not score.", 2)
            gold: int | str = choices.index(target) if isinstance(target, str) else int(target)
        else:
            choices = ()
            gold = str(target[0] if isinstance(target, list) and target else target)
        instances.append(Instance(task=PREFIX + name, doc_id=key, context=str(ctx), choices=choices,
                                  gold=gold, target_delimiter=delim, until=until, max_tokens=max_tokens))
        docs[key] = doc
        h.update(json.dumps([key, ctx, choices, gold], ensure_ascii=False, default=str).encode())
    if not instances:
        raise UserError(f"lm-eval task {name} has no documents to evaluate.", 2)
    metric_names = _metric_names(task)
    spec = TaskSpec(
        name=PREFIX + name, lang=_lang(name), family="lm_eval",
        output="multiple_choice" if kind == "multiple_choice" else "generate",
        source=SourceSpec(format=FORMAT), doc_to_text=str(task.config.doc_to_text),
        doc_to_target=str(task.config.doc_to_target), metrics=metric_names,
        path=Path(str(getattr(task.config, "task", name))),
        group=str(task.config.tag[0] if isinstance(task.config.tag, list) and task.config.tag
                  else task.config.tag or name),
        description=f"lm-eval {version} task {name} ({task.config.dataset_path}), built by lm-eval, zero-shot",
        reference=f"lm-eval {version} {name}",
        doc_to_choice=None if task.config.doc_to_choice is None else str(task.config.doc_to_choice),
        target_delimiter=delim, generation=GenerationSpec(until=until, max_tokens=max_tokens),
    )
    return LmEvalTask(spec, tuple(instances), h.hexdigest()[:16], task, docs)


def _filters(task: Any) -> list[str]:
    return [f.name for f in getattr(task, "_filters", [])] or ["none"]


def _metric_names(task: Any) -> tuple[str, ...]:
    """`metric` for the task's only (or `none`) filter, `metric,filter` when it has several."""
    filters = _filters(task)
    names = []
    for f in filters:
        for m in task.aggregation():
            names.append(m if f == "none" or len(filters) == 1 else f"{m},{f}")
    return tuple(names)


def lm_eval_spec(spec: TaskSpec) -> bool:
    """Whether a TaskSpec was built here (and is scored by `score`)."""
    return spec.source.format == FORMAT


def score(spec: TaskSpec, items: Sequence[Any], seed: int) -> list[metrics.MetricScore]:
    """lm-eval's scores of stored items: its filters and `process_results` per item, its
    aggregation over them; a 95% bootstrap interval (iberlite's, over items) around each.

    Multiple choice hands lm-eval each choice's (logprob, is_greedy); generation hands the
    generated text through the task's filters, as lm-eval's evaluator does.
    """
    from lm_eval.api.metrics import mean as lm_mean

    loaded = _LOADED.get(spec.name)
    if loaded is None:
        raise UserError(f"Task {spec.name} was not loaded in this process; run it again.", 2)
    task = loaded.task
    per_metric: dict[str, list[Any]] = {}
    filters = _filters(task)
    for it in items:
        doc = loaded.docs[it.doc_id]
        for f in filters:
            if spec.output == "multiple_choice":
                results = [(lp, bool(g)) for lp, g in zip(it.logprobs or (), it.greedy or ())]
            else:
                results = [_filtered(task, f, doc, it.generated or "")]
            for m, value in task.process_results(doc, results).items():
                key = m if f == "none" or len(filters) == 1 else f"{m},{f}"
                per_metric.setdefault(key, []).append(value)
    out = []
    aggregations = task.aggregation()
    for key in spec.metrics:
        values = per_metric.get(key)
        if not values:
            continue
        agg = aggregations[key.split(",")[0]]
        if agg is lm_mean:
            value, low, high = metrics.mean_with_ci([float(v) for v in values], seed=seed)
        else:
            value, low, high = _bootstrap(agg, values, seed)
        out.append(metrics.MetricScore(key, value, low, high, len(values)))
    return out


def _filtered(task: Any, filter_name: str, doc: Any, text: str) -> Any:
    """The generated text after the task's filter ensemble `filter_name`, applied by lm-eval's
    own `FilterEnsemble.apply` to a stand-in for its request (responses, document)."""
    from types import SimpleNamespace

    for ensemble in getattr(task, "_filters", []):
        if ensemble.name == filter_name:
            request = SimpleNamespace(resps=[text], doc=doc, filtered_resps={})
            ensemble.apply([request])
            return request.filtered_resps[filter_name]
    return text


def _bootstrap(agg: Any, values: list[Any], seed: int) -> tuple[float, float, float]:
    """lm-eval's aggregation over all items and over item resamples (percentile 95%)."""
    import numpy as np

    value = float(agg(values))
    if len(values) < 2:
        return value, value, value
    idx = np.random.default_rng(seed).integers(0, len(values), size=(_N_BOOT_CORPUS, len(values)))
    boot = np.array([float(agg([values[i] for i in row])) for row in idx])
    low, high = np.percentile(boot, [2.5, 97.5])
    return value, float(low), float(high)


def split_names(entries: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`--tasks` entries -> (iberlite names, lm-eval names without the prefix).

    `lm_eval:A,B` names two lm-eval tasks: an entry after an `lm_eval:` entry is lm-eval's too,
    so built-in tasks go first (`--tasks xnli_es,lm_eval:xnli_gl,paws_gl`).
    """
    ours: list[str] = []
    theirs: list[str] = []
    for entry in entries:
        if is_lm_eval(entry):
            name = entry[len(PREFIX):].strip()
            if not name:
                raise UserError("--tasks lm_eval: needs a task name after the colon (lm_eval:xnli_gl).", 2)
            theirs.append(name)
        elif theirs:
            theirs.append(entry)
        else:
            ours.append(entry)
    return tuple(ours), tuple(dict.fromkeys(theirs))
