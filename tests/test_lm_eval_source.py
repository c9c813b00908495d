"""lm-eval tasks by name (`--tasks lm_eval:NAME`), and the built-in tasks against lm-eval's own.

lm-evaluation-harness 0.4.13 builds its tasks here from local copies of its task configs pointed
at the data dir (`iberlite.fidelity.lm_eval_tasks.write_task_dir`), through its own
`TaskManager` (`iberlite.tasks.lm_eval_source`). Checked:

* the first 300 documents of each new built-in task (every document, once, in docs/fidelity.md) (XQuAD es/en/ca, CatalanQA, TECA, ASSIN entailment
  and paraphrase) renders to the same context, choices, target delimiter, gold and stop
  sequences in iberlite as in lm-eval, character for character;
* `lm_eval:` on the local XNLI-es copy gives the same prompts, items and scores as the built-in
  `xnli_es` on the real engine (SmolLM2, a few items; marked slow);
* an unknown lm-eval task and a missing reference extra are one sentence with exit code 2;
* `--num-fewshot 5` on `lm_eval:` XNLI-es gives lm-eval's 5-shot contexts, which equal the
  built-in `xnli_es` 5-shot contexts (per item), with the shots in the evaluation key and the
  signature; `--fewshot-mode fixed` and K > 0 on a task pinned at 0 shots are refused.

Needs the reference extra and the data dir; skipped with the reason otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval", reason="needs the reference extra: pip install -e .[reference]")

from fakes import FakeEngine  # noqa: E402
from iberlite.errors import UserError  # noqa: E402
from iberlite.fidelity.lm_eval_tasks import write_task_dir  # noqa: E402
from iberlite.run.plan import plan  # noqa: E402
from iberlite.run.signature import eval_key, shots_tag, signature  # noqa: E402
from iberlite.run.spec import RunSpec  # noqa: E402
from iberlite.tasks.fewshot import FewshotSetup, apply_fewshot  # noqa: E402
from iberlite.tasks.items import load_items  # noqa: E402
from iberlite.tasks.lm_eval_source import load_lm_eval_tasks, split_names  # noqa: E402
from iberlite.tasks.registry import load_task_specs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
N_SHOT_DOCS = 10  # documents of the few-shot checks (the draws of document i depend on those before it)
N_DOCS = 300  # per task in CI (about 20 s in all); every document was compared once (docs/fidelity.md)
NEW = ("xquad_es", "xquad_en", "xquad_ca", "catalanqa", "teca", "assin_entailment", "assin_paraphrase")


@pytest.fixture(scope="module")
def include(tmp_path_factory, data_dir, offline_hub):
    out = tmp_path_factory.mktemp("lm_eval_tasks")
    return write_task_dir([*NEW, "xnli_es"], data_dir, out), out


@pytest.fixture(scope="module")
def lm_tasks(include):
    names, folder = include
    loaded = {lt.spec.name: lt for lt in load_lm_eval_tasks([names[t] for t in NEW], [folder], N_DOCS)}
    return {t: loaded[f"lm_eval:{names[t]}"] for t in NEW}


pytestmark = pytest.mark.fidelity


@pytest.mark.parametrize("task", NEW)
def test_builtin_task_renders_what_lm_eval_renders_on_real_documents(task, lm_tasks, data_dir):
    ours = load_items(load_task_specs()[task], data_dir, N_DOCS).instances
    theirs = lm_tasks[task].instances
    assert len(ours) == len(theirs) == N_DOCS
    for a, b in zip(ours, theirs, strict=True):
        assert (a.context, a.choices, a.gold) == (b.context, b.choices, b.gold), a.doc_id
        assert (a.target_delimiter, a.until, a.max_tokens) == (b.target_delimiter, b.until, b.max_tokens)
    spec = lm_tasks[task].spec
    if spec.output == "generate":  # lm-eval's process_results_qa metrics, by lm-eval's names
        assert spec.metrics == ("exact_match", "f1")
    else:
        assert spec.metrics == ("acc",)


def test_split_names_keeps_builtin_tasks_first():
    assert split_names(["xnli_es", "lm_eval:xnli_gl", "paws_gl"]) == (("xnli_es",), ("xnli_gl", "paws_gl"))
    with pytest.raises(UserError, match="needs a task name"):
        split_names(["lm_eval:"])


def test_unknown_lm_eval_task_is_one_sentence_with_exit_2(tmp_path):
    from test_cli_errors import assert_clean_error, cli

    proc = cli("run", "--models", "smollm2-135m", "--tasks", "lm_eval:xnli_ess", "--db",
               str(tmp_path / "x.db"), cwd=tmp_path)
    message = assert_clean_error(proc, 2)
    assert "no task 'xnli_ess'" in message and "xnli_es" in message


def test_without_the_reference_extra_it_is_one_sentence(monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval now fails
    monkeypatch.setitem(sys.modules, "lm_eval.tasks", None)
    with pytest.raises(UserError, match=r"needs lm-evaluation-harness.*reference extra") as exc:
        load_lm_eval_tasks(["xnli_es"])
    assert exc.value.exit_code == 2


@pytest.mark.slow
def test_lm_eval_xnli_es_equals_the_builtin_xnli_es(include, data_dir, tmp_path):
    from iberlite.run.runner import run
    from iberlite.run.spec import RunSpec
    from iberlite.store import Store

    names, folder = include
    db = tmp_path / "x.db"
    common = dict(models=("smollm2-135m",), limit=5, data_dir=data_dir, db=db, n_threads=1)
    ours = run(RunSpec(tasks=("xnli_es",), **common))
    theirs = run(RunSpec(tasks=(f"lm_eval:{names['xnli_es']}",), lm_eval_include=(folder,), **common))
    with Store(db) as store:
        evs = {ev.task: ev for ev in store.evals()}
        a = store.items(evs["xnli_es"].eval_key)
        b = store.items(evs[f"lm_eval:{names['xnli_es']}"].eval_key)
    assert [it.doc_id for it in a] == [it.doc_id for it in b] == ["0", "1", "2", "3", "4"]
    for x, y in zip(a, b, strict=True):
        assert (x.prompt, x.choices, x.gold) == (y.prompt, y.choices, y.gold)
        assert x.logprobs == y.logprobs and x.prediction == y.prediction
    [sa] = ours.outcomes[0].scores
    [sb] = theirs.outcomes[0].scores
    assert (sa.metric, sa.value, sa.ci_low, sa.ci_high, sa.n) == (sb.metric, sb.value, sb.ci_low, sb.ci_high, sb.n)


@pytest.mark.slow
def test_lm_eval_xquad_es_is_scored_by_lm_evals_process_results(include, data_dir, tmp_path):
    """Generation through lm-eval's own scoring: its `exact_match` and `f1` equal iberlite's
    `squad_em` and `squad_f1` on the same generated answers."""
    from iberlite.run.runner import run
    from iberlite.run.spec import RunSpec

    names, folder = include
    common = dict(models=("smollm2-135m",), limit=3, data_dir=data_dir, db=tmp_path / "q.db", n_threads=1)
    ours = {s.metric: s for s in run(RunSpec(tasks=("xquad_es",), **common)).outcomes[0].scores}
    theirs = {s.metric: s for s in run(RunSpec(tasks=(f"lm_eval:{names['xquad_es']}",),
                                               lm_eval_include=(folder,), **common)).outcomes[0].scores}
    assert set(theirs) == {"exact_match", "f1"}
    for lm_name, our_name in (("exact_match", "squad_em"), ("f1", "squad_f1")):
        a, b = ours[our_name], theirs[lm_name]
        assert (a.value, a.ci_low, a.ci_high, a.n) == pytest.approx((b.value, b.ci_low, b.ci_high, b.n))


@pytest.fixture(scope="module")
def xnli_planned(include, data_dir):
    """`lm_eval:` XNLI-es planned at 0 and 5 shots (no model: `plan` with no models renders the
    instances and their few-shot record as a run would)."""
    names, folder = include
    out = {}
    for k in (0, 5):
        spec = RunSpec(models=(), tasks=(f"lm_eval:{names['xnli_es']}",), lm_eval_include=(folder,),
                       limit=N_SHOT_DOCS, data_dir=data_dir, num_fewshot=k)
        [out[k]] = plan(spec)[1]
    return out


def test_lm_eval_task_at_5_shots_has_the_builtin_5_shot_contexts(xnli_planned, data_dir):
    spec = load_task_specs()["xnli_es"]
    items = load_items(spec, data_dir, N_SHOT_DOCS)
    ours, _ = apply_fewshot(spec, items.instances, data_dir, FewshotSetup(5))
    theirs, zero = xnli_planned[5].instances, xnli_planned[0].instances
    assert len(ours) == len(theirs) == N_SHOT_DOCS
    for a, b, z in zip(ours, theirs, zero, strict=True):
        assert (a.context, a.choices, a.gold) == (b.context, b.choices, b.gold), a.doc_id
        assert b.context.endswith(z.context) and b.context.count("\n\n") >= 5  # the 0-shot question after 5 shots
    shots = xnli_planned[5].fewshot
    assert (shots.k, shots.mode, shots.sampler, shots.seed) == (5, "per-item", "default", 1234)
    assert shots.pool == "validation (eval split)" and shots.pool_size == 5010
    assert xnli_planned[0].fewshot is None and "0-shot" in xnli_planned[0].spec.description


def test_zero_and_five_shot_lm_eval_evaluations_never_share_a_key(xnli_planned):
    info = FakeEngine("m").info()
    keys = {k: eval_key(info, pt.spec, pt.data_hash, pt.fewshot) for k, pt in xnli_planned.items()}
    assert keys[0] != keys[5]
    five = xnli_planned[5]
    sig = signature(info, five.spec, five.data_hash, N_SHOT_DOCS, "dev", five.fewshot)
    assert shots_tag(sig) == " (5-shot per-item)"
    zero = xnli_planned[0]
    assert shots_tag(signature(info, zero.spec, zero.data_hash, N_SHOT_DOCS, "dev", zero.fewshot)) == ""


def test_fixed_shots_on_an_lm_eval_task_is_one_sentence_with_exit_2(tmp_path):
    from test_cli_errors import assert_clean_error, cli

    proc = cli("run", "--models", "smollm2-135m", "--tasks", "lm_eval:xnli_es", "--num-fewshot", "5",
               "--fewshot-mode", "fixed", "--db", str(tmp_path / "x.db"), cwd=tmp_path)
    message = assert_clean_error(proc, 2)
    assert "--fewshot-mode fixed" in message and "lm_eval:" in message


def test_shots_on_a_task_pinned_at_zero_shots_are_refused(include, tmp_path):
    names, folder = include
    pinned = tmp_path / "pinned"
    pinned.mkdir()
    (pinned / "pinned.yaml").write_text(f"include: {folder / (names['xnli_es'] + '.yaml')}\n"
                                        "task: iblref_xnli_es_pinned\nnum_fewshot: 0\n")
    with pytest.raises(UserError, match="pins num_fewshot: 0") as exc:
        load_lm_eval_tasks(["iblref_xnli_es_pinned"], [folder, pinned], 2, FewshotSetup(5))
    assert exc.value.exit_code == 2
