"""`adapt`: train a LoRA adapter for a task on the CPU, export it for llama.cpp, cache it.

The stages, each in its own module: the task's train split rendered as the task evaluates it
(`examples`), the device's token ids and the tokenizer check (`tokens`), the training loop
(`train`), the GGUF export (`gguf_lora`) and the record in the models folder (`models/adapters.py`).
Nothing here runs at evaluation time: an evaluation only loads the finished adapter.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path

from iberlite.adapt.examples import LabelSource, TrainingSet, load_labelled_set, load_training_set
from iberlite.adapt.gguf_lora import gguf_tensors, write_adapter
from iberlite.adapt.tokens import compare_tokenizers, device_pairs
from iberlite.adapt.train import (
    StepInfo,
    TrainConfig,
    attach_lora,
    load_lora,
    lora_state,
    reference_modules,
    thread_count,
    train_lora,
)
from iberlite.engines.transformers import TransformersEngine
from iberlite.errors import UserError
from iberlite.models.adapters import Adapter, adapter_path, find_adapter, peft_dir, read_record, write_record
from iberlite.models.gguf_facts import file_sha256, gguf_facts
from iberlite.models.model_file import ModelFile
from iberlite.models.names import resolve_model
from iberlite.tasks.registry import load_task_specs
from iberlite.tasks.spec import TaskSpec

_KEY_VERSION = 2  # bump when training or export changes what an identical request produces
# 2: micro-batched steps; precision, thread count and parent keyed


@dataclass(frozen=True)
class AdaptPlan:
    """What an `adapt` call will train: the base, the task, the examples, the thread count,
    the adapter it continues, and the key (the config's precision is resolved: no "auto")."""

    base: ModelFile
    base_sha256: str
    architecture: str
    spec: TaskSpec
    training: TrainingSet
    config: TrainConfig
    name: str
    key: str
    path: Path
    n_threads: int
    parent: Adapter | None = None  # the adapter this one continues (`--from`)
    labels: LabelSource | None = None  # trained on people's labels (`--labels`), not the train split


def adapter_key(base_sha256: str, spec: TaskSpec, training: TrainingSet, config: TrainConfig,
                n_threads: int, parent_key: str | None = None) -> str:
    """Everything that determines the adapter's weights, hashed (12 hex). The thread count is
    in it because it changes the order of float sums (training is deterministic per seed and
    thread count, not across thread counts); a continued adapter's holds its parent's key."""
    parts = {"v": _KEY_VERSION, "base": base_sha256, "task": spec.name, "prompt": spec.prompt_hash(),
             "data": training.data_hash, "config": config.key_dict(), "threads": n_threads,
             "parent": parent_key}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def _parent(ref: str, base: ModelFile, base_sha256: str, task: str, config: TrainConfig,
            models_dir: Path | None) -> Adapter:
    """The adapter `--from` names, refused unless training can continue it as it is: trained on
    this very base file, for this task, with LoRA layers of this shape."""
    a = find_adapter(ref, models_dir, base_sha256)
    if a.base_sha256 != base_sha256:
        raise UserError(f"Adapter {a.model_name} was trained on another base model ({a.base}, file "
                        f"sha256 {a.base_sha256[:12]}), not on {base.name}; --from continues an adapter "
                        "on its own base model only.", 2)
    if a.task != task:
        raise UserError(f"Adapter {a.model_name} was trained for {a.task}, not {task}; --from continues "
                        "an adapter on its own task only.", 2)
    if (a.rank, a.alpha, tuple(a.targets)) != (config.rank, config.alpha, tuple(config.targets)):
        raise UserError(f"Adapter {a.model_name} has rank {a.rank} and alpha {a.alpha:g}; continue it "
                        f"with --rank {a.rank} --alpha {a.alpha:g}.", 2)
    if not a.peft_dir.is_dir():
        raise UserError(f"Adapter {a.model_name} has no PEFT weights beside it ({a.peft_dir}), so it "
                        "cannot be continued.", 2)
    return a


def plan(model: str, task: str, config: TrainConfig, *, data_dir: Path, train_limit: int | None = None,
         name: str | None = None, tasks_dirs: tuple[Path, ...] = (), models_dir: Path | None = None,
         drop_overlap: bool = False, n_threads: int | None = None,
         parent: str | None = None, labels_db: Path | None = None) -> AdaptPlan:
    """Check the request and find the adapter's place, without loading any model weights.

    `n_threads` defaults to torch's; `parent` names an adapter to continue (`--from`: a path
    or ``BASE+NAME``); `labels_db`, a database whose labels of the task to train on instead of
    its train split (`--labels`)."""
    if train_limit is not None and train_limit < 1:
        raise UserError("--train-limit must be at least 1.", 2)
    base = resolve_model(model)
    if base.adapter is not None:
        raise UserError(f"{model} already carries an adapter; adapt the base model instead.", 2)
    if base.remote:
        raise UserError(f"{model} is remote: only a local GGUF file can be adapted.", 2)
    specs = load_task_specs(tasks_dirs)
    if task not in specs:
        raise UserError(f"Unknown task {task!r}; see `iberlite tasks` for the task names.", 2)
    spec = specs[task]
    config = config.resolved()
    facts = gguf_facts(base.file)
    earlier = _parent(parent, base, facts.sha256, spec.name, config, models_dir) if parent else None
    source = None
    if labels_db is not None:
        training, source = load_labelled_set(spec, labels_db, train_limit)
    else:
        training = load_training_set(spec, data_dir, train_limit, config.seed, drop_overlap)
    threads = thread_count(n_threads)
    key = adapter_key(facts.sha256, spec, training, config, threads, earlier.key if earlier else None)
    label = name or (f"{task}-labels" if labels_db is not None else task)
    if not label.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise UserError(f"Adapter name {label!r} may hold letters, digits, '_', '-' and '.' only.", 2)
    return AdaptPlan(base, facts.sha256, facts.architecture, spec, training, config, label, key,
                     adapter_path(models_dir, base.name, label, key), threads, earlier, source)


def _with_threads(p: AdaptPlan, n_threads: int) -> AdaptPlan:
    """The same plan on another thread count (a new key, so a new place)."""
    key = adapter_key(p.base_sha256, p.spec, p.training, p.config, n_threads,
                      p.parent.key if p.parent else None)
    models = p.path.parent.parent  # adapters live in MODELS/adapters/
    return replace(p, key=key, path=adapter_path(models, p.base.name, p.name, key), n_threads=n_threads)


def adapt(p: AdaptPlan, *, n_threads: int | None = None,
          on_step: Callable[[StepInfo], None] | None = None,
          on_status: Callable[[str], None] | None = None) -> tuple[Adapter, bool]:
    """The adapter `p` describes: from the cache when it exists (second value True), else
    trained now, exported to GGUF and recorded. Ctrl-C raises `TrainingInterrupted` and keeps
    the checkpoint, which the same plan resumes from. `n_threads`, when given, replaces the
    plan's thread count (and so its key)."""
    if n_threads and n_threads != p.n_threads:
        p = _with_threads(p, n_threads)
    known = read_record(p.path)
    if known is not None:
        return known, True
    say = on_status or (lambda _msg: None)
    try:
        p.path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"Cannot create the adapters folder {p.path.parent} ({exc.strerror}).", 2) from exc
    reference_modules()  # one clear sentence when the extra is missing
    from transformers.utils import logging as hf_logging


    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()  # its notes on GGUF tokenizers are for the engine, not here
    say("tokenizing the training examples with llama.cpp")
    pairs, plain, device_bos = device_pairs(p.base, p.training.examples)
    say("loading the base model in transformers (float32)")
    engine = TransformersEngine(p.base, n_threads=p.n_threads, seed=p.config.seed)
    check = compare_tokenizers(engine.tokenizer, p.training.examples, plain, device_bos)
    say(check.sentence)
    model = attach_lora(engine.model, p.config)
    if p.parent is not None:
        say(f"continuing {p.parent.model_name} ({p.parent.key})")
        load_lora(model, p.parent.peft_dir)
    checkpoint = p.path.with_suffix(".ckpt")
    result = train_lora(model, pairs, p.config, pad_id=engine.pad_id, checkpoint=checkpoint,
                        key=p.key, on_step=on_step)
    say("writing the adapter")
    cfg = getattr(engine.model.config, "text_config", None) or engine.model.config
    state = {k: v.numpy() for k, v in lora_state(model).items()}
    n_head = int(cfg.num_attention_heads)
    tensors = gguf_tensors(state, p.architecture, int(cfg.num_hidden_layers), n_head,
                           int(getattr(cfg, "num_key_value_heads", None) or n_head))
    provenance = {"base_sha256": p.base_sha256, "task": p.spec.name, "key": p.key,
                  "data_hash": p.training.data_hash, "examples": str(len(p.training.examples)),
                  "rank": str(p.config.rank), "precision": p.config.precision,
                  **({"labels_hash": p.labels.labels_hash} if p.labels else {}),
                  **({"parent": p.parent.key} if p.parent else {})}
    write_adapter(p.path, p.architecture, p.config.alpha, tensors, provenance)
    with warnings.catch_warnings():  # "no config file beside the GGUF": the vocabulary is untouched
        warnings.simplefilter("ignore", UserWarning)
        model.save_pretrained(str(peft_dir(p.path)))
    c, t = p.config, p.training
    adapter = Adapter(
        name=p.name, base=p.base.name, base_sha256=p.base_sha256, architecture=p.architecture,
        task=p.spec.name, key=p.key, path=str(p.path), sha256=file_sha256(p.path),
        rank=c.rank, alpha=c.alpha, scale=c.scale, epochs=c.epochs, lr=c.lr,
        batch_size=c.batch_size, seed=c.seed, max_tokens=c.max_tokens, targets=c.targets,
        examples=len(t.examples), pool=t.pool, dropped_overlap=t.dropped_overlap,
        data_hash=t.data_hash, train_files=t.train_files, steps=result.steps,
        first_loss=round(result.first_loss, 4), final_loss=round(result.final_loss, 4),
        seconds=result.seconds, cpu_seconds=result.cpu_seconds,
        peak_rss_bytes=result.peak_rss_bytes, examples_per_s=result.examples_per_s,
        n_threads=result.n_threads, n_trainable=result.n_trainable, token_check=check.sentence,
        token_mismatches=check.mismatched,
        versions=f"transformers {version('transformers')}; peft {version('peft')}; "
                 f"torch {version('torch')}",
        created=time.strftime("%Y-%m-%dT%H:%M:%S"), precision=result.precision,
        token_budget=c.token_budget, grad_checkpointing=c.grad_checkpointing,
        micro_batches=result.micro_batches, parent=p.parent.key if p.parent else None,
        parent_name=p.parent.model_name if p.parent else None,
        labels=p.labels.count if p.labels else None, labels_hash=p.labels.labels_hash if p.labels else None,
        labellers=p.labels.labellers if p.labels else (),
    )
    write_record(adapter)
    checkpoint.unlink(missing_ok=True)
    engine.close()
    return adapter, False
