"""Is fast scoring exact on this device? Check that packed scoring gives the same numbers as
scoring each choice on its own, and keep the verdict.

Fast scoring is exact only when its layout's block size matches the SIMD width of llama.cpp's
kernels (engines/layout.py). The rule in engines/kernels.py picks it from the build; the probe
here checks it on a handful of the project's own sample items, tries a wider block if the rule
was wrong, and otherwise marks the layout `approx`, so a number never claims an exactness the
device did not show. The verdict is cached per device fingerprint, engine version, model file
and buffers: `iberlite run` probes once, then reads it.

`engines.factory.open_llamacpp` applies the verdict to every engine it opens; `iberlite doctor`
(:mod:`iberlite.bench.doctor`) runs the same probe in a child process per model.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

from iberlite.cache import cache_dir, read_json, write_json
from iberlite.engines.requests import batch_choice_requests

if TYPE_CHECKING:
    from iberlite.engines.llamacpp import LlamaCppEngine
    from iberlite.tasks.render import Instance

PROBE_TASKS = ("sample_commonsense_es", "sample_commonsense_eu", "sample_nli_es", "sample_nli_eu")
PROBE_ITEMS = 2  # per task
KEPT_PROBE_TASKS = ("sample_commonsense_es", "sample_commonsense_eu")  # stories continue their shots
PROBE_VERSION = 2  # bumped when the probe checks more: older verdicts are probed again
TOLERANCE = 1e-3  # nats per choice; the tests hold the engine to the same bound


@dataclass(frozen=True)
class ExactnessCheck:
    """Packed (fast) scores against each choice scored unpacked (naive) and alone."""

    align: int
    n_items: int
    n_choices: int
    max_delta_naive: float
    max_delta_alone: float
    same_predictions: bool
    max_delta_kept: float  # fixed shots: scored after their kept KV against from scratch

    @property
    def worst(self) -> float:
        return max(self.max_delta_naive, self.max_delta_alone, self.max_delta_kept)

    @property
    def exact(self) -> bool:
        """Within TOLERANCE per choice, and the same prediction on every item."""
        return self.same_predictions and self.worst < TOLERANCE


@dataclass(frozen=True)
class LayoutVerdict:
    """The block size to use on this device for one model, and whether it is exact."""

    align: int
    exact: bool
    checks: tuple[ExactnessCheck, ...]


def probe_instances() -> list[Instance]:
    """The built-in probe items: the first items of a few sample-suite tasks (no data dir)."""
    from iberlite.tasks.items import sample_instances

    return sample_instances(PROBE_TASKS, PROBE_ITEMS)


def probe_exactness(engine: LlamaCppEngine, instances: list[Instance]) -> ExactnessCheck:
    """Score the instances fast (shared prefixes, packed), naive (every choice its own
    sequence, packed) and alone (the first item of each task, one choice per decode)."""
    from iberlite.scoring.metrics import mc_prediction

    reqs = batch_choice_requests(list(enumerate(instances)))
    owners = [i for i, inst in enumerate(instances) for _ in inst.choices]
    saved, engine.scoring = engine.scoring, "fast"
    try:
        fast = [r.logprob for r in engine.loglikelihood(reqs)]
        naive = [r.logprob for r in engine.loglikelihood([replace(r, group="") for r in reqs])]
        lone = [k for k, i in enumerate(owners) if i % PROBE_ITEMS == 0]
        alone = {k: engine.loglikelihood([reqs[k]])[0].logprob for k in lone}
    finally:
        engine.scoring = saved

    def predictions(scores: list[float]) -> list[int]:
        return [mc_prediction(tuple(s for s, o in zip(scores, owners) if o == i))
                for i in range(len(instances))]

    return ExactnessCheck(
        align=engine.pack_layout.align, n_items=len(instances), n_choices=len(reqs),
        max_delta_naive=max(abs(a - b) for a, b in zip(fast, naive)),
        max_delta_alone=max(abs(fast[k] - v) for k, v in alone.items()),
        same_predictions=predictions(fast) == predictions(naive),
        max_delta_kept=probe_kept_prefix(engine),
    )


def probe_kept_prefix(engine: LlamaCppEngine) -> float:
    """Largest difference between sample stories scored after two fixed shots whose KV the
    engine keeps (`--fewshot-mode fixed`) and the same prompts scored from scratch."""
    from iberlite.tasks.fewshot import FewshotSetup, apply_fewshot
    from iberlite.tasks.items import SAMPLE_DIR, sample_instances
    from iberlite.tasks.registry import load_task_specs

    specs = load_task_specs()
    instances: list[Instance] = []
    for name in KEPT_PROBE_TASKS:  # the shots come from the same file: two more docs
        shown, _ = apply_fewshot(specs[name], sample_instances((name,), PROBE_ITEMS + 2),
                                 SAMPLE_DIR, FewshotSetup(2, "fixed"))
        instances += shown
    reqs = batch_choice_requests(list(enumerate(instances)))
    kept = [r.logprob for r in engine.loglikelihood(reqs)]
    scratch = [r.logprob for r in engine.loglikelihood([replace(r, shared_prefix="") for r in reqs])]
    return max(abs(a - b) for a, b in zip(kept, scratch))


def choose_layout(engine: LlamaCppEngine) -> LayoutVerdict:
    """Probe the rule's block size, then twice it; keep the first that is exact here, else
    the rule's, marked not exact."""
    instances = probe_instances()
    planned = engine.kernels.align
    checks = []
    for align in (planned, planned * 2):
        if engine.n_batch % align:
            continue
        engine.set_align(align)
        checks.append(probe_exactness(engine, instances))
        if checks[-1].exact:
            return LayoutVerdict(align, True, tuple(checks))
    engine.set_align(planned)
    return LayoutVerdict(planned, False, tuple(checks))


def _cache_key(engine: LlamaCppEngine) -> str:
    from iberlite.device.fingerprint import fingerprint

    fp = fingerprint(engine.n_threads)
    k = engine.kernels
    return (f"{fp.fingerprint_id}|{engine.facts.sha256}|buffers={k.buffers}|planned={k.align}"
            f"|n_batch={engine.n_batch}|n_seq_max={engine.n_seq_max}|probe={PROBE_VERSION}")


def _cache_path():
    return cache_dir() / "layout_verdicts.json"


def cached_verdict(engine: LlamaCppEngine) -> LayoutVerdict | None:
    """The stored verdict for this device, engine version, model and buffers, if any."""
    hit = read_json(_cache_path()).get(_cache_key(engine))
    if not isinstance(hit, dict):
        return None
    try:
        return LayoutVerdict(hit["align"], hit["exact"],
                             tuple(ExactnessCheck(**c) for c in hit["checks"]))
    except (KeyError, TypeError):
        return None


def store_verdict(engine: LlamaCppEngine, verdict: LayoutVerdict) -> None:
    """Keep the verdict for later runs on this device."""
    path = _cache_path()
    known = read_json(path)
    known[_cache_key(engine)] = {"align": verdict.align, "exact": verdict.exact,
                                 "checks": [asdict(c) for c in verdict.checks],
                                 "checked_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_json(path, known)


def ensure_exact_layout(engine: LlamaCppEngine) -> LayoutVerdict:
    """Apply the cached verdict, or probe now (a few seconds, once per device and model)."""
    verdict = cached_verdict(engine)
    if verdict is None:
        verdict = choose_layout(engine)
        store_verdict(engine, verdict)
    engine.set_align(verdict.align)
    engine.exact = verdict.exact
    if not verdict.exact:
        worst = max(c.worst for c in verdict.checks)
        print(f"Warning: fast scoring of {engine.model_file.name} is not exact on this CPU "
              f"(it differs from naive scoring by up to {worst:.3g} nats); its results are labelled "
              "'approx'. Use --scoring naive for exact scores.", file=sys.stderr)
    return verdict
