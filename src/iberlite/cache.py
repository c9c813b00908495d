"""iberlite's cache folder: what it can recompute (GGUF facts, file hashes, layout verdicts)."""

from __future__ import annotations

import json
import os
from pathlib import Path

CACHE_ENV = "IBERLITE_CACHE_DIR"


def cache_dir() -> Path:
    """`IBERLITE_CACHE_DIR`, else `$XDG_CACHE_HOME/iberlite`, else `~/.cache/iberlite`."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "iberlite"


def read_json(path: Path) -> dict:
    """A cache file's mapping; missing or unreadable means empty."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json(path: Path, data: dict) -> None:
    """Atomic replace; a cache that cannot be written only makes the next start slower."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, sort_keys=True))
        tmp.replace(path)
    except OSError:
        pass
