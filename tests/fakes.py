"""A deterministic fake engine for pipeline tests (runner -> store -> report) that need no model.

It implements the Engine protocol of `iberlite.engines.base`. Every number is derived from a
SHA-256 of the model name and the text, so the same request always gets the same answer, two
"models" answer differently, and a test can recompute any stored value by hand.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from iberlite.engines.base import (
    EngineInfo,
    GenerationRequest,
    GenerationResult,
    LoglikelihoodRequest,
    LoglikelihoodResult,
)


def text_hash(*parts: str) -> int:
    """A stable 64-bit integer from the parts (not Python's salted hash())."""
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "big")


class FakeEngine:
    """Answers from hashes: logprob in [-11, -1) per token, generation echoes prompt words."""

    def __init__(self, model_name: str, seed: int = 1234) -> None:
        self.model_name = model_name
        self.seed = seed
        self.closed = False

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        """Score each continuation: -(1 + h/100) nats per whitespace token, h from its hash."""
        out = []
        for r in requests:
            h = text_hash(self.model_name, r.context, r.continuation)
            n = max(1, len(r.continuation.split()))
            out.append(LoglikelihoodResult(logprob=-(1 + (h % 1000) / 100) * n, n_tokens=n,
                                           is_greedy=h % 7 == 0, eval_tokens=float(n), ms=1.0 + h % 5))
        return out

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Echo the first 3-7 words of the prompt's last non-empty line (so some outputs are in
        the target language and some are not)."""
        out = []
        for r in requests:
            h = text_hash(self.model_name, r.prompt)
            lines = [line for line in r.prompt.splitlines() if line.strip()] or [""]
            words = lines[-2 if len(lines) > 1 and h % 2 else -1].split(":")[-1].split()
            text = " " + " ".join(words[: 3 + h % 5])
            n_prompt, n_gen = len(r.prompt.split()), max(1, len(text.split()))
            out.append(GenerationResult(
                text=text, prompt_tokens=n_prompt, gen_tokens=n_gen, prefill_ms=2.0 + n_prompt / 10,
                decode_ms=5.0 * n_gen, ttft_ms=2.5 + n_prompt / 10, wall_ms=3.0 + n_prompt / 10 + 5.0 * n_gen,
                stop_reason="until", mean_logprob=-(h % 300) / 100,
            ))
        return out

    def info(self) -> EngineInfo:
        """Facts for the signature; the 'file' is the model name's hash."""
        sha = hashlib.sha256(self.model_name.encode()).hexdigest()
        return EngineInfo(engine="fake", engine_version="1", model_name=self.model_name,
                          model_path=f"fake://{self.model_name}", model_sha256=sha, architecture="fake",
                          file_type="F32", tensor_types="F32", n_params=1_000_000 * (1 + text_hash(sha) % 300),
                          size_bytes=4_000_000 * (1 + text_hash(sha) % 300), n_threads=1, n_ctx=2048,
                          n_batch=512, scoring="fake", seed=self.seed, load_ms=1.0)

    def close(self) -> None:
        """Nothing to free."""
        self.closed = True


def fake_engine_factory(model, spec) -> FakeEngine:
    """The `engine_factory` of `iberlite.run.runner.run` that opens a FakeEngine for every model."""
    return FakeEngine(model.name, seed=spec.seed)
