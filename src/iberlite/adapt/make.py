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
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from iberlite.adapt.examples import TrainingSet, load_training_set
from iberlite.adapt.gguf_lora import gguf_tensors, write_adapter
from iberlite.adapt.tokens import compare_tokenizers, device_pairs
from iberlite.adapt.train import StepInfo, TrainConfig, attach_lora, lora_state, reference_modules, train_lora
from iberlite.engines.transformers import TransformersEngine
from iberlite.errors import UserError
from iberlite.models.adapters import Adapter, adapter_path, peft_dir, read_record, write_record
from iberlite.models.gguf_facts import file_sha256, gguf_facts
from iberlite.models.model_file import ModelFile
from iberlite.models.names import resolve_model
from iberlite.tasks.registry import load_task_specs
from iberlite.tasks.spec import TaskSpec

_KEY_VERSION = 1  # bump when training or export changes what an identical request produces


@dataclass(frozen=True)
class AdaptPlan:
    """What an `adapt` call will train: the base, the task, the examples and the key."""

    base: ModelFile
    base_sha256: str
    architecture: str
    spec: TaskSpec
    training: TrainingSet
    config: TrainConfig
    name: str
    key: str
    path: Path


def adapter_key(base_sha256: str, spec: TaskSpec, training: TrainingSet, config: TrainConfig) -> str:
    """Everything that determines the adapter's weights, hashed (12 hex)."""
    parts = {"v": _KEY_VERSION, "base": base_sha256, "task": spec.name, "prompt": spec.prompt_hash(),
             "data": training.data_hash, "config": config.key_dict()}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def plan(model: str, task: str, config: TrainConfig, *, data_dir: Path, train_limit: int | None = None,
         name: str | None = None, tasks_dirs: tuple[Path, ...] = (), models_dir: Path | None = None,
         drop_overlap: bool = False) -> AdaptPlan:
    """Check the request and find the adapter's place, without loading any model weights."""
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
    training = load_training_set(spec, data_dir, train_limit, config.seed, drop_overlap)
    facts = gguf_facts(base.file)
    key = adapter_key(facts.sha256, spec, training, config)
    label = name or task
    if not label.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise UserError(f"Adapter name {label!r} may hold letters, digits, '_', '-' and '.' only.", 2)
    return AdaptPlan(base, facts.sha256, facts.architecture, spec, training, config, label, key,
                     adapter_path(models_dir, base.name, label, key))


def adapt(p: AdaptPlan, *, n_threads: int | None = None,
          on_step: Callable[[StepInfo], None] | None = None,
          on_status: Callable[[str], None] | None = None) -> tuple[Adapter, bool]:
    """The adapter `p` describes: from the cache when it exists (second value True), else
    trained now, exported to GGUF and recorded. Ctrl-C raises `TrainingInterrupted` and keeps
    the checkpoint, which the same plan resumes from."""
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
    engine = TransformersEngine(p.base, n_threads=n_threads, seed=p.config.seed)
    check = compare_tokenizers(engine.tokenizer, p.training.examples, plain, device_bos)
    say(check.sentence)
    model = attach_lora(engine.model, p.config)
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
                  "rank": str(p.config.rank)}
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
        created=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    write_record(adapter)
    checkpoint.unlink(missing_ok=True)
    engine.close()
    return adapter, False
