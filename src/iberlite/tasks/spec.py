"""The task specification: a YAML file parsed into a frozen, validated `TaskSpec`.

Tasks are data, not subclasses (lm-evaluation-harness habit): everything a task needs is in
its YAML, and the few transforms that need code are picked by name from a fixed set.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import metrics
from ..errors import TaskSpecError
from ..langs import LANGS

FAMILIES = (
    "reading", "nli", "commonsense", "translation", "math", "irony", "sentiment", "topic",
    "stance",
)
OUTPUTS = ("multiple_choice", "generate")
FORMATS = ("tsv", "csv", "jsonl", "json", "lines")
PREPROCESS = ("xnli_es", "strip")
MC_METRICS = metrics.MC_METRICS
GEN_METRICS = (*metrics.GEN_METRICS, "lang_ok")  # lang_ok is scored by language_id, not metrics


@dataclass(frozen=True)
class JoinSpec:
    """A second table whose rows are matched to the main rows on one key field."""

    format: str
    files: tuple[str, ...]
    on: str


@dataclass(frozen=True)
class HubSpec:
    """The same data on the Hugging Face Hub, for users who are online.

    `rename` maps hub field names to the field names the templates use (the local files and
    the hub copies of a dataset rarely agree on spelling).
    """

    path: str
    split: str
    name: str | None = None
    rename: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SourceSpec:
    """Where a task's documents come from, relative to the data dir (or the YAML's folder)."""

    format: str
    files: tuple[str, ...] = ()
    line_fields: tuple[tuple[str, str], ...] = ()  # `lines` format: (field, file) pairs
    columns: tuple[str, ...] | None = None
    id: str | None = None
    where: tuple[tuple[str, str], ...] = ()
    join: JoinSpec | None = None
    hf: HubSpec | None = None

    def paths(self) -> tuple[str, ...]:
        """Every file this source reads, in reading order."""
        own = self.files or tuple(f for _, f in self.line_fields)
        return own + (self.join.files if self.join else ())


@dataclass(frozen=True)
class GenerationSpec:
    """Greedy generation settings for `generate` tasks."""

    until: tuple[str, ...] = ()
    max_tokens: int = 256


@dataclass(frozen=True)
class TaskSpec:
    """One evaluation task, as declared in its YAML file."""

    name: str
    lang: str
    family: str
    output: str
    source: SourceSpec
    doc_to_text: str
    doc_to_target: str
    metrics: tuple[str, ...]
    path: Path
    group: str | None = None
    target_lang: str | None = None
    description: str = ""
    reference: str = ""
    doc_to_choice: str | tuple[str, ...] | None = None
    target_delimiter: str = " "
    preprocess: tuple[str, ...] = ()
    generation: GenerationSpec = field(default_factory=GenerationSpec)

    @property
    def output_lang(self) -> str:
        """The language outputs should be written in (what `lang_ok` checks)."""
        return self.target_lang or self.lang

    @property
    def base_dir(self) -> Path:
        """Folder that `./`-relative source paths are resolved against."""
        return self.path.parent

    def prompt_hash(self) -> str:
        """Hash of everything that shapes what the model sees and how it is scored."""
        shaping = {
            "doc_to_text": self.doc_to_text,
            "doc_to_choice": self.doc_to_choice,
            "doc_to_target": self.doc_to_target,
            "target_delimiter": self.target_delimiter,
            "preprocess": self.preprocess,
            "until": self.generation.until,
            "max_tokens": self.generation.max_tokens,
        }
        blob = json.dumps(shaping, sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def _req(raw: dict[str, Any], key: str, where: str) -> Any:
    if key not in raw or raw[key] is None:
        raise TaskSpecError(f"Task file {where} has no `{key}` field.")
    return raw[key]


def _choice(value: str, valid: tuple[str, ...], key: str, where: str) -> str:
    if value not in valid:
        raise TaskSpecError(
            f"Task file {where} has {key}: {value!r}; valid values are {', '.join(valid)}."
        )
    return value


def _strs(value: Any, key: str, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TaskSpecError(f"Task file {where}: `{key}` must be a string or a list of strings.")
    return tuple(value)


def _pairs(value: Any, key: str, where: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise TaskSpecError(f"Task file {where}: `{key}` must be a mapping.")
    return tuple((str(k), str(v)) for k, v in value.items())


def _source(raw: Any, where: str) -> SourceSpec:
    if not isinstance(raw, dict):
        raise TaskSpecError(f"Task file {where}: `source` must be a mapping.")
    fmt = _choice(_req(raw, "format", where), FORMATS, "source.format", where)
    files_raw = _req(raw, "files", where)
    files: tuple[str, ...] = ()
    line_fields: tuple[tuple[str, str], ...] = ()
    if fmt == "lines":
        line_fields = _pairs(files_raw, "source.files", where)
        if not line_fields:
            raise TaskSpecError(
                f"Task file {where}: a `lines` source maps field names to files in `files`."
            )
    else:
        files = _strs(files_raw, "source.files", where)
    join = None
    if raw.get("join") is not None:
        j = raw["join"]
        if not isinstance(j, dict):
            raise TaskSpecError(f"Task file {where}: `source.join` must be a mapping.")
        join = JoinSpec(
            format=_choice(_req(j, "format", where), ("tsv", "csv", "jsonl", "json"),
                           "source.join.format", where),
            files=_strs(_req(j, "files", where), "source.join.files", where),
            # YAML 1.1 reads a bare `on:` key as the boolean True; accept both spellings
            on=str(j["on"] if "on" in j else _req({"on": j.get(True)}, "on", where)),
        )
    columns = raw.get("columns")
    return SourceSpec(
        format=fmt,
        files=files,
        line_fields=line_fields,
        columns=_strs(columns, "source.columns", where) if columns is not None else None,
        id=raw.get("id"),
        where=_pairs(raw.get("where"), "source.where", where),
        join=join,
        hf=_hub(raw.get("hf"), where),
    )


def _hub(raw: Any, where: str) -> HubSpec | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise TaskSpecError(f"Task file {where}: `source.hf` must be a mapping.")
    return HubSpec(
        path=str(_req(raw, "path", where)),
        split=str(_req(raw, "split", where)),
        name=None if raw.get("name") is None else str(raw["name"]),
        rename=_pairs(raw.get("rename"), "source.hf.rename", where),
    )


def parse_task(raw: Any, path: Path) -> TaskSpec:
    """Validate one task mapping (from YAML) and build its `TaskSpec`."""
    where = str(path)
    if not isinstance(raw, dict):
        raise TaskSpecError(f"Task file {where} is not a YAML mapping.")
    output = _choice(_req(raw, "output", where), OUTPUTS, "output", where)
    metrics = _strs(_req(raw, "metrics", where), "metrics", where)
    valid_metrics = MC_METRICS if output == "multiple_choice" else GEN_METRICS
    for m in metrics:
        _choice(m, valid_metrics, "a metric", where)
    choice = raw.get("doc_to_choice")
    if output == "multiple_choice":
        if choice is None:
            raise TaskSpecError(f"Task file {where} is multiple_choice but has no doc_to_choice.")
        choice = choice if isinstance(choice, str) else _strs(choice, "doc_to_choice", where)
    gen_raw = raw.get("generation") or {}
    generation = GenerationSpec(
        until=_strs(gen_raw.get("until", []), "generation.until", where),
        max_tokens=int(gen_raw.get("max_tokens", 256)),
    )
    preprocess = _strs(raw.get("preprocess", []), "preprocess", where)
    for p in preprocess:
        _choice(p, PREPROCESS, "a preprocess transform", where)
    target_lang = raw.get("target_lang")
    if target_lang is not None:
        _choice(target_lang, LANGS, "target_lang", where)
    return TaskSpec(
        name=str(_req(raw, "name", where)),
        group=raw.get("group"),
        lang=_choice(_req(raw, "lang", where), LANGS, "lang", where),
        target_lang=target_lang,
        family=_choice(_req(raw, "family", where), FAMILIES, "family", where),
        output=output,
        description=str(raw.get("description", "")),
        reference=str(raw.get("reference", "")),
        source=_source(_req(raw, "source", where), where),
        preprocess=preprocess,
        doc_to_text=str(raw.get("doc_to_text", "")),
        doc_to_choice=choice,
        doc_to_target=str(_req(raw, "doc_to_target", where)),
        target_delimiter=str(raw.get("target_delimiter", " ")),
        metrics=metrics,
        generation=generation,
        path=path,
    )


_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_task_file(path: Path) -> TaskSpec:
    """Load one YAML task file safely (no Python tags, no code)."""
    try:
        # libyaml's safe loader where PyYAML has it: same rules, a tenth of the time (every
        # command reads all task files; the pure-Python parser took ~0.2 s of each start)
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        at = f" at line {line + 1}" if line is not None else ""
        raise TaskSpecError(f"Task file {path} is not valid YAML{at}.") from exc
    return parse_task(raw, path)
