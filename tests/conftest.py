"""Shared fixtures: where the evaluation data is, and a deterministic fake engine.

The data dir is IBERLITE_DATA_DIR, else ../shared/data beside the repository; tests that need
it take the `data_dir` fixture and are skipped, with the reason, when it is missing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
try:
    import iberlite  # noqa: F401
except ImportError:  # package not installed into the venv yet: use the src tree
    sys.path.insert(0, str(REPO / "src"))

DATA_DIR = Path(os.environ.get("IBERLITE_DATA_DIR") or REPO.parent / "shared" / "data")


@pytest.fixture(scope="session", autouse=True)
def fresh_cache(tmp_path_factory) -> Path:
    """Every test session starts from an empty iberlite cache (GGUF facts, file hashes, layout
    verdicts), shared by the subprocesses it starts: the exactness probe runs for real on this
    CPU in every session, and no result depends on what an earlier session left behind."""
    path = tmp_path_factory.mktemp("iberlite-cache")
    previous = os.environ.get("IBERLITE_CACHE_DIR")
    os.environ["IBERLITE_CACHE_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("IBERLITE_CACHE_DIR", None)
    else:
        os.environ["IBERLITE_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The evaluation data dir; skips the test when it is missing."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"evaluation data not found at {DATA_DIR} (set IBERLITE_DATA_DIR to the data dir)")
    return DATA_DIR


@pytest.fixture(scope="session")
def fake_engine_factory():
    """`runner.run(..., engine_factory=...)` with the deterministic fake engine of tests/fakes.py."""
    from fakes import fake_engine_factory

    return fake_engine_factory


@pytest.fixture(scope="module")
def offline_hub():
    """The reference stack (lm-eval, transformers, datasets) never reaches a hub: offline for
    the module that asks, restored after it. huggingface_hub also reads TRANSFORMERS_OFFLINE,
    so a value left behind would make the Hub tests of a later module offline."""
    with pytest.MonkeyPatch.context() as mp:
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            mp.setenv(var, "1")
        yield
