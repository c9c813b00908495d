"""The one place an engine is built: every command, the runner and the benchmarks call
`open_engine`, so a model loads the same way (buffers, layout, exactness check) everywhere."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from iberlite.engines.base import Engine
from iberlite.errors import UserError
from iberlite.models.model_file import ModelFile

ENGINES = ("llamacpp", "transformers")
"""In-process engines for GGUF files: llama.cpp (the default) and the transformers reference."""


@dataclass(frozen=True)
class EngineOptions:
    """How to set an engine up. `check_layout` runs (or reads from the cache) the doctor's
    exactness probe so fast scoring uses a layout that is exact on this CPU."""

    engine: str = "llamacpp"
    n_threads: int | None = None
    n_ctx: int = 4096
    seed: int = 1234
    scoring: str = "fast"
    prefix_cache: bool = False
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    api: str = "completions"
    check_layout: bool = True
    item_timeout_s: float | None = None  # a generation's wall-time limit (stop reason `timeout`)
    context_overrides: dict[str, object] = field(default_factory=dict)


def open_engine(model: ModelFile, options: EngineOptions = EngineOptions()) -> Engine:
    """The engine for `model`: remote models behind their endpoint, GGUF files in process."""
    if model.remote:
        from iberlite.engines.openai_http import EndpointConfig, OpenAIEngine

        if not options.base_url:
            raise UserError(f"Model {model.name} is remote: pass --base-url (for example "
                            "http://127.0.0.1:8000/v1).", 2)
        config = EndpointConfig(options.base_url, api_key_env=options.api_key_env, api=options.api)
        if options.item_timeout_s:
            config = replace(config, timeout_s=options.item_timeout_s)
        return OpenAIEngine(model.remote, config, seed=options.seed)
    if options.engine not in ENGINES:
        raise UserError(f"Unknown engine {options.engine!r}; valid: {', '.join(ENGINES)}.", 2)
    if options.engine == "transformers":
        from iberlite.engines.memory_budget import ensure_fits
        from iberlite.engines.transformers import TransformersEngine
        from iberlite.models.gguf_facts import gguf_facts

        ensure_fits(model.name, gguf_facts(model.file), options.n_ctx)
        return TransformersEngine(model, n_threads=options.n_threads, seed=options.seed)
    return open_llamacpp(model, options)


def open_llamacpp(model: ModelFile, options: EngineOptions = EngineOptions()):
    """An in-process llama.cpp engine with the layout the doctor found exact on this CPU.

    A model whose file and KV cache would not fit in memory is refused before loading
    (`engines/memory_budget.py`), so every command that opens one gets the same check."""
    from iberlite.engines.llamacpp import LlamaCppEngine
    from iberlite.engines.memory_budget import ensure_fits
    from iberlite.models.gguf_facts import gguf_facts

    ensure_fits(model.name, gguf_facts(model.file), options.n_ctx)
    engine = LlamaCppEngine(model, n_threads=options.n_threads, n_ctx=options.n_ctx,
                            seed=options.seed, scoring=options.scoring,
                            prefix_cache=options.prefix_cache,
                            item_timeout_s=options.item_timeout_s,
                            context_overrides=dict(options.context_overrides) or None)
    if options.check_layout:
        from iberlite.engines.exactness import ensure_exact_layout

        try:
            ensure_exact_layout(engine)
        except BaseException:
            engine.close()
            raise
    return engine
