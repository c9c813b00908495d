"""The device's token ids for training, and a check of transformers' tokenizer against them.

Training runs in transformers but the adapter serves in llama.cpp, so the sequences trained on
are llama.cpp's own: context and answer split exactly as the llama.cpp engine scores them
(`LlamaCppEngine.encode_pair`), BOS convention included. transformers' tokenizer (rebuilt
from the same GGUF) is compared on every training text: a text it splits differently would be
scored differently by the reference engine, and the check says how many do. SmolLM2 is the
known case for BOS: its GGUF asks for none, transformers adds `<|im_start|>` (docs/fidelity.md),
which is why the check compares the text's tokens and reports BOS apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from iberlite.adapt.examples import TrainExample
from iberlite.engines.llamacpp import LlamaCppEngine
from iberlite.models.model_file import ModelFile


@dataclass(frozen=True)
class TokenCheck:
    """llama.cpp against transformers on the training texts."""

    texts: int
    mismatched: int  # texts whose tokens (BOS aside) differ
    device_bos: bool  # llama.cpp puts BOS in front of a context
    reference_bos: bool  # transformers' tokenizer does
    first_mismatch: str | None  # the start of the first text that differs

    @property
    def sentence(self) -> str:
        """One line for the user and the adapter's record."""
        same = f"{self.texts - self.mismatched}/{self.texts} training texts tokenize identically in " \
               "llama.cpp and transformers"
        bos = ("" if self.device_bos == self.reference_bos else
               f"; BOS differs (llama.cpp {'adds' if self.device_bos else 'adds none'}, transformers "
               f"{'adds one' if self.reference_bos else 'adds none'}): training uses llama.cpp's")
        first = f"; first difference in {self.first_mismatch!r}" if self.first_mismatch else ""
        return same + bos + first + "."


def device_pairs(model: ModelFile, examples: Sequence[TrainExample],
                 ) -> tuple[list[tuple[list[int], list[int]]], list[list[int]], bool]:
    """(context ids, answer ids) per example as the llama.cpp engine splits them, each text's
    tokens without special tokens (for the check), and whether llama.cpp adds BOS."""

    with LlamaCppEngine(model, n_ctx=8192, n_batch=512, n_threads=1, n_seq_max=2) as engine:
        pairs = []
        plain = []
        for e in examples:
            tokens, start = engine.encode_pair(e.context, e.continuation)
            pairs.append((tokens[:start], tokens[start:]))
            plain.append(engine.tokenize(e.context + e.continuation, add_special=False))
        return pairs, plain, engine.add_bos


def compare_tokenizers(tokenizer, examples: Sequence[TrainExample], device_plain: Sequence[list[int]],
                       device_bos: bool) -> TokenCheck:
    """Compare transformers' `tokenizer` with llama.cpp's ids on every training text."""
    mismatched, first = 0, None
    for e, ids in zip(examples, device_plain):
        ref = tokenizer.encode(e.context + e.continuation, add_special_tokens=False)
        if ref != ids:
            mismatched += 1
            first = first or (e.context + e.continuation)[:60]
    probe = tokenizer.encode("a", add_special_tokens=True)
    reference_bos = tokenizer.bos_token_id is not None and probe[:1] == [tokenizer.bos_token_id]
    return TokenCheck(len(examples), mismatched, device_bos, reference_bos, first)
