"""iberlite: evaluate compact LLMs on Iberian-language tasks on the device they will run on, with
the device cost of every answer, and decide device, cloud or cascade.

The few names a Python user needs (everything else is internal and may move):

* run an evaluation: :func:`evaluate` (:func:`iberlite.run.runner.run`) with a :class:`RunSpec`,
  giving a :class:`RunResult`;
* read results back: :func:`results_grid`, :func:`device_costs`, :func:`write_report`;
* models and engines: :func:`resolve_model`, :func:`open_engine`, :class:`EngineOptions`;
* apply a routing decision at run time: :class:`HybridRouter` with its :class:`Policy`.

They are imported on first use, so `import iberlite` stays cheap (no llama.cpp load).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# public name -> (module, attribute). `evaluate` is the runner's `run`: the name `iberlite.run`
# is the run/ package.
_PUBLIC: dict[str, str | tuple[str, str]] = {
    "RunSpec": "iberlite.run.spec",
    "RunResult": "iberlite.run.spec",
    "evaluate": ("iberlite.run.runner", "run"),
    "results_grid": "iberlite.analysis.results",
    "device_costs": "iberlite.analysis.device_cost",
    "write_report": "iberlite.report.render",
    "resolve_model": "iberlite.models.names",
    "open_engine": "iberlite.engines.factory",
    "EngineOptions": "iberlite.engines.factory",
    "HybridRouter": "iberlite.decide.router",
    "Policy": "iberlite.decide.router",
    "Route": "iberlite.decide.router",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'iberlite' has no attribute {name!r}")
    where = _PUBLIC[name]
    module, attr = where if isinstance(where, tuple) else (where, name)
    value = getattr(import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
