"""What a GGUF file says about itself: architecture, quantization, real tensor types, size,
KV-cache shape and sha256, read from its header (so a requantized file reports what it really
contains, not what it was asked to be), cached per (path, size, mtime)."""

from __future__ import annotations

import hashlib
import struct
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from iberlite.cache import cache_dir, read_json, write_json
from iberlite.errors import UserError
from iberlite.models.gguf_header import read_gguf_header, split_part_paths


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


def _parts_sha256(files: list[Path]) -> str:
    """A split model's identity: the sha256 of its parts' sha256s, in order."""
    return hashlib.sha256("\n".join(file_sha256(p) for p in files).encode()).hexdigest()


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

    files = [path]
    try:
        header = read_gguf_header(path)
        files = split_part_paths(path, header)  # a split model: every part's tensors count
        headers = [header, *(read_gguf_header(p) for p in files[1:])]
    except FileNotFoundError as exc:
        raise UserError(f"{exc.filename} is missing: the split model {path.name} needs all "
                        f"{len(files)} parts beside each other.") from exc
    except (ValueError, OSError, IndexError, struct.error) as exc:
        raise UserError(f"{path} is not a valid GGUF model file ({exc}).") from exc
    sizes = [size, *(p.stat().st_size for p in files[1:])]
    for part, part_header, part_size in zip(files, headers, sizes):
        if part_header.data_end() > part_size:  # caught here, before llama.cpp logs its own error
            raise UserError(f"{part} is not a valid GGUF model file (truncated: it has {part_size:,} "
                            f"bytes, its tensors need {part_header.data_end():,}).")
    tensors = [t for h in headers for t in h.tensors]
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

    counts = Counter(type_name(t.ggml_type) for t in tensors)

    def int_field(name: str) -> int | None:
        value = kv.get(f"{arch}.{name}")
        return int(value) if isinstance(value, int) else None

    n_embd, n_head = int_field("embedding_length"), int_field("attention.head_count")
    head_dim = n_embd // n_head if n_embd and n_head else None  # when the header has no key_length
    ctx = kv.get(f"{arch}.context_length")
    bits = 0
    for t in tensors:
        block, nbytes = GGML_QUANT_SIZES.get(GGMLQuantizationType(t.ggml_type), (1, 4))
        bits += t.n_elements // block * nbytes * 8
    n_el = sum(t.n_elements for t in tensors) or 1
    quantized = [t for t in tensors if type_name(t.ggml_type) not in _FLOAT_TYPES]
    return GgufFacts(
        architecture=arch,
        file_type=ftype_name,
        tensor_types=tuple(counts.most_common()),
        n_params=int(sum(t.n_elements for t in tensors)),
        size_bytes=sum(sizes),
        sha256=file_sha256(path) if len(files) == 1 else _parts_sha256(files),
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
