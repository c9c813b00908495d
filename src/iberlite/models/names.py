"""The one parser of model names, and the one way from a name to a :class:`ModelFile`.

Every command that takes a model takes the same names:

* a catalog name (``smollm2-135m``, :mod:`iberlite.models.catalog`);
* a path to a ``.gguf`` file;
* ``MODEL@TYPE``: a quantized variant of any of the above, made once and cached
  (:mod:`iberlite.models.quantize`);
* ``openai:NAME``: a model behind an OpenAI-compatible endpoint (``--base-url``);
* ``hf:ORG/REPO[:QUANT]`` or ``hf:ORG/REPO/FILE.gguf``: a GGUF file from a Hugging Face Hub
  repository (:mod:`iberlite.models.hub`);
* ``ollama:NAME[:TAG]``: a model in the local Ollama store (:mod:`iberlite.models.ollama`);
* ``MODEL+ADAPTER``: a local model with a LoRA adapter made by ``iberlite adapt``
  (:mod:`iberlite.models.adapters`).

A *device candidate* of ``iberlite decide`` is a model and how it is prompted: any of the names
above, optionally followed by ``:Kshot-fixed`` or ``:Kshot-per-item`` (the few-shot evaluation
``iberlite run --num-fewshot K --fewshot-mode MODE`` stored); :func:`parse_candidate` reads it.

A new kind of name (an adapter, a model from a hub) is one more case of
:func:`parse_model_name` and :func:`resolve_model`, nowhere else.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from iberlite.errors import UserError
from iberlite.models.adapters import ADAPTER_SEP, resolve_adapted
from iberlite.models.catalog import CATALOG
from iberlite.models.gguf_facts import gguf_facts
from iberlite.models.hub import is_hub_name, parse_hub_name, resolve_hub
from iberlite.models.model_file import ModelFile
from iberlite.models.ollama import is_ollama_name, parse_ollama_name, resolve_ollama
from iberlite.models.quantize import check_type, quantize, variant_path

REMOTE_PREFIX = "openai:"


@dataclass(frozen=True)
class ModelName:
    """A model name taken apart, before anything is looked up: what kind of model it names
    (`catalog`, `path`, `hub`, `ollama` or `remote`), its base (catalog name, path or served
    name), the quantization a variant asks for, and the adapter an adapted model carries."""

    raw: str
    kind: str
    base: str
    quant: str | None = None
    adapter: str | None = None


def parse_model_name(name: str) -> ModelName:
    """Take a model name apart; a name that fits no form is a user error (exit 2)."""
    if name.startswith(REMOTE_PREFIX):
        served = name[len(REMOTE_PREFIX):]
        if not served:
            raise UserError("A remote model needs a name: openai:NAME.", exit_code=2)
        return ModelName(name, "remote", served)
    base, sep, adapter = name.rpartition(ADAPTER_SEP)
    if sep and base and adapter and "/" not in adapter and not adapter.endswith(".gguf"):
        inner = parse_model_name(base)
        if inner.adapter or inner.kind == "remote":
            raise UserError(f"{name}: an adapter applies to one local model without an adapter.", 2)
        return ModelName(name, inner.kind, inner.base, inner.quant, adapter)
    base, sep, quant = name.rpartition("@")
    if sep and base:
        inner = parse_model_name(base)
        if inner.quant:
            raise UserError(f"Quantize from the source model {inner.base}, not from the variant {base}.", 2)
        return ModelName(name, inner.kind, inner.base, quant.upper())
    if is_hub_name(name):
        parse_hub_name(name)  # a malformed one is an error now, before anything is looked up
        return ModelName(name, "hub", name)
    if is_ollama_name(name):
        parse_ollama_name(name)
        return ModelName(name, "ollama", name)
    if name in CATALOG:
        return ModelName(name, "catalog", name)
    if Path(name).suffix == ".gguf":
        return ModelName(name, "path", name)
    raise UserError(
        f"Unknown model {name!r}; valid models are {', '.join(CATALOG)}, a path to a .gguf file, "
        "hf:ORG/REPO[:QUANT], ollama:NAME[:TAG], MODEL@TYPE (a quantized variant), MODEL+ADAPTER "
        "(see `iberlite adapt`) or openai:NAME with --base-url.",
        exit_code=2,
    )


SHOTS_SEP = ":"
_SHOTS = re.compile(r"(\d+)shot(?:-(fixed|per-item))?")


@dataclass(frozen=True)
class Candidate:
    """A device candidate: a model name and how it is prompted (k shots in a mode; k = 0 and
    mode "-" for zero-shot), as `iberlite decide --device` takes it."""

    raw: str
    model: str
    k: int = 0
    mode: str = "-"

    @property
    def fewshot(self) -> bool:
        return self.k > 0


def parse_candidate(name: str) -> Candidate:
    """Take a device candidate apart: ``MODEL`` (zero-shot) or ``MODEL:Kshot[-fixed|-per-item]``
    (per-item, lm-eval's draws, when the mode is left out). MODEL is a name as `iberlite run`
    stored it (a file's stem too), so it is not resolved here. A ``:TAG`` that is not a shot
    count stays part of the model name (``ollama:NAME:TAG``, ``hf:ORG/REPO:QUANT``)."""
    base, sep, shots = name.rpartition(SHOTS_SEP)
    m = _SHOTS.fullmatch(shots) if sep and base else None
    if m is None:
        return Candidate(name, name)
    k = int(m[1])
    return Candidate(name, base, k, (m[2] or "per-item") if k else "-")


def adapter_base(name: str) -> str | None:
    """The base of an adapted model name (``smollm2-135m`` of ``smollm2-135m+bec_eu``); None for
    a name without an adapter, or a stored name that is not a model name (a file's stem)."""
    try:
        parsed = parse_model_name(name)
    except UserError:
        return None
    return name.rpartition(ADAPTER_SEP)[0] if parsed.adapter is not None else None


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def resolve_model(name: str, *, models_dir: Path | None = None,
                  on_quantize: Callable[[str], None] | None = _say) -> ModelFile:
    """The model file a name stands for. A variant missing from the models folder is made now
    (one line through `on_quantize`); the source's own type (``smollm2-135m@Q4_1``) is the
    source file itself, under its name. An adapted model is its base with the newest adapter of
    that name trained on that very base file."""
    parsed = parse_model_name(name)
    if parsed.adapter is not None:
        base = resolve_model(name.rpartition(ADAPTER_SEP)[0], models_dir=models_dir, on_quantize=on_quantize)
        return resolve_adapted(base, parsed.adapter, models_dir)
    if parsed.kind == "remote":
        return ModelFile(name=name, path=None, remote=parsed.base)
    qtype = check_type(parsed.quant) if parsed.quant else None
    src = _source(parsed)
    if qtype is None:
        return src
    if gguf_facts(src.file).file_type == qtype:
        return src
    target = variant_path(src, qtype, models_dir)
    if on_quantize and not target.is_file():
        on_quantize(f"Quantizing {src.name} to {qtype} once (cached in {target.parent}).")
    variant, _ = quantize(src, qtype, directory=models_dir)
    # a variant of a Hub or Ollama file keeps that file's origin (repo, commit / name, digest)
    return replace(variant.model_file(), hub=src.hub, ollama=src.ollama)


def _source(parsed: ModelName) -> ModelFile:
    if parsed.kind == "hub":
        hub = resolve_hub(parsed.base, say=_say)
        return ModelFile(name=hub.name, path=hub.path, hub=hub)
    if parsed.kind == "ollama":
        store = resolve_ollama(parsed.base)
        return ModelFile(name=store.spec, path=store.path, ollama=store)
    if parsed.kind == "catalog":
        path = CATALOG[parsed.base].locate()
        if not path.is_file():
            raise UserError(f"Model {parsed.base} is installed but its file {path} is missing; reinstall it.")
        return ModelFile(name=parsed.base, path=path)
    path = Path(parsed.base).expanduser()
    if not path.is_file():
        raise UserError(f"Model file {path} does not exist.", exit_code=2)
    return ModelFile(name=path.stem, path=path.resolve())


def resolve_source(name: str, verb: str, prep: str) -> ModelFile:
    """The model file of a name that must not be a variant (`quantize` and `advise` work from the
    source file); a variant is a user error that names the source ("Quantize from ... from")."""
    parsed = parse_model_name(name)
    if parsed.quant:
        raise UserError(f"{verb} the source model {name.rpartition('@')[0]}, not {prep} the variant "
                        f"{name}.", 2)
    return resolve_model(name)
