"""Micro-batches of one optimizer step, packed by a token budget (pure logic, tested without a model).

What training holds in memory is mostly the activations autograd keeps for the backward pass,
and they grow with the padded size of one forward pass: sequences x the longest of them. So a
step's batch is cut into micro-batches whose padded size stays within a token budget, gradients
accumulate over them and the optimizer steps once: the same step in less memory (the loss is
normalized by the whole batch's answer tokens, `adapt/train.py`). Sorting by length keeps
sequences of similar length together, and each micro-batch pads only to its own longest
sequence, so little of what is computed is padding.
"""

from __future__ import annotations

from collections.abc import Sequence


def micro_batches(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Positions into `lengths`, longest first, packed greedily: a micro-batch takes the next
    sequence while ``n_seqs * longest`` stays within `budget`. A sequence longer than the
    budget is a micro-batch of its own (it cannot be cut without changing what is learned)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    packed: list[list[int]] = []
    for i in order:
        if packed and (len(packed[-1]) + 1) * lengths[packed[-1][0]] <= budget:
            packed[-1].append(i)
        else:
            packed.append([i])
    return packed


def padded_tokens(lengths: Sequence[int], batch: Sequence[int]) -> int:
    """Tokens one micro-batch computes, padding included."""
    return len(batch) * max(lengths[i] for i in batch)
