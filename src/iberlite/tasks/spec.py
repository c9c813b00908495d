"""The task specification: a YAML file parsed into a frozen, validated `TaskSpec`.

Tasks are data, not subclasses (lm-evaluation-harness habit): everything a task needs is in
its YAML, and the few transforms that need code are picked by name from a fixed set.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import posixpath
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import yaml

from iberlite.errors import TaskSpecError
from iberlite.langs import LANGS
from iberlite.scoring.metric import GEN_METRICS, MC_METRICS
from iberlite.tasks.families import family_problem
from iberlite.tasks.sandbox import template_fields, template_problem

OUTPUTS = ("multiple_choice", "generate")
FORMATS = ("tsv", "csv", "jsonl", "json", "lines", "squad", "assin_xml")
PREPROCESS = ("xnli_es", "strip")
TEMPLATE_KEYS = ("doc_to_text", "doc_to_choice", "doc_to_target")

# Every key a task file may have, by mapping; anything else is a typo and is refused.
KEYS: dict[str, tuple[str, ...]] = {
    "": ("name", "group", "lang", "target_lang", "family", "output", "description", "reference",
         "source", "preprocess", "doc_to_text", "doc_to_choice", "doc_to_target",
         "target_delimiter", "metrics", "generation", "fewshot"),
    "source": ("format", "files", "columns", "id", "where", "join", "hf", "train_files"),
    "source.join": ("format", "files", "on"),
    "source.hf": ("path", "split", "name", "rename"),
    "generation": ("until", "max_tokens"),
    "fewshot": ("split", "source", "sampler", "exclude_doc", "target_delimiter",
                "fewshot_delimiter", "description"),
    "fewshot.source": ("format", "files", "columns", "id", "where", "join", "hf", "train_files"),
    "fewshot.source.join": ("format", "files", "on"),
    "fewshot.source.hf": ("path", "split", "name", "rename"),
}
SAMPLERS = ("default", "first_n")  # lm-eval 0.4.13's samplers (api/samplers.py)


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
    # The task's train split (same format, labels or references inline): only `iberlite adapt`
    # reads it, never an evaluation, so it is in neither the data hash nor the evaluation key. A
    # `lines` source maps the same fields to its train files as `files` does (`train_line_fields`).
    train_files: tuple[str, ...] = ()
    train_line_fields: tuple[tuple[str, str], ...] = ()

    def paths(self) -> tuple[str, ...]:
        """Every file this source reads, in reading order."""
        own = self.files or tuple(f for _, f in self.line_fields)
        return own + (self.join.files if self.join else ())

    def train_paths(self) -> tuple[str, ...]:
        """Every file of the train split, in reading order (empty: the task has none)."""
        return self.train_files or tuple(f for _, f in self.train_line_fields)


@dataclass(frozen=True)
class GenerationSpec:
    """Greedy generation settings for `generate` tasks."""

    until: tuple[str, ...] = ()
    max_tokens: int = 256


@dataclass(frozen=True)
class FewshotSpec:
    """Where a task's few-shot examples come from and how they are joined (lm-eval's
    `fewshot_split`, `fewshot_config`, `fewshot_delimiter` and `description`).

    `source` None means the evaluated split itself. `exclude_doc` says whether the sampler is
    handed the evaluated document (it then draws K+1 and drops that document): lm-eval does so
    exactly when its few-shot split equals its test split, which includes tasks that declare
    neither (XStoryCloze, XNLI-es); None means "when the pool is the evaluated split".
    """

    split: str = ""  # the pool's split name, for people ("train", "validation", "dev")
    source: SourceSpec | None = None
    sampler: str = "default"
    exclude_doc: bool | None = None
    target_delimiter: str | None = None  # None: the task's
    fewshot_delimiter: str = "\n\n"
    description: str = ""  # a template put before everything (lm-eval's `description`)

    @property
    def excludes_doc(self) -> bool:
        """Whether the evaluated document is handed to the sampler (and never its own shot)."""
        return self.source is None if self.exclude_doc is None else self.exclude_doc

    @property
    def pool_label(self) -> str:
        """The split shots come from, as `iberlite tasks` shows it."""
        if self.source is None:
            return "eval split (doc excluded)" if self.excludes_doc else "eval split"
        return self.split or "own files"


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
    fewshot: FewshotSpec = field(default_factory=FewshotSpec)
    key_lines: tuple[tuple[str, int], ...] = ()  # ("source.files", 9): where each key is

    def where(self, key: str) -> str:
        """`FILE, line N` for a key of the task file (`source.files`), or just the file."""
        return _Where(self.path, dict(self.key_lines))(key)

    @property
    def fields(self) -> frozenset[str]:
        """The data fields the templates read (and the id field): what every row must have."""
        names: set[str] = {self.source.id} if self.source.id else set()
        for source in (self.doc_to_text, self.doc_to_target, self.doc_to_choice):
            if isinstance(source, str):
                names |= template_fields(source)
        return frozenset(names)

    def template_key(self, name: str) -> str:
        """The first template key (doc_to_text, ...) that reads the field `name`."""
        for key in TEMPLATE_KEYS:
            source = getattr(self, key)
            if isinstance(source, str) and name in template_fields(source):
                return key
        return "source.id"

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
        if self.fewshot.description:  # put before every prompt, zero-shot too (as lm-eval does)
            shaping["description"] = self.fewshot.description
        blob = json.dumps(shaping, sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


@dataclass(frozen=True)
class _Where:
    """Names a place in a task file: the path, and the line of a key when it is known."""

    path: Path
    lines: dict[str, int]

    def __call__(self, key: str = "") -> str:
        line = self.lines.get(key)
        return f"{self.path}, line {line}" if line else str(self.path)

    def __str__(self) -> str:
        return str(self.path)


def _req(raw: dict[str, Any], key: str, where: _Where, prefix: str = "") -> Any:
    if key not in raw or raw[key] is None:
        return _fail(where, prefix + key, f"has no `{prefix}{key}` field")
    return raw[key]


def _fail(where: _Where, key: str, problem: str) -> Any:
    raise TaskSpecError(f"Task file {where(key)} {problem}.")


def _choice(value: Any, valid: tuple[str, ...], key: str, where: _Where) -> str:
    if value not in valid:
        _fail(where, key, f"has {key}: {value!r}; valid values are {', '.join(valid)}")
    return value


def _family(value: Any, where: _Where) -> str:
    """A family is the user's own word (docs/tasks.md), as long as it is one word. An accented
    letter typed as letter + combining accent is the same word as the composed letter."""
    if isinstance(value, str):
        value = unicodedata.normalize("NFC", value)
    problem = family_problem(value)
    if problem:
        _fail(where, "family", f"has family: {value!r}; {problem}")
    return str(value)


def _strs(value: Any, key: str, where: _Where) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        _fail(where, key, f"has `{key}`, which must be a string or a list of strings")
    return tuple(value)


def _pairs(value: Any, key: str, where: _Where) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        _fail(where, key, f"has `{key}`, which must be a mapping")
    return tuple((str(k), str(v)) for k, v in value.items())


def _mapping(value: Any, key: str, where: _Where) -> dict[Any, Any]:
    if not isinstance(value, dict):
        _fail(where, key, f"has `{key}`, which must be a mapping")
    for k in value:
        name = "on" if k is True and key.endswith("source.join") else str(k)  # YAML 1.1 reads on: as True
        valid = KEYS[key]
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f" (did you mean `{close[0]}`?)" if close else ""
            full = f"{key}.{name}" if key else name
            _fail(where, full, f"has an unknown key `{full}`{hint}; valid keys "
                  f"{'under `' + key + '` ' if key else ''}are {', '.join(valid)}")
    return value


def _data_path(rel: str, key: str, where: _Where) -> str:
    """A source path, refused when it points outside the data dir (or the task's folder)."""
    inner = rel[2:] if rel.startswith("./") else rel
    norm = posixpath.normpath(inner.replace("\\", "/")) if inner else ""
    if (not inner or PurePosixPath(rel).is_absolute() or PureWindowsPath(rel).is_absolute()
            or PureWindowsPath(rel).drive or norm == ".." or norm.startswith("../")):
        base = "the task's folder" if rel.startswith("./") else "the data dir"
        _fail(where, key, f"has the path {rel!r} in `{key}`, which is outside {base}; paths are "
              "relative to the data dir, or to the task's folder when they start with ./")
    return rel


def _template(value: Any, key: str, where: _Where) -> str:
    text = str(value)
    problem = template_problem(text)
    if problem:
        _fail(where, key, f"has a `{key}` that {problem}")
    return text


def _source(raw: Any, where: _Where, key: str = "source") -> SourceSpec:
    raw = _mapping(raw, key, where)
    fmt = _choice(_req(raw, "format", where, f"{key}."), FORMATS, f"{key}.format", where)
    files_raw = _req(raw, "files", where, f"{key}.")
    files: tuple[str, ...] = ()
    line_fields: tuple[tuple[str, str], ...] = ()
    if fmt == "lines":
        line_fields = _pairs(files_raw, f"{key}.files", where)
        if not line_fields:
            _fail(where, f"{key}.files", "has a `lines` source, which maps field names to files in `files`")
        line_fields = tuple((f, _data_path(p, f"{key}.files", where)) for f, p in line_fields)
    else:
        files = tuple(_data_path(p, f"{key}.files", where) for p in _strs(files_raw, f"{key}.files", where))
    join = None
    if raw.get("join") is not None:
        j = _mapping(raw["join"], f"{key}.join", where)
        on = j["on"] if "on" in j else j.get(True)
        join = JoinSpec(
            format=_choice(_req(j, "format", where, f"{key}.join."), ("tsv", "csv", "jsonl", "json"),
                           f"{key}.join.format", where),
            files=tuple(_data_path(p, f"{key}.join.files", where)
                        for p in _strs(_req(j, "files", where, f"{key}.join."), f"{key}.join.files", where)),
            on=str(_req({"on": on}, "on", where, f"{key}.join.")),
        )
    columns = raw.get("columns")
    train_files, train_line_fields = _train_split(raw.get("train_files"), line_fields, key, where)
    return SourceSpec(
        format=fmt,
        files=files,
        line_fields=line_fields,
        columns=_strs(columns, f"{key}.columns", where) if columns is not None else None,
        id=raw.get("id"),
        where=_pairs(raw.get("where"), f"{key}.where", where),
        join=join,
        hf=_hub(raw.get("hf"), where, f"{key}.hf"),
        train_files=train_files,
        train_line_fields=train_line_fields,
    )


def _train_split(raw: Any, line_fields: tuple[tuple[str, str], ...], key: str, where: _Where,
                 ) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """(train files, train line fields): a `lines` source names one train file per field of
    its `files`, every other format a list of files."""
    at = f"{key}.train_files"
    if not line_fields:
        return tuple(_data_path(p, at, where) for p in _strs(raw or [], at, where)), ()
    pairs = _pairs(raw, at, where)
    if pairs and {f for f, _ in pairs} != {f for f, _ in line_fields}:
        _fail(where, at, f"has `{at}` for the fields {', '.join(f for f, _ in pairs)}; a `lines` source's "
              f"train files map the same fields as its `files` ({', '.join(f for f, _ in line_fields)})")
    return (), tuple((f, _data_path(p, at, where)) for f, p in pairs)


def _hub(raw: Any, where: _Where, key: str = "source.hf") -> HubSpec | None:
    if raw is None:
        return None
    raw = _mapping(raw, key, where)
    return HubSpec(
        path=str(_req(raw, "path", where, f"{key}.")),
        split=str(_req(raw, "split", where, f"{key}.")),
        name=None if raw.get("name") is None else str(raw["name"]),
        rename=_pairs(raw.get("rename"), f"{key}.rename", where),
    )


def _fewshot(raw: Any, where: _Where) -> FewshotSpec:
    if raw is None:
        return FewshotSpec()
    raw = _mapping(raw, "fewshot", where)
    exclude = raw.get("exclude_doc")
    if exclude is not None and not isinstance(exclude, bool):
        _fail(where, "fewshot.exclude_doc", f"has fewshot.exclude_doc: {exclude!r}; it must be true or false")
    tdelim = raw.get("target_delimiter")
    return FewshotSpec(
        split=str(raw.get("split") or ""),
        source=_source(raw["source"], where, "fewshot.source") if raw.get("source") is not None else None,
        sampler=_choice(raw.get("sampler", "default"), SAMPLERS, "fewshot.sampler", where),
        exclude_doc=exclude,
        target_delimiter=None if tdelim is None else str(tdelim),
        fewshot_delimiter=str(raw.get("fewshot_delimiter", "\n\n")),
        description=_template(raw.get("description", ""), "fewshot.description", where),
    )


def parse_task(raw: Any, path: Path, key_lines: dict[str, int] | None = None) -> TaskSpec:
    """Validate one task mapping (from YAML) and build its `TaskSpec`.

    `key_lines` maps dotted keys (`source.files`) to their line in the file, for messages.
    """
    where = _Where(path, key_lines or {})
    if not isinstance(raw, dict):
        raise TaskSpecError(f"Task file {path} is not a YAML mapping.")
    _mapping(raw, "", where)
    output = _choice(_req(raw, "output", where), OUTPUTS, "output", where)
    metrics = _strs(_req(raw, "metrics", where), "metrics", where)
    valid_metrics = MC_METRICS if output == "multiple_choice" else GEN_METRICS
    for m in metrics:
        _choice(m, valid_metrics, "metrics", where)
    choice = raw.get("doc_to_choice")
    if output == "multiple_choice":
        if choice is None:
            raise TaskSpecError(f"Task file {path} is multiple_choice but has no doc_to_choice.")
        choice = (_template(choice, "doc_to_choice", where) if isinstance(choice, str)
                  else _strs(choice, "doc_to_choice", where))
    gen_raw = _mapping(raw.get("generation") or {}, "generation", where)
    max_tokens = gen_raw.get("max_tokens", 256)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        _fail(where, "generation.max_tokens", f"has generation.max_tokens: {max_tokens!r}; it must be a "
              "positive whole number")
    generation = GenerationSpec(
        until=_strs(gen_raw.get("until", []), "generation.until", where), max_tokens=max_tokens,
    )
    preprocess = _strs(raw.get("preprocess", []), "preprocess", where)
    for p in preprocess:
        _choice(p, PREPROCESS, "preprocess", where)
    fewshot = _fewshot(raw.get("fewshot"), where)
    target_lang = raw.get("target_lang")
    if target_lang is not None:
        _choice(target_lang, LANGS, "target_lang", where)
    return TaskSpec(
        name=str(_req(raw, "name", where)),
        group=raw.get("group"),
        lang=_choice(_req(raw, "lang", where), LANGS, "lang", where),
        target_lang=target_lang,
        family=_family(_req(raw, "family", where), where),
        output=output,
        description=str(raw.get("description", "")),
        reference=str(raw.get("reference", "")),
        source=_source(_req(raw, "source", where), where),
        preprocess=preprocess,
        doc_to_text=_template(raw.get("doc_to_text", ""), "doc_to_text", where),
        doc_to_choice=choice,
        doc_to_target=_template(_req(raw, "doc_to_target", where), "doc_to_target", where),
        target_delimiter=str(raw.get("target_delimiter", " ")),
        metrics=metrics,
        generation=generation,
        fewshot=fewshot,
        path=path,
        key_lines=tuple(sorted(where.lines.items())),
    )


def _key_lines(node: Any, prefix: str = "") -> dict[str, int]:
    """Dotted key -> 1-based line, from a composed YAML node tree."""
    out: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = f"{prefix}{key_node.value}"
            out.setdefault(key, key_node.start_mark.line + 1)
            out.update({k: v for k, v in _key_lines(value_node, key + ".").items() if k not in out})
    return out


_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_task_file(path: Path) -> TaskSpec:
    """Load one YAML task file safely (no Python tags, no code)."""
    try:
        # libyaml's safe loader where PyYAML has it: same rules, a tenth of the time (every
        # command reads all task files; the pure-Python parser took ~0.2 s of each start)
        loader = _SAFE_LOADER(path.read_text(encoding="utf-8"))
        try:  # one parse gives both the nodes (for line numbers) and the data
            node = loader.get_single_node()
            raw = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
        lines = _key_lines(node)
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        at = f" at line {line + 1}" if line is not None else ""
        raise TaskSpecError(f"Task file {path} is not valid YAML{at}.") from exc
    except UnicodeDecodeError as exc:
        raise TaskSpecError(f"Task file {path} is not UTF-8 text (byte {exc.start}).") from exc
    return parse_task(raw, path, lines)
