"""Adapters in the models folder: where they live, their records, and `MODEL+ADAPTER` names.

An adapter is ``adapters/BASE+NAME.KEY.gguf`` in the models folder (``--models-dir``, else
``IBERLITE_MODELS_DIR``, else ``models/`` in the cache folder), with the PEFT weights it was
exported from in ``BASE+NAME.KEY.peft/`` (the transformers engine applies those) and a JSON
record beside it. KEY hashes the base file's sha256, the task and its prompt, the training
examples, the hyper-parameters, the training precision and thread count, and the key of the
adapter it continues (if any), so asking again for the same adapter is a cache hit and any
change makes a new one. NAME is the task's name unless the user gives another.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, fields, replace
from pathlib import Path

from iberlite.errors import UserError
from iberlite.models.gguf_facts import file_sha256, gguf_facts
from iberlite.models.model_file import ModelFile
from iberlite.models.quantize import models_dir

ADAPTER_SEP = "+"  # MODEL+NAME (parsed in models/names.py)


@dataclass(frozen=True)
class Adapter:
    """A trained LoRA adapter and everything about how it was made."""

    name: str  # the NAME in MODEL+NAME
    base: str  # the base model's name
    base_sha256: str
    architecture: str
    task: str
    key: str
    path: str  # the GGUF adapter
    sha256: str  # of the GGUF adapter
    rank: int
    alpha: float
    scale: float  # alpha / rank, applied by both engines
    epochs: int
    lr: float
    batch_size: int
    seed: int
    max_tokens: int
    targets: tuple[str, ...]
    examples: int  # training examples used
    pool: int  # examples the train split offered
    dropped_overlap: int
    data_hash: str
    train_files: tuple[str, ...]
    steps: int
    first_loss: float
    final_loss: float
    seconds: float  # training wall time (a one-off cost)
    cpu_seconds: float
    peak_rss_bytes: int
    examples_per_s: float
    n_threads: int
    n_trainable: int
    token_check: str
    token_mismatches: int
    versions: str
    created: str
    # Fields added later carry the value every adapter made before them had, so an older
    # record still reads (nothing stored is ever lost).
    precision: str = "fp32"  # the forward pass's matmuls in training: "bf16" or "fp32"
    token_budget: int | None = None  # padded tokens per micro-batch (None: one pass per batch)
    grad_checkpointing: bool = False
    micro_batches: int | None = None  # forward/backward passes of the whole run
    parent: str | None = None  # key of the adapter this one continued (`adapt --from`)
    parent_name: str | None = None  # that adapter's BASE+NAME
    labels: int | None = None  # trained on people's labels (`adapt --labels`): how many
    labels_hash: str | None = None  # sha256 (16 hex) of (row, label, labeller) in training order
    labellers: tuple[str, ...] = ()  # who gave them

    @property
    def model_name(self) -> str:
        """``BASE+NAME``, the name every command knows it by."""
        return f"{self.base}{ADAPTER_SEP}{self.name}"

    @property
    def peft_dir(self) -> Path:
        """The PEFT copy of the weights (for the transformers engine)."""
        return peft_dir(Path(self.path))


def adapters_dir(directory: Path | None = None) -> Path:
    """The folder adapters are written to."""
    return models_dir(directory) / "adapters"


def adapter_path(directory: Path | None, base: str, name: str, key: str) -> Path:
    """Where the adapter with this key lives."""
    return adapters_dir(directory) / f"{base}{ADAPTER_SEP}{name}.{key}.gguf"


def peft_dir(gguf: Path) -> Path:
    """The PEFT folder beside an adapter GGUF."""
    return gguf.with_suffix(".peft")


def record_path(gguf: Path) -> Path:
    """The JSON record beside an adapter GGUF."""
    return gguf.with_suffix(".json")


def write_record(adapter: Adapter) -> None:
    """Write the adapter's record (last: a record means the adapter is complete)."""
    path = record_path(Path(adapter.path))
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(asdict(adapter), indent=1, ensure_ascii=False))
    tmp.replace(path)


def read_record(gguf: Path) -> Adapter | None:
    """The record of a complete adapter, or None (missing, partial or from a newer version). A
    record from before a field existed reads with that field's default."""
    try:
        raw = json.loads(record_path(gguf).read_text())
        known = {f.name for f in fields(Adapter)}
        required = {f.name for f in fields(Adapter) if f.default is MISSING}
        if not required <= set(raw) <= known:
            return None
        raw["targets"], raw["train_files"] = tuple(raw["targets"]), tuple(raw["train_files"])
        raw["labellers"] = tuple(raw.get("labellers", ()))
        adapter = Adapter(**raw)
    except (OSError, ValueError, TypeError):
        return None
    return adapter if gguf.is_file() else None


def adapters(directory: Path | None = None) -> list[Adapter]:
    """Every complete adapter in the models folder, by model name then age."""
    d = adapters_dir(directory)
    found = [read_record(p) for p in sorted(d.glob("*.gguf"))] if d.is_dir() else []
    return sorted((a for a in found if a), key=lambda a: (a.model_name, a.created))


def find_adapter(ref: str, directory: Path | None = None, base_sha256: str | None = None) -> Adapter:
    """The adapter `ref` names: a path to its GGUF file, its record or its PEFT folder, or
    ``BASE+NAME``: the newest adapter of that name for that base in the models folder (the
    newest trained on the file `base_sha256` names, when one was)."""
    path = Path(ref).expanduser()
    if path.exists():
        record = read_record(path.with_suffix(".gguf"))
        if record is None:
            raise UserError(f"{path} is not a complete adapter (no readable record beside it).", 2)
        return record
    base, sep, name = ref.rpartition(ADAPTER_SEP)
    if not (sep and base and name):
        raise UserError(f"No adapter {ref!r}: name one as BASE+NAME (see `iberlite models`) or give "
                        "the path to its .gguf file.", 2)
    stem = Path(base).stem if base.endswith(".gguf") else base
    mine = [a for a in adapters(directory) if a.name == name and a.base == stem]
    if not mine:
        raise UserError(f"No adapter {name!r} for {stem} in {adapters_dir(directory)}; see `iberlite "
                        "models`.", 2)
    fitting = [a for a in mine if a.base_sha256 == base_sha256] or mine
    return max(fitting, key=lambda a: a.created)


def resolve_adapted(base_file: ModelFile, adapter_name: str, directory: Path | None = None) -> ModelFile:
    """The base model with its newest adapter called `adapter_name` applied.

    The adapter must have been trained on this very base file (same sha256); an adapter is
    never applied to another quantization of its model.
    """
    if base_file.remote:
        raise UserError(f"{base_file.name} is remote: an adapter applies to a local GGUF file.", 2)
    sha = gguf_facts(base_file.file).sha256
    mine = [a for a in adapters(directory) if a.name == adapter_name and a.base == base_file.name]
    fitting = [a for a in mine if a.base_sha256 == sha]
    if not fitting:
        why = (f" (those there were trained on another file than {base_file.file})" if mine else "")
        raise UserError(
            f"No adapter {adapter_name!r} for {base_file.name} in {adapters_dir(directory)}{why}; "
            f"make one with `iberlite adapt {base_file.name} --task TASK --name {adapter_name}`.", 2)
    chosen = max(fitting, key=lambda a: a.created)
    path = Path(chosen.path)
    if file_sha256(path) != chosen.sha256:
        raise UserError(f"Adapter file {path} does not match its record; run `iberlite adapt` again.", 2)
    # the base's origin (a Hub or Ollama file, a variant's lineage) stays with it
    return replace(base_file, name=f"{base_file.name}{ADAPTER_SEP}{adapter_name}", adapter=path,
                   adapter_sha256=chosen.sha256, adapter_scale=1.0, adapter_task=chosen.task,
                   adapter_peft=peft_dir(path))


TRAINING_FACTS = ("name", "task", "examples", "pool", "rank", "alpha", "epochs", "lr", "batch_size",
                  "seed", "steps", "final_loss", "seconds", "cpu_seconds", "peak_rss_bytes",
                  "examples_per_s", "n_threads", "created", "precision", "token_budget", "parent")
"""What an evaluation keeps of its adapter's record (examples used and the one-off training
cost), so a report built on another machine, without the models folder, still has them."""


def training_facts(adapter: Adapter | None) -> dict[str, object]:
    """The record fields of :data:`TRAINING_FACTS` (empty without an adapter)."""
    if adapter is None:
        return {}
    raw = asdict(adapter)
    return {k: raw[k] for k in TRAINING_FACTS}


def adapter_by_sha256(directory: Path | None = None) -> dict[str, Adapter]:
    """Every complete adapter in the models folder by the sha256 of its GGUF file: how an
    evaluation stored before it kept its adapter's training facts finds them again."""
    return {a.sha256: a for a in adapters(directory)}
