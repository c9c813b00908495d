"""The llama.cpp engine on the real pip-shipped models: scores, greedy flags, generation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from iberlite.engines.base import GenerationRequest, LoglikelihoodRequest
from iberlite.engines.llamacpp import LlamaCppEngine
from iberlite.models.names import resolve_model
from iberlite.run.plan import plan
from iberlite.run.spec import RunSpec
from iberlite.scoring.metrics import mc_prediction

pytestmark = pytest.mark.slow


CTX = "Me volví fan de Ley y Orden en 2011. Me estaba recuperando de un ataque cerebral."
ENDINGS = (" Al final, los vi todos.", " Creo que es la peor serie que se ha hecho.")


@pytest.fixture(scope="module", params=["smollm2-135m", "gemma3-270m"])
def engine(request):
    eng = LlamaCppEngine(resolve_model(request.param))
    yield eng
    eng.close()


def _reference_logprob(engine: LlamaCppEngine, context: str, continuation: str) -> float:
    """Summed logprob from llama-cpp-python's own high-level path (all logits, one sequence)."""
    from llama_cpp import Llama

    from iberlite.engines.kernels import apply_to_llama_cpp_python

    apply_to_llama_cpp_python(engine.kernels)
    tokens, start = engine.encode_pair(context, continuation)
    llm = Llama(str(engine.model_file.path), n_ctx=512, n_batch=512, logits_all=True,
                verbose=False, n_threads=engine.n_threads)
    try:
        llm.eval(tokens)
        scores = np.asarray(llm.scores[: len(tokens)], dtype=np.float64)
    finally:
        llm.close()
    total = 0.0
    for p in range(start - 1, len(tokens) - 1):
        row = scores[p]
        total += row[tokens[p + 1]] - (row.max() + math.log(np.exp(row - row.max()).sum()))
    return total


def test_loglikelihood_matches_llama_cpp_reference(engine):
    ours = engine.loglikelihood([LoglikelihoodRequest(CTX, ENDINGS[0])])[0]
    ref = _reference_logprob(engine, CTX, ENDINGS[0])
    assert ours.logprob < 0
    assert ours.logprob == pytest.approx(ref, abs=1e-3)
    assert ours.n_tokens == len(engine.tokenize(CTX + ENDINGS[0])) - len(engine.tokenize(CTX))


def test_trailing_space_of_context_moves_to_continuation(engine):
    a = engine.loglikelihood([LoglikelihoodRequest(CTX + " ", ENDINGS[0].lstrip())])[0]
    b = engine.loglikelihood([LoglikelihoodRequest(CTX, ENDINGS[0])])[0]
    assert a.logprob == pytest.approx(b.logprob, abs=1e-9)
    assert a.n_tokens == b.n_tokens


def test_empty_context_is_scored_after_bos(engine):
    text = "Hace sol, ¿correcto? Sí, no llueve."
    r = engine.loglikelihood([LoglikelihoodRequest("", text)])[0]
    assert r.n_tokens == len(engine.tokenize(text, add_special=False))
    assert math.isfinite(r.logprob) and r.logprob < 0


def test_greedy_continuation_is_flagged_greedy(engine):
    prompt = "English sentence: The weather is nice today.\nSpanish sentence:"
    out = engine.generate([GenerationRequest(prompt, until=("\n",), max_tokens=8)])[0]
    assert out.gen_tokens > 0
    # what greedy decoding produced must score as greedy; a different ending must not
    greedy = engine.loglikelihood([LoglikelihoodRequest(prompt, out.text)])[0]
    other = engine.loglikelihood([LoglikelihoodRequest(prompt, " Zzyzx qwerty")])[0]
    assert greedy.is_greedy
    assert not other.is_greedy
    assert greedy.logprob > other.logprob


def test_generation_stops_at_until_and_respects_max_tokens(engine):
    prompt = "Spanish sentence: Mañana hará sol, pero por la mañana hará frío.\nEnglish sentence:"
    out = engine.generate([GenerationRequest(prompt, until=("\n",), max_tokens=64)])[0]
    assert "\n" not in out.text
    assert out.stop_reason in ("until", "eos", "length")
    short = engine.generate([GenerationRequest(prompt, until=(), max_tokens=3)])[0]
    assert short.gen_tokens <= 3
    assert short.stop_reason in ("length", "eos")
    # timings are positive and consistent: prefill + decode make up the wall time
    assert 0 < out.prefill_ms <= out.ttft_ms <= out.wall_ms
    assert out.prefill_ms + out.decode_ms == pytest.approx(out.wall_ms, rel=1e-6)


def test_generation_is_deterministic(engine):
    prompt = "English sentence: I like apples.\nBasque sentence:"
    req = GenerationRequest(prompt, until=("\n",), max_tokens=16)
    assert engine.generate([req])[0].text == engine.generate([req])[0].text


def _scores(engine: LlamaCppEngine, reqs, scoring: str):
    engine.scoring = scoring
    try:
        return engine.loglikelihood(reqs)
    finally:
        engine.scoring = "fast"


@pytest.mark.parametrize("task", ["xstorycloze_es", "xnli_es"])
def test_fast_and_naive_scoring_agree_on_real_items(engine, task, data_dir):
    """The shared-prefix path gives every choice the logprob that scoring it from scratch
    gives (within 1e-3; the aligned layout makes them identical on this CPU), so the
    predictions are the same, while fewer tokens go through the model. XNLI items have an
    empty context: their choices share the premise only as a token prefix."""
    _, tasks = plan(RunSpec(models=("smollm2-135m",), tasks=(task,), limit=24, data_dir=data_dir))
    insts = tasks[0].instances
    reqs = [LoglikelihoodRequest(i.context, i.target_delimiter + c, group=str(k))
            for k, i in enumerate(insts) for c in i.choices]
    fast, naive = _scores(engine, reqs, "fast"), _scores(engine, reqs, "naive")
    assert [r.n_tokens for r in fast] == [r.n_tokens for r in naive]
    diffs = [abs(f.logprob - n.logprob) for f, n in zip(fast, naive)]
    assert max(diffs) < 1e-3, max(diffs)

    def preds(results):
        it = iter(r.logprob for r in results)
        return [mc_prediction([next(it) for _ in i.choices]) for i in insts]

    assert preds(fast) == preds(naive)
    # one choice on its own, from a cleared cache, scores the same as inside a pack
    for k in (0, len(reqs) // 2, len(reqs) - 1):
        alone = engine.loglikelihood([reqs[k]])[0]
        assert abs(alone.logprob - fast[k].logprob) < 1e-3
    # the shared prefix is evaluated once: far fewer tokens go through the model
    assert sum(r.eval_tokens for r in fast) < 0.8 * sum(r.eval_tokens for r in naive)


def test_corrupt_gguf_is_a_user_error(tmp_path):
    from iberlite.errors import UserError
    from iberlite.models.model_file import ModelFile

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(UserError, match="bad.gguf"):
        LlamaCppEngine(ModelFile("bad", bad))


def test_prefix_cache_reports_reused_tokens(engine):
    """With the prefix cache on, a prompt sharing a prefix with the previous one reuses it, and
    the result says so: reused tokens are not counted as a fresh prefill."""
    engine.prefix_cache = True
    try:
        first = "English sentence: The weather is nice today.\nSpanish sentence:"
        second = "English sentence: The weather is nice today.\nBasque sentence:"
        engine.generate([GenerationRequest(first, until=("\n",), max_tokens=4)])
        out = engine.generate([GenerationRequest(second, until=("\n",), max_tokens=4)])[0]
        shared = 0
        a, b = engine.tokenize(first), engine.tokenize(second)
        while shared < min(len(a), len(b)) and a[shared] == b[shared]:
            shared += 1
        assert out.reused_tokens == shared > 0
        assert out.prompt_tokens == len(b)
    finally:
        engine.prefix_cache = False
    fresh = engine.generate([GenerationRequest(second, until=("\n",), max_tokens=4)])[0]
    assert fresh.reused_tokens == 0
