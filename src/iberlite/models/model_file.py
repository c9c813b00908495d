"""A resolved model, the record every later stage receives: its name, its GGUF file (or the name
an OpenAI-compatible endpoint serves), and where it came from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from iberlite.errors import UserError
from iberlite.models.hub import HubFile
from iberlite.models.ollama import OllamaModel


def family_of(name: str) -> str:
    """The model a variant was made from: ``smollm2-135m@Q8_0`` -> ``smollm2-135m``."""
    return name.rpartition("@")[0] or name


def variant_label(name: str, source_type: str | None) -> str:
    """A model name with its lineage when it was made from a quantized file."""
    if source_type and source_type not in ("F32", "F16", "BF16"):
        return f"{name} (from {source_type})"
    return name


@dataclass(frozen=True)
class ModelFile:
    """A resolved model: its catalog name (or file stem) and its GGUF file, or for a model
    behind an OpenAI-compatible endpoint (`openai:NAME`) the name the endpoint serves."""

    name: str
    path: Path | None
    remote: str | None = None
    quantized_from: str | None = None  # a variant's source file type (MODEL@TYPE, see quantize)
    hub: HubFile | None = None  # hf:ORG/REPO...: repository, file and pinned commit
    ollama: OllamaModel | None = None  # ollama:NAME[:TAG]: manifest name, blob digest, template
    # A LoRA adapter applied on top (MODEL+ADAPTER, see models/adapters.py); the scale is the
    # user's multiplier, llama.cpp and PEFT both apply alpha / rank on top of it.
    adapter: Path | None = None
    adapter_sha256: str | None = None
    adapter_scale: float = 1.0
    adapter_task: str | None = None
    adapter_peft: Path | None = None  # the PEFT copy of the adapter (the transformers engine's)

    @property
    def origin(self) -> dict[str, str]:
        """Where a Hub or Ollama file came from, for the engine info (empty for other models,
        so their evaluation keys stay as they were)."""
        return {**(self.hub.extra() if self.hub else {}), **(self.ollama.extra() if self.ollama else {})}

    @property
    def family(self) -> str:
        """The model a variant was made from (`smollm2-135m` for `smollm2-135m@Q8_0`)."""
        return family_of(self.name)

    @property
    def label(self) -> str:
        """The name, with `(from Q4_1)` when it was made from an already quantized file."""
        return variant_label(self.name, self.quantized_from)

    @property
    def file(self) -> Path:
        """The GGUF file; asking a remote model for one is a user error."""
        if self.path is None:
            raise UserError(f"Model {self.name} is remote: it has no local file.", 2)
        return self.path
