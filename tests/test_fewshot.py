"""Few-shot logic (tasks/fewshot.py): lm-eval's draws, shot text, pools, fixed mode, keys.

Fast: no model. The sampler is checked against lm-eval's own `ContextSampler` when the
reference extra is installed; the rest runs on the sample suite and the data dir.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from fakes import FakeEngine
from iberlite.errors import TaskSpecError, UserError
from iberlite.run.signature import eval_key, signature
from iberlite.tasks.data import Doc
from iberlite.tasks.fewshot import (
    FewshotSetup,
    apply_fewshot,
    build_context,
    qa_turn,
    sample_shots,
)
from iberlite.tasks.items import load_items
from iberlite.tasks.registry import load_task_specs
from iberlite.tasks.spec import read_task_file

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "src" / "iberlite" / "tasks" / "sample"


def _pool(n: int, dupes: int = 0) -> list[Doc]:
    docs = [Doc(str(i), {"text": f"doc {i}", "label": i % 3}) for i in range(n)]
    return docs + [Doc(f"d{j}", dict(docs[0].fields)) for j in range(dupes)]


@pytest.mark.parametrize("dupes", [0, 3])
def test_default_sampler_draws_what_lm_evals_draws(dupes):
    samplers = pytest.importorskip("lm_eval.api.samplers", reason="needs the reference extra")
    pool = _pool(12, dupes)
    ref = samplers.ContextSampler([d.fields for d in pool], rnd=None).set_rnd(1234)
    rnd = random.Random(1234)
    for i in range(40):  # one generator consumed document after document, as lm-eval does
        eval_doc = pool[i % 5] if i % 2 else None
        want = ref.sample(5, eval_doc=eval_doc.fields if eval_doc else None)
        got = sample_shots(rnd, pool, 5, "default", eval_doc)
        assert [d.fields for d in got] == want


def test_first_n_sampler_is_lm_evals():
    samplers = pytest.importorskip("lm_eval.api.samplers", reason="needs the reference extra")
    pool = _pool(8)
    ref = samplers.FirstNSampler([d.fields for d in pool], rnd=None)
    assert [d.fields for d in sample_shots(random.Random(1), pool, 3, "first_n", pool[1])] == \
        ref.sample(3, eval_doc=pool[1].fields)


def test_the_evaluated_document_is_never_its_own_shot_even_when_the_pool_repeats_it():
    pool = _pool(6, dupes=4)  # doc 0 appears five times
    rnd = random.Random(7)
    for _ in range(200):
        shots = sample_shots(rnd, pool, 3, "default", pool[0])
        assert len(shots) == 3 and all(s.fields != pool[0].fields for s in shots)


def test_a_pool_too_small_is_one_sentence():
    with pytest.raises(UserError, match="The few-shot pool has 4 documents; 4 shots need 5"):
        sample_shots(random.Random(1), _pool(4), 4, "default", _pool(4)[0])


def test_shot_and_context_text():
    assert qa_turn("Q?", "yes", " ", "\n\n") == "Q? yes\n\n"
    assert qa_turn("Q?", "", " ", "\n\n") == "Q?"  # no answer: lm-eval adds no delimiters
    assert build_context("Answer.\n", ["a 1\n\n", "b 2\n\n"], "c") == "Answer.\na 1\n\nb 2\n\nc"


def test_zero_shot_is_unchanged_and_has_no_plan():
    spec = load_task_specs(())["sample_nli_es"]
    items = load_items(spec, SAMPLE_DIR)
    out, plan = apply_fewshot(spec, items.instances, SAMPLE_DIR, FewshotSetup(0))
    assert plan is None and out == items.instances


def test_per_item_shots_come_from_the_pool_and_differ_between_items(data_dir):
    spec = load_task_specs(())["xstorycloze_es"]
    items = load_items(spec, data_dir, 20)
    out, plan = apply_fewshot(spec, items.instances, data_dir, FewshotSetup(3))
    assert plan is not None and plan.pool == "train" and plan.pool_size == 360
    for zero, shot in zip(items.instances, out):
        assert shot.context.endswith("\n\n" + zero.context) and shot.context.count("\n\n") == 3
        assert shot.choices == zero.choices and shot.gold == zero.gold and shot.shared_prefix == ""
    assert len({o.context[: -len(z.context)] for o, z in zip(out, items.instances)}) == 20
    again, _ = apply_fewshot(spec, items.instances, data_dir, FewshotSetup(3))
    assert again == out  # seeded: the same run twice gives the same prompts
    other, _ = apply_fewshot(spec, items.instances, data_dir, FewshotSetup(3, seed=99))
    assert other != out


def test_fixed_shots_are_one_prefix_and_leave_out_items_that_are_shots():
    spec = load_task_specs(())["sample_nli_es"]  # no few-shot split: the evaluated one
    items = load_items(spec, SAMPLE_DIR)
    out, plan = apply_fewshot(spec, items.instances, SAMPLE_DIR, FewshotSetup(3, "fixed"))
    assert plan is not None and plan.mode == "fixed" and plan.dropped == 3
    assert len(out) == len(items.instances) - 3
    prefix = out[0].shared_prefix
    assert prefix.endswith("\n\n") and prefix.count("\n\n") == 3
    assert all(o.shared_prefix == prefix and o.context.startswith(prefix) for o in out)
    kept = {o.doc_id for o in out}
    for inst in items.instances:  # each left-out item's gold answer is in the prefix
        if inst.doc_id not in kept:
            assert inst.choices[int(inst.gold)] in prefix


def test_keys_and_signatures_keep_zero_shot_and_tell_shots_apart(data_dir):
    spec = load_task_specs(())["xstorycloze_es"]
    items = load_items(spec, data_dir, 5)
    info = FakeEngine("m").info()
    zero = eval_key(info, spec, "h")
    # the key the code before few-shot support gave for this evaluation: stored zero-shot items
    # keep matching their evaluations
    assert zero == "5f2d9b03a538418091b9"
    plans = {}
    for setup in (FewshotSetup(5), FewshotSetup(5, "fixed"), FewshotSetup(1), FewshotSetup(5, seed=7)):
        plans[setup] = apply_fewshot(spec, items.instances, data_dir, setup)[1]
    keys = {eval_key(info, spec, "h", p) for p in plans.values()}
    assert len(keys) == 4 and zero not in keys
    sig = signature(info, spec, "h", 5, "dev", plans[FewshotSetup(5, "fixed")])
    assert "|shots:5shot,fixed,default,seed1234,pool@" in sig
    assert "shots:" not in signature(info, spec, "h", 5, "dev")
    other = replace(spec, fewshot=replace(spec.fewshot, fewshot_delimiter="\n"))
    assert eval_key(info, other, "h", plans[FewshotSetup(5)]) != eval_key(info, spec, "h", plans[FewshotSetup(5)])


def _task(tmp_path: Path, fewshot: dict) -> Path:
    raw = yaml.safe_load((SAMPLE_DIR / "sample_nli_es.yaml").read_text())
    (tmp_path / "nli_es.jsonl").write_bytes((SAMPLE_DIR / "nli_es.jsonl").read_bytes())
    raw["fewshot"] = fewshot
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path


def test_fewshot_block_is_checked_like_the_rest_of_the_file(tmp_path):
    with pytest.raises(TaskSpecError, match="unknown key `fewshot.sampel`.*did you mean `sampler`"):
        read_task_file(_task(tmp_path, {"sampel": "first_n"}))
    with pytest.raises(TaskSpecError, match="fewshot.sampler: 'balanced'; valid values are default, first_n"):
        read_task_file(_task(tmp_path, {"sampler": "balanced"}))
    with pytest.raises(TaskSpecError, match="outside the data dir"):
        read_task_file(_task(tmp_path, {"source": {"format": "jsonl", "files": ["../x.jsonl"]}}))
    spec = read_task_file(_task(tmp_path, {"sampler": "first_n", "fewshot_delimiter": "\n",
                                           "description": "Responde.\n"}))
    assert spec.fewshot.sampler == "first_n" and spec.fewshot.pool_label == "eval split (doc excluded)"
    items = load_items(spec, SAMPLE_DIR)
    out, plan = apply_fewshot(spec, items.instances, SAMPLE_DIR, FewshotSetup(2))
    assert plan is not None and plan.sampler == "first_n"
    assert all(o.context.startswith("Responde.\n") for o in out)
    # a description is lm-eval's prompt prefix at any k, and part of the prompt hash
    zero, _ = apply_fewshot(spec, items.instances, SAMPLE_DIR, FewshotSetup(0))
    assert zero[0].context == "Responde.\n" + items.instances[0].context
    assert spec.prompt_hash() != replace(spec, fewshot=replace(spec.fewshot, description="")).prompt_hash()


def test_k_shot_runs_are_stored_apart_and_compared_to_zero_shot_on_the_same_items(tmp_path, fake_engine_factory):
    from iberlite.cli.views import shots_view
    from iberlite.run.runner import run
    from iberlite.run.spec import RunSpec
    from iberlite.store import Store

    db = tmp_path / "shots.db"
    base = dict(models=("smollm2-135m",), tasks=("sample_commonsense_es",), db=db, data_dir=tmp_path)
    first = run(RunSpec(**base), engine_factory=fake_engine_factory)
    for k, mode in ((3, "per-item"), (3, "fixed"), (1, "per-item")):
        out = run(RunSpec(**base, num_fewshot=k, fewshot_mode=mode), engine_factory=fake_engine_factory)
        assert out.outcomes[0].n_new == out.outcomes[0].n_items  # nothing reused from another k
        assert f"|shots:{k}shot,{mode},default,seed1234,pool@" in out.outcomes[0].signature
    again = run(RunSpec(**base), engine_factory=fake_engine_factory)
    assert again.outcomes[0].n_new == 0 and again.outcomes[0].signature == first.outcomes[0].signature
    store = Store.open_readonly(db)
    try:
        assert len(store.evals()) == 4
    finally:
        store.close()
    view = shots_view(db)
    got = {(r[3], r[4]): r for r in view.rows}
    assert set(got) == {(0, "-"), (1, "per-item"), (3, "per-item"), (3, "fixed")}
    assert got[0, "-"][7] is None and all(got[key][7] is not None for key in got if key[0])
    n = first.outcomes[0].n_items
    assert got[3, "fixed"][5] == n - 3 and got[3, "per-item"][5] == n  # fixed: its shots left out
    assert all(r[8] is not None and r[9] is not None and r[10] > 0 for r in view.rows)  # cost columns
    assert len(view.notes) == 3 and all("from" in s and "p50 latency" in s for s in view.notes)
    # the results grid gives k-shot numbers rows of their own; the report has a few-shot section
    from iberlite.analysis.results import results_grid
    from iberlite.report.render import render

    tasks = {r.task for r in results_grid(db).rows}
    assert tasks == {"sample_commonsense_es", "sample_commonsense_es (3-shot per-item)",
                     "sample_commonsense_es (3-shot fixed)", "sample_commonsense_es (1-shot per-item)"}
    # so does the device cost (`results --device`): one row per setup, never one row of all four
    from iberlite.analysis.device_cost import device_costs
    from iberlite.cli.views import costs_view

    costs = {r.task: r.n for r in device_costs(db)}
    assert costs == {"sample_commonsense_es": n, "sample_commonsense_es (3-shot per-item)": n,
                     "sample_commonsense_es (3-shot fixed)": n - 3, "sample_commonsense_es (1-shot per-item)": n}
    assert sorted(r[1] for r in costs_view(db).rows) == sorted(costs)
    md = render(db, "md")
    assert "## Few-shot: what shots buy and cost" in md
    assert all(s in md for s in view.notes)
    html = render(db, "html")
    assert 'id="fewshot"' in html and view.notes[0].split(" (")[0] in html
