"""The one way from a rendered task instance to the requests an engine answers.

Multiple choice is one log-likelihood request per choice, ``(context, target_delimiter +
choice)``, as lm-evaluation-harness builds them; choices of one item share a `group`, so the
llama.cpp engine can evaluate their common prefix once. Generation is one request with the
instance's stop sequences and token budget.
"""

from __future__ import annotations

from collections.abc import Sequence

from iberlite.engines.base import GenerationRequest, LoglikelihoodRequest
from iberlite.tasks.render import Instance


def choice_requests(inst: Instance, group: str) -> list[LoglikelihoodRequest]:
    """One request per choice of `inst`, all in `group`."""
    return [LoglikelihoodRequest(inst.context, inst.target_delimiter + c, group) for c in inst.choices]


def batch_choice_requests(batch: Sequence[tuple[int, Instance]]) -> list[LoglikelihoodRequest]:
    """The requests of a batch of (position, instance), choice after choice; each item is its
    own group (`position:doc_id`), so two items never share a prefix by accident."""
    return [r for pos, inst in batch for r in choice_requests(inst, f"{pos}:{inst.doc_id}")]


def generation_request(inst: Instance) -> GenerationRequest:
    """The greedy generation an instance asks for."""
    return GenerationRequest(inst.context, inst.until, inst.max_tokens)
