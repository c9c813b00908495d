"""iberlite's transformers engine agrees with lm-evaluation-harness 0.4.13 item by item.

lm-eval runs its own `hf` code path (a subprocess) on its own task YAMLs pointed at the data
dir; iberlite runs its runner with the transformers engine on the same GGUF file and documents.
SmolLM2-135M, first 50 XStoryCloze-es stories and first 20 FLORES en->es sentences.

Needs the reference extra (pip install -e .[reference]) and the evaluation data
(IBERLITE_DATA_DIR, else ../shared/data beside the repository); skipped with the reason
otherwise. Takes a few minutes on 2 cores (two lm-eval model loads, two iberlite loads).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("lm_eval", reason="the fidelity test needs the reference extra: pip install -e .[reference]")
pytest.importorskip("transformers", reason="the fidelity test needs the reference extra: pip install -e .[reference]")

from iberlite.fidelity.compare import LOGPROB_TOL, compare  # noqa: E402
from iberlite.fidelity.iberlite_run import run_iberlite  # noqa: E402
from iberlite.fidelity.lm_eval_run import read_samples, run_lm_eval  # noqa: E402
from iberlite.fidelity.lm_eval_tasks import write_task_dir  # noqa: E402
from iberlite.models.names import resolve_model  # noqa: E402

pytestmark = [pytest.mark.fidelity, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m"
CASES = {  # task -> (documents, kind, target delimiter)
    "xstorycloze_es": (50, "multiple_choice", " "),
    "flores_en-es": (20, "generate", ""),
}


@pytest.fixture(scope="module")
def agreements(tmp_path_factory, data_dir, offline_hub):
    if not (data_dir / "xstorycloze").is_dir() or not (data_dir / "flores200").is_dir():
        pytest.skip(f"XStoryCloze or FLORES-200 not found in {data_dir}")
    work = tmp_path_factory.mktemp("fidelity")
    model = resolve_model(MODEL)
    local = write_task_dir(list(CASES), data_dir, work / "tasks")
    out = {}
    for task, (n, kind, delim) in CASES.items():
        run_lm_eval(model, [local[task]], work / "tasks", n, work / f"lm_{task}", n_threads=1,
                    log=work / "lm_eval.log")
        ref = read_samples(work / f"lm_{task}", task)
        ours = run_iberlite("transformers", MODEL, [task], n, data_dir, work / task, 1,
                            {task: delim})[task]
        out[task] = compare(ref, ours, kind)
    return out


def test_multiple_choice_items_agree_with_lm_eval(agreements):
    ag = agreements["xstorycloze_es"]
    assert ag.n_a == ag.n_b == ag.n_matched == 50
    assert ag.n_same_prompt == 50  # same context and continuations, character for character
    assert ag.n_same_prediction + ag.n_exact_ties >= 50, ag.disagreeing
    assert ag.max_abs_dlogprob < LOGPROB_TOL
    assert ag.metrics_a["acc"] == ag.metrics_b["acc"]


def test_generation_items_agree_with_lm_eval(agreements):
    ag = agreements["flores_en-es"]
    assert ag.n_a == ag.n_b == ag.n_matched == 20
    assert ag.n_same_prompt == 20
    assert ag.n_same_prediction == 20, ag.disagreeing  # identical generated text
    for metric in ("bleu", "chrf"):
        assert abs(ag.metrics_a[metric] - ag.metrics_b[metric]) < 0.1, metric
