"""At 5 shots, iberlite on the device answers as lm-evaluation-harness 0.4.13 does, item by item.

lm-eval runs its own `hf` path (a subprocess, SmolLM2-135M dequantized to fp32) with
`--num_fewshot 5` on its local qnlieu copy (BasqueGLUE; shots from validation); iberlite runs
`iberlite run --num-fewshot 5` with its llama.cpp engine on the same GGUF file. First 100 test
pairs. Same prompts on every item; the same prediction on at least 97 of them (the engines
round differently: fp32 PyTorch against llama.cpp's quantized kernels).

Needs the reference extra and the evaluation data. A few minutes on 2 cores (lm-eval's load
and 200 loglikelihood requests of ~400 tokens in fp32 dominate).
"""

from __future__ import annotations

import os

import pytest

pytest.importorskip("lm_eval", reason="the fidelity test needs the reference extra: pip install -e .[reference]")
pytest.importorskip("transformers", reason="the fidelity test needs the reference extra: pip install -e .[reference]")

from iberlite.fidelity.compare import compare  # noqa: E402
from iberlite.fidelity.iberlite_run import run_iberlite  # noqa: E402
from iberlite.fidelity.lm_eval_run import read_samples, run_lm_eval  # noqa: E402
from iberlite.fidelity.lm_eval_tasks import write_task_dir  # noqa: E402
from iberlite.models.names import resolve_model  # noqa: E402

pytestmark = [pytest.mark.fidelity, pytest.mark.slow]

MODEL, TASK, K, N = "smollm2-135m", "qnlieu", 5, 100


def test_five_shot_predictions_agree_with_lm_eval(tmp_path, data_dir):
    if not (data_dir / "basqueglue" / "qnli").is_dir():
        pytest.skip(f"BasqueGLUE QNLI not found in {data_dir}")
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[var] = "1"
    local = write_task_dir([TASK], data_dir, tmp_path / "tasks")
    run_lm_eval(resolve_model(MODEL), [local[TASK]], tmp_path / "tasks", N, tmp_path / "lm",
                n_threads=1, log=tmp_path / "lm_eval.log", num_fewshot=K)
    ref = read_samples(tmp_path / "lm", TASK)
    ours = run_iberlite("llamacpp", MODEL, [TASK], N, data_dir, tmp_path / "ib", 1, {TASK: " "},
                        num_fewshot=K)[TASK]
    ag = compare(ref, ours, "multiple_choice")
    assert ag.n_a == ag.n_b == ag.n_matched == N
    assert ag.n_same_prompt == N  # lm-eval's 5-shot contexts, character for character
    assert ag.n_same_prediction >= 0.97 * N, ag.disagreeing
    assert all(doc.context.count("\nErantzuna: ") == K for doc in ours.docs)
