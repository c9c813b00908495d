"""Any lm-evaluation-harness task by name: `iberlite run --tasks lm_eval:NAME[,NAME...]`.

The task is built by lm-eval itself (its `TaskManager`, with `--lm-eval-include DIR` folders taking
precedence over its own tasks): its documents (after its `process_docs`), its contexts, choices, target delimiter, targets and generation settings become iberlite `Instance`s, which then
run through iberlite's engines, store, cost measurement and report like a built-in task. They are
scored with lm-eval's own functions: its filters, `process_results` and aggregations
(`score`), so a number means what it means in an lm-eval results table.

This module is a task source, so it lives with the other task sources (`tasks/`); the fidelity
module uses it to check that the built-in tasks render what lm-eval renders.

Few-shot: `--num-fewshot K` gives lm-eval's own K-shot contexts, built the way its evaluator
builds them for `lm_eval --num_fewshot K`: `num_fewshot` set to K on the task config, the
sampler seeded with `set_fewshot_seed(--seed)` (1234 by default, lm-eval's `fewshot_random_seed`
default), then `fewshot_context` for each document in document order, so the shots of document i
are the ones lm-eval shows it. iberlite always passes its K, as if `--num_fewshot K` had been
given on lm-eval's command line: without `--num-fewshot` that is 0, also for a task whose YAML
sets another `num_fewshot` (every iberlite run is zero-shot unless asked, and the key says how
many shots were used; pass `--num-fewshot N` for the YAML's N). A task whose YAML pins
`num_fewshot: 0` is one lm-eval never gives shots to: asking it for K > 0 is refused with one
sentence rather than run at 0 shots under a K-shot label. `--fewshot-mode fixed` is iberlite's
own sampler for built-in tasks and is refused for lm-eval tasks (lm-eval has no such mode). K,
mode, sampler, seed and the hash of lm-eval's shot pool go into the evaluation key and the
signature (`FewshotPlan`), as for built-in tasks, so 0-shot and K-shot results never mix.

What iberlite does not take from lm-eval: sampling (generation is greedy), chat templates and
system instructions, and tasks whose requests are not one context with one continuation per
choice (`multiple_input` tasks) or not multiple choice or generation (perplexity tasks): those
are refused with one sentence.
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
from iberlite.tasks.fewshot import MODES, FewshotPlan, FewshotSetup
from iberlite.tasks.render import Instance
from iberlite.tasks.spec import FewshotSpec, GenerationSpec, SourceSpec, TaskSpec

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
    fewshot: FewshotPlan | None = None  # K > 0: lm-eval's shots, part of the key and signature


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


def check_fewshot(setup: FewshotSetup) -> None:
    """Refuse, before anything is loaded, a few-shot request lm-eval tasks cannot honour exactly:
    `fixed` mode is iberlite's own sampler, and lm-eval has no such experiment."""
    if setup.mode not in MODES:
        raise UserError(f"Unknown few-shot mode {setup.mode!r}; valid: {', '.join(MODES)}.", 2)
    if setup.k < 0:
        raise UserError(f"--num-fewshot must be 0 or more; got {setup.k}.", 2)
    if setup.mode == "fixed":
        raise UserError("--fewshot-mode fixed is for built-in tasks only; lm_eval: tasks take "
                        "lm-eval's own per-item shots (--fewshot-mode per-item).", 2)


def load_lm_eval_tasks(names: Sequence[str], include_dirs: Sequence[Path] = (),
                       limit: int | None = None,
                       fewshot: FewshotSetup = FewshotSetup(0)) -> list[LmEvalTask]:
    """Build lm-eval's tasks (names without the `lm_eval:` prefix; a group gives its tasks) and
    turn the first `limit` documents of each into iberlite instances, with `fewshot.k` shots
    per document drawn by lm-eval itself (see the module docstring).

    An unknown name, a task iberlite cannot run, a few-shot request it cannot honour, or a
    missing reference extra is a `UserError` (exit 2) of one sentence. Loading a task reads its
    dataset the way lm-eval does (the hub, unless an include dir points it at local files).
    """
    check_fewshot(fewshot)
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
        loaded = _convert(task, limit, lm_eval.__version__, fewshot)
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


def _set_fewshot(task: Any, setup: FewshotSetup) -> tuple[int, str]:
    """Prepare the task as lm-eval's evaluator does for `--num_fewshot K`: K on its config and
    its sampler seeded. Returns K and a note on the YAML's own default for the description."""
    name = task.config.task
    yaml_k = task.get_config("num_fewshot")
    if setup.k > 0 and yaml_k == 0:
        raise UserError(f"lm-eval task {name} pins num_fewshot: 0 in its config, so lm-eval never "
                        f"gives it shots; run it without --num-fewshot.", 2)
    if setup.k > 0 and not hasattr(task, "sampler"):
        raise UserError(f"lm-eval task {name} has no documents to draw shots from.", 2)
    task.set_config(key="num_fewshot", value=setup.k)
    task.set_fewshot_seed(seed=setup.seed)
    note = f"; its config's default of {yaml_k} shots needs --num-fewshot {yaml_k}" \
        if yaml_k and yaml_k != setup.k else ""
    return setup.k, note


def _pool_split(task: Any) -> str:
    """Where lm-eval draws the task's shots from (its `fewshot_docs`): the few-shot split, else
    the config's samples, else train, else validation, else the evaluated split."""
    cfg, config = task.fewshot_cfg, task.config
    if cfg.split is None and config.fewshot_config is not None and cfg.samples is not None:
        return "fewshot_config samples"
    split = cfg.split or (config.training_split if task.has_training_docs() else
                          config.validation_split if task.has_validation_docs() else config.test_split)
    evaluated = config.test_split if task.has_test_docs() else config.validation_split
    return f"{split} (eval split)" if split == evaluated else str(split)


def _fewshot_record(task: Any, setup: FewshotSetup) -> tuple[FewshotSpec, FewshotPlan | None]:
    """What a K-shot lm-eval task used, in the shape built-in tasks record it: the shot pool
    (lm-eval's few-shot split, else its train/validation/test rule), its sampler and delimiters."""
    cfg = task.fewshot_cfg
    sampler = cfg.sampler if task.config.fewshot_config else "default"
    sampler_name = sampler if isinstance(sampler, str) else getattr(sampler, "__name__", str(sampler))
    split = _pool_split(task)
    spec = FewshotSpec(split=split, sampler=sampler_name,
                       exclude_doc=cfg.split == task.config.test_split,
                       target_delimiter=cfg.target_delimiter,
                       fewshot_delimiter=str(cfg.fewshot_delimiter if cfg.fewshot_delimiter is not None
                                             else task.config.fewshot_delimiter))
    if setup.k == 0:
        return spec, None
    pool = task.sampler.fewshot_docs()
    h = hashlib.sha256()
    for doc in pool:
        h.update(json.dumps(doc, sort_keys=True, ensure_ascii=False, default=str).encode())
        h.update(b"\n")
    plan = FewshotPlan(k=setup.k, mode=setup.mode, sampler=sampler_name, seed=setup.seed,
                       pool=spec.split, pool_size=len(pool), pool_hash=h.hexdigest()[:12])
    return spec, plan


def _convert(task: Any, limit: int | None, version: str,
             setup: FewshotSetup = FewshotSetup(0)) -> LmEvalTask:
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
    k, note = _set_fewshot(task, setup)
    instances, docs = [], {}
    h = hashlib.sha256()
    for doc_id, doc in task.doc_iterator(limit=limit):  # in order: each draw moves the sampler on
        key = str(doc_id)
        ctx = task.fewshot_context(doc, num_fewshot=k, gen_prefix=task.doc_to_prefix(doc))
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
    fewshot_spec, plan = _fewshot_record(task, setup)
    spec = TaskSpec(
        name=PREFIX + name, lang=_lang(name), family="lm_eval",
        output="multiple_choice" if kind == "multiple_choice" else "generate",
        source=SourceSpec(format=FORMAT), doc_to_text=str(task.config.doc_to_text),
        doc_to_target=str(task.config.doc_to_target), metrics=metric_names,
        path=Path(str(getattr(task.config, "task", name))),
        group=str(task.config.tag[0] if isinstance(task.config.tag, list) and task.config.tag
                  else task.config.tag or name),
        description=f"lm-eval {version} task {name} ({task.config.dataset_path}), built by lm-eval, "
                    f"{k}-shot{note}",
        reference=f"lm-eval {version} {name}",
        doc_to_choice=None if task.config.doc_to_choice is None else str(task.config.doc_to_choice),
        target_delimiter=delim, generation=GenerationSpec(until=until, max_tokens=max_tokens),
        fewshot=fewshot_spec,
    )
    return LmEvalTask(spec, tuple(instances), h.hexdigest()[:16], task, docs, plan)


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
