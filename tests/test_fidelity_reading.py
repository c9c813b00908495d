"""Reading comprehension and Catalan NLI agree with lm-evaluation-harness 0.4.13 item by item.

As tests/test_fidelity.py, on the new tasks: lm-eval's own `hf` path (a subprocess) on local
copies of its `teca` and `xquad_ca` configs pointed at the data dir, and iberlite's runner with
the transformers engine on the same GGUF file (SmolLM2-135M) and documents: the first 10 TECA
pairs (three choices each) and the first 3 XQuAD-ca questions (greedy generation to "\\n",
scored with SQuAD exact match and F1). Counts are small to keep the suite's time; the 100-item
measurement is in docs/fidelity.md. Needs the reference extra and the data dir.
"""

from __future__ import annotations

import pytest

pytest.importorskip("lm_eval", reason="the fidelity test needs the reference extra: pip install -e .[reference]")
pytest.importorskip("transformers", reason="the fidelity test needs the reference extra: pip install -e .[reference]")

from iberlite.fidelity.compare import LOGPROB_TOL, compare  # noqa: E402
from iberlite.fidelity.iberlite_run import run_iberlite  # noqa: E402
from iberlite.fidelity.lm_eval_run import read_samples, run_lm_eval  # noqa: E402
from iberlite.fidelity.lm_eval_tasks import write_task_dir  # noqa: E402
from iberlite.models.names import resolve_model  # noqa: E402

pytestmark = [pytest.mark.fidelity, pytest.mark.slow]

MODEL = "smollm2-135m"
CASES = {"teca": (10, "multiple_choice", ""), "xquad_ca": (3, "generate", " ")}


@pytest.fixture(scope="module")
def agreements(tmp_path_factory, data_dir, offline_hub):
    work = tmp_path_factory.mktemp("fidelity_reading")
    local = write_task_dir(list(CASES), data_dir, work / "tasks")
    model = resolve_model(MODEL)
    out = {}
    for task, (n, kind, delim) in CASES.items():
        run_lm_eval(model, [local[task]], work / "tasks", n, work / f"lm_{task}", n_threads=1,
                    log=work / "lm_eval.log")
        ours = run_iberlite("transformers", MODEL, [task], n, data_dir, work / task, 1, {task: delim})[task]
        out[task] = compare(read_samples(work / f"lm_{task}", task), ours, kind)
    return out


def test_teca_predictions_agree_with_lm_eval(agreements):
    ag = agreements["teca"]
    assert ag.n_a == ag.n_b == ag.n_matched == 10
    assert ag.n_same_prompt == 10  # lm-eval's process_doc_nli and iberlite's transform agree
    assert ag.n_same_prediction + ag.n_exact_ties >= 10, ag.disagreeing
    assert ag.max_abs_dlogprob < LOGPROB_TOL
    assert ag.metrics_a["acc"] == ag.metrics_b["acc"]


def test_xquad_ca_answers_and_squad_scores_agree_with_lm_eval(agreements):
    ag = agreements["xquad_ca"]
    assert ag.n_a == ag.n_b == ag.n_matched == 3  # matched by question id
    assert ag.n_same_prompt == 3
    assert ag.n_same_prediction == 3, ag.disagreeing  # identical generated text
    for metric in ("squad_em", "squad_f1"):
        assert ag.metrics_a[metric] == pytest.approx(ag.metrics_b[metric], abs=1e-9), metric
