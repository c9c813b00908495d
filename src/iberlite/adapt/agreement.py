"""Does llama.cpp apply an adapter as PEFT does? Log-likelihoods in both engines: of every
choice for a multiple-choice task, of the reference continuation (as the adapter was trained on
it, stop string included) for a generation task.

The base model already differs between the engines (llama.cpp keeps the quantized weights and
quantizes activations; transformers runs the dequantized weights in float32), so the adapter is
judged against that: on the same items, the adapted model's llama.cpp-vs-transformers deviation
should stay within the base model's, while the adapter itself moves the scores by much more.
Both engines score the very same token ids (llama.cpp's, as the device evaluates), so the BOS
convention of transformers' rebuilt tokenizer does not enter the comparison.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from iberlite.adapt.examples import reference_continuation
from iberlite.engines.base import LoglikelihoodRequest
from iberlite.engines.llamacpp import LlamaCppEngine
from iberlite.engines.transformers import TransformersEngine
from iberlite.models.model_file import ModelFile
from iberlite.tasks.render import Instance


@dataclass(frozen=True)
class Deviation:
    """Absolute differences between two lists of log-likelihoods (nats)."""

    n: int
    median: float
    max: float

    @classmethod
    def between(cls, a: Sequence[float], b: Sequence[float]) -> "Deviation":
        """|a - b| summarised."""
        d = [abs(x - y) for x, y in zip(a, b)]
        return cls(len(d), statistics.median(d), max(d))


@dataclass(frozen=True)
class Agreement:
    """The base tolerance, the adapter's deviation within it, and the adapter's own effect."""

    items: int
    base: Deviation  # llama.cpp vs transformers, base model
    adapted: Deviation  # llama.cpp vs transformers (PEFT), adapted model
    shift: Deviation  # adapted vs base, in llama.cpp: what the adapter changes
    same_choice: int | None  # items where both engines pick the same choice with the adapter
    # (None for generation: one continuation per item, nothing to pick)


def requests_for(instances: Sequence[Instance]) -> list[LoglikelihoodRequest]:
    """One request per (item, choice), as the runner builds them for multiple choice; one per
    item, its reference continuation, for generation."""
    return [LoglikelihoodRequest(i.context, cont, group=i.doc_id) for i in instances
            for cont in ([i.target_delimiter + c for c in i.choices] or [reference_continuation(i)])]


def llamacpp_scores(model: ModelFile, requests: Sequence[LoglikelihoodRequest], n_threads: int = 1,
                    ) -> tuple[list[float], list[tuple[list[int], int]]]:
    """llama.cpp's log-likelihoods and the (tokens, first scored index) it used."""
    with LlamaCppEngine(model, n_threads=n_threads) as engine:
        tokens = [engine.encode_pair(r.context, r.continuation) for r in requests]
        return [r.logprob for r in engine.loglikelihood(requests)], tokens


def transformers_scores(model, tokens: Sequence[tuple[list[int], int]]) -> list[float]:
    """transformers' log-likelihood of the same token ids, one unpadded sequence at a time."""
    import torch

    out = []
    with torch.no_grad():
        for ids, start in tokens:
            keep = len(ids) - start + 1
            logits = model(torch.tensor([ids]), logits_to_keep=keep).logits[0, :-1].float()
            target = torch.tensor(ids[start:])
            out.append(float(torch.log_softmax(logits, -1).gather(1, target.unsqueeze(1)).sum()))
    return out


def measure(base: ModelFile, adapted: ModelFile, instances: Sequence[Instance],
            n_threads: int = 1, reference=None) -> Agreement:
    """Score `instances` with and without the adapter in both engines and compare.

    `reference` is an open transformers engine on `base` to reuse (its model is left as it was
    found); without it one is loaded and closed here."""
    import peft

    assert adapted.adapter is not None
    requests = requests_for(instances)
    cpp_base, tokens = llamacpp_scores(base, requests, n_threads)
    cpp_adapted, tokens_adapted = llamacpp_scores(adapted, requests, n_threads)
    assert tokens == tokens_adapted
    engine = reference or TransformersEngine(base, n_threads=n_threads)
    ref_base = transformers_scores(engine.model, tokens)
    with_adapter = peft.PeftModel.from_pretrained(engine.model, str(adapted.adapter_peft))
    with_adapter.eval()
    ref_adapted = transformers_scores(with_adapter, tokens)
    engine.model = with_adapter.unload()  # the LoRA layers out again, base weights untouched
    if reference is None:
        engine.close()
    same: int | None = None
    if all(inst.choices for inst in instances):
        same, k = 0, 0
        for inst in instances:
            n = len(inst.choices)
            a, b = cpp_adapted[k:k + n], ref_adapted[k:k + n]
            same += a.index(max(a)) == b.index(max(b))
            k += n
    return Agreement(len(instances), Deviation.between(cpp_base, ref_base),
                     Deviation.between(cpp_adapted, ref_adapted),
                     Deviation.between(cpp_adapted, cpp_base), same)
