"""Fixed few-shot on the llama.cpp engine: the shots' KV is computed once and reused, and the
scores equal those of the same full prompts computed from scratch.

Both catalog models; 5 fixed XStoryCloze-eu shots on 4 stories (a ~600-token prefix), and 3
fixed shots on the sample suite's Spanish NLI (its questions are empty, so each item scores
right after the prefix). About 30 s per model on 2 idle cores.
"""

from __future__ import annotations

import pytest

from iberlite.engines.base import LoglikelihoodRequest
from iberlite.engines.llamacpp import LlamaCppEngine
from iberlite.models.names import resolve_model
from iberlite.scoring.metrics import mc_prediction
from iberlite.tasks.fewshot import FewshotSetup, apply_fewshot
from iberlite.tasks.items import load_items
from iberlite.tasks.registry import load_task_specs

pytestmark = pytest.mark.slow

TOL = 1e-3  # nats, as tests/test_engine.py; measured bit-identical here (engines/layout.py)


@pytest.fixture(scope="module", params=["smollm2-135m", "gemma3-270m"])
def engine(request):
    eng = LlamaCppEngine(resolve_model(request.param), n_threads=2)
    yield eng
    eng.close()


def _requests(instances, with_prefix: bool) -> list[LoglikelihoodRequest]:
    return [LoglikelihoodRequest(i.context, i.target_delimiter + c, group=f"{n}:{i.doc_id}",
                                 shared_prefix=i.shared_prefix if with_prefix else "")
            for n, i in enumerate(instances) for c in i.choices]


def _check(engine, instances):
    builds = engine.prefix_builds
    half = len(instances) // 2
    kept = []
    for part in (instances[:half], instances[half:]):  # two calls: the prefix is kept between them
        kept += engine.loglikelihood(_requests(part, True))
    assert engine.prefix_builds == builds + 1 and engine.prefix_misses == 0
    scratch = engine.loglikelihood(_requests(instances, False))
    assert max(abs(a.logprob - b.logprob) for a, b in zip(kept, scratch)) < TOL
    assert [a.n_tokens for a in kept] == [b.n_tokens for b in scratch]
    k = 0
    for inst in instances:
        n = len(inst.choices)
        assert mc_prediction([r.logprob for r in kept[k:k + n]]) == \
            mc_prediction([r.logprob for r in scratch[k:k + n]])
        k += n
    # what each item prefilled: from scratch the whole prompt, after the prefix only its own part
    prefix_tokens = len(engine.tokenize(instances[0].shared_prefix.rstrip()))
    n_choices = len(instances[0].choices)
    later = sum(r.eval_tokens for r in kept[n_choices:])  # the first item carries the prefix
    later_scratch = sum(r.eval_tokens for r in scratch[n_choices:])
    # the prefix is kept but for its last token, which every item computes itself (an empty
    # question scores its first answer token from it); none of the rest is computed again
    assert later == pytest.approx(later_scratch - (len(instances) - 1) * (prefix_tokens - 1))
    assert sum(r.eval_tokens for r in kept[:n_choices]) >= prefix_tokens


def test_fixed_shots_score_as_from_scratch_on_xstorycloze(engine, data_dir):
    spec = load_task_specs(())["xstorycloze_eu"]
    if not (data_dir / spec.fewshot.source.files[0]).is_file():
        pytest.skip(f"XStoryCloze-eu train not found in {data_dir}")
    items = load_items(spec, data_dir, 4)
    instances, _ = apply_fewshot(spec, items.instances, data_dir, FewshotSetup(5, "fixed"))
    _check(engine, instances)


def test_fixed_shots_score_as_from_scratch_when_the_question_is_empty(engine):
    from pathlib import Path

    import iberlite

    sample = Path(iberlite.__file__).parent / "tasks" / "sample"
    spec = load_task_specs(())["sample_nli_es"]
    items = load_items(spec, sample)
    instances, plan = apply_fewshot(spec, items.instances, sample, FewshotSetup(3, "fixed"))
    assert plan is not None and len(instances) == 6
    _check(engine, instances)
