"""Requantize a model's GGUF file to other llama.cpp types, once, into a models folder.

A variant is named ``MODEL@TYPE`` (``smollm2-135m@Q8_0``) and lives in the models folder
(``--models-dir``, else ``IBERLITE_MODELS_DIR``, else ``models/`` in the cache folder) as
``MODEL.TYPE.SHA12.gguf``, where SHA12 starts the source file's sha256: a new source file makes
new variants, and asking again for the same (source, type) is a cache hit. A JSON file beside
each variant records where it came from. Quantizing goes through llama.cpp's own
``llama_model_quantize`` with ``allow_requantize``, so a variant made from an already quantized
file (SmolLM2 ships as Q4_1) carries the source's rounding too: it is labelled
``MODEL@TYPE (from Q4_1)`` everywhere. What a variant really holds is read back from its header
(:func:`catalog.gguf_facts`): K-quants cannot store tensors whose rows are not a multiple of 256,
and llama.cpp quietly falls back to another type for those.
"""

from __future__ import annotations

import ctypes
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from iberlite.cache import cache_dir
from iberlite.device.fingerprint import usable_cpus
from iberlite.errors import UserError
from iberlite.models.gguf_facts import gguf_facts
from iberlite.models.model_file import ModelFile, variant_label

MODELS_DIR_ENV = "IBERLITE_MODELS_DIR"

# Target types and their nominal bits per weight (llama.cpp's figures; used for the progress
# bar's size estimate only: the real figure is read from the written file).
QUANT_TYPES: dict[str, float] = {
    "F16": 16.0, "BF16": 16.0, "Q8_0": 8.5, "Q6_K": 6.56, "Q5_K_M": 5.69, "Q5_K_S": 5.54,
    "Q5_1": 6.0, "Q5_0": 5.5, "Q4_K_M": 4.89, "Q4_K_S": 4.58, "Q4_1": 5.0, "Q4_0": 4.5,
    "Q3_K_L": 4.27, "Q3_K_M": 3.91, "Q3_K_S": 3.5, "Q2_K": 3.0,
}
DEFAULT_SWEEP = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K")

ProgressFn = Callable[[float], None]
"""Called with the fraction of the variant written so far (0..1)."""


def models_dir(override: Path | None = None) -> Path:
    """Where variants are written: `override`, else `IBERLITE_MODELS_DIR`, else the cache."""
    if override is not None:
        return override.expanduser()
    env = os.environ.get(MODELS_DIR_ENV)
    return Path(env).expanduser() if env else cache_dir() / "models"


def check_type(qtype: str) -> str:
    """The canonical type name; an unknown one is a user error (exit 2)."""
    canon = qtype.strip().upper()
    if canon not in QUANT_TYPES:
        raise UserError(f"Unknown quantization type {qtype!r}; valid: {', '.join(QUANT_TYPES)}.", 2)
    return canon


@dataclass(frozen=True)
class Variant:
    """A quantized file made from a source model, and where it came from."""

    name: str  # MODEL@TYPE
    family: str  # MODEL
    qtype: str
    path: str
    source_path: str
    source_sha256: str
    source_type: str  # the source file's own type (e.g. Q4_1): its rounding is in the variant
    seconds: float  # how long llama.cpp took to write it
    created: str

    @property
    def label(self) -> str:
        """``MODEL@TYPE (from Q4_1)`` when the source was already quantized."""
        return variant_label(self.name, self.source_type)

    def model_file(self) -> ModelFile:
        """The variant as a model every command can open."""
        return ModelFile(name=self.name, path=Path(self.path), quantized_from=self.source_type)


def _meta_path(gguf: Path) -> Path:
    return gguf.with_suffix(".json")


def _read_meta(gguf: Path) -> Variant | None:
    try:
        return Variant(**json.loads(_meta_path(gguf).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def variants(directory: Path | None = None) -> list[Variant]:
    """Every complete variant in the models folder (a file with its record), by name."""
    d = models_dir(directory)
    found = [_read_meta(p) for p in sorted(d.glob("*.gguf"))] if d.is_dir() else []
    return sorted((v for v in found if v and Path(v.path).is_file()), key=lambda v: v.name)


def variant_path(src: ModelFile, qtype: str, directory: Path | None = None) -> Path:
    """Where the variant of `src` at `qtype` is (or will be) kept: keyed by the source's sha256."""
    return models_dir(directory) / f"{_file_stem(src.name)}.{qtype}.{gguf_facts(src.file).sha256[:12]}.gguf"


def _file_stem(name: str) -> str:
    """A model name as a file name: `hf:ORG/REPO:Q4_K_M` -> `hf_ORG--REPO_Q4_K_M` (catalog
    names and file stems are unchanged)."""
    return name.replace("/", "--").replace(":", "_")


def quantize(src: ModelFile, qtype: str, *, directory: Path | None = None, n_threads: int | None = None,
             progress: ProgressFn | None = None) -> tuple[Variant, bool]:
    """The variant of the source model at `qtype`, written if missing; returns (variant, cache hit).

    `src` is a catalog model or a `.gguf` file, not itself a variant (names are resolved by
    :func:`iberlite.models.names.resolve_model`).
    """
    qtype = check_type(qtype)
    if src.quantized_from is not None or "@" in src.name:
        raise UserError(f"Quantize from the source model {src.family}, not from the variant {src.name}.", 2)
    if src.remote:
        raise UserError(f"{src.name} is remote: only a local GGUF file can be quantized.", 2)
    facts = gguf_facts(src.file)
    out_dir = models_dir(directory)
    dst = variant_path(src, qtype, directory)
    known = _read_meta(dst)
    if known and dst.is_file() and known.source_sha256 == facts.sha256:
        return known, True
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"Cannot create the models folder {out_dir} ({exc.strerror}).", 2) from exc
    expected = facts.n_params * QUANT_TYPES[qtype] / 8
    tmp = dst.with_name(f"{dst.name}.{os.getpid()}.part")
    start = time.perf_counter()
    try:
        _run_quantize(src.file, tmp, qtype, n_threads or usable_cpus(), expected, progress)
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)
    variant = Variant(
        name=f"{src.name}@{qtype}", family=src.name, qtype=qtype, path=str(dst),
        source_path=str(src.file), source_sha256=facts.sha256, source_type=facts.file_type,
        seconds=round(time.perf_counter() - start, 2), created=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    _meta_path(dst).write_text(json.dumps(asdict(variant), indent=1))
    return variant, False


def _run_quantize(src: Path, dst: Path, qtype: str, n_threads: int, expected_bytes: float,
                  progress: ProgressFn | None) -> None:
    """llama_model_quantize in a thread; progress is the part file's size against the estimate."""
    from iberlite.device.native import quiet_llama_cpp

    ll = quiet_llama_cpp()
    params = ll.llama_model_quantize_default_params()
    params.ftype = getattr(ll, f"LLAMA_FTYPE_MOSTLY_{qtype}")
    params.allow_requantize = True
    params.nthread = n_threads
    rc: list[int] = []
    worker = threading.Thread(
        target=lambda: rc.append(ll.llama_model_quantize(str(src).encode(), str(dst).encode(),
                                                         ctypes.byref(params))),
        daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.1)
        if progress:
            try:
                written = dst.stat().st_size
            except OSError:
                written = 0
            progress(min(0.99, written / max(expected_bytes, 1.0)))
    if not rc or rc[0] != 0:
        raise UserError(f"llama.cpp could not quantize {src} to {qtype} (code {rc[0] if rc else '?'}).")
    if progress:
        progress(1.0)
