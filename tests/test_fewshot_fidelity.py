"""iberlite's 5-shot contexts are lm-evaluation-harness 0.4.13's, byte for byte.

lm-eval builds its own requests (in-process, no model: it builds every request before loading
one) on local copies of its task YAMLs pointed at the data dir, with its own sampler, seed
1234 and few-shot split; iberlite builds its instances from its task files. Both cover the
first 50 documents of xnli_es (shots from the evaluated split, the evaluated pair excluded),
xstorycloze_eu (shots from train) and qnlieu (BasqueGLUE; shots from validation).

Needs the reference extra and the evaluation data; skipped with the reason otherwise. About
30 s on 2 cores (lm-eval's task loading dominates).
"""

from __future__ import annotations

import pytest

pytest.importorskip("lm_eval", reason="the fidelity test needs the reference extra: pip install -e .[reference]")

from iberlite.fidelity.lm_eval_contexts import lm_eval_requests  # noqa: E402
from iberlite.fidelity.lm_eval_tasks import write_task_dir  # noqa: E402
from iberlite.tasks.fewshot import FewshotSetup, apply_fewshot  # noqa: E402
from iberlite.tasks.items import load_items  # noqa: E402
from iberlite.tasks.registry import load_task_specs  # noqa: E402

pytestmark = [pytest.mark.fidelity]

TASKS = ("xnli_es", "xstorycloze_eu", "qnlieu")
K, N = 5, 50


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory, data_dir, offline_hub):
    for sub in ("xnlivar", "xstorycloze", "basqueglue"):
        if not (data_dir / sub).is_dir():
            pytest.skip(f"{sub} not found in {data_dir}")
    out = tmp_path_factory.mktemp("lm_eval_tasks")
    write_task_dir(list(TASKS), data_dir, out)
    return out


@pytest.mark.parametrize("task", TASKS)
def test_five_shot_contexts_are_lm_evals(task, task_dir, data_dir):
    ref = lm_eval_requests(task, task_dir, K, N)
    spec = load_task_specs(())[task]
    items = load_items(spec, data_dir, N)
    ours, plan = apply_fewshot(spec, items.instances, data_dir, FewshotSetup(K))
    assert plan is not None and plan.k == K
    assert [r.key for r in ref] == [i.doc_id for i in ours]
    assert len(ours) == N
    for r, inst in zip(ref, ours):
        assert inst.context == r.context, inst.doc_id
        assert tuple(inst.target_delimiter + c for c in inst.choices) == r.continuations
    # the contexts really hold 5 shots that change from item to item
    assert len({inst.context[: len(inst.context) - len(items.instances[0].context)] for inst in ours}) > 1
    assert all(inst.context.count(spec.fewshot.fewshot_delimiter) >= K for inst in ours)
